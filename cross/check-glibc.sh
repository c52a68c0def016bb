#!/usr/bin/env bash
# The glibc ceiling: every shipped aarch64 binary must run on JetPack 6
# (Ubuntu 22.04, glibc 2.35). Reads the dynamic symbol table of each BIN and
# fails if any symbol is bound to a GLIBC_x.y newer than the ceiling; prints the
# highest version each binary needs and, on failure, the offending symbols.
#
#   cross/check-glibc.sh [--max 2.35] BIN...
#
# Also checks the version-needs section (what ld.so actually verifies), so a
# version required without a matching symbol cannot slip through.
set -euo pipefail

max="${MODA_GLIBC_MAX:-2.35}"
if [ "${1:-}" = "--max" ]; then max="$2"; shift 2; fi
if [ "$#" -eq 0 ]; then
    echo "usage: $0 [--max X.Y] BIN..." >&2
    exit 2
fi

# objdump must understand aarch64; readelf is target-independent.
objdump=""
for o in aarch64-linux-gnu-objdump objdump; do
    if command -v "$o" >/dev/null 2>&1; then objdump="$o"; break; fi
done

# Print "SYMBOL GLIBC_x.y" for every dynamic symbol bound to a glibc version.
glibc_syms() {
    local bin="$1"
    if [ -n "$objdump" ] && "$objdump" -T "$bin" >/dev/null 2>&1; then
        # columns: addr flags... section size version name
        "$objdump" -T "$bin" | awk '{
            for (i = 1; i <= NF; i++) if ($i ~ /^\(?GLIBC_[0-9.]+\)?$/) {
                v = $i; gsub(/[()]/, "", v); print $NF, v
            }
        }'
    else
        readelf --dyn-syms -W "$bin" | awk '$8 ~ /@GLIBC_/ {
            split($8, a, "@+"); print a[1], a[2]
        }'
    fi
}

# Print every GLIBC_x.y named in the version-needs section.
glibc_needs() {
    readelf -V -W "$1" | grep -o 'Name: GLIBC_[0-9.]*' | sed 's/Name: //' || true
}

newer() { # newer A B: true if version A > version B
    [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n1)" = "$1" ]
}

status=0
for bin in "$@"; do
    if [ ! -f "$bin" ]; then
        echo "check-glibc: $bin: no such file" >&2
        status=1
        continue
    fi
    if ! readelf -h "$bin" >/dev/null 2>&1; then
        echo "check-glibc: $bin: not an ELF file" >&2
        status=1
        continue
    fi
    machine="$(readelf -h "$bin" | awk -F: '/Machine:/ {gsub(/^ +/, "", $2); print $2}')"
    syms="$(glibc_syms "$bin")"
    needs="$(glibc_needs "$bin")"
    versions="$( { printf '%s\n' "$syms" | awk 'NF == 2 {print $2}'; printf '%s\n' "$needs"; } |
        sed 's/^GLIBC_//' | grep -E '^[0-9]+(\.[0-9]+)*$' | sort -uV)"
    if [ -z "$versions" ]; then
        echo "check-glibc: $bin ($machine): needs no versioned glibc symbols (static?)"
        continue
    fi
    top="$(printf '%s\n' "$versions" | tail -n1)"
    nsyms="$(printf '%s\n' "$syms" | grep -c . || true)"
    if newer "$top" "$max"; then
        echo "check-glibc: FAIL $bin ($machine): needs GLIBC_$top > GLIBC_$max; symbols over the ceiling:"
        printf '%s\n' "$syms" | while read -r name ver; do
            v="${ver#GLIBC_}"
            if newer "$v" "$max"; then echo "    $name@$ver"; fi
        done | sort -u
        status=1
    else
        echo "check-glibc: ok   $bin ($machine): max GLIBC_$top <= GLIBC_$max ($nsyms glibc symbols; versions: $(printf '%s ' $versions))"
    fi
done
exit "$status"
