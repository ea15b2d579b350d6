"""250 means durable: kill -9 right after the reply loses nothing; storage
trouble answers 451 4.3.0 / -ERR [SYS/TEMP], never a success or a 5xx;
SIGTERM stops cleanly even with clients connected."""
import sqlite3
import subprocess
import threading
import time

from .ternserver import EX_OK, EX_TEMPFAIL, STOP_TIMEOUT, sqlite_only
from .helpers import SANITIZED, Closed, Pop3, Smtp, headers, make_message, stuff, wait_until

MARK = b"END-OF-MESSAGE-MARK\r\n"
LOCK_WAIT = 150.0 if SANITIZED else 90.0


def all_subjects(server, addr, pw):
    out = []
    for _, size, m in server.fetch_all(addr, pw):
        assert m.endswith(MARK), "a stored message is truncated: %r" % m[-200:]
        assert size == len(m)
        out.append(dict(headers(m))["subject"])
    return out


def sender_thread(server, rcpts, prefix, acked, stop):
    """Sends messages in a loop; records a subject only after its 250."""
    i = 0
    try:
        s = Smtp(server.smtp_port)
        s.ehlo()
        while not stop.is_set():
            i += 1
            subj = "%s-%d" % (prefix, i)
            body = (b"x" * 60 + b"\r\n") * (i % 7 * 50 + 1) + MARK
            s.send("MAIL FROM:<d@remote.test>\r\n" + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n")
            codes = [s.reply().code for _ in range(len(rcpts) + 2)]
            if codes != [250] * (len(rcpts) + 1) + [354]:
                return
            s.send(stuff(make_message(subj, body)) + b".\r\n")
            if s.reply().code == 250:
                acked.append(subj)
    except (Closed, OSError, AssertionError):
        return


def test_kill9_right_after_250_loses_nothing(servers):
    s = servers.create(name="kill9")
    a, apw = s.new_user("dura")
    b, bpw = s.new_user("durb")
    acked = []
    for rnd in range(3):
        stop = threading.Event()
        before = len(acked)
        threads = [threading.Thread(target=sender_thread, args=(s, [a, b] if t % 2 else [a],
                                                                 "r%d-t%d" % (rnd, t), acked, stop))
                   for t in range(4)]
        for t in threads:
            t.start()
        got = wait_until(lambda: len(acked) >= before + 3 + rnd * 2, timeout=60, interval=0.001)
        s.kill9()
        stop.set()
        for t in threads:
            t.join(30)
        assert got, "no deliveries were acknowledged"
        s.start()
    subj_a = all_subjects(s, a, apw)
    subj_b = all_subjects(s, b, bpw)
    assert len(set(subj_a)) == len(subj_a), "duplicate copies after restart"
    assert len(set(subj_b)) == len(subj_b), "duplicate copies after restart"
    lost_a = [x for x in acked if x not in subj_a]
    assert not lost_a, "250'd messages lost after kill -9: %s" % lost_a
    lost_b = [x for x in acked if int(x.split("-t")[1].split("-")[0]) % 2 and x not in subj_b]
    assert not lost_b, "250'd messages lost for the second recipient: %s" % lost_b


def test_kill9_after_lmtp_replies(servers):
    s = servers.create(name="kill9lmtp")
    a, apw = s.new_user("lma")
    b, bpw = s.new_user("lmb")
    for i in range(3):
        with s.lmtp() as c:
            c.ehlo(verb="LHLO")
            assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
            assert c.cmd("RCPT TO:<%s>" % a).code == 250
            assert c.cmd("RCPT TO:<%s>" % b).code == 250
            assert c.cmd("DATA").code == 354
            c.send(stuff(make_message("lmtp-k%d" % i, MARK)) + b".\r\n")
            assert c.reply().code == 250 and c.reply().code == 250
            s.kill9()
        s.start()
    assert all_subjects(s, a, apw) == ["lmtp-k0", "lmtp-k1", "lmtp-k2"]
    assert all_subjects(s, b, bpw) == ["lmtp-k0", "lmtp-k1", "lmtp-k2"]


def test_deliver_cli_then_kill9(servers):
    s = servers.create(name="kill9cli")
    a, apw = s.new_user("clik")
    r = s.deliver_cli(a, b"Subject: cli-k\n\nbody\n" + MARK.replace(b"\r\n", b"\n"))
    assert r.returncode == EX_OK, r.stderr
    s.kill9()
    s.start()
    assert all_subjects(s, a, apw) == ["cli-k"]


def test_quit_then_kill9_keeps_deletes(servers):
    s = servers.create(name="kill9dele")
    a, apw = s.new_user("kdel")
    s.deliver_smtp_many(a, [make_message("kd-%d" % i, MARK) for i in range(3)])
    with s.login(a, apw) as p:
        assert p.cmd("DELE 2").startswith("+OK")
        assert p.cmd("QUIT").startswith("+OK")
    s.kill9()
    s.start()
    assert all_subjects(s, a, apw) == ["kd-0", "kd-2"]


def test_sigterm_with_clients_connected(servers):
    s = servers.create(name="sigterm")
    a, apw = s.new_user("term")
    s.deliver_smtp(a, make_message("term-1", MARK))
    smtp = Smtp(s.smtp_port)
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<x@remote.test>").code == 250
    assert smtp.cmd("RCPT TO:<%s>" % a).code == 250
    assert smtp.cmd("DATA").code == 354
    smtp.send(b"Subject: half\r\n\r\nhalf a message")
    pop = s.login(a, apw)
    assert pop.cmd("DELE 1").startswith("+OK")
    idle = Pop3(s.pop3_port)
    t0 = time.monotonic()
    s.stop()   # must exit 0 within STOP_TIMEOUT despite the clients
    assert time.monotonic() - t0 < STOP_TIMEOUT
    for c in (smtp, pop, idle):
        c.close()
    s.start()
    assert all_subjects(s, a, apw) == ["term-1"], "no half message, no DELE without QUIT"


# --------------------------------------------------------------------------
# storage trouble

def sqlite_files(server):
    out = []
    for f in server.data_dir.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                if fh.read(16) == b"SQLite format 3\x00":
                    out.append(f)
    return out


class WriteLock:
    """Holds the write lock of every SQLite database under data_dir."""

    def __init__(self, server):
        self.conns = []
        files = sqlite_files(server)
        assert files, "no SQLite database under %s" % server.data_dir
        for f in files:
            c = sqlite3.connect(str(f), timeout=30, isolation_level=None)
            c.execute("BEGIN IMMEDIATE")
            self.conns.append(c)

    def release(self):
        for c in self.conns:
            try:
                c.execute("ROLLBACK")
            finally:
                c.close()
        self.conns = []


@sqlite_only
def test_storage_busy_gives_451_not_success(servers):
    s = servers.create(name="busy")
    a, apw = s.new_user("busy")
    s.deliver_smtp(a, make_message("busy-before", MARK))
    c = Smtp(s.smtp_port, timeout=LOCK_WAIT)
    c.ehlo()
    assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
    rc = c.cmd("RCPT TO:<%s>" % a)
    assert rc.code == 250, rc
    assert c.cmd("DATA").code == 354
    lock = WriteLock(s)
    try:
        c.send(stuff(make_message("busy-during", MARK)) + b".\r\n")
        r = c.reply()
    finally:
        lock.release()
    assert r.code == 451 and r.enhanced == "4.3.0", "storage busy must answer 451 4.3.0: %r" % r
    # the session and the server recover
    assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
    assert c.cmd("RCPT TO:<%s>" % a).code == 250
    assert c.data(make_message("busy-after", MARK)).code == 250
    c.quit()
    assert all_subjects(s, a, apw) == ["busy-before", "busy-after"]


@sqlite_only
def test_storage_busy_at_quit_gives_sys_temp(servers):
    s = servers.create(name="busyquit")
    a, apw = s.new_user("bq")
    s.deliver_smtp_many(a, [make_message("bq-%d" % i, MARK) for i in range(2)])
    p = Pop3(s.pop3_port, timeout=LOCK_WAIT)
    p.login(a, apw)
    assert p.cmd("DELE 1").startswith("+OK")
    lock = WriteLock(s)
    try:
        r = p.cmd("QUIT")
    finally:
        lock.release()
    p.close()
    # the delete cannot be committed while the lock is held: +OK would be a lie
    assert r.startswith("-ERR [SYS/TEMP]"), "storage trouble at QUIT (RFC 3206): %r" % r
    assert all_subjects(s, a, apw) == ["bq-0", "bq-1"]


@sqlite_only
def test_deliver_cli_when_storage_busy_is_tempfail(servers):
    s = servers.create(name="busycli")
    a, apw = s.new_user("bcli")
    lock = WriteLock(s)
    try:
        r = subprocess.run([s.binary, "-c", str(s.config_path), "deliver", a],
                           input=b"Subject: busy-cli\n\nbody\n", capture_output=True,
                           timeout=LOCK_WAIT, env=s.env())
    finally:
        lock.release()
    assert r.returncode == EX_TEMPFAIL, "EX_TEMPFAIL expected, got %s: %s" % (r.returncode, r.stderr)
    assert s.count(a, apw) == 0
