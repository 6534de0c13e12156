#!/usr/bin/env bash
# Runs the standard load matrix against several servers, interleaved over
# rounds, and prints each row's median key figure per server and the ratio
# of the first server's figure to each other's; then draws each row's
# latency distribution, onepoll beside the peers (DIR/latency.png).
#
#   scripts/compare.sh [-r ROUNDS] [-d SECS] [-o DIR] [--only REGEX] [--fast] [--only-onepoll] [--no-build] [NAME=COMMAND ...]
#
# Default: onepoll against the two reference servers (c-epoll/ and
# tokio-tuned/) whose sources the directory PEERS holds, built into /tmp
# if missing; 3 rounds, 5 s per row. The peers are not part of this
# repository: without PEERS (a plain clone has none) it says so in one
# line and runs onepoll alone, as --only-onepoll does. In each
# round every row runs against each server in turn (a server started
# afresh for each row, pinned to CPU 0, bench on CPU 1), so that drift on
# a noisy machine hits the servers alike. A COMMAND gets PROTOCOL=PORT
# appended. Prints the median over the rounds, the best round, and the
# median of the round-by-round ratios. The builds are looked for in
# $CARGO_TARGET_DIR/release when it is set. --fast leaves out the rows
# only the full matrix runs (FULL_ONLY in scripts/lib.sh: the room of
# 10,000 chat receivers, which takes ~20,000 descriptors and 10-20 s per
# server per round to fill and settle). The chat rooms of 5,000 and 10,000 receivers
# need each side to hold ~10,000 descriptors: the soft limit is raised to
# the hard one (20,000 here), and onepoll runs with --max-conns 10100.
#
# Examples:
#   PEERS=/path/to/peers scripts/compare.sh
#   PEERS=/path/to/peers scripts/compare.sh -r 1 -d 2 --only 'transform-P16|cmd-echo'
#   scripts/compare.sh --only-onepoll -r 1 -d 2
#   scripts/compare.sh onepoll='target/release/onepoll -q -b 127.0.0.1' c-epoll='/tmp/onepoll-c -q -b 127.0.0.1'
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ROUNDS=3 DURATION=5 OUT="" BUILD=1 ONLY="" ALONE=0 FAST=0
while (($#)); do
    case $1 in
        -r) ROUNDS=$2; shift 2 ;;
        -d) DURATION=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --only-onepoll) ALONE=1; shift ;;
        --fast) FAST=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        -*) log "unknown option $1 (see --help)"; exit 2 ;;
        *) break ;;
    esac
done
PEERS=${PEERS:-}
NAMES=() CMDS=()
if (($#)); then
    for spec in "$@"; do
        [[ $spec == *=* ]] || { log "expected NAME=COMMAND, got '$spec'"; exit 2; }
        NAMES+=("${spec%%=*}") CMDS+=("${spec#*=}")
    done
else
    if ((!ALONE)) && [[ -z $PEERS || ! -d $PEERS ]]; then
        log "no peers ${PEERS:+at $PEERS }(set PEERS=DIR to compare with them): running onepoll alone, as --only-onepoll does"
        ALONE=1
    fi
    NAMES=(onepoll) CMDS=("$RELEASE/onepoll -q -b 127.0.0.1 --chat-rate 0 --max-conns 10100")
    if ((!ALONE)); then
        NAMES+=(c-epoll tokio-tuned)
        CMDS+=("/tmp/onepoll-c -q -b 127.0.0.1"
            "/tmp/peer-target/release/onepoll-tokio-tuned -q -b 127.0.0.1")
    fi
fi
BENCH=$RELEASE/onepoll-bench
OUT=${OUT:-$TARGET_DIR/compare/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
CSV=$OUT/results.csv SERVER_LOG=$OUT/server.log HGRM_DIR=$OUT/hgrm

# Drops the server at index $1 from NAMES and CMDS, saying why ($2).
drop_server() {
    log "${NAMES[$1]}: $2; compared without it"
    unset 'NAMES[$1]' 'CMDS[$1]'
    NAMES=("${NAMES[@]}") CMDS=("${CMDS[@]}")
}

# The large chat rooms' second figure (issue 17, item 6): p99 delivery
# latency, median over the rounds, per server and as a ratio to the first.
print_room_latency() { # CSV LABEL...
    local csv=$1 row name l v first
    shift
    local rows
    rows=$(matrix_rows | cut -d'|' -f1 | grep -E '^chat-[0-9]+k$' || true)
    [[ -n $rows ]] || return 0
    echo
    echo "p99 delivery latency in the large rooms, µs (median over the rounds; lower is better):"
    printf '%-16s' row
    for l in "$@"; do printf ' %14s' "$l"; done
    for l in "${@:2}"; do printf ' %14s' "$1/$l"; done
    printf '\n'
    for name in $rows; do
        printf '%-16s' "$name"
        first=""
        local vals=()
        for l in "$@"; do
            v=$(csv_values "$csv" "$l|$name" p99_us | median)
            vals+=("$v")
            printf ' %14s' "${v:-skipped}"
        done
        for i in "${!vals[@]}"; do
            ((i == 0)) && continue
            awk -v a="${vals[0]}" -v b="${vals[$i]}" 'BEGIN {
                if (a == "" || b == "" || b + 0 == 0) printf " %14s", "-"; else printf " %14.2f", a / b }'
        done
        printf '\n'
    done
}

if ((BUILD)); then
    log "building the release..."
    cargo build --release --bins --quiet
    if (($# == 0)) && ((!ALONE)); then
        [[ -x /tmp/onepoll-c ]] || cc -O2 -o /tmp/onepoll-c "$PEERS/c-epoll/server.c" ||
            drop_server 1 "$PEERS/c-epoll/server.c did not build"
        if [[ ! -x /tmp/peer-target/release/onepoll-tokio-tuned ]] &&
            ! cargo build --release --quiet --manifest-path "$PEERS/tokio-tuned/Cargo.toml" --target-dir /tmp/peer-target; then
            drop_server $((${#NAMES[@]} - 1)) "$PEERS/tokio-tuned did not build"
        fi
    fi
fi
[[ -x $BENCH ]] || { log "no $BENCH: build first"; exit 1; }

trap stop_server EXIT
trap 'exit 130' INT TERM
raise_nofile
setup_pinning
BASE=$(pick_base_port)

declare -A AVAIL
for i in "${!NAMES[@]}"; do
    AVAIL[$i]=$(probe_protocols "${CMDS[$i]}" "$BASE")
    log "${NAMES[$i]} serves: ${AVAIL[$i]:-nothing (see $SERVER_LOG)}"
done

# Each row is run against every server in turn before the next row, each
# server started afresh for it: a row's runs on different servers are
# seconds apart, not minutes, so a drift of the machine hits them alike.
# The order of the servers rotates from round to round, forwards for n
# rounds and then backwards for n, so that over 2n rounds every server
# runs right after every other one equally often (with rotation alone,
# one of three servers always follows the same one, and a row that
# leaves something behind, churn's TIME_WAIT sockets say, would always
# burden the same server).
n=${#NAMES[@]}
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS"
    while IFS= read -r row; do
        IFS='|' read -r name proto _ <<<"$row"
        for k in $(seq 0 $((n - 1))); do
            if (((round - 1) / n % 2 == 0)); then
                i=$(((k + round - 1) % n))
            else
                i=$(((2 * n - 1 - k + round - 1) % n))
            fi
            [[ " ${AVAIL[$i]} " == *" $proto "* ]] || continue
            if ! start_server "${CMDS[$i]}" "$BASE" "$proto"; then
                log "${NAMES[$i]} did not start (see $SERVER_LOG)"
                stop_server
                continue
            fi
            run_row "$row" "$BASE" "$SERVER_PID" "${NAMES[$i]}" "$CSV" "$DURATION"
            stop_server
        done
    done < <(matrix_rows)
done

echo "compare: ${NAMES[*]}; $ROUNDS rounds interleaved, $DURATION s per row; CSV in $CSV"
if ((${#NAMES[@]} == 1)); then
    print_single_table "$CSV" "${NAMES[0]}"
    print_room_latency "$CSV" "${NAMES[0]}"
    plot_rows "$OUT"
    exit 0
fi
echo
echo "Medians over the rounds:"
print_compare_table median "$CSV" "${NAMES[@]}"
# On a small VM a row can run in two modes (loopback TCP costs the server
# twice as much per syscall in one of them, whichever server it is; see
# README): the best round shows each server's own cost with the least
# interference, the median what a user would typically see.
echo
echo "Best round of each (lowest cost, highest rate):"
print_compare_table best "$CSV" "${NAMES[@]}"
echo
echo "Median of the per-round ratios, then the lowest and highest round (each round runs a row on every server within seconds):"
print_paired_ratios "$CSV" "${NAMES[@]}"
echo
echo "The same over the rounds in which both servers ran in the machine's fast mode (cross-CPU round trip"
echo "within ${FAST_FACTOR}x the lowest seen, before and after each run), then how many rounds that was:"
print_paired_ratios --fast "$CSV" "${NAMES[@]}"
print_room_latency "$CSV" "${NAMES[@]}"
plot_rows "$OUT"
