#!/usr/bin/env python3
"""tern on a single Cassandra node: messageid mode versus uid mode, in one
run, and the download-and-delete test of a large mailbox.

    python3 bench/cassandra-modes.py [--build build] [--seconds 15]
                                     [--sessions 8] [--big 100000] [--warmup 0]

Starts a Cassandra node with tools/cassandra (or uses one already running
with TERN_CASSANDRA_RUNNING=1 and TERN_CASSANDRA_CONTACT), then for each
mode a tern server on a fresh keyspace, and measures:
  - LMTP deliveries/s of 10 KiB messages from --sessions connections
    (after --warmup seconds of the same deliveries, not counted: a node
    the script has just started spends its first half-minute compiling
    its hot paths);
  - POP3 messages/s: sessions that log in, UIDL, RETR every message, QUIT;
and, in messageid mode, a mailbox that receives --big messages, has them
all downloaded and deleted by POP3 sessions of 500 messages each (as a
client that polls), and then answers login + STAT + UIDL: the time of
that, and of the same on a fresh mailbox, show whether the deletions left
the listing slower.
Only 127.0.0.0/8 is used; every process started is stopped at the end.
"""
import argparse
import os
import poplib
import socket
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tools", "cassandra"))
sys.path.insert(0, HERE)
from benchlib import CassandraTern  # noqa: E402

BODY = ("X" * 78 + "\r\n") * 128          # 10 KiB


class Tern(CassandraTern):
    def __init__(self, binary, contact, keyspace, pop3_ids, workdir):
        super().__init__(binary, workdir, keyspace, pop3_ids, "bench.test", contact=contact)


def lmtp_session(port, rcpts, count, latencies):
    s = socket.create_connection(("127.0.0.1", port), 30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as MTAs do
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise EOFError
            if line[3:4] != b"-":
                return line

    reply()
    s.sendall(b"LHLO bench\r\n")
    reply()
    for i in range(count):
        rcpt = rcpts[i % len(rcpts)]
        t0 = time.monotonic()
        s.sendall(b"MAIL FROM:<b@bench.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt.encode())
        for _ in range(3):
            reply()
        s.sendall(("Subject: m%d\r\n\r\n" % i).encode() + BODY.encode() + b".\r\n")
        r = reply()
        if not r.startswith(b"250"):
            raise RuntimeError("delivery failed: %r" % r)
        if latencies is not None:
            latencies.append(time.monotonic() - t0)
    s.sendall(b"QUIT\r\n")
    s.close()


def deliveries_per_second(tern, users, sessions, seconds):
    lat, stop = [], time.monotonic() + seconds
    done = [0]

    def worker(k):
        while time.monotonic() < stop:
            lmtp_session(tern.lmtp, [users[(k + j) % len(users)] for j in range(4)], 20, lat)
            done[0] += 20

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(sessions)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat.sort()
    return len(lat) / elapsed, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000


def pop3_per_second(tern, users, sessions, seconds):
    stop = time.monotonic() + seconds
    count = [0]
    lock = threading.Lock()

    def worker(k):
        n = 0
        while time.monotonic() < stop:
            p = poplib.POP3("127.0.0.1", tern.pop3, timeout=30)
            p.user(users[(k + n) % len(users)])
            p.pass_("pw")
            p.uidl()
            msgs = len(p.list()[1])
            for i in range(1, msgs + 1):
                p.retr(i)
            p.quit()
            n += 1
            with lock:
                count[0] += msgs

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(sessions)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0] / (time.monotonic() - t0)


def stat_time(port, user):
    t0 = time.monotonic()
    p = poplib.POP3("127.0.0.1", port, timeout=120)
    p.user(user)
    p.pass_("pw")
    n = p.stat()[0]
    p.uidl()
    p.quit()
    return (time.monotonic() - t0) * 1000, n


def big_mailbox(tern, n, sessions):
    user = "big@bench.test"
    tern.add_user(user)
    per = n // sessions
    t0 = time.monotonic()
    threads = [threading.Thread(target=lmtp_session, args=(tern.lmtp, [user], per, None))
               for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fill = time.monotonic() - t0
    full_ms, total = stat_time(tern.pop3, user)
    # Wait past the range-deletion margin, then download and delete in
    # sessions of 500 messages, as a client that polls would.
    time.sleep(max(0, 61 - (time.monotonic() - t0)))
    t0 = time.monotonic()
    left = total
    while left > 0:
        p = poplib.POP3("127.0.0.1", tern.pop3, timeout=300)
        p.user(user)
        p.pass_("pw")
        k = min(500, p.stat()[0])
        for i in range(1, k + 1):
            p.dele(i)
        p.quit()
        left -= k
    drain = time.monotonic() - t0
    after_ms, rest = stat_time(tern.pop3, user)
    return total, fill, full_ms, drain, after_ms, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--big", type=int, default=100000)
    ap.add_argument("--warmup", type=float, default=0)
    args = ap.parse_args()
    binary = os.path.join(args.build, "tern")
    contact = os.environ.get("TERN_CASSANDRA_CONTACT", "127.0.0.1")
    cluster = None
    if os.environ.get("TERN_CASSANDRA_RUNNING") != "1":
        import tern_cassandra
        cluster = tern_cassandra.CassandraCluster(os.path.join(args.build, "cassandra", "bench"))
        cluster.fetch()
        cluster.ensure("single")
    work = tempfile.mkdtemp(prefix="tern-cass-bench-")
    try:
        results = {}
        for mode in ("messageid", "uid"):
            ks = "bench_%s_%s" % (mode, uuid.uuid4().hex[:8])
            tern = Tern(binary, contact, ks, mode, work)
            users = ["u%d@bench.test" % i for i in range(20)]
            for u in users:
                tern.add_user(u)
            if args.warmup > 0:
                deliveries_per_second(tern, users, args.sessions, args.warmup)
            dps, p50, p99 = deliveries_per_second(tern, users, args.sessions, args.seconds)
            mps = pop3_per_second(tern, users, args.sessions, args.seconds)
            lwt = tern.stop()
            results[mode] = (dps, p50, p99, mps, lwt)
        m, u = results["messageid"], results["uid"]
        print("\nsingle-node Cassandra, %d sessions, %.0f s per workload, 10 KiB messages"
              % (args.sessions, args.seconds))
        print("%-32s %12s %12s %8s" % ("", "messageid", "uid", "ratio"))
        for name, a, b in (("LMTP deliveries/s", m[0], u[0]),
                           ("delivery latency p50 (ms)", m[1], u[1]),
                           ("delivery latency p99 (ms)", m[2], u[2]),
                           ("POP3 messages/s (RETR)", m[3], u[3])):
            print("%-32s %12.1f %12.1f %8.2f" % (name, a, b, a / b if b else 0))
        print("messageid:", m[4][-1].strip() if m[4] else "?")
        print("uid:      ", u[4][-1].strip() if u[4] else "?")
        if args.big > 0:
            ks = "bench_big_%s" % uuid.uuid4().hex[:8]
            tern = Tern(binary, contact, ks, "messageid", work)
            total, fill, full_ms, drain, after_ms, rest = big_mailbox(tern, args.big,
                                                                      args.sessions)
            tern.stop()
            print("\nlarge mailbox: %d messages delivered in %.0f s (%.0f/s)"
                  % (total, fill, total / fill))
            print("login + STAT + UIDL with %d messages: %.0f ms" % (total, full_ms))
            print("downloaded-and-deleted in sessions of 500: %.0f s" % drain)
            print("login + STAT + UIDL after deleting all (%d left): %.0f ms"
                  % (rest, after_ms))
    finally:
        if cluster is not None:
            cluster.stop_all()


if __name__ == "__main__":
    main()
