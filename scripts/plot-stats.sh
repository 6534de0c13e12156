#!/usr/bin/env bash
# Draws what the stats listener saw over a short load run, from a scrape of
# /metrics every second: connections open, requests per second, and the
# loop's wake-ups (per second, mean and p99 duration), as a PNG.
#
#   scripts/plot-stats.sh [OUT.png]      (default docs/stats-load.png)
#
# Runs target/release/onepoll (tne, chat, stats on 127.0.0.1, free ports)
# and target/release/onepoll-bench: idle, tne request/reply on 50
# connections, chat fan-out to 200 receivers, 1000 idle connections held,
# idle again (about 40 s). Build both first: cargo build --release.
# Needs curl and gnuplot (Debian: gnuplot-nox).
set -euo pipefail
cd "$(dirname "$0")/.."

PNG=${1:-docs/stats-load.png}
SERVER=target/release/onepoll
BENCH=target/release/onepoll-bench
[[ -x $SERVER && -x $BENCH ]] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 2; }
mkdir -p "$(dirname "$PNG")"

WORK=$(mktemp -d)
trap 'kill "${SCRAPER:-}" "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$SERVER" -b 127.0.0.1 --max-conns 5000 tne=0 chat=0 stats=0 2>"$WORK/log" &
PID=$!
for _ in $(seq 100); do
    [[ $(grep -c "listening .* tcp" "$WORK/log") -ge 3 ]] && break
    sleep 0.1
done
port_of() { grep "listening $1 tcp" "$WORK/log" | sed 's/.*://' | head -1; }
TNE=$(port_of tne) CHAT=$(port_of chat) STATS=$(port_of stats)
[[ -n $STATS && -n $TNE && -n $CHAT ]] || { echo "the server did not start:" >&2; cat "$WORK/log" >&2; exit 1; }

# One line per second: time, connections (not stats), requests total,
# wake-ups, duration sum, duration count, then the 17 cumulative buckets.
scrape() {
    local t0=$SECONDS
    while sleep 1; do
        curl -s "http://127.0.0.1:$STATS/metrics" | awk -v t=$((SECONDS - t0)) '
            /^onepoll_connections\{/ && !/stats/ { conns += $2 }
            /^onepoll_requests_total\{/ && !/stats/ { reqs += $2 }
            /^onepoll_loop_wakeups_total / { wakeups = $2 }
            /^onepoll_loop_wakeup_duration_seconds_sum / { sum = $2 }
            /^onepoll_loop_wakeup_duration_seconds_count / { count = $2 }
            /^onepoll_loop_wakeup_duration_seconds_bucket/ { buckets = buckets " " $2 }
            END { print t, conns, reqs, wakeups, sum, count buckets }'
    done
}
scrape >"$WORK/scrapes" &
SCRAPER=$!

sleep 4
"$BENCH" -q -p "$TNE" -c 50 -d 8 tne >/dev/null
sleep 3
"$BENCH" -q -p "$CHAT" --receivers 200 --senders 2 -r 500 -d 8 chat >/dev/null
sleep 3
"$BENCH" -q -p "$TNE" -c 1000 -d 8 idle >/dev/null
sleep 4
kill "$SCRAPER"; wait "$SCRAPER" 2>/dev/null || true

# Per second: requests/s, wake-ups/s, mean and p99 wake-up duration (µs;
# p99 as the upper bound of its bucket).
awk 'BEGIN { split("10 25 50 100 250 500 1000 2500 5000 10000 25000 50000 100000 250000 500000 1000000", le, " ") }
    NR > 1 {
        dc = $6 - pc; dw = $4 - pw
        mean = dc > 0 ? ($5 - ps) / dc * 1e6 : 0
        p99 = 0
        if (dc > 0) for (i = 1; i <= 16; i++) if ($(6 + i) - pb[i] >= 0.99 * dc) { p99 = le[i]; break }
        print $1, $2, $3 - pr, dw, mean, p99
    }
    { pr = $3; pw = $4; ps = $5; pc = $6; for (i = 1; i <= 16; i++) pb[i] = $(6 + i) }' \
    "$WORK/scrapes" >"$WORK/rates"

gnuplot <<GNUPLOT
set terminal pngcairo size 1000,700 font ",10" noenhanced
set output "$PNG"
set multiplot layout 2,1 title "onepoll under load, as its stats listener saw it (one scrape a second)"
set key top left
set xlabel "seconds"
set ylabel "connections open"
set y2label "requests / s"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "$WORK/rates" using 1:2 with steps lw 2 title "onepoll_connections (sum)", \
     "" using 1:3 axes x1y2 with lines lw 2 title "rate(onepoll_requests_total)"
set ylabel "wake-up duration (µs)"
set y2label "wake-ups / s"
set logscale y
set yrange [1:*]
plot "$WORK/rates" using 1:(\$5 > 0 ? \$5 : 1/0) with lines lw 2 title "mean", \
     "" using 1:(\$6 > 0 ? \$6 : 1/0) with steps lw 2 title "p99 (bucket bound)", \
     "" using 1:4 axes x1y2 with lines lw 1 dt 2 title "rate(onepoll_loop_wakeups_total)"
unset multiplot
GNUPLOT
echo "$PNG"
