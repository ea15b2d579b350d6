#!/usr/bin/env python3
"""What one client that never reads costs the server.

    python3 bench/flood-rss.py BINARY [BINARY ...]

For each tern binary: starts `tern serve` on loopback ports with a fresh
SQLite data_dir, warms it up with one short pipelined burst, then opens one
SMTP connection and pipelines FLOOD_MIB (default 13) MiB of `HELP\\r\\n`
before any login without ever reading a reply. It prints the server's
VmRSS before the flood, its peak while the client keeps pushing (until
everything is sent, or nothing more is accepted for two seconds), the
growth, and how much of the flood the server took in. A measurement, not a
pass/fail test (tests/integration/test_cost.py holds the assertions).

To compare two versions, build the older one apart and pass both:

    git archive OLD_COMMIT | (mkdir -p ../tern-old && tar -x -C ../tern-old)
    cmake -S ../tern-old -B ../tern-old/build && cmake --build ../tern-old/build -j2
    python3 bench/flood-rss.py ../tern-old/build/tern build/tern
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

FLOOD_MIB = float(os.environ.get("FLOOD_MIB", "13"))
STALL_SECS = 2.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def start(binary, workdir):
    smtp, pop3 = free_port(), free_port()
    conf = os.path.join(workdir, "tern.conf")
    with open(conf, "w") as f:
        f.write("[server]\nhostname = flood.test\ndata_dir = %s\n"
                "[smtp]\nlisten = 127.0.0.1:%d\n[pop3]\nlisten = 127.0.0.1:%d\n"
                "[store]\nbackend = sqlite\n" % (os.path.join(workdir, "data"), smtp, pop3))
    os.mkdir(os.path.join(workdir, "data"))
    log = open(os.path.join(workdir, "server.log"), "wb")
    proc = subprocess.Popen([binary, "-c", conf, "serve"], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", smtp), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tern did not start, see %s" % log.name)
            time.sleep(0.05)
    return proc, smtp, log


def flood(port, total, pid=None):
    """Pipelines `total` octets of HELP without reading; returns (octets the
    server took, peak VmRSS in KiB seen meanwhile)."""
    chunk = b"HELP\r\n" * 10923  # 64 KiB
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(False)
    sent, peak, last_progress = 0, 0, time.monotonic()
    try:
        while sent < total and time.monotonic() - last_progress < STALL_SECS:
            try:
                n = s.send(chunk[: min(len(chunk), total - sent)])
                sent += n
                last_progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
            if pid is not None:
                peak = max(peak, vmrss_kib(pid))
        # let the server finish what it has read, sampling as it goes
        end = time.monotonic() + 1.0
        while pid is not None and time.monotonic() < end:
            peak = max(peak, vmrss_kib(pid))
            time.sleep(0.05)
    finally:
        s.close()
    return sent, peak


def measure(binary):
    workdir = tempfile.mkdtemp(prefix="tern-flood-")
    proc, port, log = start(binary, workdir)
    try:
        flood(port, 256 * 1024)  # warm-up: code paged in, allocator primed
        time.sleep(1.0)
        before = vmrss_kib(proc.pid)
        sent, peak = flood(port, int(FLOOD_MIB * 1024 * 1024), proc.pid)
        return before, peak, sent
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("%-40s %12s %12s %12s %14s" % ("binary", "RSS before", "RSS peak", "growth",
                                         "flood taken"))
    for binary in sys.argv[1:]:
        before, peak, sent = measure(binary)
        print("%-40s %9.1f MiB %9.1f MiB %9.1f MiB %7.1f of %.0f MiB"
              % (binary[-40:], before / 1024, peak / 1024, (peak - before) / 1024,
                 sent / 1048576, FLOOD_MIB))


if __name__ == "__main__":
    main()
