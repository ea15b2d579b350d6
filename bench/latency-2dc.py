#!/usr/bin/env python3
"""The latency proof: delivery and POP3 session latency through datacenter 1
as the latency between the two datacenters grows, in messageid mode and in
uid mode.

    python3 bench/latency-2dc.py [--build build] [--delays 0,50,100] [--n 30]

Two Cassandra nodes (dc1 on 127.0.0.1, dc2 on 127.0.0.2, tools/cassandra)
talk to each other only through delay relays (bench/delayproxy.py):
each node's broadcast address is a relay address (127.0.0.3 for node 1,
127.0.0.4 for node 2) that forwards to its real one after the configured
one-way delay. Clients and tern reach the nodes directly. The keyspaces are
replicated dc1:1, dc2:1; tern in dc1 uses LOCAL_QUORUM, and in uid mode
its compare-and-set runs at SERIAL, which must cross to dc2.

For each delay and mode it measures, through dc1's tern:
  - a delivery: end of DATA to the 250 (LMTP), p50 and p99 over --n;
  - a POP3 session: login, UIDL, RETR all, DELE all, QUIT (3 messages),
    p50 and p99 over --n / 3.
Every process it starts is stopped at the end; only 127.0.0.0/8 is used.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tools", "cassandra"))
sys.path.insert(0, HERE)
from benchlib import CassandraTern  # noqa: E402
SCRIPT = os.path.join(REPO, "tools", "cassandra", "cassandra.sh")
RELAY = {1: ("127.0.0.3", "127.0.0.1"), 2: ("127.0.0.4", "127.0.0.2")}


def sh(*args, timeout=600):
    r = subprocess.run(["sh", SCRIPT] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("cassandra.sh %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stderr


def relay_config(cdir):
    """Points each node's broadcast address at its relay, and wipes data
    so the cluster forms again under those addresses."""
    seeds = "%s:7000,%s:7000" % (RELAY[1][0], RELAY[2][0])
    for n, (relay, real) in RELAY.items():
        node = os.path.join(cdir, "node%d" % n)
        path = os.path.join(node, "conf", "cassandra.yaml")
        with open(path) as f:
            y = f.read()
        y = re.sub(r'seeds: "[^"]*"', 'seeds: "%s"' % seeds, y)
        y += "\nbroadcast_address: %s\nbroadcast_rpc_address: %s\n" % (relay, real)
        with open(path, "w") as f:
            f.write(y)
        for d in ("data", "commitlog", "hints", "saved_caches", "cdc_raw"):
            shutil.rmtree(os.path.join(node, d), ignore_errors=True)
            os.makedirs(os.path.join(node, d))


class Tern(CassandraTern):
    def __init__(self, binary, work, keyspace, mode):
        super().__init__(binary, work, keyspace, mode, "lat.test",
                         replication="dc1:1, dc2:1")
        self.add_user("u@lat.test")


class Lines:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 60)
        # As MTAs and mail clients do; without it Nagle and delayed ACKs
        # add 40 ms to every reply that follows a small write.
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def cmd(self, text):
        self.s.sendall(text + b"\r\n")
        return self.line()

    def multi(self, text):
        first = self.cmd(text)
        assert first.startswith(b"+OK"), first
        lines = []
        while True:
            l = self.line()
            if l == b".":
                return lines
            lines.append(l)


def deliver(t, n, subject):
    """n deliveries on one LMTP connection; the latency of each, end of
    DATA to the 250."""
    c = Lines(t.lmtp)
    c.line()
    c.s.sendall(b"LHLO lat\r\n")
    while c.line()[3:4] == b"-":
        pass
    out = []
    for i in range(n):
        assert c.cmd(b"MAIL FROM:<s@lat.test>").startswith(b"250")
        assert c.cmd(b"RCPT TO:<u@lat.test>").startswith(b"250")
        assert c.cmd(b"DATA").startswith(b"354")
        c.s.sendall(b"Subject: %s %d\r\n\r\n" % (subject.encode(), i) + b"x" * 2000 + b"\r\n")
        t0 = time.monotonic()
        r = c.cmd(b".")
        out.append(time.monotonic() - t0)
        assert r.startswith(b"250"), r
    c.cmd(b"QUIT")
    return out


def pop3_session(t):
    t0 = time.monotonic()
    c = Lines(t.pop3)
    c.line()
    assert c.cmd(b"USER u@lat.test").startswith(b"+OK")
    assert c.cmd(b"PASS pw").startswith(b"+OK")
    n = len(c.multi(b"UIDL"))
    for i in range(1, n + 1):
        c.multi(b"RETR %d" % i)
    for i in range(1, n + 1):
        assert c.cmd(b"DELE %d" % i).startswith(b"+OK")
    assert c.cmd(b"QUIT").startswith(b"+OK")
    return time.monotonic() - t0, n


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--delays", default="0,50,100")
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    binary = os.path.join(args.build, "tern")
    delays = [int(d) for d in args.delays.split(",")]
    work = tempfile.mkdtemp(prefix="tern-latency-")
    cdir = os.path.join(args.build, "cassandra", "latency")
    delay_file = os.path.join(work, "delay_ms")
    with open(delay_file, "w") as f:
        f.write("0")
    relays, terns = [], []
    try:
        sh("fetch", timeout=1200)
        sh("start-two-dc", cdir)
        sh("stop", cdir)
        relay_config(cdir)
        for n, (relay, real) in RELAY.items():
            relays.append(subprocess.Popen(
                [sys.executable, os.path.join(HERE, "delayproxy.py"), relay + ":7000",
                 real + ":7000", delay_file]))
        time.sleep(0.5)
        # Each node waits to see the other: start both at once.
        starts = [subprocess.Popen(["sh", SCRIPT, "start-node", cdir, str(n)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for n in (1, 2)]
        for p in starts:
            out = p.communicate(timeout=600)[0]
            if p.returncode != 0:
                raise RuntimeError("start-node: " + out[-3000:])
        rows = []
        for mode in ("messageid", "uid"):
            t = Tern(binary, work, "lat_%s_%s" % (mode, uuid.uuid4().hex[:6]), mode)
            terns.append(t)
            for d in delays:
                with open(delay_file, "w") as f:
                    f.write(str(d))
                time.sleep(1.5)
                deliver(t, 3, "warm")
                pop3_session(t)
                dl = deliver(t, args.n, "m")
                sessions = []
                for _ in range(max(3, args.n // 3)):
                    deliver(t, 3, "p")
                    sessions.append(pop3_session(t)[0])
                pop3_session(t)
                rows.append((mode, d, pct(dl, 0.5), pct(dl, 0.99), pct(sessions, 0.5),
                             pct(sessions, 0.99)))
                print("%-9s %4d ms: delivery p50 %7.1f p99 %7.1f ms; POP3 session p50 %7.1f "
                      "p99 %7.1f ms" % rows[-1], flush=True)
            t.stop()
            terns.remove(t)
        print("\none-way delay between the datacenters; latencies through dc1 (ms)")
        print("| mode | delay | delivery p50 | delivery p99 | POP3 session p50 | POP3 session p99 |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print("| %s | %d ms | %.1f | %.1f | %.1f | %.1f |" % r)
        base = {m: [r for r in rows if r[0] == m] for m in ("messageid", "uid")}
        for m, rs in base.items():
            if len(rs) > 1 and rs[-1][1] > 0:
                extra = rs[-1][2] - rs[0][2]
                rtt = 2 * rs[-1][1]
                print("%s: delivery p50 grows by %.0f ms at %d ms one-way, i.e. %.1f "
                      "inter-datacenter round trips" % (m, extra, rs[-1][1], extra / rtt))
    finally:
        for t in terns:
            try:
                t.stop()
            except Exception:
                pass
        try:
            sh("stop", cdir)
        except Exception as e:
            print("stopping Cassandra:", e, file=sys.stderr)
        for r in relays:
            r.terminate()
            r.wait(10)


if __name__ == "__main__":
    main()
