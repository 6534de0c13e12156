#!/usr/bin/env bash
# Draws latency distributions as HdrHistogram plots them: one panel per
# workload (matrix row), the latency (y) at each percentile (x, on a log
# "nines" axis: 90%, 99%, 99.9% ... equally spaced), one line per server
# run, a colour per server. Each panel is in µs or in ms, whichever suits
# its largest latency.
#
#   scripts/plot-latency.sh [-o OUT.png] HGRM_DIR | FILE.hgrm... | RESULTS.csv
#
# HGRM_DIR is what loadtest.sh and compare.sh leave in their output
# directory (hgrm/ROW/SERVER.N.hgrm, written by onepoll-bench --hgrm): the
# whole distribution of every run. A FILE.hgrm is drawn in the panel named
# after its directory. RESULTS.csv (onepoll-bench --csv) has only p50,
# p90, p99 and p99.9 of each run, drawn as points on the same axes.
# OUT.png defaults to latency.png beside the input.
#
# Needs gnuplot: when it is missing, asks before installing it (Debian's
# gnuplot-nox), or, without a terminal to ask on, prints the command.
set -euo pipefail

OUT="" INPUTS=()
while (($#)); do
    case $1 in
        -o) OUT=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) INPUTS+=("$1"); shift ;;
    esac
done
((${#INPUTS[@]})) || { echo "usage: $0 [-o OUT.png] HGRM_DIR | FILE.hgrm... | RESULTS.csv" >&2; exit 2; }
for input in "${INPUTS[@]}"; do
    [[ -r $input ]] || { echo "cannot read $input" >&2; exit 2; }
done

if ! command -v gnuplot >/dev/null; then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo "
    INSTALL="${SUDO}apt-get install -y gnuplot-nox"
    if [[ -t 0 && -t 2 ]]; then
        read -r -p "gnuplot is needed to draw. Install it now with '$INSTALL'? [y/N] " answer
        if [[ $answer == [yY]* ]]; then
            $INSTALL >&2
        else
            echo "not installed; to draw later: $INSTALL" >&2
            exit 1
        fi
    else
        echo "gnuplot is missing; install it with: $INSTALL" >&2
        exit 1
    fi
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Everything is first laid out as WORK/ROW/SERVER.N.hgrm.
first=${INPUTS[0]}
if [[ -d $first ]]; then
    cp -r "$first"/. "$WORK"/
    OUT=${OUT:-$(dirname "$first")/latency.png}
elif [[ $first == *.csv ]]; then
    # The CSV's percentiles as four steps of a distribution. A label
    # "SERVER|ROW" (loadtest.sh, compare.sh) gives panel and line; a bare
    # bench row goes in its workload's panel.
    awk -F, -v work="$WORK" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        {
            label = $col["label"]; gsub(/"/, "", label)
            if (label ~ /\|/) { server = label; sub(/\|.*/, "", server); row = label; sub(/^[^|]*\|/, "", row) }
            else { server = (label != "" ? label : "onepoll"); row = $col["workload"] }
            gsub(/\//, "∕", row)
            n[row "/" server]++
            dir = work "/" row
            system("mkdir -p \"" dir "\"")
            f = dir "/" server "." n[row "/" server] ".hgrm"
            printf "%s 0.5 0 2\n%s 0.9 0 10\n%s 0.99 0 100\n%s 0.999 0 1000\n", \
                $col["p50_us"], $col["p90_us"], $col["p99_us"], $col["p999_us"] > f
            close(f)
        }' "$first"
    OUT=${OUT:-${first%.csv}-latency.png}
else
    for f in "${INPUTS[@]}"; do
        row=$(basename "$(dirname "$(readlink -f "$f")")")
        mkdir -p "$WORK/$row"
        cp "$f" "$WORK/$row/"
    done
    OUT=${OUT:-$(dirname "$first")/latency.png}
fi

mapfile -t ROWS < <(find "$WORK" -mindepth 2 -name '*.hgrm' -printf '%h\n' | xargs -r -n1 basename | sort -u)
((${#ROWS[@]})) || { echo "nothing to draw in ${INPUTS[*]}" >&2; exit 1; }
# Servers in a fixed order (onepoll first), one colour each in every panel.
mapfile -t SERVERS < <(find "$WORK" -mindepth 2 -name '*.hgrm' -printf '%f\n' |
    sed -E 's/(\.[0-9]+)?\.hgrm$//' | sort -u | awk '$0 == "onepoll" { print "0 " $0; next } { print "1 " $0 }' |
    sort -k1,1n -k2 | cut -d' ' -f2-)
COLOURS=("#1f77b4" "#d62728" "#2ca02c" "#ff7f0e" "#9467bd" "#8c564b" "#17becf")

# The finite steps of a distribution file: "1/(1-p) value-µs".
steps() { awk 'NF == 4 && $1 + 0 == $1 && $4 + 0 == $4 { print $4, $1 }' "$1"; }

COLS=$((${#ROWS[@]} < 3 ? ${#ROWS[@]} : 3))
NROWS=$(((${#ROWS[@]} + COLS - 1) / COLS))
{
    echo "set terminal pngcairo size $((COLS * 520)),$((NROWS * 380)) font ',10' noenhanced"
    echo "set output '$OUT'"
    echo "set multiplot layout $NROWS,$COLS title 'latency by percentile (HdrHistogram style): $(basename "$(dirname "$OUT")")'"
    echo "set logscale x"
    echo "set grid xtics ytics"
    echo "set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000, '99.9999%%' 1000000)"
    echo "set key top left"
    echo "set yrange [0:*]"
    echo "set xlabel 'percentile'"
    for row in "${ROWS[@]}"; do
        files=("$WORK/$row"/*.hgrm)
        # Panel scale: the largest latency and the deepest percentile here.
        read -r maxv maxx < <(for f in "${files[@]}"; do steps "$f"; done |
            awk 'BEGIN { v = 0; x = 10 } { if ($2 > v) v = $2; if ($1 > x) x = $1 } END { print v, x }')
        if awk -v v="$maxv" 'BEGIN { exit !(v >= 10000) }'; then unit=ms div=1000; else unit=µs div=1; fi
        xmax=$(awk -v x="$maxx" 'BEGIN { e = 1; while (e < x && e < 1e6) e *= 10; print e }')
        echo "set title '$row'"
        echo "set ylabel 'latency ($unit)'"
        echo "set xrange [1:$xmax]"
        plot="plot"
        sep=" "
        for s in "${!SERVERS[@]}"; do
            server=${SERVERS[$s]}
            titled=0
            for f in "${files[@]}"; do
                name=$(basename "$f")
                [[ $(sed -E 's/(\.[0-9]+)?\.hgrm$//' <<<"$name") == "$server" ]] || continue
                data="$WORK/$row/$name.steps"
                steps "$f" >"$data"
                [[ -s $data ]] || continue
                if ((titled)); then title="notitle"; else title="title '$server'"; titled=1; fi
                plot+="$sep'$data' using 1:(\$2/$div) with linespoints pt 7 ps 0.4 lw 1.5 lc rgb '${COLOURS[$((s % ${#COLOURS[@]}))]}' $title"
                sep=", "
            done
        done
        if [[ $plot == plot ]]; then
            echo "set label 1 'no data' at graph 0.45,0.5"
            echo "plot 0 notitle lc rgb 'white'"
            echo "unset label 1"
        else
            echo "$plot"
        fi
    done
    echo "unset multiplot"
} >"$WORK/plot.gp"
gnuplot "$WORK/plot.gp"
echo "$OUT"
