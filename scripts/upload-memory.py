#!/usr/bin/env python3
"""Measure one large upload through a release onepoll: throughput and the
server's resident memory before, during and after.

Starts `target/release/onepoll -b 127.0.0.1 -d DIR upload=0` (build it first
with `cargo build --release`), streams one file of SIZE bytes of 64-byte
lines over loopback, samples the server's VmRSS from /proc every 32 MiB,
checks the saved file's size, stops the server with SIGTERM and removes
DIR. Meanwhile a second connection uploads one-line files back to back
and times each round trip: what the big upload costs everyone else on
the one thread. Loopback only; bounded by the file size; stops by itself.

    python3 scripts/upload-memory.py [SIZE_MIB (default 1024)] [DIR]

DIR defaults to a fresh directory under the system temporary directory;
it must have room for the file.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import multiprocessing
import tempfile
import time

MIB = 1 << 20


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ping(port, stop, results):
    """In its own process (no shared interpreter lock with the sender):
    uploads one-line files on its own connection until `stop` is set, then
    sends the list of round trips, in seconds, through `results`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = struct.pack(">I", 1) + b"ping\n"
    rtts = []
    while not stop.is_set():
        t = time.perf_counter()
        sock.sendall(message)
        assert sock.recv(1) == b"A"
        rtts.append(time.perf_counter() - t)
    sock.sendall(struct.pack(">I", 0))
    sock.close()
    results.send(rtts)


class Pinger:
    """Runs `ping` in a child process between `start` and `stop`."""

    def __init__(self, port):
        self.stop_flag = multiprocessing.Event()
        self.results, child_end = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.Process(
            target=ping, args=(port, self.stop_flag, child_end))
        self.process.start()

    def stop(self):
        self.stop_flag.set()
        rtts = self.results.recv()
        self.process.join(timeout=10)
        return rtts


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main():
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target_dir = os.path.join(root, os.environ.get("CARGO_TARGET_DIR") or "target")
    server_bin = os.path.join(target_dir, "release", "onepoll")
    if not os.access(server_bin, os.X_OK):
        sys.exit(f"{server_bin} not found: run `cargo build --release` first")
    own_dir = len(sys.argv) <= 2
    updir = tempfile.mkdtemp(prefix="onepoll-upload-memory-") if own_dir else sys.argv[2]

    server = subprocess.Popen(
        [server_bin, "-b", "127.0.0.1", "-d", updir, "upload=0"],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            m = re.search(r"listening upload tcp 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        if port is None:
            sys.exit("the server did not start")

        line = b"l" * 63 + b"\n"
        chunk = line * (MIB // len(line))
        lines = (MIB // len(line)) * size_mib
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        # A small file first, so the loop's buffers exist before "before".
        sock.sendall(struct.pack(">I", 1) + b"warm up\n")
        assert sock.recv(1) == b"A"
        before = rss_kib(server.pid)
        # Round trips of another client with the server otherwise idle.
        pinger = Pinger(port)
        time.sleep(0.5)
        idle_rtts = pinger.stop()
        pinger = Pinger(port)
        time.sleep(0.2)
        samples = []
        start = time.monotonic()
        sock.sendall(struct.pack(">I", lines))
        for i in range(size_mib):
            sock.sendall(chunk)
            if i % 32 == 0:
                samples.append(rss_kib(server.pid))
        status = sock.recv(1)
        elapsed = time.monotonic() - start
        busy_rtts = pinger.stop()
        samples.append(rss_kib(server.pid))
        sock.sendall(struct.pack(">I", 0))
        assert sock.recv(1) == b"Q"
        sock.close()
        after = rss_kib(server.pid)
        saved = os.path.getsize(os.path.join(updir, "2.txt"))

        print(f"upload of {size_mib} MiB: status {status.decode()}, "
              f"saved {saved} bytes (expected {size_mib * MIB})")
        print(f"time {elapsed:.2f} s, {size_mib * MIB / elapsed / 1e6:.0f} MB/s "
              f"({size_mib / elapsed:.0f} MiB/s)")
        print(f"server RSS KiB: before {before}, during min {min(samples)} "
              f"max {max(samples)} ({len(samples)} samples), after {after}")
        for name, rtts in (("idle", idle_rtts), ("during", busy_rtts)):
            print(f"another client's one-line upload, {name}: {len(rtts)} round trips, "
                  f"p50 {percentile(rtts, 0.5) * 1e3:.2f} ms, "
                  f"p99 {percentile(rtts, 0.99) * 1e3:.2f} ms, "
                  f"max {max(rtts) * 1e3:.2f} ms")
        if status != b"A" or saved != size_mib * MIB:
            sys.exit(1)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if own_dir:
            shutil.rmtree(updir, ignore_errors=True)


if __name__ == "__main__":
    main()
