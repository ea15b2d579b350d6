#!/usr/bin/env python3
"""The wall time of a POP3 RETR of one large message through the real server
on SQLite, and what that is per 128 KiB piece (the POP3 session's read
size). Not a pass/fail test: it prints numbers.

    python3 bench/retr-sqlite.py [--bin build/tern] [--mib 25] [--rounds 10]

It makes a temporary data_dir and config (POP3 on a free loopback port),
adds a user, delivers one message of --mib MiB with `tern deliver`, starts
`tern serve`, then logs in and RETRs the message --rounds times (after one
warm-up RETR), each time from the command to the final ".\\r\\n", reading
as fast as loopback allows. It prints the median and the best round, and
the server's resident memory before and after."""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port  # noqa: E402

PIECE = 128 * 1024
DOMAIN = "retr.test"
USER = "big@" + DOMAIN
PASSWORD = "retr-bench-pw"


def message(mib):
    lines = [b"Subject: retr bench", b"From: bench@" + DOMAIN.encode(), b""]
    size, n = 0, 0
    target = mib * 1024 * 1024
    while size < target:
        body = bytes((97 + (n + k) % 26) for k in range(20 + n % 60))
        if n % 13 == 0:
            body = b"." + body
        lines.append(body)
        size += len(body) + 2
        n += 1
    return b"\r\n".join(lines) + b"\r\n"


def expect(sock, buf, end):
    while not buf.endswith(end):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed; got %r" % buf[-200:])
        buf += chunk
    return buf


def line(sock):
    return expect(sock, b"", b"\r\n")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def retr(port, count):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    line(s)
    s.sendall(b"USER %s\r\n" % USER.encode())
    line(s)
    s.sendall(b"PASS %s\r\n" % PASSWORD.encode())
    if not line(s).startswith(b"+OK"):
        raise RuntimeError("login failed")
    times = []
    for _ in range(count):
        t = time.perf_counter()
        s.sendall(b"RETR 1\r\n")
        got = 0
        tail = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed during RETR")
            got += len(chunk)
            tail = (tail + chunk)[-5:]
            if tail == b"\r\n.\r\n":
                break
        times.append(time.perf_counter() - t)
    s.sendall(b"QUIT\r\n")
    line(s)
    s.close()
    return times, got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("TERN_BIN", "build/tern"))
    ap.add_argument("--mib", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    with tempfile.TemporaryDirectory(prefix="tern-retr-") as work:
        port = free_port()
        conf = os.path.join(work, "tern.conf")
        with open(conf, "w") as f:
            f.write("[server]\nhostname = %s\ndata_dir = %s\n"
                    "[smtp]\nmax_message_size = %dM\n"
                    "[pop3]\nlisten = 127.0.0.1:%d\n" % (DOMAIN, work, args.mib + 8, port))

        def cli(*a, data=None):
            subprocess.run([binary, "-c", conf] + list(a), input=data, check=True,
                           capture_output=True, timeout=300)

        cli("domain", "add", DOMAIN)
        cli("user", "add", USER, data=(PASSWORD + "\n").encode())
        msg = message(args.mib)
        cli("deliver", USER, data=msg)
        log = open(os.path.join(work, "serve.log"), "w")
        proc = subprocess.Popen([binary, "-c", conf, "serve"], stderr=log)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError("tern did not start")
                    time.sleep(0.05)
            rss0 = rss_kib(proc.pid)
            retr(port, 1)  # warm-up: page cache, auth cache
            rss1 = rss_kib(proc.pid)
            times, octets = retr(port, args.rounds)
            rss2 = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            log.close()
    pieces = -(-len(msg) // PIECE)
    med, best = statistics.median(times), min(times)
    print("%s: RETR of %d octets (%d on the wire), %d rounds, %d pieces of 128 KiB"
          % (binary, len(msg), octets, args.rounds, pieces))
    print("  median %.1f ms (%.0f MB/s), %.0f us per piece" % (med * 1e3, octets / med / 1e6,
                                                             med * 1e6 / pieces))
    print("  best   %.1f ms (%.0f MB/s), %.0f us per piece" % (best * 1e3, octets / best / 1e6,
                                                             best * 1e6 / pieces))
    print("  server RSS %.1f MiB at start, +%.1f MiB after the first RETR (login included),"
          " +%.1f MiB after the rest" % (rss0 / 1024, (rss1 - rss0) / 1024, (rss2 - rss1) / 1024))


if __name__ == "__main__":
    main()
