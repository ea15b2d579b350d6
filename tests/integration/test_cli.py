"""The administration CLI: domain and user management and local delivery,
used while the server runs (the module's server stays up throughout)."""
import pytest

from .ternserver import EX_DATAERR, EX_NOUSER, EX_OK, EX_USAGE, sqlite_only
from .helpers import Closed, headers, make_message


def lines(text):
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def assert_mistake(r, *words):
    """A mistake: non-zero exit, one clear message on stderr naming it."""
    assert r.returncode != 0, "expected failure, got 0; stdout=%r" % r.stdout
    msg = r.stderr.decode(errors="replace") if isinstance(r.stderr, bytes) else r.stderr
    msg = msg.strip()
    assert msg, "no message on stderr (rc %d)" % r.returncode
    assert len(msg.splitlines()) <= 3, "expected one clear message, got:\n%s" % msg
    for w in words:
        assert w.lower() in msg.lower(), "message %r does not name %r" % (msg, w)


def pop3_login_ok(server, addr, pw):
    with server.pop3() as p:
        if not p.cmd("USER " + addr).startswith("+OK"):
            return False
        ok = p.cmd("PASS " + pw).startswith("+OK")
        try:
            p.cmd("QUIT")
        except (Closed, OSError):
            pass
        return ok


# --------------------------------------------------------------------------
# domains

def test_domain_add_list_del(server):
    r = server.cli("domain", "add", "cli-dom.test")
    assert r.returncode == 0, r.stderr
    assert "cli-dom.test" in lines(server.cli_ok("domain", "list").stdout)
    r = server.cli("domain", "del", "cli-dom.test")
    assert r.returncode == 0, r.stderr
    assert "cli-dom.test" not in lines(server.cli_ok("domain", "list").stdout)


def test_domain_add_duplicate(server):
    server.cli_ok("domain", "add", "dupdom.test")
    assert_mistake(server.cli("domain", "add", "dupdom.test"), "dupdom.test")


def test_domain_del_unknown(server):
    assert_mistake(server.cli("domain", "del", "never-added.test"), "never-added.test")


@pytest.mark.parametrize("bad", ["", "no spaces.test", "bad..dots", "-lead.test", "x" * 300])
def test_domain_add_invalid(server, bad):
    r = server.cli("domain", "add", bad)
    assert r.returncode != 0 and r.stderr.strip(), r
    assert bad not in lines(server.cli_ok("domain", "list").stdout) or bad == ""


def test_domain_added_while_running_accepts_mail(server):
    server.cli_ok("domain", "add", "late-domain.test")
    server.cli_ok("user", "add", "bob@late-domain.test", input="bobpw\n")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        r = s.cmd("RCPT TO:<bob@late-domain.test>")
        assert r.code == 250, r
        s.quit()


def test_domain_deleted_while_running_refuses_mail(server):
    server.cli_ok("domain", "add", "gone-domain.test")
    server.cli_ok("domain", "del", "gone-domain.test")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        r = s.cmd("RCPT TO:<x@gone-domain.test>")
        assert r.code == 550 and r.enhanced == "5.7.1", r
        s.quit()


# --------------------------------------------------------------------------
# users

def test_user_add_list_login_while_running(server):
    server.add_domain(server.DOMAIN)
    r = server.cli("user", "add", "carol@" + server.DOMAIN, input="carol-pw\n")
    assert r.returncode == 0, r.stderr
    assert "carol@" + server.DOMAIN in lines(server.cli_ok("user", "list").stdout)
    assert pop3_login_ok(server, "carol@" + server.DOMAIN, "carol-pw")


def test_password_is_first_line_of_stdin(server):
    server.add_domain(server.DOMAIN)
    addr = "firstline@" + server.DOMAIN
    server.cli_ok("user", "add", addr, input="line-one\nline-two\n")
    assert pop3_login_ok(server, addr, "line-one")
    assert not pop3_login_ok(server, addr, "line-two")


def test_password_without_newline(server):
    server.add_domain(server.DOMAIN)
    addr = "nonewline@" + server.DOMAIN
    server.cli_ok("user", "add", addr, input="just-this")
    assert pop3_login_ok(server, addr, "just-this")


def test_password_not_taken_from_argv(server):
    server.add_domain(server.DOMAIN)
    addr = "argvpw@" + server.DOMAIN
    r = server.cli("user", "add", addr, "secret-on-argv", input="")
    assert r.returncode != 0, "an extra argument (a password on argv) must be refused"
    assert not pop3_login_ok(server, addr, "secret-on-argv")


def test_empty_stdin_password_refused(server):
    server.add_domain(server.DOMAIN)
    r = server.cli("user", "add", "emptypw@" + server.DOMAIN, input="")
    assert r.returncode != 0 and r.stderr.strip()
    assert "emptypw@" + server.DOMAIN not in lines(server.cli_ok("user", "list").stdout)


def test_user_add_unknown_domain(server):
    r = server.cli("user", "add", "dave@no-such-domain.test", input="pw\n")
    assert_mistake(r, "no-such-domain.test")
    assert "dave@no-such-domain.test" not in lines(server.cli_ok("user", "list").stdout)


def test_user_add_duplicate(server):
    addr, pw = server.new_user("dupuser")
    r = server.cli("user", "add", addr, input="other\n")
    assert_mistake(r, addr)
    # the original password still works
    assert pop3_login_ok(server, addr, pw)
    assert not pop3_login_ok(server, addr, "other")


@pytest.mark.parametrize("bad", ["no-at-sign", "@example.test", "a@", "a b@example.test", "a@@example.test"])
def test_user_add_invalid_address(server, bad):
    server.add_domain(server.DOMAIN)
    r = server.cli("user", "add", bad, input="pw\n")
    assert r.returncode != 0 and r.stderr.strip(), r


def test_user_del(server):
    addr, pw = server.new_user("deluser")
    server.deliver_smtp(addr, make_message("before-del", to=addr))
    r = server.cli("user", "del", addr)
    assert r.returncode == 0, r.stderr
    assert addr not in lines(server.cli_ok("user", "list").stdout)
    assert not pop3_login_ok(server, addr, pw)
    with server.smtp() as s:
        s.ehlo()
        s.cmd("MAIL FROM:<a@remote.test>")
        r = s.cmd("RCPT TO:<%s>" % addr)
        assert r.code == 550 and r.enhanced == "5.1.1", r
        s.quit()


def test_user_del_unknown(server):
    server.add_domain(server.DOMAIN)
    assert_mistake(server.cli("user", "del", "ghost@" + server.DOMAIN), "ghost@" + server.DOMAIN)


def test_user_passwd(server):
    addr, pw = server.new_user("passwd")
    r = server.cli("user", "passwd", addr, input="brand-new\n")
    assert r.returncode == 0, r.stderr
    assert pop3_login_ok(server, addr, "brand-new")
    assert not pop3_login_ok(server, addr, pw)


def test_user_passwd_unknown(server):
    server.add_domain(server.DOMAIN)
    assert_mistake(server.cli("user", "passwd", "nobody-pw@" + server.DOMAIN, input="x\n"),
                   "nobody-pw@" + server.DOMAIN)


@sqlite_only
def test_passwords_stored_hashed(server):
    addr, pw = server.add_user("hashcheck@" + server.DOMAIN, "Plain-Text-Canary-7391")
    blob = b""
    for f in server.data_dir.rglob("*"):
        if f.is_file():
            blob += f.read_bytes()
    assert b"Plain-Text-Canary-7391" not in blob, "password stored in clear under data_dir"
    assert b"$argon2id$" in blob, "no argon2id hash found under data_dir"


def test_user_list_is_one_address_per_line(server):
    a, _ = server.new_user("lista")
    b, _ = server.new_user("listb")
    out = lines(server.cli_ok("user", "list").stdout)
    assert a in out and b in out


# --------------------------------------------------------------------------
# deliver

def test_deliver_while_running(server):
    addr, pw = server.new_user("deliver")
    p = server.login(addr, pw)  # a session open during the delivery
    r = server.deliver_cli(addr, b"From: x@remote.test\nSubject: piped\n\nvia tern deliver\n")
    assert r.returncode == EX_OK, r.stderr
    assert p.stat()[0] == 0, "the listing is fixed at login"
    p.quit()
    (uid, size, m), = server.fetch_all(addr, pw)
    assert dict(headers(m))["subject"] == "piped"
    assert m.endswith(b"\r\n\r\nvia tern deliver\r\n")
    assert size == len(m)


def test_deliver_unknown_user(server):
    server.add_domain(server.DOMAIN)
    r = server.deliver_cli("ghost-deliver@" + server.DOMAIN, b"Subject: x\n\ny\n")
    assert r.returncode == EX_NOUSER, (r.returncode, r.stderr)
    assert r.stderr.strip()


def test_deliver_unknown_domain(server):
    r = server.deliver_cli("someone@not-ours.test", b"Subject: x\n\ny\n")
    assert r.returncode == EX_NOUSER, (r.returncode, r.stderr)


def test_deliver_usage(server):
    r = server.cli("deliver")
    assert r.returncode == EX_USAGE, (r.returncode, r.stderr)
    assert r.stderr.strip()


def test_deliver_crlf_input_unchanged(server):
    addr, pw = server.new_user("crlfin")
    msg = make_message("crlf-in", b"a\r\nb\r\n", to=addr)
    r = server.deliver_cli(addr, msg)
    assert r.returncode == EX_OK, r.stderr
    (_, size, m), = server.fetch_all(addr, pw)
    assert m.endswith(msg), "CRLF input must not become CRCRLF"
    assert size == len(m)


def test_deliver_binary_and_large(server):
    addr, pw = server.new_user("dbig")
    body = b"".join(b"%05d \xff\xfe\x80 data\n" % i for i in range(5000))
    r = server.deliver_cli(addr, b"Subject: big\n\n" + body)
    assert r.returncode == EX_OK, r.stderr
    (_, size, m), = server.fetch_all(addr, pw)
    assert m.endswith(body.replace(b"\n", b"\r\n"))


def test_deliver_large_lf_message_through_the_spool(servers):
    """Past 1 MiB the body is spooled to data_dir/spool; nothing is left
    there afterwards and the message is stored whole, with CRLF lines."""
    server = servers.create(name="dspool", max_message_size=8 * 1024 * 1024)
    addr, pw = server.new_user("dspool")
    body = b"".join(b"%07d spooled line of a large piped message\n" % i for i in range(60000))
    assert 2 * 1024 * 1024 < len(body) < server.max_message_size // 2
    r = server.deliver_cli(addr, b"Subject: spooled\n\n" + body)
    assert r.returncode == EX_OK, r.stderr
    (_, size, m), = server.fetch_all(addr, pw)
    assert m.endswith(b"Subject: spooled\r\n\r\n" + body.replace(b"\n", b"\r\n"))
    assert size == len(m)
    spool = server.data_dir / "spool"
    assert spool.is_dir(), "the body was never spooled"   # made on first use
    assert list(spool.iterdir()) == []


def test_deliver_too_big(server):
    addr, pw = server.new_user("dtoobig")
    r = server.deliver_cli(addr, b"Subject: big\n\n" + (b"z" * 60 + b"\n") * (server.max_message_size // 30))
    assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
    assert_mistake(r, "max_message_size")
    assert server.count(addr, pw) == 0


def test_deliver_bare_cr_refused(server):
    """A CR not followed by LF is refused, as SMTP refuses it: what tern
    stores does not depend on how the message came in."""
    addr, pw = server.new_user("dbarecr")
    for msg in (b"Subject: cr\n\nold\rmac\n", b"Subject: cr\r\n\r\nends with CR\r"):
        r = server.deliver_cli(addr, msg)
        assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
        assert_mistake(r, "bare CR")
    assert server.count(addr, pw) == 0


def test_deliver_bare_lf_reject_mode(servers):
    s = servers.create(name="dreject", overrides={"smtp": {"bare_lf": "reject"}})
    addr, pw = s.new_user("dlfrej")
    r = s.deliver_cli(addr, b"Subject: lf\n\npiped with LF\n")
    assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
    assert_mistake(r, "bare_lf")
    r = s.deliver_cli(addr, b"Subject: cr\r\n\r\nold\rmac\r\n")
    assert r.returncode == EX_DATAERR, (r.returncode, r.stderr)
    assert_mistake(r, "bare CR")
    assert s.count(addr, pw) == 0
    msg = make_message("crlf-ok", b"CRLF is fine\r\n", to=addr)
    r = s.deliver_cli(addr, msg)
    assert r.returncode == EX_OK, r.stderr
    (_, _, m), = s.fetch_all(addr, pw)
    assert m.endswith(msg)


# --------------------------------------------------------------------------
# general mistakes

def test_unknown_command(server):
    r = server.cli("frobnicate")
    assert r.returncode != 0 and r.stderr.strip()


def test_unknown_subcommand(server):
    r = server.cli("user", "rename", "a@b.test")
    assert r.returncode != 0 and r.stderr.strip()


def test_missing_config_file(server, tmp_path):
    missing = tmp_path / "nope.conf"
    r = server.cli("domain", "list", config=missing)
    assert r.returncode != 0
    assert str(missing) in r.stderr or "nope.conf" in r.stderr, r.stderr
