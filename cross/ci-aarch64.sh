#!/usr/bin/env bash
# What CI runs for the Jetson target, after the native x86-64 run:
#
#   1. cross-build the test binaries for aarch64 in the release profile
#   2. run them under qemu-aarch64 (the cargo runner) and print the pass count
#   3. build the shipped binaries (same profile, so the dependencies built in
#      step 1 are reused) and enforce the glibc 2.35 ceiling on them
#
#   cross/ci-aarch64.sh [CARGO_TEST_SELECTION...]
#
# The selection defaults to `--lib --bins --tests` (unit tests and every
# integration test; doc tests run in the native job). Extra cargo flags (e.g.
# --no-default-features) go in MODA_CI_CARGO_FLAGS, those of the shipped binaries (step 3;
# e.g. --features jetson) in MODA_CI_BIN_FLAGS; MODA_CI_TEST_TIMEOUT (s,
# default 1800) bounds the emulated test run. Keep CARGO_TARGET_DIR
# cached between CI runs: the aarch64 release build of the dependencies is the
# expensive part (see cross/README.md for the measured time).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target=aarch64-unknown-linux-gnu
tdir="${CARGO_TARGET_DIR:-$repo/target}"
# shellcheck disable=SC2206
flags=(${MODA_CI_CARGO_FLAGS:-})
# shellcheck disable=SC2206
bin_flags=(${MODA_CI_BIN_FLAGS:-${MODA_CI_CARGO_FLAGS:-}})
if [ "$#" -gt 0 ]; then selection=("$@"); else selection=(--lib --bins --tests); fi

section() { printf '\n=== %s\n' "$*"; }
now() { date +%s; }

section "aarch64: build test binaries (release)  cargo test --release --target $target --no-run ${flags[*]} ${selection[*]}"
t0=$(now)
cargo test --release --target "$target" --no-run "${flags[@]}" "${selection[@]}"
t1=$(now)
echo "build: $((t1 - t0)) s"

section "aarch64: run tests under qemu ($(qemu-aarch64 --version | head -n1))"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# A hung emulated test must not hold CI until its global limit.
timeout "${MODA_CI_TEST_TIMEOUT:-1800}" \
    cargo test --release --target "$target" "${flags[@]}" "${selection[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
t2=$(now)
# "test result: ok. 12 passed; 0 failed; 1 ignored; ..." once per test binary
read -r passed failed ignored binaries < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) g += $i
        }
        n++
    } END { printf "%d %d %d %d\n", p, f, g, n }' "$log")
echo "aarch64 qemu tests: $passed passed, $failed failed, $ignored ignored in $binaries test binaries ($((t2 - t1)) s)"
if [ "$rc" -eq 124 ]; then
    echo "aarch64 qemu tests TIMED OUT after ${MODA_CI_TEST_TIMEOUT:-1800} s"
    exit 1
elif [ "$rc" -ne 0 ]; then
    echo "aarch64 qemu tests FAILED (cargo exit $rc)"
    exit "$rc"
fi
if [ "$binaries" -eq 0 ]; then
    echo "aarch64 qemu tests: no test binary ran; treating as failure"
    exit 1
fi

section "aarch64: build shipped binaries (release) and check the glibc ceiling"
echo "cargo build --release --target $target --bins ${bin_flags[*]}"
cargo build --release --target "$target" --bins "${bin_flags[@]}"
bins=()
for f in src/bin/*.rs src/bin/*/main.rs; do
    [ -e "$f" ] || continue
    case "$f" in */main.rs) b="$(basename "$(dirname "$f")")" ;; *) b="$(basename "$f" .rs)" ;; esac
    bins+=("$tdir/$target/release/$b")
done
cross/check-glibc.sh "${bins[@]}"
echo "aarch64 CI: ok (total $(($(now) - t0)) s)"
