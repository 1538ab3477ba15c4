#!/usr/bin/env bash
# Coverage-guided fuzzing of every target for SECONDS each (default 60).
#
#   fuzz/run.sh [SECONDS]        fuzz; new inputs go to a temp dir (CI)
#   fuzz/run.sh --grow [SECONDS] then add the inputs that bring new coverage
#                                to fuzz/corpus/<target>/: commit the result
#
# With nightly and cargo-fuzz installed (`cargo +nightly fuzz --version`)
# it uses them (AddressSanitizer build). Otherwise it builds the targets on
# the stable toolchain with the same SanitizerCoverage flags cargo-fuzz
# passes, minus the sanitizer: real coverage feedback, no nightly needed.
# A crash stops the run, exits non-zero and leaves the input in
# fuzz/artifacts/<target>/ (replay: fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

grow=0
if [[ ${1:-} == --grow ]]; then
    grow=1
    shift
fi
secs=${1:-60}
targets=(parse_head body ws_frames)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

if cargo +nightly fuzz --version >/dev/null 2>&1; then
    mode=nightly
    cargo +nightly fuzz build --fuzz-dir fuzz >/dev/null
else
    mode=stable
    triple=$(rustc -vV | sed -n 's/^host: //p')
    tdir=fuzz/target/stable-cov
    RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
        cargo build --locked --release --manifest-path fuzz/Cargo.toml \
        --target-dir "$tdir" --target "$triple"
    bin=$tdir/$triple/release
fi
echo "fuzz: $mode build, ${secs} s per target"

for t in "${targets[@]}"; do
    new=$scratch/$t
    mkdir -p "$new" "fuzz/artifacts/$t" "fuzz/corpus/$t"
    # The first directory receives new inputs; the saved corpus and the seeds
    # are read as a starting point only.
    args=("$new" "fuzz/corpus/$t" "fuzz/seeds/$t"
        -max_total_time="$secs" -print_final_stats=1
        -artifact_prefix="fuzz/artifacts/$t/")
    if [[ $mode == nightly ]]; then
        cargo +nightly fuzz run --fuzz-dir fuzz "$t" -- "${args[@]}" 2>"$scratch/$t.log" ||
            { tail -40 "$scratch/$t.log"; exit 1; }
    else
        "$bin/$t" "${args[@]}" 2>"$scratch/$t.log" || { tail -40 "$scratch/$t.log"; exit 1; }
    fi
    grep -E '^Done|number_of_executed_units|new_units_added' "$scratch/$t.log" | sed "s/^/fuzz: $t: /"
    if ((grow)); then
        # -merge=1 adds to the first directory only the inputs of the others
        # that bring new coverage: the saved corpus grows, nothing is renamed.
        before=$(find "fuzz/corpus/$t" -type f | wc -l)
        if [[ $mode == nightly ]]; then
            cargo +nightly fuzz run --fuzz-dir fuzz "$t" -- -merge=1 \
                "fuzz/corpus/$t" "$new" 2>>"$scratch/$t.log"
        else
            "$bin/$t" -merge=1 "fuzz/corpus/$t" "$new" 2>>"$scratch/$t.log"
        fi
        echo "fuzz: $t: corpus $before -> $(find "fuzz/corpus/$t" -type f | wc -l) files"
    fi
done
