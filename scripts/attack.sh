#!/usr/bin/env bash
# The hostile loads of issue 16 against a release build of onepoll, each
# with a bystander timing `ECHO x` every 10 ms on its own connection and
# the server's RSS sampled every 100 ms (onepoll-bench attack NAME), so
# that a user can see the defences against hostile load work (docs/PROTOCOLS.md).
#
#   scripts/attack.sh [--quick] [--only NAME[,NAME...]] [--fresh]
#                     [--settle SECS] [--server-args "ARGS"] [-o DIR] [--no-build]
#
# Builds the release (cargo build --release --bins; CARGO_TARGET_DIR is
# honoured), starts onepoll on 127.0.0.1 (free ports, a fresh temporary
# upload directory, the log in DIR/server.log; `--exempt none` when the
# build has that option, so that loopback is not exempt from the
# per-address limits), runs each attack in turn, and prints a markdown
# table: attack | bystander p50/p99/max | peak RSS (from the attack's start
# until the RSS after) | RSS after | notes.
# One server meets every attack in turn (what the allocator keeps from one
# attack shows in the next one's RSS before); --fresh starts a new one for
# each. A server that dies during an attack is noted and started again;
# one still busy after an attack is waited for (up to 120 s) and that is
# noted too.
#
#   --quick         each attack for a few seconds at a smaller scale (the
#                   whole run takes about 2-3 minutes, most of it the
#                   10 s waits for the RSS after each attack)
#   --only LIST     run only these attacks (chat-silent, chat-churn,
#                   cmd-pipeline, upload-tiny, shuffle, chat-paste, slots,
#                   transform-hold, udp-amp, log-flood)
#   --fresh         a new server for each attack
#   --settle SECS   how long after each attack the RSS is read again
#                   (default 10)
#   --server-args   extra options for onepoll (e.g. "-q --max-memory 64000000")
#   -o DIR          where the log and the table go (default
#                   $CARGO_TARGET_DIR/attack/<time>)
#   --no-build      use the release binaries as they are
# Every attack targets 127.0.0.0/8 only (sources 127.0.0.2 and up), is
# bounded in time and count, and closes everything it opened.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

QUICK=0 FRESH=0 ONLY_LIST="" SETTLE=10 SERVER_ARGS="" OUT="" BUILD=1
while (($#)); do
    case $1 in
        --quick) QUICK=1; shift ;;
        --fresh) FRESH=1; shift ;;
        --only) ONLY_LIST=$2; shift 2 ;;
        --settle) SETTLE=$2; shift 2 ;;
        --server-args) SERVER_ARGS=$2; shift 2 ;;
        -o) OUT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) log "unknown option $1 (see --help)"; exit 2 ;;
    esac
done
[[ $SETTLE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { log "--settle: seconds"; exit 2; }

# name | protocol | full-scale arguments | --quick arguments
ATTACKS='
chat-silent    |chat     |-c 10000 -d 10                 |-c 3000 -d 4
chat-churn     |chat     |--room 1000 -d 10              |--room 200 -d 3
cmd-pipeline   |cmd      |-c 5000 -d 10                  |-c 500 -s 4194304 -d 5
upload-tiny    |upload   |-n 400000 -d 60                |-n 20000 -d 15
shuffle        |transform|-n 3 -d 60                      |-n 3 -s 33554432 -d 10
chat-paste     |chat     |-d 10                          |-d 3
slots          |cmd      |-c 10000 -d 10                 |-c 1000 -d 3
transform-hold |transform|-d 10 --interval 1             |-d 3 --interval 0.5
udp-amp        |tne      |-n 10000 -d 10                 |-n 2000 -d 3
log-flood      |cmd      |-d 5                           |-d 2
'
attack_rows() {
    printf '%s\n' "$ATTACKS" | sed -e '/^[[:space:]]*$/d' -e 's/[[:space:]]*|[[:space:]]*/|/g' -e 's/[[:space:]]*$//' |
        { if [[ -n $ONLY_LIST ]]; then grep -E "^(${ONLY_LIST//,/|})\|" || true; else cat; fi; }
}
if [[ -z $(attack_rows) ]]; then
    log "--only $ONLY_LIST: no such attack (see --help)"
    exit 2
fi

TARGET=${CARGO_TARGET_DIR:-target}
SERVER=$TARGET/release/onepoll BENCH=$TARGET/release/onepoll-bench
if ((BUILD)); then
    log "building the release..."
    cargo build --release --bins --locked --quiet
fi
for b in "$SERVER" "$BENCH"; do
    [[ -x $b ]] || { log "no $b: build first"; exit 1; }
done
OUT=${OUT:-$TARGET/attack/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SERVER_LOG=$OUT/server.log
: >"$SERVER_LOG"
UPLOAD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/onepoll-attack.XXXXXX")
raise_nofile

EXEMPT=""
if "$SERVER" --help 2>&1 | grep -q -- '--exempt'; then
    EXEMPT="--exempt none"
else
    log "note: this build has no --exempt (no per-address limits): the 'before' figures"
fi

# transform-hold and shuffle speak the server's action table.
TABLE_ARGS=()
if [[ $SERVER_ARGS =~ --transform-table[=\ ]+2023 ]]; then TABLE_ARGS=(--table 2023); fi

BASE=$(pick_base_port)
PORT_ARGS=()
BENCH_PORTS=()
for p in "${PROTOCOLS[@]}"; do
    PORT_ARGS+=("$p=$(port_of "$p" "$BASE")")
    BENCH_PORTS+=("--$p-port" "$(port_of "$p" "$BASE")")
done

SERVER_PID=""
start() {
    # shellcheck disable=SC2086
    "$SERVER" -b 127.0.0.1 -d "$UPLOAD_DIR" $EXEMPT $SERVER_ARGS "${PORT_ARGS[@]}" 2>>"$SERVER_LOG" &
    SERVER_PID=$!
    wait_port "$(port_of cmd "$BASE")" "$SERVER_PID" || { log "the server did not start; see $SERVER_LOG"; exit 1; }
}
# Seconds until the server answers a cmd HELO again (at most LIMIT, then
# prints "never").
wait_answer() { # LIMIT
    local t0 port line
    t0=$(date +%s.%N)
    port=$(port_of cmd "$BASE")
    if (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'HELO probe\n' >&3 && read -r -t "$1" line <&3 &&
        [[ $line == Hello* ]]) 2>/dev/null; then
        awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
    else
        echo never
    fi
}
cleanup() {
    stop_server
    rm -rf "$UPLOAD_DIR"
}
trap cleanup EXIT

start
log "onepoll (pid $SERVER_PID) on 127.0.0.1 ports $BASE-$((BASE + 4)) ${EXEMPT:+with $EXEMPT }${SERVER_ARGS:+$SERVER_ARGS }log $SERVER_LOG"
TABLE=$OUT/table.md
{
    printf '| attack | bystander p50/p99/max | peak RSS | RSS after %ss | notes |\n' "$SETTLE"
    printf '|---|---|---|---|---|\n'
} >"$TABLE"
while IFS='|' read -r name _ full quick; do
    if ((QUICK)); then args=$quick; else args=$full; fi
    if ((FRESH)) && [[ -n $SERVER_PID ]] && [[ $(wc -l <"$TABLE") -gt 2 ]]; then
        stop_server
        start
    fi
    log "attack $name $args ..."
    # The longest -d of a row, plus the bystander's grace, the settle and slack.
    dur=$(grep -oE -- '-d [0-9.]+' <<<"$args" | awk '{ print int($2) }')
    row="" rc=0
    # shellcheck disable=SC2086
    row=$(timeout --kill-after=5 $((${dur:-10} + ${SETTLE%.*} + 60)) "$BENCH" attack "$name" $args \
        "${BENCH_PORTS[@]}" "${TABLE_ARGS[@]}" --pid "$SERVER_PID" --settle "$SETTLE" --log "$SERVER_LOG" --markdown \
        2>"$OUT/$name.err") || rc=$?
    if ((rc)) || [[ -z $row ]]; then
        row="| $name | failed (exit $rc) | - | - | $(tail -1 "$OUT/$name.err" | tr '|' '/') |"
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        row="${row% |} (the server DIED during this attack; started again) |"
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        start
    else
        # Each attack meets a server that answers: one still busy with the
        # last attack's backlog is waited for (and that is noted).
        busy=$(wait_answer 120)
        if [[ $busy == never ]]; then
            row="${row% |} (the server did not answer for 120 s after this attack; restarted) |"
            stop_server
            start
        elif awk -v b="$busy" 'BEGIN { exit !(b > 1) }'; then
            row="${row% |} (then the server answered a new connection only after another $busy s) |"
        fi
    fi
    printf '%s\n' "$row" >>"$TABLE"
    log "$row"
done < <(attack_rows)
stop_server
printf '\n'
cat "$TABLE"
printf '\n(server log, table: %s)\n' "$OUT"
