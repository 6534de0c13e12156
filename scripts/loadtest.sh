#!/usr/bin/env bash
# Runs the standard load matrix against one server and prints one table.
#
#   scripts/loadtest.sh [-d SECS] [-o DIR] [--only REGEX] [--no-build] [-- SERVER COMMAND...]
#
# Builds the release, starts the server pinned to CPU 0 (taskset) with the
# load generator on CPU 1, raises ulimit -n for 10,000 idle connections,
# runs each row of the matrix (scripts/lib.sh) for SECS seconds (default 5),
# stops the server and prints the medians. The server command gets
# PROTOCOL=PORT arguments appended; default: onepoll from this build.
# A protocol the server does not serve is probed first and its rows skipped.
#
# Examples:
#   scripts/loadtest.sh
#   scripts/loadtest.sh -d 3 -- /tmp/onepoll-c -q -b 127.0.0.1
#   scripts/loadtest.sh --only 'transform-.*|churn'
#
# Results: DIR/results.csv (one row per run, see onepoll-bench --csv) and
# DIR/server.log; DIR defaults to a fresh directory under target/loadtest.
# The builds are looked for in $CARGO_TARGET_DIR/release when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

DURATION=5 OUT="" BUILD=1 ONLY=""
while (($#)); do
    case $1 in
        -d) DURATION=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) log "unknown option $1 (see --help)"; exit 2 ;;
    esac
done
CMD=${*:-$RELEASE/onepoll -q -b 127.0.0.1 --chat-rate 0 --max-conns 10100}
LABEL=$(basename "${CMD%% *}")
BENCH=$RELEASE/onepoll-bench
OUT=${OUT:-$TARGET_DIR/loadtest/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
CSV=$OUT/results.csv SERVER_LOG=$OUT/server.log HGRM_DIR=$OUT/hgrm

if ((BUILD)); then
    log "building the release..."
    cargo build --release --bins --quiet
fi
[[ -x $BENCH ]] || { log "no $BENCH: build first"; exit 1; }

trap stop_server EXIT
trap 'exit 130' INT TERM
raise_nofile
setup_pinning

BASE=$(pick_base_port)
AVAIL=$(probe_protocols "$CMD" "$BASE")
[[ -n "$AVAIL" ]] || { log "$CMD serves none of the matrix's protocols (see $SERVER_LOG)"; exit 1; }
log "$LABEL serves: $AVAIL"
# shellcheck disable=SC2086
start_server "$CMD" "$BASE" $AVAIL || { log "$CMD did not start (see $SERVER_LOG)"; exit 1; }
while IFS= read -r row; do
    IFS='|' read -r name proto _ <<<"$row"
    if [[ " $AVAIL " != *" $proto "* ]]; then
        log "skip $name: $LABEL does not serve $proto"
        continue
    fi
    log "run $name"
    run_row "$row" "$BASE" "$SERVER_PID" "$LABEL" "$CSV" "$DURATION"
done < <(matrix_rows)
stop_server

echo "load matrix: $LABEL (pid pinned to CPU 0, bench on CPU 1), $DURATION s per row; CSV in $CSV"
print_single_table "$CSV" "$LABEL"
plot_rows "$OUT"
