#!/usr/bin/env bash
# The fuzzers in CI.
#
# Default (CI) mode: replay the seed corpus and every regression input through the fuzz
# targets in the ordinary, non-instrumented test build (`cargo test --test robust_corpus`,
# which shares its build with the rest of `cargo test`). The instrumented AFL++ build took
# 8.5 minutes on a cold 2-core machine (docs/robustness.md), more than CI should spend on it, so
# fuzzing proper is opt-in:
#
#   bash fuzz/ci.sh                             # replay only, ordinary build
#   bash fuzz/ci.sh --afl                       # instrumented build, replay, fuzz each target
#                                               # for FUZZ_SECONDS (default 20); fails on any
#                                               # crash or hang
#   FUZZ_EXECS=1000000 bash fuzz/ci.sh --afl wav  # a long run of one target
#
# --afl needs cargo-afl; it is installed when missing (`cargo install cargo-afl`, then
# `cargo afl config --build`, which builds AFL++ from source).
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" != --afl ]; then
    start=$(date +%s)
    (cd .. && cargo test --test robust_corpus)
    echo "fuzz/ci.sh: corpus and regressions replayed in $(($(date +%s) - start)) s"
    exit 0
fi
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wav npy png avatar_toml pickle torch_zip)
seconds=${FUZZ_SECONDS:-20}

if ! command -v cargo-afl >/dev/null 2>&1; then
    cargo install cargo-afl --locked --version 0.18.2
fi
cargo afl config --build >/dev/null 2>&1 || true # no-op when AFL++ is already built

start=$(date +%s)
RUSTC_WRAPPER="$PWD/rustc-wrapper.sh" cargo afl build --release
echo "fuzz/ci.sh: instrumented build $(($(date +%s) - start)) s"

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_AFFINITY=1 AFL_QUIET=1
failed=0
for t in "${targets[@]}"; do
    bin="target/release/fuzz_$t"
    n=0
    for f in seeds/"$t"/* regressions/"$t"/*; do
        [ -f "$f" ] || continue
        # Outside afl-fuzz the target runs the input from stdin once.
        if ! timeout 10 "$bin" <"$f" >/dev/null 2>&1; then
            echo "fuzz/ci.sh: $t fails on $f"
            failed=1
        fi
        n=$((n + 1))
    done
    echo "fuzz/ci.sh: $t replayed $n inputs"
    [ "$seconds" -gt 0 ] || [ -n "${FUZZ_EXECS:-}" ] || continue
    out="out/$t"
    rm -rf "$out"
    mkdir -p out
    limit=(-V "$seconds")
    [ -z "${FUZZ_EXECS:-}" ] || limit=(-E "$FUZZ_EXECS")
    # -m: 1 GiB of address space, so a huge allocation is a crash; -t: 1 s is a hang.
    cargo afl fuzz -i "seeds/$t" -o "$out" "${limit[@]}" -m 1024 -t 1000 "$bin" >"$out.log" 2>&1 ||
        { echo "fuzz/ci.sh: afl-fuzz on $t failed, see fuzz/$out.log"; failed=1; }
    stats="$out/default/fuzzer_stats"
    if [ -f "$stats" ]; then
        echo "fuzz/ci.sh: $t $(grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|edges_found|saved_crashes|saved_hangs) ' "$stats" | tr -s ' ' | tr '\n' ' ')"
        if find "$out/default/crashes" "$out/default/hangs" -type f ! -name README.txt | grep -q .; then
            echo "fuzz/ci.sh: $t found crashes or hangs in fuzz/$out/default/{crashes,hangs}"
            failed=1
        fi
    fi
done
echo "fuzz/ci.sh: total $(($(date +%s) - start)) s"
exit $failed
