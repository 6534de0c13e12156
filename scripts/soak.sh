#!/usr/bin/env bash
# Soak test (issue 7, item 4): mixed load over all five protocols for a
# while, then proof that nothing leaked, nothing hung and nothing broke.
#
#   scripts/soak.sh [--minutes N] [--interval SECS] [-o DIR] [--no-build]
#
# Builds the release (cargo build --release --bins), starts onepoll on
# 127.0.0.1 with a fresh temporary upload directory, and runs load lanes
# side by side for N minutes (default 10), each a loop of bounded
# onepoll-bench runs: steady clients of every protocol (tne over UDP too),
# large and shuffled transforms, uploads small and large, connection churn,
# held idle connections, and the chaos workload (slow readers, one-byte
# trickles, resets mid-request, garbage, half-open floods) against every
# protocol. Every SECS seconds (default 5) it samples the server's RSS,
# open descriptors (/proc/PID/fd) and CPU.
#
# When the load stops and its connections have closed, it checks:
#   - the server stayed up, and every load run was clean (no wrong reply,
#     no unexpected disconnect, no hung connection; chaos's resets and
#     garbage are expected drops);
#   - every protocol still answers correctly (a checked run of each, plus
#     onepoll-client cmd and an upload compared byte for byte);
#   - RSS is within 10% of its warm-up level: the highest sample of the
#     warm-up, a fifth of the run and at least its first minute;
#   - descriptors are back to the idle baseline taken before the load;
#   - no upload temporary is left; the log has no panic;
#   - SIGTERM stops it with exit status 0.
# Prints a one-screen summary and exits 1 on any breach (2: bad usage).
# Samples, per-lane CSVs and the server log stay in DIR (default: a fresh
# directory under target/soak).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

MINUTES=10 INTERVAL=5 OUT="" BUILD=1
MALLOC_ENV=${SOAK_MALLOC_ENV-MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072}
while (($#)); do
    case $1 in
        --minutes) MINUTES=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) log "unknown option $1 (see --help)"; exit 2 ;;
    esac
done
[[ $MINUTES =~ ^[0-9]+$ && $MINUTES -ge 1 ]] || { log "--minutes: a whole number, at least 1"; exit 2; }
[[ $INTERVAL =~ ^[0-9]+$ && $INTERVAL -ge 1 ]] || { log "--interval: whole seconds, at least 1"; exit 2; }

SERVER=$RELEASE/onepoll BENCH=$RELEASE/onepoll-bench CLIENT=$RELEASE/onepoll-client
OUT=${OUT:-$TARGET_DIR/soak/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SERVER_LOG=$OUT/server.log SAMPLES=$OUT/samples.csv
: >"$SERVER_LOG"

if ((BUILD)); then
    log "building the release..."
    cargo build --release --bins --locked --quiet
fi
for b in "$SERVER" "$BENCH" "$CLIENT"; do
    [[ -x $b ]] || { log "no $b: build first"; exit 1; }
done

UPLOAD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/onepoll-soak.XXXXXX")
LANE_PIDS=()

# Everything started here is stopped here, by pid: the lane loops first
# (no new rounds), then the bench run each one is waiting on, then the
# server.
cleanup() {
    local pid f
    for pid in "${LANE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for f in "$OUT"/lane-*.pid; do
        [[ -e $f ]] && kill "$(cat "$f")" 2>/dev/null || true
    done
    for pid in "${LANE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_server
    rm -rf "$UPLOAD_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

raise_nofile
PIN_SERVER="" # many lanes share the CPUs; nothing is pinned
HZ=$(getconf CLK_TCK)
NOFILE=$(ulimit -n)
IDLE_CONNS=$((NOFILE / 8 < 1000 ? NOFILE / 8 : 1000))
FLOOD_CONNS=$((NOFILE / 16 < 400 ? NOFILE / 16 : 400))

# ---------------------------------------------------------------- server

BASE=$(pick_base_port)
# -q: warnings and errors only (a line per connection would be gigabytes).
start_server "env $MALLOC_ENV $SERVER -q -b 127.0.0.1 --chat-rate 0 -d $UPLOAD_DIR" "$BASE" "${PROTOCOLS[@]}" \
    || { log "onepoll did not start (see $SERVER_LOG)"; exit 1; }
PID=$SERVER_PID
for p in "${PROTOCOLS[@]}"; do
    wait_port "$(port_of "$p" "$BASE")" "$PID" || { log "$p did not listen"; exit 1; }
done
port() { port_of "$1" "$BASE"; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status" 2>/dev/null || echo 0; }
fds() { { find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null || true; } | wc -l; }
cpu_ticks() { sed 's/.*) //' "/proc/$PID/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
alive() { kill -0 "$PID" 2>/dev/null; }

# The descriptor count once it has held still for 2 s (bounded by LIMIT
# seconds); prints it.
settled_fds() { # LIMIT [TARGET]
    local end=$((SECONDS + $1)) last now same=0
    last=$(fds)
    while ((SECONDS < end)); do
        sleep 0.5
        now=$(fds)
        if [[ -n ${2:-} && $now == "$2" ]] || [[ $now == "$last" ]]; then
            same=$((same + 1))
            ((same >= 4)) && break
        else
            same=0
        fi
        last=$now
    done
    fds
}

# ---------------------------------------------------------------- checks

CHECKS=() BREACH=0
check() { # NAME OK DETAIL
    if (($2)); then CHECKS+=("PASS  $1 ${3:-}"); else CHECKS+=("FAIL  $1 ${3:-}"); BREACH=1; fi
}

# One checked, bounded run of every protocol; prints the protocols that
# failed (nothing when all passed). Output goes to $OUT/final.log.
protocol_checks() {
    local bad=() f
    run() { # NAME ARGS...
        local name=$1
        shift
        if ! timeout -k 5 60 "$@" >>"$OUT/final.log" 2>&1; then bad+=("$name"); fi
    }
    run transform "$BENCH" transform -p "$(port transform)" -c 4 -P 8 -s 1000 -a reverse -n 400 -d 10 -q
    run transform-shuffle "$BENCH" transform -p "$(port transform)" -c 2 -s 100000 -a shuffle -n 20 -d 10 -q
    run tne "$BENCH" tne -p "$(port tne)" -c 4 -P 4 -n 400 -d 10 -q
    run tne-udp "$BENCH" tne-udp -p "$(port tne)" -c 4 -n 400 -d 10 -q
    run cmd "$BENCH" cmd -p "$(port cmd)" -c 4 -n 400 -d 10 -q
    run cmd-client "$CLIENT" -h 127.0.0.1 -p "$(port cmd)" cmd
    run chat "$BENCH" chat -p "$(port chat)" --receivers 10 -n 200 -d 3 -q
    run upload "$BENCH" upload -p "$(port upload)" -c 2 --lines 100 -n 20 -d 10 -q
    f=$OUT/check-upload.txt
    seq 1 5000 | sed 's/$/ soak line/' >"$f"
    run upload-client "$CLIENT" -h 127.0.0.1 -p "$(port upload)" upload "$f"
    cmp -s "$f" "$UPLOAD_DIR/1.txt" || bad+=("upload-content")
    echo "${bad[*]}"
}

# Warm the server once (it opens some descriptors lazily), then take the
# idle baseline.
FIRST_BAD=$(protocol_checks)
[[ -z $FIRST_BAD ]] || { log "the server fails its checks before any load: $FIRST_BAD (see $OUT/final.log)"; exit 1; }
IDLE_FDS=$(settled_fds 20)
IDLE_RSS=$(rss_kib)

# ---------------------------------------------------------------- lanes

# name | round seconds | pause between rounds | protocols {ROT} takes in
# turn, a round each | bench arguments ({P:proto} is the port of proto).
# idle and churn leave chat out: their checks take any line after chat's
# greeting (another client's JOIN) for a wrong reply; the chaos lanes
# churn chat connections instead.
# Rotations are short so that every kind of event has happened within the
# first minute, the warm-up. A connection the server owes a reply or a
# close for 20 s is hung: long enough for a starved, niced run on a busy
# machine, far too long for a healthy server.
ALL=${PROTOCOLS[*]}
HANG="--hang-limit 20"
NOCHAT="transform tne cmd upload"
LANES="
transform      |30|0 |        |transform -p {P:transform} -c 16 -P 4 -s 512 -a title-case --rate 300
transform-8MiB |30|0 |        |transform -p {P:transform} -c 2 -s 8388608 -a reverse --rate 1
transform-32MiB|30|0 |        |transform -p {P:transform} -c 1 -s 33554432 -a uppercase --rate 0.2
shuffle        |30|0 |        |transform -p {P:transform} -c 4 -P 2 -s 65536 -a shuffle --rate 40
tne            |30|0 |        |tne -p {P:tne} -c 16 -P 2 --rate 300
tne-udp        |30|0 |        |tne-udp -p {P:tne} -c 4 --rate 200
cmd            |30|0 |        |cmd -p {P:cmd} -c 16 --rate 300
chat           |30|0 |        |chat -p {P:chat} --receivers 40 --senders 2 -s 64 --rate 100
upload         |30|0 |        |upload -p {P:upload} -c 4 --lines 200 -s 200 --rate 10
upload-8MiB    |30|0 |        |upload -p {P:upload} -c 1 --lines 4096 -s 2047 --rate 0.2
churn          |5 |7 |$NOCHAT|churn --proto {ROT} -p {P:ROT} -c 2 --lines 20
idle           |10|2 |$NOCHAT|idle --proto {ROT} -p {P:ROT} -c $IDLE_CONNS
chaos-transform|30|0 |        |chaos --proto transform -p {P:transform} -c 8 -P 16 -s 131072 --pause 3 $HANG
chaos-tne      |30|0 |        |chaos --proto tne -p {P:tne} -c 8 -P 512 -s 4000 --pause 3 $HANG
chaos-cmd      |30|0 |        |chaos --proto cmd -p {P:cmd} -c 8 -P 512 -s 4000 --pause 3 $HANG
chaos-chat     |30|0 |        |chaos --proto chat -p {P:chat} -c 8 -P 16 --pause 3 $HANG
chaos-upload   |30|0 |        |chaos --proto upload -p {P:upload} -c 8 -P 4 --lines 100 -s 1000 --pause 3 $HANG
half-open-flood|10|2 |$ALL   |chaos --proto {ROT} -p {P:ROT} -c $FLOOD_CONNS --misbehave half-open,trickle --pause 5 $HANG
"

LOAD_START=$SECONDS
LOAD_END=$((LOAD_START + MINUTES * 60))

# One lane: bounded bench runs until the load ends. Each run's exit code
# goes to lane-NAME.rc, its CSV row to lane-NAME.csv.
lane() { # NAME ROUND GAP ROTATION ARGS
    local name=$1 round=$2 gap=$3 template=$5 n=0 left d args rot p
    local -a rotation
    read -r -a rotation <<<"$4"
    while :; do
        left=$((LOAD_END - SECONDS))
        ((left >= 3)) || break
        d=$((round < left ? round : left))
        rot=${rotation[$((n % (${#rotation[@]} > 0 ? ${#rotation[@]} : 1)))]:-}
        args=${template//\{P:ROT\}/\{P:$rot\}}
        args=${args//\{ROT\}/$rot}
        for p in "${PROTOCOLS[@]}"; do args=${args//\{P:$p\}/$(port "$p")}; done
        # shellcheck disable=SC2086
        timeout -k 5 $((d + 60)) "$BENCH" $args -d "$d" -q --csv "$OUT/lane-$name.csv" \
            --label "$name" >>"$OUT/lane-$name.log" 2>&1 &
        echo $! >"$OUT/lane-$name.pid"
        if wait $!; then
            echo "0 $args" >>"$OUT/lane-$name.rc"
        else
            echo "$? $args" >>"$OUT/lane-$name.rc"
            sleep 1 # a failing lane must not spin
        fi
        n=$((n + 1))
        left=$((LOAD_END - SECONDS))
        ((gap > 0 && left > gap)) && sleep "$gap"
    done
    rm -f "$OUT/lane-$name.pid"
}

log "soak: $MINUTES min of load on onepoll pid $PID (ports $BASE..$((BASE + 4))), results in $OUT"
while IFS='|' read -r name round gap rotation args; do
    name=${name// /} round=${round// /} gap=${gap// /}
    [[ -n $name ]] || continue
    lane "$name" "$round" "$gap" "$rotation" "$args" &
    LANE_PIDS+=($!)
done <<<"$LANES"

# ---------------------------------------------------------------- sampling

echo "t_s,rss_kib,fds,cpu_pct" >"$SAMPLES"
# The warm-up: a fifth of the run, at least the first minute (the first
# half of a one-minute run). Chat floods and large transforms leave the
# heap a few MiB larger the first times they meet; after that it is flat.
WARMUP=$((MINUTES >= 5 ? MINUTES * 12 : (MINUTES >= 2 ? 60 : 30)))
DIED_AT=""
last_ticks=$(cpu_ticks) last_t=$SECONDS
while ((SECONDS < LOAD_END)); do
    sleep "$INTERVAL"
    if ! alive; then DIED_AT=$((SECONDS - LOAD_START)); break; fi
    ticks=$(cpu_ticks) t=$SECONDS
    cpu=$(awk -v d=$((ticks - last_ticks)) -v s=$((t - last_t)) -v hz="$HZ" \
        'BEGIN { printf "%.1f", (s > 0 ? 100 * d / hz / s : 0) }')
    echo "$((t - LOAD_START)),$(rss_kib),$(fds),$cpu" >>"$SAMPLES"
    last_ticks=$ticks last_t=$t
done
if [[ -n $DIED_AT ]]; then log "the server died after $DIED_AT s"; fi
for pid in "${LANE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
LANE_PIDS=()

# ---------------------------------------------------------------- the end

END_FDS="" END_RSS=0 FINAL_BAD="not run" FINAL_FDS=""
if alive; then
    END_FDS=$(settled_fds 60 "$IDLE_FDS")
    sleep 1
    END_RSS=$(rss_kib)
    FINAL_BAD=$(protocol_checks)
    FINAL_FDS=$(settled_fds 30 "$IDLE_FDS")
fi
TEMPS=$({ find "$UPLOAD_DIR" -name '.*.tmp' 2>/dev/null || true; } | wc -l)
UP_FILES=$({ find "$UPLOAD_DIR" -type f 2>/dev/null || true; } | wc -l)
STOP_RC=""
if alive; then
    kill -TERM "$PID"
    for _ in $(seq 1 80); do alive || break; sleep 0.1; done
    if alive; then STOP_RC="hung"; else wait "$PID" && STOP_RC=0 || STOP_RC=$?; fi
    SERVER_PID=""
fi
PANICS=$(grep -ci 'panic' "$SERVER_LOG" || true)

# ---------------------------------------------------------------- summary

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
col() { tail -n +2 "$SAMPLES" | cut -d, -f"$1"; }
stat_of() { # COLUMN min|max|mean
    col "$1" | awk -v w="$2" 'NR == 1 { lo = hi = $1 } { s += $1; if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 }
        END { if (!NR) print 0; else if (w == "min") print lo; else if (w == "max") print hi; else printf "%.1f", s / NR }'
}
WARM_RSS=$(tail -n +2 "$SAMPLES" | awk -F, -v w="$WARMUP" '$1 <= w && $2 > m { m = $2 } END { print m + 0 }')
AFTER_RSS=$(tail -n +2 "$SAMPLES" | awk -F, -v w="$WARMUP" '$1 > w && $2 > m { m = $2 } END { print m + 0 }')
NSAMPLES=$(($(wc -l <"$SAMPLES") - 1))

# Sums of a column over every lane's CSV.
lane_sum() { # COLUMN [LANE-GLOB]
    local f
    for f in "$OUT"/lane-${2:-*}.csv; do
        [[ -e $f ]] || continue
        [[ -z ${2:-} && $f == */lane-tne-udp.csv ]] && continue
        awk -F, -v col="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
            c { s += $c } END { print s + 0 }' "$f"
    done | awk '{ s += $1 } END { print s + 0 }'
}
# tne over UDP is summed apart: a datagram may be lost under load, and a
# reply that comes after its loss timeout counts as wrong.
OPS=$(($(lane_sum ops) + $(lane_sum ops tne-udp))) ERRORS=$(lane_sum errors) DISC=$(lane_sum disconnects)
CONNERR=$(lane_sum connect_errors) HUNG=$(lane_sum hung) DROPPED=$(lane_sum dropped)
LOST=$(lane_sum lost tne-udp) LATE=$(lane_sum errors tne-udp)
rcs() { cat "$OUT"/lane-${1:-*}.rc 2>/dev/null || true; }
RUNS=$(rcs | wc -l)
FAILED_RUNS=$(rcs | awk '$1 != 0' | wc -l)
FAILED_LANES=$({ grep -lv '^0 ' "$OUT"/lane-*.rc 2>/dev/null || true; } | sed 's/.*lane-\(.*\)\.rc/\1/' | tr '\n' ' ')

# A lost or late tne datagram is UDP's right under load; it is shown, not
# failed (the final check's UDP run must still be clean).
# Everything else a run counts against the server fails the soak, and so
# does a run that failed for another reason (the rc files say which).
UDP_ONLY_RUNS=$(rcs tne-udp | awk '$1 != 0' | wc -l)
check "server up throughout" "$([[ -z $DIED_AT ]] && echo 1 || echo 0)" "${DIED_AT:+(died after $DIED_AT s)}"
check "load runs clean" "$((ERRORS + DISC + CONNERR + HUNG == 0 && FAILED_RUNS - UDP_ONLY_RUNS <= 0 && RUNS > 0))" \
    "($RUNS runs${FAILED_LANES:+; failed lanes: $FAILED_LANES})"
check "every protocol answers" "$([[ -z $FINAL_BAD ]] && echo 1 || echo 0)" \
    "${FINAL_BAD:+(failed: $FINAL_BAD; see final.log)}"
check "RSS back within 10% of warm-up" "$((WARM_RSS > 0 && END_RSS * 100 <= WARM_RSS * 110))" \
    "($(mib "$END_RSS") MiB after the load vs $(mib "$WARM_RSS") MiB warm-up peak)"
check "no descriptor leaked" "$([[ $END_FDS == "$IDLE_FDS" && $FINAL_FDS == "$IDLE_FDS" ]] && echo 1 || echo 0)" \
    "(idle $IDLE_FDS, after load ${END_FDS:-?}, after checks ${FINAL_FDS:-?})"
check "no upload temporary left" "$((TEMPS == 0))" "($TEMPS temporaries, $UP_FILES files)"
check "no panic in the log" "$((PANICS == 0))" "($(wc -l <"$SERVER_LOG") log lines)"
check "SIGTERM exits 0" "$([[ $STOP_RC == 0 ]] && echo 1 || echo 0)" "(status ${STOP_RC:-none})"

{
    echo
    echo "onepoll soak: $MINUTES min, $(grep -c '|' <<<"$LANES") lanes over 5 protocols, $NSAMPLES samples every $INTERVAL s; warm-up: first $WARMUP s"
    printf '%-12s %7s %10s %11s %7s %7s %7s %7s\n' "" idle "warm-up" "after w-up" min max mean end
    printf '%-12s %7s %10s %11s %7s %7s %7s %7s\n' "" "" "peak" "peak" "" "" "" ""
    printf '%-12s %7s %10s %11s %7s %7s %7s %7s\n' "RSS MiB" "$(mib "$IDLE_RSS")" "$(mib "$WARM_RSS")" \
        "$(mib "$AFTER_RSS")" "$(mib "$(stat_of 2 min)")" "$(mib "$(stat_of 2 max)")" "$(mib "$(stat_of 2 mean)")" "$(mib "$END_RSS")"
    printf '%-12s %7s %10s %11s %7s %7s %7s %7s\n' descriptors "$IDLE_FDS" - - \
        "$(stat_of 3 min)" "$(stat_of 3 max)" "$(stat_of 3 mean)" "${END_FDS:-?}"
    printf '%-12s %7s %10s %11s %7s %7s %7s %7s\n' "CPU %" - - - \
        "$(stat_of 4 min)" "$(stat_of 4 max)" "$(stat_of 4 mean)" -
    echo
    echo "load: $OPS operations checked in $RUNS bench runs; $ERRORS wrong replies, $DISC unexpected" \
        "disconnects, $HUNG hung, $CONNERR connect errors; $DROPPED expected drops (chaos); UDP: $LOST lost, $LATE late"
    echo
    printf '  %s\n' "${CHECKS[@]}"
    echo
    echo "details: $OUT (samples.csv, lane-*.csv/.log/.rc, final.log, server.log)"
} | tee "$OUT/summary.txt"
exit "$BREACH"
