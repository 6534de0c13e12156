#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz for a fixed time each, one after
# another (never two fuzzers at once), and prints a summary table:
# executions, executions per second, coverage (libFuzzer's cov and ft
# counters) and corpus size per target.
#
#   scripts/fuzz.sh [--seconds N] [--grow] [TARGET...]
#
#   --seconds N  time per target (default 60)
#   --grow       write new inputs into the committed corpus
#                (tests/fuzz/corpus/<target>/) and minimise it afterwards
#                with `cargo fuzz cmin`; by default new inputs go to a
#                scratch directory and the committed corpus is only read
#   TARGET...    a subset (default: framing tne cmd chat upload transform)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler. Runs on
# the stable toolchain: `--sanitizer none` keeps cargo-fuzz from passing
# the nightly-only -Zsanitizer flag (see tests/fuzz/README.md). Exits
# non-zero if any target finds a failing input; the input is saved under
# tests/fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
grow=false
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --seconds=*) seconds="${1#*=}"; shift ;;
        --grow) grow=true; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(framing tne cmd chat upload transform)
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds wants a number" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi

fuzz=(cargo fuzz)
opts=(--fuzz-dir tests/fuzz --sanitizer none)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

echo "building the targets..." >&2
nice -n 10 "${fuzz[@]}" build "${opts[@]}" >"$logs/build.log" 2>&1 || {
    cat "$logs/build.log" >&2
    exit 1
}

failed=()
rows=()
for t in "${targets[@]}"; do
    corpus="tests/fuzz/corpus/$t"
    mkdir -p "$corpus"
    if $grow; then
        dirs=("$corpus")
    else
        mkdir -p "$logs/$t"
        dirs=("$logs/$t" "$corpus")
    fi
    # Inputs that once failed are read too (cmin does not keep them).
    [[ -d tests/fuzz/regressions/$t ]] && dirs+=("tests/fuzz/regressions/$t")
    echo "fuzzing $t for ${seconds}s..." >&2
    status=ok
    nice -n 10 "${fuzz[@]}" run "${opts[@]}" "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        >"$logs/$t.log" 2>&1 || status=FAILED
    log="$logs/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
    if [[ $status != ok ]]; then
        failed+=("$t")
        grep -E 'panicked at|assertion|Test unit written to|==ERROR' "$log" >&2 || tail -20 "$log" >&2
    fi
    if $grow && [[ $status == ok ]]; then
        before=$(ls "$corpus" | wc -l)
        nice -n 10 "${fuzz[@]}" cmin "${opts[@]}" "$t" >"$logs/$t.cmin.log" 2>&1 || {
            cat "$logs/$t.cmin.log" >&2
            failed+=("$t (cmin)")
        }
        corp="$corp, cmin $before -> $(ls "$corpus" | wc -l) files"
    fi
    rows+=("| $t | ${seconds} | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $status |")
done

echo
echo "| target | seconds | executions | exec/s | cov | ft | corpus (files/bytes) | result |"
echo "|--------|--------:|-----------:|-------:|----:|---:|----------------------|--------|"
printf '%s\n' "${rows[@]}"

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failing inputs found in: ${failed[*]} (see tests/fuzz/artifacts/)" >&2
    exit 1
fi
