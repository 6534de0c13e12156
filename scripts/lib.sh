# shellcheck shell=bash
# Shared by loadtest.sh and compare.sh: the standard load matrix (issue 6,
# item 4), and starting, probing and stopping a server under test.
#
# A server command is any command line that accepts PROTOCOL=PORT
# arguments appended to it and logs to stderr: onepoll, or a reference
# server built by compare.sh from PEERS, e.g. "/tmp/onepoll-c -q -b 127.0.0.1".

# One row per line: name | protocol | figure (CSV column) | better | bench arguments.
# idle and churn speak transform, which every server serves. idle runs
# first, on a fresh server, so that memory freed by earlier rows does not
# blur its before/after RSS. chat-saturated is judged on deliveries/s,
# the bar issue 6 sets (server µs/op is in the CSV too). chat-5k and
# chat-10k (issue 17, item 6) saturate rooms of 5,000 and 10,000
# receivers: the bench, not the server, is the bottleneck there, so they
# are judged on server CPU per delivery (p99_us is in the CSV too, and
# printed under the tables). Each side then holds ~10,000 descriptors:
# raise_nofile lifts the soft limit, and onepoll runs with --max-conns
# 10100 (its default, 10,000, would refuse the sender). chat-10k is left
# out by --fast (FULL_ONLY).
MATRIX='
idle-10k        |transform|server_bytes_per_conn|lower |idle --proto transform -c 10000
transform-P16   |transform|server_us_per_op     |lower |transform -c 50 -P 16 -s 64
transform-rr    |transform|server_us_per_op     |lower |transform -c 50 -P 1 -s 64
transform-64MiB |transform|mb_out_per_s         |higher|transform -c 1 -P 1 -s 67108864
tne-P16         |tne      |server_us_per_op     |lower |tne -c 50 -P 16 -s 64
cmd-echo        |cmd      |server_us_per_op     |lower |cmd -c 50 -P 1 -s 64
chat-saturated  |chat     |ops_per_s            |higher|chat --receivers 1000 -P 64 -s 64
chat-1000/s     |chat     |p99_us               |lower |chat --receivers 1000 --rate 1000 -s 64
chat-5k         |chat     |server_us_per_op     |lower |chat --receivers 5000 -P 64 -s 64
chat-10k        |chat     |server_us_per_op     |lower |chat --receivers 10000 -P 64 -s 64
churn           |transform|server_us_per_op     |lower |churn --proto transform -c 50 -s 64
'

# Rows only the full matrix runs (a regex over row names): compare.sh
# --fast skips them.
FULL_ONLY='chat-10k'

PROTOCOLS=(transform tne cmd chat upload)

# Where cargo puts the builds: $CARGO_TARGET_DIR if set (relative to the
# repository, where every script runs), else target/.
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RELEASE=$TARGET_DIR/release

log() { printf '%s\n' "$*" >&2; }

# The matrix rows, whitespace trimmed, filtered by $ONLY (a regex) if set.
matrix_rows() {
    printf '%s\n' "$MATRIX" | sed -e '/^[[:space:]]*$/d' -e 's/[[:space:]]*|[[:space:]]*/|/g' \
        | { if [[ -n "${ONLY:-}" ]]; then grep -E "^(${ONLY})\|" || true; else cat; fi; } \
        | { if ((${FAST:-0})); then grep -vE "^(${FULL_ONLY})\|" || true; else cat; fi; }
}

# A base port with nothing listening on BASE+0..BASE+4 (one per protocol),
# below the ephemeral range (32768 up on Linux) so that no outgoing
# connection — the bench's own churn included — can hold one of them.
pick_base_port() {
    local base i busy
    for _ in $(seq 1 50); do
        base=$((20000 + (RANDOM % 120) * 100))
        busy=0
        for i in 0 1 2 3 4; do
            if (exec 3<>"/dev/tcp/127.0.0.1/$((base + i))") 2>/dev/null; then busy=1; fi
        done
        if ((!busy)); then
            echo "$base"
            return
        fi
    done
    echo 31900
}

port_of() { # PROTOCOL BASE
    local i
    for i in "${!PROTOCOLS[@]}"; do
        if [[ "${PROTOCOLS[$i]}" == "$1" ]]; then
            echo $(($2 + i))
            return
        fi
    done
    return 1
}

# Waits until PORT accepts a connection or PID has exited (max 5 s).
wait_port() { # PORT PID
    local _
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

SERVER_PID=""

# Starts SERVER_CMD with PROTOCOL=PORT args, pinned to CPU $SERVER_CPU;
# sets SERVER_PID (the server's own pid: the shell execs into it).
start_server() { # CMD BASE PROTOCOL...
    local cmd=$1 base=$2 args="" p
    shift 2
    for p in "$@"; do args+=" $p=$(port_of "$p" "$base")"; done
    # shellcheck disable=SC2086
    bash -c "exec ${PIN_SERVER} ${cmd}${args}" 2>>"${SERVER_LOG:-/dev/null}" &
    SERVER_PID=$!
    wait_port "$(port_of "$1" "$base")" "$SERVER_PID"
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # The spec's drain grace is 5 s; then no mercy.
        for _ in $(seq 1 70); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# Prints the protocols (of those the matrix uses) that CMD serves, by
# starting it with each one alone.
probe_protocols() { # CMD BASE
    local p found=()
    for p in $(matrix_rows | cut -d'|' -f2 | sort -u); do
        if start_server "$1" "$2" "$p"; then found+=("$p"); fi
        stop_server
    done
    echo "${found[*]}"
}

# Sets PIN_SERVER / PIN_BENCH: server on CPU 0, bench on CPU 1 when the
# machine has two CPUs and taskset.
setup_pinning() {
    PIN_SERVER="" PIN_BENCH=""
    if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
        PIN_SERVER="taskset -c 0" PIN_BENCH="taskset -c 1"
    else
        log "note: fewer than 2 CPUs or no taskset; server and bench are not pinned"
    fi
}

# Raises the descriptor limit for 10,000 idle connections (each side);
# sets IDLE_CONNS to what fits.
raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    if [[ "$hard" == unlimited ]]; then hard=1048576; fi
    ulimit -n "$hard" 2>/dev/null || true
    IDLE_CONNS=10000
    if (($(ulimit -n) < 10240)); then
        IDLE_CONNS=$(($(ulimit -n) - 240))
        log "note: ulimit -n is $(ulimit -n); idle row uses $IDLE_CONNS connections"
    fi
}

# Runs one matrix row against the server on BASE; appends to CSV. Returns
# 0 even when the bench reports failures (the CSV row shows them).
run_row() { # ROW BASE PID LABEL CSV DURATION
    local row=$1 base=$2 pid=$3 label=$4 csv=$5 dur=$6
    local name proto args port
    IFS='|' read -r name proto _ _ args <<<"$row"
    port=$(port_of "$proto" "$base")
    if [[ "$name" == idle-* ]]; then
        args=${args/-c 10000/-c $IDLE_CONNS}
        dur=$(awk -v d="$dur" 'BEGIN { print (d > 3 ? 3 : d) }')
    fi
    # With the server pinned, the bench times the machine's cross-CPU
    # round trip before and after the run (see print_paired_ratios --fast).
    local probe=""
    [[ -n $PIN_SERVER ]] && probe="--probe-cpu 0"
    # With HGRM_DIR set, the run's latency distribution goes to
    # HGRM_DIR/ROW/LABEL.N.hgrm (N counts the runs), for plot-latency.sh;
    # a / in a row's name (chat-1000/s) is written as a division slash.
    local hgrm=""
    if [[ -n ${HGRM_DIR:-} ]]; then
        local dir=$HGRM_DIR/${name//\//∕} n=1
        mkdir -p "$dir"
        while [[ -e $dir/$label.$n.hgrm ]]; do n=$((n + 1)); done
        hgrm="--hgrm $dir/$label.$n.hgrm"
    fi
    # shellcheck disable=SC2086
    timeout --kill-after=5 $((${dur%.*} + 90)) ${PIN_BENCH} "$BENCH" $args -p "$port" -d "$dur" \
        --server-pid "$pid" $probe $hgrm -q --csv "$csv" --label "$label|$name" >&2 || true
}

# Median of the numbers on stdin (empty when none).
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# The value of COLUMN in CSV rows whose label is LABEL (one per line).
csv_values() { # CSV LABEL COLUMN
    awk -F, -v label="$2" -v col="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        c && $1 == label && $c != "" { print $c }' "$1"
}

# Human name of a figure column.
figure_name() {
    case $1 in
        server_us_per_op) echo "server µs/op" ;;
        mb_out_per_s) echo "MB/s" ;;
        ops_per_s) echo "ops/s" ;;
        p99_us) echo "p99 µs" ;;
        server_bytes_per_conn) echo "server B/conn" ;;
        *) echo "$1" ;;
    esac
}

# The one-server table: every row's medians over the CSV.
print_single_table() { # CSV LABEL
    local csv=$1 label=$2 row name proto figure ops p50 p99 fig errs
    printf '\n%-16s %12s %10s %10s %14s %8s   %s\n' row "ops/s" "p50 µs" "p99 µs" value errors figure
    while IFS= read -r row; do
        IFS='|' read -r name proto figure _ _ <<<"$row"
        if [[ -z "$(csv_values "$csv" "$label|$name" ops)" ]]; then
            printf '%-16s %s\n' "$name" "skipped: $label does not serve $proto"
            continue
        fi
        ops=$(csv_values "$csv" "$label|$name" ops_per_s | median)
        p50=$(csv_values "$csv" "$label|$name" p50_us | median)
        p99=$(csv_values "$csv" "$label|$name" p99_us | median)
        fig=$(csv_values "$csv" "$label|$name" "$figure" | median)
        errs=$(csv_values "$csv" "$label|$name" errors | awk '{ s += $1 } END { print s + 0 }')
        errs=$((errs + $(csv_values "$csv" "$label|$name" disconnects | awk '{ s += $1 } END { print s + 0 }')))
        printf '%-16s %12.0f %10.1f %10.1f %14s %8s   %s\n' "$name" "$ops" "$p50" "$p99" "${fig:--}" "$errs" "$(figure_name "$figure")"
    done < <(matrix_rows)
}

# The best of the numbers on stdin: the lowest if $1 is "lower", else the
# highest (empty when none).
best() { # lower|higher
    if [[ $1 == lower ]]; then sort -g | head -1; else sort -g | tail -1; fi
}

# The side-by-side table: each row's key figure (STAT over rounds: median,
# or best, the lowest cost or highest rate seen) per server, and the first
# server's figure divided by each other's.
print_compare_table() { # STAT CSV LABEL...
    local stat=$1 csv=$2 row name proto figure better l first v line
    shift 2
    printf '\n%-16s %-14s' row figure
    for l in "$@"; do printf ' %14s' "$l"; done
    for l in "${@:2}"; do printf ' %14s' "$1/$l"; done
    printf '\n'
    while IFS= read -r row; do
        IFS='|' read -r name proto figure better _ <<<"$row"
        line=$(printf '%-16s %-14s' "$name" "$(figure_name "$figure")")
        first=""
        local vals=()
        for l in "$@"; do
            if [[ $stat == best ]]; then
                v=$(csv_values "$csv" "$l|$name" "$figure" | best "$better")
            else
                v=$(csv_values "$csv" "$l|$name" "$figure" | median)
            fi
            vals+=("${v}")
            line+=$(printf ' %14s' "${v:-skipped}")
        done
        for i in "${!vals[@]}"; do
            ((i == 0)) && continue
            line+=$(awk -v a="${vals[0]}" -v b="${vals[$i]}" 'BEGIN {
                if (a == "" || b == "" || b + 0 == 0) printf " %14s", "-"; else printf " %14.2f", a / b }')
        done
        printf '%s  (%s is better)\n' "$line" "$better"
    done < <(matrix_rows)
}

# The lowest cross-CPU round trip (µs) any run of CSV saw, before or
# after it; empty if the runs were not probed.
probe_floor() { # CSV
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "probe_before_us") b = i; if ($i == "probe_after_us") a = i } next }
        b && $b != "" { print $b; print $a }' "$1" | sort -g | head -1
}

# One line per run of LABEL, in order: its COLUMN, or "-" if FLOOR is
# given and the machine was not in its fast mode all through the run
# (both probes within FAST_FACTOR of FLOOR), so that the lines of two
# labels still pair by round.
FAST_FACTOR=1.5
round_values() { # CSV LABEL COLUMN [FLOOR]
    awk -F, -v label="$2" -v col="$3" -v limit="$(awk -v f="${4:-}" -v k="$FAST_FACTOR" 'BEGIN { print (f == "" ? "" : f * k) }')" '
        NR == 1 { for (i = 1; i <= NF; i++) { if ($i == col) c = i; if ($i == "probe_before_us") b = i; if ($i == "probe_after_us") a = i } next }
        c && $1 == label && $c != "" { print ((limit == "" || ($b + 0 <= limit && $a + 0 <= limit)) ? $c : "-") }' "$1"
}

# Each row's ratio of the first server's figure to each other's, taken
# round by round (the servers ran that row seconds apart, so in the same
# state of the machine): the median of those ratios, then
# [lowest-highest], the spread saying how far one round can be trusted on
# this machine.
#
# With --fast, only over the rounds in which both runs of a pair saw the
# machine's fast mode, followed by how many rounds that was. This VM
# flips, for seconds to minutes, between two costs of a cross-CPU wake-up
# (~7 and ~20 µs per loopback round trip), and every request a server
# answers is one; a pair of runs that straddles a flip compares the
# machine, not the servers.
print_paired_ratios() { # [--fast] CSV LABEL...
    local fast=0 floor="" csv row name proto figure better l first ratios total width=22
    if [[ $1 == --fast ]]; then
        fast=1 width=28
        shift
    fi
    csv=$1
    shift
    first=$1
    if ((fast)); then
        floor=$(probe_floor "$csv")
        if [[ -z $floor ]]; then
            echo "(no cross-CPU probes in $csv: runs not pinned, or made before --probe-cpu)"
            return 0
        fi
    fi
    printf '\n%-16s %-14s' row figure
    for l in "${@:2}"; do printf " %${width}s" "$first/$l"; done
    printf '\n'
    while IFS= read -r row; do
        IFS='|' read -r name proto figure better _ <<<"$row"
        printf '%-16s %-14s' "$name" "$(figure_name "$figure")"
        for l in "${@:2}"; do
            total=$(paste -d' ' <(round_values "$csv" "$first|$name" "$figure") <(round_values "$csv" "$l|$name" "$figure") |
                awk '$1 != "" && $2 != ""' | wc -l)
            ratios=$(paste -d' ' <(round_values "$csv" "$first|$name" "$figure" "$floor") \
                <(round_values "$csv" "$l|$name" "$figure" "$floor") |
                awk '$1 != "-" && $2 != "-" && $1 != "" && $2 != "" && $2 + 0 != 0 { print $1 / $2 }')
            if [[ -z $ratios ]]; then
                if ((fast)); then printf " %${width}s" "- (0 of $total)"; else printf " %${width}s" "-"; fi
                continue
            fi
            printf ' %9.2f %12s' "$(median <<<"$ratios")" \
                "$(sort -g <<<"$ratios" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "[%.2f-%.2f]", lo, hi }')"
            if ((fast)); then printf ' %5s' "$(wc -l <<<"$ratios")/$total"; fi
        done
        printf '  (%s is better)\n' "$better"
    done < <(matrix_rows)
}

# Draws each row's latency distribution (every server of the run in its
# own colour) into DIR/latency.png when gnuplot is there; otherwise says
# the one command that would.
plot_rows() { # DIR
    [[ -d $1/hgrm ]] || return 0
    if command -v gnuplot >/dev/null; then
        echo
        echo "latency distributions per row: $(scripts/plot-latency.sh -o "$1/latency.png" "$1/hgrm")"
    else
        echo
        echo "to draw the latency distributions: apt-get install gnuplot-nox, then scripts/plot-latency.sh $1/hgrm"
    fi
}
