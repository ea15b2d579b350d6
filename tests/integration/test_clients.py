"""Real mail clients against tern: curl (pop3://, pop3s://, smtp://), swaks
(SMTP and LMTP) and fetchmail (POP3, STLS, implicit TLS, keep/nokeep/UIDL)."""
import getpass
import os
import re
import subprocess

import pytest

from .ternserver import require_tool
from .helpers import TIMEOUT, headers, make_message

RUN_TIMEOUT = TIMEOUT * 4


def run(cmd, input=None, env=None):
    return subprocess.run(cmd, input=input, capture_output=True, timeout=RUN_TIMEOUT, env=env)


def subjects(server, addr, pw):
    return [dict(headers(m)).get("subject") for _, _, m in server.fetch_all(addr, pw)]


# --------------------------------------------------------------------------
# curl

def curl(*args):
    return run([require_tool("curl"), "-sS", "--max-time", str(int(RUN_TIMEOUT))] + list(args))


def test_curl_pop3_list_and_retrieve(server):
    addr, pw, msgs = server.mailbox(2, "curl")
    url = "pop3://127.0.0.1:%d/" % server.pop3_port
    r = curl(url, "--user", "%s:%s" % (addr, pw))
    assert r.returncode == 0, r.stderr
    listing = r.stdout.decode().split("\r\n")
    sizes = [tuple(map(int, ln.split())) for ln in listing if ln]
    assert [n for n, _ in sizes] == [1, 2]
    r = curl(url + "2", "--user", "%s:%s" % (addr, pw))
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(msgs[1]), r.stdout[-200:]
    assert len(r.stdout) == sizes[1][1]


def test_curl_pop3_uidl_and_dele(server):
    addr, pw, _ = server.mailbox(2, "curldele")
    url = "pop3://127.0.0.1:%d/" % server.pop3_port
    r = curl(url, "--user", "%s:%s" % (addr, pw), "-X", "UIDL")
    assert r.returncode == 0, r.stderr
    uids = [ln.split()[1] for ln in r.stdout.decode().split("\r\n") if ln]
    assert len(uids) == 2 and [u for u, _, _ in server.fetch_all(addr, pw)] == uids
    r = curl(url + "1", "--user", "%s:%s" % (addr, pw), "-X", "DELE", "-I")
    assert r.returncode == 0, r.stderr
    assert subjects(server, addr, pw) == ["curldele-2"]


def test_curl_pop3_bad_password(server):
    addr, pw = server.new_user("curlbad")
    r = curl("pop3://127.0.0.1:%d/" % server.pop3_port, "--user", "%s:wrong" % addr)
    assert r.returncode == 67, (r.returncode, r.stderr)   # CURLE_LOGIN_DENIED


def test_curl_pop3_stls(server):
    addr, pw, msgs = server.mailbox(1, "curlstls")
    r = curl("pop3://127.0.0.1:%d/1" % server.pop3_port, "--ssl-reqd", "-k",
             "--user", "%s:%s" % (addr, pw))
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(msgs[0])


def test_curl_pop3s(server):
    addr, pw, msgs = server.mailbox(1, "curlpop3s")
    r = curl("pop3s://127.0.0.1:%d/1" % server.pop3s_port, "-k", "--user", "%s:%s" % (addr, pw))
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(msgs[0])


@pytest.mark.parametrize("tls", [False, True])
def test_curl_smtp_send(server, tmp_path, tls):
    addr, pw = server.new_user("curlsmtp")
    msg = make_message("curl-smtp-%s" % tls, "sent by curl\r\n.leading dot\r\n", to=addr)
    f = tmp_path / "msg.eml"
    f.write_bytes(msg)
    args = ["smtp://127.0.0.1:%d/client.test" % server.smtp_port, "--mail-from", "curl@remote.test",
            "--mail-rcpt", addr, "-T", str(f)]
    if tls:
        args += ["--ssl-reqd", "-k"]
    r = curl(*args)
    assert r.returncode == 0, r.stderr
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)


def test_curl_smtp_unknown_recipient_fails(server, tmp_path):
    server.add_domain(server.DOMAIN)
    f = tmp_path / "msg.eml"
    f.write_bytes(make_message("x"))
    r = curl("smtp://127.0.0.1:%d" % server.smtp_port, "--mail-from", "a@remote.test",
             "--mail-rcpt", "nobody-curl@" + server.DOMAIN, "-T", str(f))
    assert r.returncode != 0
    assert b"550" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# swaks

def swaks(*args):
    return run([require_tool("swaks"), "--timeout", str(int(RUN_TIMEOUT)), "--helo", "client.test"]
               + list(args))


@pytest.mark.parametrize("variant", ["plain", "pipeline", "tls", "tls-on-connect"])
def test_swaks_smtp(server, variant):
    addr, pw = server.new_user("swaks" + variant.replace("-", ""))
    port = server.smtps_port if variant == "tls-on-connect" else server.smtp_port
    extra = {"plain": [], "pipeline": ["--pipeline"], "tls": ["-tls"],
             "tls-on-connect": ["--tls-on-connect"]}[variant]
    r = swaks("--server", "127.0.0.1:%d" % port, "--from", "swaks@remote.test", "--to", addr,
              "--header", "Subject: swaks-%s" % variant, "--body", "hello from swaks\n.dot line",
              *extra)
    assert r.returncode == 0, r.stdout.decode()[-3000:]
    (_, _, got), = server.fetch_all(addr, pw)
    assert dict(headers(got))["subject"] == "swaks-%s" % variant
    assert b"\r\n.dot line\r\n" in got


def test_swaks_smtp_relay_refused(server):
    r = swaks("--server", "127.0.0.1:%d" % server.smtp_port, "--from", "a@remote.test",
              "--to", "victim@elsewhere.test")
    assert r.returncode != 0
    assert re.search(rb"<\*\* +550[ -]5\.7\.1", r.stdout), r.stdout.decode()[-2000:]


def test_swaks_lmtp(server):
    a, apw = server.new_user("swlmtpa")
    b, bpw = server.new_user("swlmtpb")
    r = swaks("--protocol", "LMTP", "--server", "127.0.0.1:%d" % server.lmtp_port,
              "--from", "swaks@remote.test", "--to", "%s,%s" % (a, b),
              "--header", "Subject: swaks-lmtp")
    assert r.returncode == 0, r.stdout.decode()[-3000:]
    assert subjects(server, a, apw) == ["swaks-lmtp"]
    assert subjects(server, b, bpw) == ["swaks-lmtp"]


# --------------------------------------------------------------------------
# fetchmail

class Fetchmail:
    def __init__(self, server, tmp_path, addr, pw, options="", port=None, server_options=""):
        require_tool("fetchmail")
        self.home = tmp_path / "fmhome"
        self.home.mkdir(exist_ok=True)
        self.out = tmp_path / "mbox"
        self.rc = tmp_path / "fetchmailrc"
        self.rc.write_text(
            "set no syslog\n"
            "poll 127.0.0.1 with proto POP3 port %d timeout %d %s\n"
            "  user \"%s\" there with password \"%s\" is \"%s\" here\n"
            "  %s\n"
            "  mda \"cat >> %s\"\n"
            % (port or server.pop3_port, int(RUN_TIMEOUT), server_options, addr, pw, getpass.getuser(),
               options, self.out))
        os.chmod(self.rc, 0o600)

    def run(self, *args):
        env = dict(os.environ, HOME=str(self.home), FETCHMAILHOME=str(self.home))
        r = run([require_tool("fetchmail"), "-f", str(self.rc), "--nodetach", "-v"] + list(args), env=env)
        r.text = (r.stdout + r.stderr).decode(errors="replace")
        assert "not the expected length" not in r.text, "size mismatch reported by fetchmail:\n" + r.text
        return r

    def mbox(self):
        return self.out.read_bytes() if self.out.exists() else b""

    def subjects(self):
        return re.findall(rb"^Subject: (\S+)\r?$", self.mbox(), re.M)


def test_fetchmail_nokeep(server, tmp_path):
    addr, pw, msgs = server.mailbox(3, "fmnokeep")
    fm = Fetchmail(server, tmp_path, addr, pw, options="nokeep sslproto ''")
    r = fm.run()
    assert r.returncode == 0, r.text
    assert fm.subjects() == [b"fmnokeep-1", b"fmnokeep-2", b"fmnokeep-3"], r.text
    for m in msgs:
        body = m.split(b"\r\n\r\n", 1)[1]
        assert body.replace(b"\r\n", b"\n") in fm.mbox().replace(b"\r\n", b"\n")
    assert server.count(addr, pw) == 0, "nokeep must delete on the server"


def test_fetchmail_keep_uidl(server, tmp_path):
    addr, pw, _ = server.mailbox(2, "fmkeep")
    fm = Fetchmail(server, tmp_path, addr, pw, options="keep sslproto ''",
                   server_options="uidl")
    r = fm.run()
    assert r.returncode == 0, r.text
    assert fm.subjects() == [b"fmkeep-1", b"fmkeep-2"], r.text
    r = fm.run()
    assert r.returncode == 1, "second run must find no new mail (UIDL stable):\n" + r.text
    assert len(fm.subjects()) == 2
    server.deliver_smtp(addr, make_message("fmkeep-3", to=addr))
    r = fm.run()
    assert r.returncode == 0, r.text
    assert fm.subjects() == [b"fmkeep-1", b"fmkeep-2", b"fmkeep-3"], r.text
    assert server.count(addr, pw) == 3, "keep must leave the messages on the server"


def test_fetchmail_stls(server, tmp_path):
    addr, pw, _ = server.mailbox(2, "fmstls")
    fm = Fetchmail(server, tmp_path, addr, pw, options="nokeep sslproto 'tls1.2+' no sslcertck")
    r = fm.run()
    assert r.returncode == 0, r.text
    assert re.search(r"STLS", r.text), r.text
    assert fm.subjects() == [b"fmstls-1", b"fmstls-2"], r.text
    assert server.count(addr, pw) == 0


def test_fetchmail_implicit_tls(server, tmp_path):
    addr, pw, _ = server.mailbox(2, "fmssl")
    fm = Fetchmail(server, tmp_path, addr, pw, port=server.pop3s_port,
                   options="nokeep ssl no sslcertck")
    r = fm.run()
    assert r.returncode == 0, r.text
    assert fm.subjects() == [b"fmssl-1", b"fmssl-2"], r.text
    assert server.count(addr, pw) == 0


def test_fetchmail_bad_password(server, tmp_path):
    addr, pw = server.new_user("fmbad")
    fm = Fetchmail(server, tmp_path, addr, pw + "-wrong", options="sslproto ''")
    r = fm.run()
    assert r.returncode == 3, "fetchmail exit 3 is an authentication failure:\n" + r.text
