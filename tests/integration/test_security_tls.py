"""TLS completed: SMTP implicit TLS (submissions, RFC 8314) with AUTH, LMTP
STARTTLS as an option, tls.min_version and the cipher keys, STLS refused
after login, and SIGHUP reloading the certificate without dropping
sessions."""
import hashlib
import shutil
import signal
import ssl
import subprocess
import time

import pytest

from .helpers import TIMEOUT, Pop3, Smtp, client_tls_context, ehlo_keywords, headers, make_message
from .security_helpers import Pop3From, SmtpFrom, plain
from .ternserver import require_tool


def make_cert(directory, cn):
    openssl = require_tool("openssl")
    crt, key = directory / ("%s.pem" % cn), directory / ("%s.key" % cn)
    r = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=%s" % cn, "-keyout", str(key), "-out", str(crt)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return crt, key


def peer_cert_digest(sock):
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def file_cert_digest(path):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


# --------------------------------------------------------------------------
# SMTP implicit TLS

def test_smtps_openssl_s_client(server):
    openssl = require_tool("openssl")
    r = subprocess.run([openssl, "s_client", "-connect", "127.0.0.1:%d" % server.smtps_port,
                        "-crlf", "-ign_eof", "-quiet"],
                       input="EHLO client.test\nQUIT\n", capture_output=True, text=True,
                       timeout=TIMEOUT * 2)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("220 "), r.stdout
    assert "250-AUTH PLAIN LOGIN" in r.stdout and "STARTTLS" not in r.stdout, r.stdout
    assert "221 " in r.stdout


def test_smtps_untrusted_auth_submission(server):
    """Submission over implicit TLS from an untrusted address: AUTH is
    offered (the channel is encrypted) and the message is stamped ESMTPSA."""
    addr, pw = server.new_user("submit")
    with SmtpFrom(server.smtps_port, tls=True) as s:
        assert s.greeting.code == 220
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        kw = ehlo_keywords(s.ehlo())
        assert "AUTH" in kw and "STARTTLS" not in kw, kw
        assert s.cmd("AUTH PLAIN " + plain(addr, pw)).code == 235
        assert s.cmd("MAIL FROM:<%s>" % addr).code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("smtps-auth", to=addr)).code == 250
        s.quit()
    msg = server.fetch_all(addr, pw)[0][2]
    received = [v for k, v in headers(msg) if k == "received"][0]
    assert " with ESMTPSA " in received and "127.0.0.2" in received, received


def test_smtps_with_smtplib_ssl(server):
    import smtplib
    addr, pw = server.new_user("smtplibssl")
    with smtplib.SMTP_SSL("127.0.0.1", server.smtps_port, timeout=TIMEOUT,
                          context=client_tls_context()) as c:
        c.login(addr, pw)
        c.sendmail(addr, [addr], make_message("smtp-ssl", to=addr))
    assert server.count(addr, pw) == 1


def test_smtps_min_version_13(servers):
    s = servers.create(overrides={"tls": {"min_version": "1.3"}})
    with pytest.raises((ssl.SSLError, OSError)):
        with Smtp(s.smtps_port, tls=True, ctx=client_tls_context(maximum=ssl.TLSVersion.TLSv1_2)) as c:
            c.cmd("NOOP")
    with Smtp(s.smtps_port, tls=True) as c:
        assert c.sock.version() == "TLSv1.3"
        assert c.greeting.code == 220


def test_weak_ciphers_refused(server):
    """No static-RSA key exchange and no CBC-SHA1 suites in the defaults."""
    ctx = client_tls_context(maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("AES128-SHA:AES256-SHA:AES128-SHA256")
    with pytest.raises((ssl.SSLError, OSError)):
        with Pop3(server.pop3s_port, tls=True, ctx=ctx) as p:
            p.cmd("CAPA")
    ctx = client_tls_context(maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    with Pop3(server.pop3s_port, tls=True, ctx=ctx) as p:
        assert p.sock.cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256"


def test_cipher_keys(servers):
    s = servers.create(overrides={"tls": {"ciphers": "ECDHE+AESGCM+AES256",
                                          "ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"}})
    with Pop3(s.pop3s_port, tls=True) as p:
        assert p.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    ctx = client_tls_context(maximum=ssl.TLSVersion.TLSv1_2)
    with Pop3(s.pop3s_port, tls=True, ctx=ctx) as p:
        assert p.sock.cipher()[0] == "ECDHE-RSA-AES256-GCM-SHA384"
    bad = servers.create(start=False, overrides={"tls": {"ciphers": "NO-SUCH-CIPHER"}})
    bad.start(wait=False)
    assert bad.proc.wait(TIMEOUT) == 78
    bad._forget()
    assert "ciphers" in bad.log_text()


# --------------------------------------------------------------------------
# LMTP STARTTLS

def test_lmtp_starttls_off_by_default(server):
    with server.lmtp() as s:
        assert "STARTTLS" not in ehlo_keywords(s.ehlo(verb="LHLO"))
        assert s.cmd("STARTTLS").code == 502


def test_lmtp_starttls_when_enabled(servers):
    s = servers.create(overrides={"lmtp": {"starttls": "yes"}})
    addr, pw = s.new_user("lmtptls")
    with s.lmtp() as c:
        assert "STARTTLS" in ehlo_keywords(c.ehlo(verb="LHLO"))
        assert c.cmd("STARTTLS").code == 220
        c.starttls()
        assert "STARTTLS" not in ehlo_keywords(c.ehlo(verb="LHLO"))
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % addr).code == 250
        assert c.data(make_message("lmtp-tls", to=addr)).code == 250
        c.quit()
    msg = s.fetch_all(addr, pw)[0][2]
    assert b"Subject: lmtp-tls" in msg


# --------------------------------------------------------------------------
# STLS after login

def test_stls_after_login_refused_clearly(server):
    addr, pw = server.new_user("stlslate")
    with server.login(addr, pw) as p:
        assert "STLS" not in {ln.split()[0].decode() for ln in p.multi("CAPA")[1]}
        r = p.cmd("STLS")
        assert r.startswith("-ERR") and "before login" in r, r
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()


# --------------------------------------------------------------------------
# SIGHUP

def test_sighup_reloads_certificate_keeping_sessions(servers, tmp_path):
    a = make_cert(tmp_path, "cert-a")
    b = make_cert(tmp_path, "cert-b")
    live = (tmp_path / "live.pem", tmp_path / "live.key")
    shutil.copy(a[0], live[0])
    shutil.copy(a[1], live[1])
    s = servers.create(cert=live)
    addr, pw = s.new_user("reload")
    old = Pop3(s.pop3s_port, tls=True)
    old_smtp = Smtp(s.smtp_port)
    old_smtp.ehlo()
    assert old_smtp.cmd("STARTTLS").code == 220
    old_smtp.starttls()
    assert peer_cert_digest(old.sock) == file_cert_digest(a[0])

    shutil.copy(b[0], live[0])
    shutil.copy(b[1], live[1])
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while "TLS certificate and key reloaded" not in s.log_text():
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.05)

    # sessions in progress go on with the old certificate
    old.login(addr, pw)
    assert old.stat() == (0, 0)
    old.quit()
    old_smtp.ehlo()
    assert old_smtp.cmd("NOOP").code == 250
    old_smtp.quit()
    # new ones get the new certificate, on every TLS path
    with Pop3(s.pop3s_port, tls=True) as p:
        assert peer_cert_digest(p.sock) == file_cert_digest(b[0])
    with Smtp(s.smtps_port, tls=True) as c:
        assert peer_cert_digest(c.sock) == file_cert_digest(b[0])
    with Pop3(s.pop3_port) as p:
        assert p.cmd("STLS").startswith("+OK")
        p.starttls()
        assert peer_cert_digest(p.sock) == file_cert_digest(b[0])

    # a broken file on reload keeps the last good certificate
    live[1].write_text("not a key\n")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while "TLS reload failed" not in s.log_text():
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.05)
    with Pop3(s.pop3s_port, tls=True) as p:
        assert peer_cert_digest(p.sock) == file_cert_digest(b[0])
        assert p.cmd("QUIT").startswith("+OK")


def test_untrusted_stls_then_pop3_login(server):
    addr, pw = server.new_user("untrustedstls")
    with Pop3From(server.pop3_port) as p:
        assert p.cmd("STLS").startswith("+OK")
        p.starttls()
        p.login(addr, pw)
        p.quit()
