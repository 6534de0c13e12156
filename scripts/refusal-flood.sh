#!/usr/bin/env bash
# A flood of refused connections against a onepoll server run with -q, and
# what it costs: the log it writes (lines, bytes, the refusals they count)
# and a bystander's round trip (`ECHO x` every 10 ms on its own connection).
#
#   scripts/refusal-flood.sh [-s SECS] [-j FLOODERS] [--full] [BIN]
#
#   BIN        the server (default target/release/onepoll; built if missing)
#   -s SECS    flood duration (default 5)
#   -j N       connect loops, each its own process (default 2)
#   --full     refuse on --max-conns 2 (server full: the held connection
#              and the bystander) instead of --max-conns-per-ip 1
#              (per address)
#
# Every address is on loopback: the flooders bind to 127.0.0.2, the held
# connection to 127.0.0.2 (per address) or 127.0.0.9 (server full), the
# bystander to 127.0.0.50; the server runs with --exempt none. Needs
# python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=5 JOBS=2 MODE=per-ip BIN=""
while (($#)); do
    case $1 in
        -s) SECS=$2; shift 2 ;;
        -j) JOBS=$2; shift 2 ;;
        --full) MODE=full; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) BIN=$1; shift ;;
    esac
done
if [[ -z $BIN ]]; then
    BIN=target/release/onepoll
    [[ -x $BIN ]] || cargo build --release --bin onepoll
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [[ $MODE == full ]]; then LIMIT=(--max-conns 2); HOLD=127.0.0.9
else LIMIT=(--max-conns-per-ip 1); HOLD=127.0.0.2; fi
"$BIN" -q -b 127.0.0.1 --exempt none "${LIMIT[@]}" "cmd=$PORT" 2>"$TMP/server.log" &
PIDS+=($!)

cat >"$TMP/hold.py" <<'EOF'
import socket, sys, time
port, src, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
deadline = time.time() + 10
while True:
    s = socket.socket(); s.bind((src, 0))
    try:
        s.connect(("127.0.0.1", port)); break
    except OSError:
        s.close()
        if time.time() > deadline: raise
        time.sleep(0.05)
s.sendall(b"HELO hold\n"); assert s.recv(100).startswith(b"Hello")
time.sleep(secs)
EOF
cat >"$TMP/flood.py" <<'EOF'
import socket, sys, time
port, src, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
n, end = 0, time.time() + secs
while time.time() < end:
    s = socket.socket(); s.bind((src, 0))
    try:
        s.connect(("127.0.0.1", port)); n += 1
    except OSError:
        pass
    s.close()
print(n)
EOF
cat >"$TMP/bystander.py" <<'EOF'
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(); s.bind(("127.0.0.50", 0)); s.connect(("127.0.0.1", port))
s.settimeout(30); f = s.makefile("rb")
s.sendall(b"HELO b\n"); f.readline()
rtts, end = [], time.time() + secs
while time.time() < end:
    t = time.perf_counter(); s.sendall(b"ECHO x\n"); line = f.readline()
    rtts.append((time.perf_counter() - t) * 1000)
    assert line == b"x\n", line
    time.sleep(0.01)
rtts.sort()
print("bystander ECHO: n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms"
      % (len(rtts), rtts[len(rtts) // 2], rtts[int(len(rtts) * 0.99)], rtts[-1]))
EOF

python3 "$TMP/hold.py" "$PORT" "$HOLD" $((SECS + 5)) &
PIDS+=($!)
sleep 0.5
python3 "$TMP/bystander.py" "$PORT" "$SECS" >"$TMP/bystander" &
BYSTANDER=$!
sleep 0.5 # connected before the flood begins
FLOODERS=()
for i in $(seq "$JOBS"); do
    python3 "$TMP/flood.py" "$PORT" 127.0.0.2 "$SECS" >"$TMP/flood.$i" &
    FLOODERS+=($!)
done
wait "${FLOODERS[@]}" "$BYSTANDER"
sleep 1.5 # the last report is due within a second
attempts=0
for i in $(seq "$JOBS"); do attempts=$((attempts + $(cat "$TMP/flood.$i"))); done
logged=$(awk '{ for (i = 1; i < NF; i++) if ($i == "refused") n += $(i + 1) } END { print n + 0 }' "$TMP/server.log")
echo "mode $MODE: $attempts connects in ${SECS}s from $JOBS loops"
echo "server log: $(wc -l <"$TMP/server.log") lines, $(wc -c <"$TMP/server.log") bytes, counting $logged refusals"
cat "$TMP/bystander"
sed -n '1,3p' "$TMP/server.log"
