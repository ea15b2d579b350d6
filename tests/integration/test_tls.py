"""TLS: POP3 STLS (RFC 2595), implicit TLS (RFC 8314), SMTP STARTTLS
(RFC 3207), protocol versions, and no execution of plaintext pipelined
before the handshake (CVE-2011-0411 class)."""
import smtplib
import ssl
import subprocess
import warnings

import pytest

from .ternserver import require_tool
from .helpers import (TIMEOUT, Closed, Smtp, client_tls_context, ehlo_keywords,
                     headers, make_message)


def capa_names(p):
    status, lines = p.multi("CAPA")
    assert status.startswith("+OK"), status
    return {ln.decode().split()[0].upper() for ln in lines if ln.strip()}


def handshake_fails(conn, ctx):
    """True if the TLS handshake fails or the server drops the connection."""
    try:
        conn.starttls(ctx)
    except (ssl.SSLError, OSError):
        return True
    return False


# --------------------------------------------------------------------------
# POP3

def test_pop3_stls_then_login(server):
    addr, pw = server.new_user("stls")
    server.deliver_smtp(addr, make_message("over-tls", to=addr))
    with server.pop3() as p:
        assert "STLS" in capa_names(p)
        assert p.cmd("STLS").startswith("+OK")
        p.starttls()
        assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
        caps = capa_names(p)
        assert "STLS" not in caps, "STLS must not be offered once TLS is active: %s" % caps
        assert {"TOP", "UIDL", "USER"} <= caps
        r = p.cmd("STLS")
        assert r.startswith("-ERR"), "a second STLS must fail: %r" % r
        p.login(addr, pw)
        assert b"Subject: over-tls" in p.retr(1)
        assert p.quit().startswith("+OK")


def test_pop3_stls_not_in_transaction_state(server):
    addr, pw = server.new_user("stlstx")
    with server.login(addr, pw) as p:
        r = p.cmd("STLS")
        assert r.startswith("-ERR"), "RFC 2595 4: STLS only in the AUTHORIZATION state: %r" % r
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()


def test_pop3_implicit_tls(server):
    addr, pw = server.new_user("pop3s")
    server.deliver_smtp(addr, make_message("implicit", to=addr))
    with server.pop3s() as p:
        assert p.greeting.startswith("+OK")
        caps = capa_names(p)
        assert "STLS" not in caps, caps
        assert p.cmd("STLS").startswith("-ERR")
        p.login(addr, pw)
        assert p.stat()[0] == 1
        assert b"Subject: implicit" in p.retr(1)
        assert p.quit().startswith("+OK")


def test_pop3_pipelined_plaintext_after_stls_not_executed(server):
    addr, pw = server.new_user("inject")
    with server.pop3() as p:
        p.send("STLS\r\nCAPA\r\nUSER %s\r\n" % addr)
        r = p.line()
        assert r.startswith("+OK"), r
        if p.buf:
            # an answer to the injected commands in plaintext: they were run
            pytest.fail("server answered pipelined plaintext after STLS: %r" % p.buf)
        if handshake_fails(p, client_tls_context()):
            return   # closing the connection is an acceptable defence
        try:
            r = p.cmd("XYZZY")
        except (Closed, OSError):
            return
        assert r.startswith("-ERR"), "stale plaintext command answered over TLS: %r" % r
        # and no USER from before the handshake is remembered
        r = p.cmd("PASS " + pw)
        assert r.startswith("-ERR"), "a USER sent before the handshake was kept: %r" % r


def test_smtp_pipelined_plaintext_after_starttls_not_executed(server):
    addr, _ = server.new_user("sinject")
    with server.smtp() as s:
        s.ehlo()
        s.send("STARTTLS\r\nRSET\r\nMAIL FROM:<evil@remote.test>\r\n")
        r = s.reply()
        assert r.code == 220, r
        if s.buf:
            pytest.fail("server answered pipelined plaintext after STARTTLS: %r" % s.buf)
        if handshake_fails(s, client_tls_context()):
            return
        try:
            r = s.cmd("EHLO client.test")
        except (Closed, OSError):
            return
        assert r.code == 250 and "PIPELINING" in ehlo_keywords(r), \
            "the first reply over TLS must be the EHLO reply, not a stale RSET/MAIL: %r" % r
        # no MAIL transaction survived from before the handshake
        r = s.cmd("RCPT TO:<%s>" % addr)
        assert r.code == 503, "a MAIL sent before the handshake was kept: %r" % r


def test_pop3_stls_with_poplib(server):
    import poplib
    addr, pw = server.new_user("poplibtls")
    c = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT)
    assert "STLS" in c.capa()
    c.stls(context=client_tls_context())
    assert "STLS" not in c.capa()
    c.user(addr)
    c.pass_(pw)
    assert c.stat() == (0, 0)
    c.quit()


def test_pop3_ssl_with_poplib(server):
    import poplib
    addr, pw = server.new_user("poplibssl")
    c = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, timeout=TIMEOUT, context=client_tls_context())
    c.user(addr)
    c.pass_(pw)
    assert c.stat() == (0, 0)
    c.quit()


# --------------------------------------------------------------------------
# SMTP

def test_smtp_starttls_with_smtplib(server):
    addr, pw = server.new_user("starttls")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=TIMEOUT) as c:
        c.ehlo("client.test")
        assert c.has_extn("starttls")
        code, _ = c.starttls(context=client_tls_context())
        assert code == 220
        c.ehlo("client.test")
        assert not c.has_extn("starttls"), "STARTTLS advertised after TLS is active"
        assert c.has_extn("pipelining") and c.has_extn("size")
        c.sendmail("a@remote.test", [addr], make_message("starttls", to=addr))
    (_, _, m), = server.fetch_all(addr, pw)
    assert dict(headers(m))["subject"] == "starttls"


def test_smtp_starttls_resets_state(server):
    """RFC 3207 4.2: the server discards knowledge obtained before TLS."""
    addr, _ = server.new_user("reset")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        r = s.cmd("STARTTLS")
        if r.code != 220:
            assert r.code == 503, r  # refusing STARTTLS inside a transaction is fine too
            return
        s.starttls()
        s.ehlo()
        r = s.cmd("RCPT TO:<%s>" % addr)
        assert r.code == 503, "the MAIL from before STARTTLS must be forgotten: %r" % r


def test_smtp_implicit_tls(server):
    addr, pw = server.new_user("smtps")
    with Smtp(server.smtps_port, tls=True) as s:
        assert s.greeting.code == 220
        r = s.ehlo()
        assert "STARTTLS" not in ehlo_keywords(r), r
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("smtps", to=addr)).code == 250
        s.quit()
    assert server.count(addr, pw) == 1


def test_starttls_twice(server):
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("STARTTLS").code == 220
        s.starttls()
        s.ehlo()
        r = s.cmd("STARTTLS")
        assert 500 <= r.code < 600, r
        assert s.cmd("NOOP").code == 250


# --------------------------------------------------------------------------
# openssl s_client

def s_client(port, script, starttls=None, extra=()):
    openssl = require_tool("openssl")
    cmd = [openssl, "s_client", "-connect", "127.0.0.1:%d" % port, "-crlf", "-ign_eof", "-quiet"]
    if starttls:
        cmd += ["-starttls", starttls]
    cmd += list(extra)
    return subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=TIMEOUT * 2)


def test_openssl_starttls_smtp(server):
    r = s_client(server.smtp_port, "EHLO client.test\nNOOP\nQUIT\n", starttls="smtp")
    assert r.returncode == 0, r.stderr
    assert "250" in r.stdout and "221" in r.stdout, r.stdout
    assert "STARTTLS" not in r.stdout, r.stdout


def test_openssl_starttls_pop3(server):
    r = s_client(server.pop3_port, "CAPA\nQUIT\n", starttls="pop3")
    assert r.returncode == 0, r.stderr
    assert "+OK" in r.stdout and "UIDL" in r.stdout, r.stdout
    assert "STLS" not in r.stdout, r.stdout


def test_openssl_implicit_pop3s(server):
    r = s_client(server.pop3s_port, "CAPA\nQUIT\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("+OK"), r.stdout
    assert "STLS" not in r.stdout


# --------------------------------------------------------------------------
# protocol versions

def test_tls12_and_tls13_accepted(server):
    for v, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        with server.pop3s(ctx=client_tls_context(minimum=v, maximum=v)) as p:
            assert p.sock.version() == name
            assert p.greeting.startswith("+OK")


def test_tls11_refused(server):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = client_tls_context(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, OSError)):
        with server.pop3s(ctx=ctx) as p:
            p.cmd("CAPA")
    with server.pop3() as p:
        assert p.cmd("STLS").startswith("+OK")
        with pytest.raises((ssl.SSLError, OSError)):
            p.starttls(ctx)
            p.cmd("CAPA")
    # the server still serves proper clients
    with server.pop3s() as p:
        assert p.greeting.startswith("+OK")


def test_min_version_13(servers):
    s = servers.create(overrides={"tls": {"min_version": "1.3"}})
    ctx12 = client_tls_context(maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, OSError)):
        with s.pop3s(ctx=ctx12) as p:
            p.cmd("CAPA")
    with s.pop3s() as p:
        assert p.sock.version() == "TLSv1.3"
    with s.smtp() as c:
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        with pytest.raises((ssl.SSLError, OSError)):
            c.starttls(ctx12)
            c.cmd("NOOP")


def test_garbage_on_implicit_tls_port(server):
    import socket
    for junk in (b"USER plain@example.test\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 1000):
        sk = socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=TIMEOUT)
        sk.sendall(junk)
        sk.settimeout(TIMEOUT)
        try:
            while sk.recv(4096):
                pass
        except OSError:
            pass
        sk.close()
    with server.pop3s() as p:
        assert p.greeting.startswith("+OK")


# --------------------------------------------------------------------------
# without TLS configured

def test_no_tls_configured(servers):
    s = servers.create(tls=False)
    with s.pop3() as p:
        assert "STLS" not in capa_names(p)
        assert p.cmd("STLS").startswith("-ERR")
        assert p.cmd("QUIT").startswith("+OK")
    with s.smtp() as c:
        r = c.ehlo()
        assert "STARTTLS" not in ehlo_keywords(r)
        r = c.cmd("STARTTLS")
        assert 400 <= r.code < 600, r
        assert c.cmd("NOOP").code == 250
