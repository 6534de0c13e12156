#!/usr/bin/env python3
"""Runs one of issue 16's memory attacks against a running onepoll and
prints the server's resident size (VmRSS from /proc/PID/status) before,
at its peak during, and each second for 10 s after the attack, with a
bystander's round trips while it runs.

  scripts/memory_attack.py cmd  HOST:PORT PID [--conns 5000] [--bytes 1000000] [--secs 20]
      N cmd connections each pipelining BYTES of `ECHO <1000 x>` and never
      reading; the bystander sends `ECHO x` every 10 ms (--every) on its
      own connection.
  scripts/memory_attack.py chat HOST:PORT PID [--conns 10000] [--secs 20]
      N chat connections that join, send nothing and never read (so every
      JOIN goes to everyone); the bystander sends `/help` every 200 ms
      (within the default --chat-rate of 10 lines/s).

--rcvbuf B sets each attacking socket's receive buffer before it connects
(small: the kernel holds less of what the server sends, so the server's
own queues carry it). --sources N binds the attacking sockets to N
loopback addresses in turn (127.0.0.2, 127.0.0.3, ...; default 1: the
system's choice), so that a server started with `--exempt none` sees a
storm from N addresses: at most N x --max-conns-per-ip get in. The
bystander connects from 127.0.0.1 and the report says whether it was
closed. One thread, non-blocking sockets; Linux only.
Needs `ulimit -n` above --conns (for the server too).
"""

import argparse
import multiprocessing
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Bystander:
    """A well-behaved client: one request every `every` s, round trips kept."""

    def __init__(self, addr, proto, every):
        self.every = every
        src = ("127.0.0.1", 0) if addr[0].startswith("127.") else None
        self.sock = socket.create_connection(addr, source_address=src)
        self.sock.setblocking(False)
        self.proto = proto
        self.buf = b""
        self.sent_at = None
        self.next_at = time.monotonic()
        self.rtts = []
        if proto == "cmd":
            self.sock.sendall(b"HELO bystander\n")
            self.want = b"Hello"
        else:
            self.want = b"WELCOME"
        self.sent_at = time.monotonic()
        self.greeting = True

    def step(self):
        now = time.monotonic()
        try:
            data = self.sock.recv(65536)
            if data == b"":
                raise ConnectionError("bystander closed by the server")
            self.buf += data
        except BlockingIOError:
            pass
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            if self.sent_at is not None and line.startswith(self.want):
                if not self.greeting:
                    self.rtts.append(now - self.sent_at)
                self.greeting = False
                self.sent_at = None
                self.next_at = now + self.every
        if self.sent_at is None and now >= self.next_at:
            if self.proto == "cmd":
                self.sock.sendall(b"ECHO x\n")
                self.want = b"x"
            else:
                self.sock.sendall(b"/help\n")
                self.want = b"OK commands"
            self.sent_at = now

    def run(self, secs, report):
        """Runs on its own for `secs` (a process of its own, so that the
        attack's loop does not delay it) and reports its summary."""
        end = time.monotonic() + secs
        try:
            while time.monotonic() < end:
                self.step()
                time.sleep(0.0005)
            report.put(self.summary())
        except OSError as e:
            report.put(f"bystander failed: {e}; {self.summary()}")

    def summary(self):
        r = sorted(self.rtts)
        if not r:
            return "bystander: no round trip completed"
        pct = lambda p: r[min(len(r) - 1, int(len(r) * p))] * 1000
        return (f"bystander: {len(r)} round trips, p50 {pct(0.5):.2f} ms, "
                f"p99 {pct(0.99):.2f} ms, max {r[-1] * 1000:.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("attack", choices=["cmd", "chat"])
    ap.add_argument("addr")
    ap.add_argument("pid", type=int)
    ap.add_argument("--conns", type=int)
    ap.add_argument("--bytes", type=int, default=1_000_000)
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--rcvbuf", type=int, default=0)
    ap.add_argument("--every", type=int, default=0, help="bystander period, ms")
    ap.add_argument("--sources", type=int, default=1,
                    help="bind attacking sockets to this many addresses from 127.0.0.2")
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    addr = (host, int(port))
    conns = a.conns or (5000 if a.attack == "cmd" else 10000)

    idle = rss_kib(a.pid)
    print(f"idle RSS {idle / 1024:.1f} MiB", flush=True)
    # A chat bystander within the default flood control (10 lines/s).
    every = (a.every or (10 if a.attack == "cmd" else 200)) / 1000
    report = multiprocessing.Queue()
    by = multiprocessing.Process(
        target=lambda: Bystander(addr, a.attack, every).run(a.secs, report), daemon=True)
    by.start()

    line = b"ECHO " + b"x" * 1000 + b"\n"
    payload = b"HELO a\n" + line * (a.bytes // len(line))
    socks, left, closed = [], [], 0
    start = time.monotonic()
    peak, last_sample = idle, 0.0
    opened = 0
    while time.monotonic() - start < a.secs:
        # Open connections as fast as they are accepted (a few hundred per
        # pass, so the bystander and the senders keep their turns).
        for _ in range(200):
            if opened >= conns:
                break
            s = socket.socket()
            if a.rcvbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
            if a.sources > 1:
                k = 2 + opened % a.sources
                s.bind((f"127.0.{k // 256}.{k % 256}", 0))
            s.setblocking(False)
            try:
                s.connect(addr)
            except BlockingIOError:
                pass
            socks.append(s)
            left.append(0 if a.attack == "cmd" else None)
            opened += 1
        if a.attack == "cmd":
            for i, s in enumerate(socks):
                off = left[i]
                if off is None or off >= len(payload):
                    continue
                try:
                    n = s.send(payload[off:off + 262144])
                    left[i] = off + n
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    left[i] = None
                    closed += 1
        if opened >= conns and a.attack == "chat":
            # Nothing left to do but watch: leave the CPU to the server
            # and the bystander (2 cores here).
            time.sleep(0.01)
        now = time.monotonic()
        if now - last_sample >= 0.1:
            last_sample = now
            peak = max(peak, rss_kib(a.pid))
    peak = max(peak, rss_kib(a.pid))
    if a.attack == "cmd":
        done = sum(1 for o in left if o is not None and o >= len(payload))
        print(f"{opened} connections, {done} sent all {len(payload)} bytes, "
              f"{closed} found closed by the server while sending", flush=True)
    print(f"peak RSS during the attack {peak / 1024:.1f} MiB", flush=True)
    print(report.get(timeout=30), flush=True)
    for s in socks:
        s.close()
    t0 = time.monotonic()
    after = []
    for k in range(1, 11):
        time.sleep(max(0.0, t0 + k - time.monotonic()))
        after.append(rss_kib(a.pid) / 1024)
    print("RSS 1..10 s after: " + " ".join(f"{x:.1f}" for x in after) + " MiB", flush=True)
    print(f"10 s after: {after[-1]:.1f} MiB (idle {idle / 1024:.1f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
