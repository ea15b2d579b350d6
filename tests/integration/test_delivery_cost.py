"""What a delivery costs the server, and what it leaves behind.

A 25 MiB message through SMTP grows the server's resident memory by a
bounded amount: the body goes to a spool file under data_dir/spool, not the
heap, and the store reads it back in pieces. The spool directory holds no
file, and the server keeps no spool file open, after a delivery, a too-big
refusal, a client that goes away in the middle of DATA, or a kill -9 in the
middle of DATA followed by a restart (which sweeps what a crash can leave).
"""
import os
import poplib
import time

import pytest

from .helpers import SANITIZED, TIMEOUT, stuff, make_message, wait_until

MIB = 1024 * 1024
BIG = 25 * MIB
# The body itself must not be in memory: what may grow is the 1 MiB in-memory
# part of a body, the spool's write buffer, the decoder's staging, the store's
# write pieces and allocator slack.
RSS_GROWTH_MAX = 8 * MIB
STORE_TIMEOUT = 120.0  # storing 25 MiB with fsync on a busy machine


def proc_status(pid, key):
    """A /proc/PID/status value in octets (the file gives kB)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("%s not in /proc/%d/status" % (key, pid))


def reset_peak(pid):
    """Resets VmHWM (Linux >= 4.0); False when not allowed."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def spool_dir(server):
    return server.data_dir / "spool"


def spool_names(server):
    """Names in data_dir/spool ([] when the directory does not exist)."""
    try:
        return sorted(os.listdir(spool_dir(server)))
    except FileNotFoundError:
        return []


def spool_fds(server):
    """What the server holds open under data_dir/spool."""
    prefix = str(spool_dir(server)) + "/"
    fd_dir = "/proc/%d/fd" % server.proc.pid
    out = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith(prefix):
            out.append(target)
    return out


def body_of(size):
    """A CRLF body of exactly `size` octets, with numbered lines (some
    starting with a dot, to be stuffed and unstuffed on the way)."""
    lines = []
    n = 0
    total = 0
    while total < size:
        line = b"%s%08d %s\r\n" % (b"." if n % 13 == 0 else b"", n, b"y" * 60)
        lines.append(line)
        total += len(line)
        n += 1
    body = b"".join(lines)[:size - 2]
    return body + b"\r\n"


def open_data(server, rcpt):
    """An SMTP session inside DATA, after the 354."""
    c = server.smtp()
    c.ehlo()
    assert c.cmd("MAIL FROM:<big@remote.test>").code == 250
    assert c.cmd("RCPT TO:<%s>" % rcpt).code == 250
    assert c.cmd("DATA").code == 354
    return c


def send_in_pieces(c, wire, step=MIB, each=None):
    for off in range(0, len(wire), step):
        c.send(wire[off:off + step])
        if each is not None:
            each()


def retr_poplib(server, user, password, n):
    """(size from LIST, the message as RETR sends it unstuffed with CRLF
    lines) of message n; poplib reads large messages efficiently."""
    p = poplib.POP3("127.0.0.1", server.pop3_port, timeout=STORE_TIMEOUT)
    try:
        p.user(user)
        p.pass_(password)
        size = int(p.list(n).split()[2])
        resp, lines, _ = p.retr(n)
        return size, b"".join(ln + b"\r\n" for ln in lines)
    finally:
        p.quit()


@pytest.fixture(scope="module")
def big_server(module_servers):
    return module_servers.create(name="cost", max_message_size=30 * MIB)


# --------------------------------------------------------------------------
# memory

@pytest.mark.skipif(SANITIZED, reason="sanitizer builds keep freed memory in quarantine")
def test_25mib_message_memory_bounded(servers):
    s = servers.create(name="rss", max_message_size=30 * MIB)
    addr, pw = s.new_user("rss")
    pid = s.proc.pid
    # Warm up what any delivery sets up once: worker threads and their
    # allocator arenas, SQLite connections and caches, a spooled message.
    for i, size in enumerate((10000, 2 * MIB, 3 * MIB)):
        s.deliver_smtp(addr, make_message("warm-%d" % i, body_of(size), to=addr))
    time.sleep(0.3)
    baseline = proc_status(pid, "VmRSS")
    peak_known = reset_peak(pid)

    msg = make_message("big", body_of(BIG), to=addr)
    samples = []
    c = open_data(s, addr)
    c.sock.settimeout(STORE_TIMEOUT)
    send_in_pieces(c, stuff(msg), each=lambda: samples.append(proc_status(pid, "VmRSS")))
    c.send(b".\r\n")
    r = c.reply()
    samples.append(proc_status(pid, "VmRSS"))
    if peak_known:
        samples.append(proc_status(pid, "VmHWM"))
    c.quit()
    assert r.code == 250, r
    growth = max(samples) - baseline
    print("25 MiB SMTP delivery: VmRSS baseline %.1f MiB, peak growth %.1f MiB (%s)"
          % (baseline / MIB, growth / MIB, "VmHWM" if peak_known else "sampled"))
    assert growth < RSS_GROWTH_MAX, (
        "the server grew by %.1f MiB for a 25 MiB message (limit %.0f MiB): the body "
        "is being held in memory" % (growth / MIB, RSS_GROWTH_MAX / MIB))
    assert spool_fds(s) == [] and spool_names(s) == []

    size, got = retr_poplib(s, addr, pw, 4)
    assert got.endswith(msg), "the 25 MiB message did not come back as sent"
    assert size == len(got)


# --------------------------------------------------------------------------
# the spool: nothing left behind, on every path

def test_spool_empty_after_success(big_server):
    s = big_server
    addr, pw = s.new_user("spoolok")
    msg = make_message("spooled", body_of(3 * MIB), to=addr)
    wire = stuff(msg)
    c = open_data(s, addr)
    c.send(wire[:2 * MIB])
    # past the 1 MiB threshold the body is in a file with no name
    assert wait_until(lambda: len(spool_fds(s)) == 1), spool_fds(s)
    assert spool_names(s) == []
    assert all(t.endswith("(deleted)") for t in spool_fds(s)), spool_fds(s)
    c.sock.settimeout(STORE_TIMEOUT)
    c.send(wire[2 * MIB:] + b".\r\n")
    r = c.reply()
    assert r.code == 250, r
    assert wait_until(lambda: spool_fds(s) == []), spool_fds(s)
    assert spool_names(s) == []
    # the same connection goes on, and small messages never touch the spool
    assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
    assert c.cmd("RCPT TO:<%s>" % addr).code == 250
    assert c.cmd("DATA").code == 354
    c.send(stuff(make_message("small", to=addr)))
    assert spool_fds(s) == []
    c.send(b".\r\n")
    assert c.reply().code == 250
    c.quit()
    size, got = retr_poplib(s, addr, pw, 1)
    assert got.endswith(msg)
    assert size == len(got)
    assert spool_names(s) == [] and spool_fds(s) == []


def test_spool_released_on_disconnect(big_server):
    s = big_server
    addr, pw = s.new_user("spoolgone")
    c = open_data(s, addr)
    c.send(stuff(make_message("partial", body_of(3 * MIB), to=addr)))
    assert wait_until(lambda: len(spool_fds(s)) == 1), spool_fds(s)
    c.abort()
    assert wait_until(lambda: spool_fds(s) == []), spool_fds(s)
    assert spool_names(s) == []
    assert s.count(addr, pw) == 0


def test_spool_released_when_too_big(servers):
    s = servers.create(name="spoolbig", max_message_size=2 * MIB)
    addr, pw = s.new_user("spooltoobig")
    wire = stuff(make_message("toobig", body_of(4 * MIB), to=addr))
    c = open_data(s, addr)
    c.send(wire[:3 * MIB // 2])
    assert wait_until(lambda: len(spool_fds(s)) == 1), spool_fds(s)
    # past the cap the file goes at once, while the data still comes
    c.send(wire[3 * MIB // 2:3 * MIB])
    assert wait_until(lambda: spool_fds(s) == []), spool_fds(s)
    c.send(wire[3 * MIB:] + b".\r\n")
    r = c.reply()
    assert r.code == 552 and r.enhanced == "5.3.4", r
    assert c.cmd("NOOP").code == 250
    c.quit()
    assert spool_fds(s) == [] and spool_names(s) == []
    assert s.count(addr, pw) == 0


def test_spool_clean_after_kill9_mid_data(servers):
    s = servers.create(name="spoolkill", max_message_size=30 * MIB)
    addr, pw = s.new_user("spoolkill")
    c = open_data(s, addr)
    c.send(stuff(make_message("killed", body_of(3 * MIB), to=addr)))
    assert wait_until(lambda: len(spool_fds(s)) == 1), spool_fds(s)
    s.kill9()
    c.close()
    # the file had no name: the crash left nothing
    assert spool_names(s) == []
    # what a crash between creating a named spool file and unlinking it
    # could leave (where O_TMPFILE is not available): swept at start
    (spool_dir(s) / "tern-spool-Ab12Cd").write_bytes(b"Subject: half a message\r\n")
    s.start()
    assert spool_names(s) == []
    assert "removed 1 leftover file" in s.log_text(), s.log_tail()
    assert s.count(addr, pw) == 0
    # and the restarted server spools again
    size_msg = make_message("after", body_of(2 * MIB), to=addr)
    s.deliver_smtp(addr, size_msg)
    assert spool_names(s) == [] and spool_fds(s) == []
    assert s.count(addr, pw) == 1
