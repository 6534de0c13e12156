#!/usr/bin/env bash
# Draws the latency percentiles of a run as a PNG: one line per CSV row
# (p50, p90, p99, p99.9, max; log scale), labelled by label and workload.
#
#   scripts/plot-latency.sh RESULTS.csv [OUT.png] [--match REGEX]
#
# RESULTS.csv is what onepoll-bench --csv, loadtest.sh or compare.sh wrote;
# --match keeps the rows whose label matches REGEX (e.g. 'transform-rr').
# Installs gnuplot from Debian's packages (gnuplot-nox) if it is missing.
set -euo pipefail

CSV="" PNG="" MATCH=""
while (($#)); do
    case $1 in
        --match) MATCH=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) if [[ -z $CSV ]]; then CSV=$1; elif [[ -z $PNG ]]; then PNG=$1; else echo "too many arguments" >&2; exit 2; fi; shift ;;
    esac
done
[[ -n $CSV && -r $CSV ]] || { echo "usage: $0 RESULTS.csv [OUT.png] [--match REGEX]" >&2; exit 2; }
PNG=${PNG:-${CSV%.csv}-latency.png}

if ! command -v gnuplot >/dev/null; then
    echo "installing gnuplot (Debian package gnuplot-nox)..." >&2
    if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
    timeout 300 $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq gnuplot-nox >&2
fi

DATA=$(mktemp)
trap 'rm -f "$DATA"' EXIT
# One block per row: "percentile-index latency-µs", titled by label/workload.
awk -F, -v match_re="$MATCH" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    match_re != "" && $col["label"] !~ match_re { next }
    {
        title = ($col["label"] != "" ? $col["label"] : $col["workload"])
        gsub(/"/, "", title)
        printf "\"%s\"\n", title
        printf "0 %s\n1 %s\n2 %s\n3 %s\n4 %s\n\n\n", $col["p50_us"], $col["p90_us"], \
            $col["p99_us"], $col["p999_us"], $col["max_us"]
        n++
    }
    END { if (!n) { print "no rows to plot" > "/dev/stderr"; exit 1 } }' "$CSV" >"$DATA"

gnuplot <<GNUPLOT
set terminal pngcairo size 1000,600 noenhanced
set output "$PNG"
set title "latency percentiles: $(basename "$CSV")"
set logscale y
set ylabel "latency (µs)"
set xtics ("p50" 0, "p90" 1, "p99" 2, "p99.9" 3, "max" 4)
set xrange [-0.2:4.2]
set grid ytics
set key outside right top
plot for [i=0:*] "$DATA" index i using 1:2 with linespoints lw 2 title columnheader(1)
GNUPLOT
echo "$PNG"
