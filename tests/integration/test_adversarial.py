"""Adversarial raw-socket dialogues for POP3, SMTP and LMTP: overlong lines,
NUL bytes, bare LF, pipelined bursts, commands out of order, abrupt
disconnects and binary garbage. Whatever happens to the one session, the
server answers a fresh connection afterwards and never stores a partial
message. (The per-test health check fails any test after which the server is
dead or reported a sanitizer error.)"""
import random
import socket
import time

import pytest

from .helpers import TIMEOUT, Closed


def pop3_alive(server):
    with server.pop3() as p:
        assert p.greeting.startswith("+OK")
        assert p.cmd("QUIT").startswith("+OK")


def smtp_alive(server, lmtp=False):
    with (server.lmtp() if lmtp else server.smtp()) as s:
        assert s.greeting.code == 220
        s.ehlo(verb="LHLO" if lmtp else "EHLO")
        assert s.cmd("QUIT").code == 221


def drain(conn, wait=TIMEOUT):
    """Reads until the server closes or goes quiet; returns what came."""
    out = b""
    try:
        while True:
            chunk = conn.read_available(min(wait, 1.0))
            if not chunk:
                return out
            out += chunk
    except (Closed, OSError):
        return out


def replies_are(data, ok_prefixes):
    for ln in data.split(b"\r\n"):
        if ln:
            assert any(ln.startswith(p) for p in ok_prefixes), "unexpected line %r" % ln[:200]


# --------------------------------------------------------------------------
# POP3

@pytest.mark.parametrize("size", [300, 1024, 10 * 1024, 1024 * 1024])
def test_pop3_overlong_line(server, size):
    with server.pop3() as p:
        try:
            p.send(b"USER " + b"a" * size + b"\r\n")
            r = p.line()
            # short of 1 KB a server may still take it as a (wrong) user name
            assert r.startswith("-ERR") or (size <= 1024 and r.startswith("+OK")), r
            r = p.cmd("NOOP")
            assert r.startswith("-ERR"), r   # still not logged in
        except (Closed, ConnectionResetError, BrokenPipeError):
            pass
    pop3_alive(server)


def test_pop3_overlong_line_without_newline_then_close(server):
    p = server.pop3()
    try:
        p.send(b"X" * (256 * 1024))
    except OSError:
        pass
    p.abort()
    pop3_alive(server)


def test_pop3_nul_and_controls(server):
    with server.pop3() as p:
        for junk in (b"\x00\r\n", b"USER \x00\x00\r\n", b"\x00QUIT\r\n", b"CAPA\x00\r\n",
                     b"\x1b[31mUSER x\r\n", b"\x7f\x7f\r\n"):
            try:
                p.send(junk)
                r = p.line()
            except (Closed, OSError):
                break
            assert r.startswith("-ERR") or (junk.startswith(b"USER") and r.startswith("+OK")), (junk, r)
    pop3_alive(server)


def test_pop3_bare_lf_burst(server):
    addr, pw = server.new_user("advlf")
    with server.pop3() as p:
        p.send(b"CAPA\nNOOP\nUSER " + addr.encode() + b"\nPASS " + pw.encode() + b"\nSTAT\n")
        data = drain(p, 2.0)
        assert data == b"" or data.startswith((b"+OK", b"-ERR")), data[:200]
    pop3_alive(server)


def test_pop3_burst_of_200_pipelined_commands(server):
    addr, pw, _ = server.mailbox(2, "advburst")
    with server.pop3() as p:
        p.login(addr, pw)
        cmds = []
        for i in range(200):
            cmds.append(random.Random(i).choice(["NOOP", "STAT", "LIST 1", "UIDL 2", "LIST 9"]))
        p.send("".join(c + "\r\n" for c in cmds))
        for c in cmds:
            r = p.line()
            if c == "LIST 9":
                assert r.startswith("-ERR"), (c, r)
            else:
                assert r.startswith("+OK"), (c, r)
        assert p.quit().startswith("+OK")


def test_pop3_burst_with_multiline_replies(server):
    addr, pw, msgs = server.mailbox(1, "advmulti")
    with server.pop3() as p:
        p.login(addr, pw)
        p.send("RETR 1\r\nLIST\r\n" * 100)
        for _ in range(100):
            assert p.line().startswith("+OK")
            p.read_multi()
            assert p.line().startswith("+OK")
            assert len(p.read_multi()) == 1
        assert p.quit().startswith("+OK")


def test_pop3_out_of_order(server):
    addr, pw, _ = server.mailbox(1, "advorder")
    with server.pop3() as p:
        for c in ("PASS x", "RETR 1", "DELE 1", "RSET", "TOP 1 1", "UIDL", "LIST"):
            assert p.cmd(c).startswith("-ERR"), c
        assert p.cmd("USER " + addr).startswith("+OK")
        assert p.cmd("STAT").startswith("-ERR")
        assert p.cmd("USER " + addr).startswith(("+OK", "-ERR"))
        p.send("QUIT\r\n")
    assert server.count(addr, pw) == 1


def test_pop3_bad_command_budget(server):
    """Many bad commands: every reply is -ERR until the server gives up and
    closes; it never stops answering while the connection is open."""
    with server.pop3() as p:
        for i in range(300):
            try:
                r = p.cmd("BOGUS%d" % i)
            except (Closed, OSError):
                break
            assert r.startswith("-ERR"), r
    pop3_alive(server)


@pytest.mark.parametrize("seed", range(3))
def test_pop3_garbage(server, seed):
    data = random.Random(seed).randbytes(16 * 1024)
    with server.pop3() as p:
        try:
            p.send(data)
        except OSError:
            pass
        replies_are(drain(p, 1.0).rsplit(b"\r\n", 1)[0], [b"+OK", b"-ERR"])
    pop3_alive(server)


def test_pop3_disconnect_mid_command(server):
    addr, pw, _ = server.mailbox(1, "advmid")
    for part in (b"US", b"USER " + addr.encode(), b"PASS " + pw.encode()):
        p = server.pop3()
        if part.startswith(b"PASS"):
            p.cmd("USER " + addr)
        p.send(part)
        p.abort()
    p = server.login(addr, pw)
    p.send(b"DELE 1\r\nRE")
    p.abort()
    assert server.count(addr, pw) == 1


def test_pop3_half_close(server):
    with server.pop3() as p:
        p.send(b"CAPA\r\nQUIT\r\n")
        p.sock.shutdown(socket.SHUT_WR)
        assert p.line().startswith("+OK")
        p.read_multi()
        assert p.line().startswith("+OK")
        assert p.is_closed()


def test_many_concurrent_connections(server):
    conns = []
    try:
        for _ in range(60):
            conns.append(socket.create_connection(("127.0.0.1", server.pop3_port), timeout=TIMEOUT))
            conns.append(socket.create_connection(("127.0.0.1", server.smtp_port), timeout=TIMEOUT))
        for c in conns:
            c.settimeout(TIMEOUT)
            assert c.recv(1)  # each gets its greeting
    finally:
        for c in conns:
            c.close()
    pop3_alive(server)
    smtp_alive(server)


# --------------------------------------------------------------------------
# SMTP / LMTP

@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
@pytest.mark.parametrize("size", [600, 10 * 1024, 1024 * 1024])
def test_smtp_overlong_command(server, lmtp, size):
    with (server.lmtp() if lmtp else server.smtp()) as s:
        try:
            s.send(b"MAIL FROM:<" + b"a" * size + b"@remote.test>\r\n")
            r = s.reply()
            assert 500 <= r.code < 600, r
            r = s.cmd("NOOP")
            assert r.code == 250, r
        except (Closed, ConnectionResetError, BrokenPipeError):
            pass
    smtp_alive(server, lmtp)


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_smtp_nul_bytes(server, lmtp):
    with (server.lmtp() if lmtp else server.smtp()) as s:
        for junk in (b"\x00\r\n", b"NO\x00OP\r\n", b"MAIL FROM:<a\x00b@remote.test>\r\n"):
            try:
                s.send(junk)
                r = s.reply()
            except (Closed, OSError):
                break
            assert 500 <= r.code < 600, (junk, r)
    smtp_alive(server, lmtp)


def test_smtp_nul_in_data(server):
    addr, pw = server.new_user("advnul")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.data(b"Subject: nul\r\n\r\nbefore\x00after\r\n")
        assert r.code in (250, 550, 554), r
        assert s.cmd("NOOP").code == 250
    smtp_alive(server)


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_smtp_bare_lf_commands(server, lmtp):
    verb = b"LHLO" if lmtp else b"EHLO"
    with (server.lmtp() if lmtp else server.smtp()) as s:
        s.send(verb + b" client.test\nNOOP\nRSET\n")
        data = drain(s, 2.0)
        assert data == b"" or data[:1] in (b"2", b"5"), data[:200]
    smtp_alive(server, lmtp)


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_smtp_burst_of_200_pipelined_commands(server, lmtp):
    with (server.lmtp() if lmtp else server.smtp()) as s:
        s.ehlo(verb="LHLO" if lmtp else "EHLO")
        cmds = []
        for i in range(200):
            cmds.append(["NOOP", "RSET", "MAIL FROM:<a@remote.test>", "RSET", "VRFY x"][i % 5])
        s.send("".join(c + "\r\n" for c in cmds))
        for c in cmds:
            r = s.reply()
            assert r.code == (252 if c.startswith("VRFY") else 250), (c, r)
        assert s.cmd("QUIT").code == 221


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_smtp_out_of_order(server, lmtp):
    addr, pw = server.new_user("advseq")
    with (server.lmtp() if lmtp else server.smtp()) as s:
        s.ehlo(verb="LHLO" if lmtp else "EHLO")
        for c in ("RCPT TO:<%s>" % addr, "DATA", "DATA"):
            r = s.cmd(c)
            assert r.code in (503, 554), (c, r)
        # a message body sent without DATA is treated as commands, not stored
        s.send(b"Subject: orphan\r\nno data command\r\n.\r\n")
        for _ in range(3):
            assert 500 <= s.reply().code < 600
        assert s.cmd("NOOP").code == 250
    assert server.count(addr, pw) == 0


def test_smtp_bad_command_budget(server):
    with server.smtp() as s:
        for i in range(300):
            try:
                r = s.cmd("BOGUS%d" % i)
            except (Closed, OSError):
                break
            assert 400 <= r.code < 600, r
    smtp_alive(server)


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
@pytest.mark.parametrize("seed", range(2))
def test_smtp_garbage(server, lmtp, seed):
    data = random.Random(seed + 10).randbytes(16 * 1024)
    with (server.lmtp() if lmtp else server.smtp()) as s:
        try:
            s.send(data)
        except OSError:
            pass
        drain(s, 1.0)
    smtp_alive(server, lmtp)


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
@pytest.mark.parametrize("tail", [b"", b"\r\n", b"\r\n.", b"\r\n.\r", b"\r\n..\r\n"])
def test_disconnect_mid_data_stores_nothing(server, lmtp, tail):
    addr, pw = server.new_user("advdata")
    s = server.lmtp() if lmtp else server.smtp()
    s.ehlo(verb="LHLO" if lmtp else "EHLO")
    assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
    assert s.cmd("RCPT TO:<%s>" % addr).code == 250
    assert s.cmd("DATA").code == 354
    s.send(b"Subject: partial\r\n\r\n" + b"partial body line\r\n" * 500 + b"last" + tail)
    s.abort()
    # a fresh session works and the partial message never shows up
    smtp_alive(server, lmtp)
    time.sleep(0.2)
    assert server.count(addr, pw) == 0


def test_disconnect_mid_data_clean_close(server):
    addr, pw = server.new_user("advclose")
    s = server.smtp()
    s.ehlo()
    s.cmd("MAIL FROM:<a@remote.test>")
    s.cmd("RCPT TO:<%s>" % addr)
    assert s.cmd("DATA").code == 354
    s.send(b"Subject: partial\r\n\r\nno end\r\n")
    s.sock.shutdown(socket.SHUT_WR)
    assert s.is_closed(), "the server must close after EOF inside DATA"
    s.close()
    assert server.count(addr, pw) == 0


def test_huge_data_line(server):
    """A single body line far over 1000 octets: refused or accepted up to the
    documented cap, always with a reply, never a crash."""
    addr, pw = server.new_user("advhuge")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.data(b"Subject: huge\r\n\r\n" + b"q" * 150000 + b"\r\n")
        assert r.code == 250 or 500 <= r.code < 560, r
        assert s.cmd("NOOP").code == 250
    n = server.count(addr, pw)
    assert n == (1 if r.code == 250 else 0)


def test_slow_byte_by_byte_dialogue(server):
    addr, pw = server.new_user("advslow")
    with server.smtp() as s:
        for ch in b"EHLO slow.test\r\n":
            s.send(bytes([ch]))
        assert s.reply().code == 250
        for line in (b"MAIL FROM:<a@remote.test>\r\n", b"RCPT TO:<" + addr.encode() + b">\r\n", b"DATA\r\n"):
            for ch in line:
                s.send(bytes([ch]))
            assert s.reply().code in (250, 354)
        for ch in b"Subject: slow\r\n\r\nbody\r\n.\r\n":
            s.send(bytes([ch]))
        assert s.reply().code == 250
    assert server.count(addr, pw) == 1


def test_server_still_serves_everything(server):
    pop3_alive(server)
    smtp_alive(server)
    smtp_alive(server, lmtp=True)
