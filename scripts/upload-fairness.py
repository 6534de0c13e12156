#!/usr/bin/env python3
"""Measure what one client streaming tiny uploads costs everyone else on the
loop (issue 16, "fair turns"): a bystander's cmd `ECHO x` round trips while
one connection sends FILES one-line files back to back.

Starts `target/release/onepoll -b 127.0.0.1 -d DIR upload=0 cmd=0` (build it
first with `cargo build --release`), opens the bystander (HELO, then
`ECHO x` every 10 ms), streams the files from a second connection as fast
as loopback takes them while reading its `A`s, and prints the bystander's
round trips (p50, p99, max) during the stream and the stream's rate. Stops
the server with SIGTERM and removes DIR. Loopback only; bounded.

    python3 scripts/upload-fairness.py [FILES (default 400000)] [DIR]
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
    made_dir = len(sys.argv) <= 2
    upload_dir = tempfile.mkdtemp(prefix="onepoll-fair-") if made_dir else sys.argv[2]
    binary = os.path.join(os.path.dirname(__file__), "..", "target", "release", "onepoll")
    server = subprocess.Popen(
        [binary, "-b", "127.0.0.1", "-d", upload_dir, "--max-files", str(files),
         "upload=0", "cmd=0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ports = {}
        for line in server.stderr:
            m = re.search(r"listening (upload|cmd) tcp 127\.0\.0\.1:(\d+)", line)
            if m:
                ports[m.group(1)] = int(m.group(2))
            if len(ports) == 2:
                break
        if len(ports) < 2:
            sys.exit("server did not start")
        # Keep reading the log so that the server never blocks on it.
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

        bystander = socket.create_connection(("127.0.0.1", ports["cmd"]), timeout=30)
        bystander.sendall(b"HELO bystander\n")
        reader = bystander.makefile("rb")
        reader.readline()

        one = struct.pack(">I", 1) + b"x\n"
        wire = one * files + struct.pack(">I", 0)
        done = threading.Event()
        result = {}

        def stream():
            up = socket.create_connection(("127.0.0.1", ports["upload"]), timeout=120)
            t0 = time.time()
            sender = threading.Thread(target=up.sendall, args=(wire,))
            sender.start()
            got = bytearray()
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                got += chunk
            sender.join()
            result["seconds"] = time.time() - t0
            result["statuses"] = got
            done.set()

        # (--max-files is raised to FILES: the default, 100,000, would end
        # a longer stream with E.)

        threading.Thread(target=stream, daemon=True).start()
        rtts = []
        while not done.is_set():
            t = time.perf_counter()
            bystander.sendall(b"ECHO x\n")
            if reader.readline() != b"x\n":
                sys.exit("bad echo")
            rtts.append((time.perf_counter() - t) * 1000)
            time.sleep(0.01)
        statuses = result["statuses"]
        if statuses != b"A" * files + b"Q":
            sys.exit(f"unexpected statuses: {len(statuses)} bytes, ending {statuses[-8:]!r}")
        print(
            f"{files} one-line files in {result['seconds']:.2f} s "
            f"({files / result['seconds']:.0f} files/s, all saved); "
            f"bystander ECHO ({len(rtts)} samples): p50 {percentile(rtts, 50):.2f} ms, "
            f"p99 {percentile(rtts, 99):.2f} ms, max {max(rtts):.2f} ms"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if made_dir:
            shutil.rmtree(upload_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
