#!/usr/bin/env bash
# RUSTC_WRAPPER for the instrumented build: cargo-afl puts its coverage instrumentation and
# -C opt-level=3 -C codegen-units=1 into RUSTFLAGS for every crate. Only the parsers the targets
# reach need them; tract, rayon, clap and the rest are linked but never run here, and
# instrumenting and optimising them as one codegen unit would dominate the build. For those
# crates the flags are dropped (they build with the fuzz profile's opt-level 0).
set -euo pipefail
rustc="$1"
shift
name=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ ${args[i]} == --crate-name && $((i + 1)) -lt ${#args[@]} ]]; then
        name=${args[i + 1]}
    fi
done
case "$name" in
moda_edge | moda_edge_fuzz | fuzz_* | png | fdeflate | flate2 | miniz_oxide | zip | crc32fast | \
    simd_adler32 | adler2 | toml | toml_edit | toml_datetime | toml_write | toml_parser | \
    serde_spanned | winnow | serde | serde_core)
    exec "$rustc" "$@"
    ;;
esac
out=()
for ((i = 0; i < ${#args[@]}; i++)); do
    a=${args[i]}
    if [[ $a == -C && $((i + 1)) -lt ${#args[@]} ]]; then
        case "${args[i + 1]}" in
        passes=* | llvm-args=-sanitizer* | codegen-units=1 | opt-level=3 | debug-assertions | \
            overflow_checks | target-cpu=native)
            i=$((i + 1))
            continue
            ;;
        esac
    fi
    out+=("$a")
done
exec "$rustc" "${out[@]}"
