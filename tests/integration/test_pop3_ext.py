"""POP3 extensions: CAPA before and after login (IMPLEMENTATION only
after; EXPIRE per configuration and per user; LOGIN-DELAY; UTF8), EXPIRE 0
at QUIT, the EXPIRE sweep, LOGIN-DELAY refusals, UTF-8 user names and
passwords, and the audit log with its reopening on SIGHUP.

The sweep is made testable without waiting days by ageing the retrieval
records in the SQLite file (the test opens it with Python's sqlite3) and a
short [pop3] expire_sweep_interval, a documented setting."""
import base64
import os
import signal
import sqlite3
import stat
import subprocess
import time

import pytest

from .helpers import make_message, wait_until
from .ternserver import EX_DATAERR, EX_NOUSER, sqlite_only

DAY_US = 86400 * 1000000


def capa(p):
    status, lines = p.multi("CAPA")
    assert status.startswith("+OK"), status
    return [ln.decode("utf-8") for ln in lines]


def audit_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [ln.decode("utf-8") for ln in f.read().splitlines()]


def fields(line):
    """key=value pairs of an audit line (the test values need no quotes)."""
    out = {}
    for part in line.split(" "):
        k, _, v = part.partition("=")
        out[k] = v
    return out


def events(path, event, user=None):
    got = [fields(ln) for ln in audit_lines(path)]
    return [f for f in got if f.get("event") == event and (user is None or f.get("user") == user)]


# --------------------------------------------------------------------------
# CAPA

def test_capa_before_and_after_login(server):
    user, pw, _ = server.mailbox(1, "capa")
    p = server.pop3()
    before = capa(p)
    assert not any(c.startswith("IMPLEMENTATION") for c in before), before
    assert "EXPIRE NEVER USER" in before
    assert "UTF8 USER" in before
    assert not any(c.startswith("LOGIN-DELAY") for c in before)
    p.login(user, pw)
    after = capa(p)
    assert "IMPLEMENTATION tern" in after
    assert "EXPIRE NEVER" in after
    assert not any(c.startswith("UTF8") for c in after), after
    assert p.quit().startswith("+OK")


def test_capa_expire_per_config_and_per_user(servers):
    s = servers.create(overrides={"pop3": {"expire_days": "30"}})
    user, pw = s.new_user("exp")
    p = s.pop3()
    assert "EXPIRE 30 USER" in capa(p)
    p.login(user, pw)
    assert "EXPIRE 30" in capa(p)
    p.quit()
    r = s.cli_ok("user", "expire", user)
    assert r.stdout.splitlines() == ["own: default", "effective: 30 days"]
    for value, shown in (("5", "EXPIRE 5"), ("never", "EXPIRE NEVER"), ("0", "EXPIRE 0"),
                         ("default", "EXPIRE 30")):
        s.cli_ok("user", "expire", user, value)
        p = s.login(user, pw)
        got = capa(p)
        assert shown in got, (value, got)
        assert len([c for c in got if c.startswith("EXPIRE")]) == 1
        p.quit()
    s.cli_ok("user", "expire", user, "never")
    assert s.cli_ok("user", "expire", user).stdout.splitlines() == ["own: never", "effective: never"]
    # mistakes: one line, a sysexits code
    r = s.cli("user", "expire", user, "soon")
    assert r.returncode == EX_DATAERR and "expected a number of days" in r.stderr
    r = s.cli("user", "expire", user, "36501")
    assert r.returncode == EX_DATAERR
    r = s.cli("user", "expire", "nobody@" + s.DOMAIN, "3")
    assert r.returncode == EX_NOUSER and "unknown user" in r.stderr


def test_expire_in_the_admin_api(servers):
    from .test_admin import start_admin_server
    s = start_admin_server(servers, overrides={"pop3": {"expire_days": "14"}})
    user, pw = s.new_user("apiexp")
    path = "/users/%s/expire" % user
    assert s.admin.ok("GET", path) == {"own": "default", "effective": 14}
    assert s.admin.ok("PUT", path, {"days": 2}) == {"own": 2, "effective": 2}
    assert s.cli_ok("user", "expire", user).stdout.splitlines() == ["own: 2 days", "effective: 2 days"]
    p = s.login(user, pw)
    assert "EXPIRE 2" in capa(p)
    p.quit()
    assert s.admin.ok("PUT", path, {"days": "never"}) == {"own": "never", "effective": "never"}
    assert s.admin.ok("PUT", path, {"days": "default"}) == {"own": "default", "effective": 14}
    for bad in ({"days": -1}, {"days": "soon"}, {"days": 36501}, {}, {"days": 3, "x": 1}):
        st, _, body = s.admin.request("PUT", path, bad)
        assert st == 400, (bad, st, body)
    st, _, _ = s.admin.request("GET", "/users/nobody@%s/expire" % s.DOMAIN)
    assert st == 404
    st, _, _ = s.admin.request("PUT", "/users/nobody@%s/expire" % s.DOMAIN, {"days": 1})
    assert st == 404


def test_expire_days_setting_is_checked(servers):
    s = servers.create(start=False, overrides={"pop3": {"expire_days": "sometimes"}})
    r = s.cli("domain", "list")
    assert r.returncode == 78
    assert "expire_days" in r.stderr and "never" in r.stderr


# --------------------------------------------------------------------------
# EXPIRE 0: deleted at QUIT once retrieved

def test_expire_0_deletes_retrieved_messages_at_quit(servers, tmp_path):
    audit = tmp_path / "audit.log"
    s = servers.create(overrides={"pop3": {"expire_days": "0"},
                                  "server": {"audit_log": str(audit)}})
    user, pw, msgs = s.mailbox(4, "e0")
    p = s.login(user, pw)
    assert "EXPIRE 0" in capa(p)
    uidls = dict(p.uidl())
    sizes = dict(p.list())
    assert p.retr(1).endswith(msgs[0])
    status, _ = p.multi("TOP 2 0")  # TOP is no retrieval
    assert status.startswith("+OK")
    assert p.cmd("DELE 3").startswith("+OK")
    assert p.quit().startswith("+OK")
    p = s.login(user, pw)
    left = [u for _, u in p.uidl()]
    assert left == [uidls[2], uidls[4]]
    p.quit()
    # audited: the expiry at QUIT as such, with the client; the DELE as a dele
    exp = events(str(audit), "expire", user)
    assert [(e["id"], int(e["size"]), e["reason"], e["client"]) for e in exp] == [
        (uidls[1], sizes[1], "quit", "127.0.0.1")]
    assert exp[0]["session"] == events(str(audit), "login", user)[0]["session"]
    assert [d["id"] for d in events(str(audit), "dele", user)] == [uidls[3]]


def test_expire_0_dropped_session_deletes_nothing(servers):
    s = servers.create(overrides={"pop3": {"expire_days": "0"}})
    user, pw, msgs = s.mailbox(2, "e0drop")
    p = s.login(user, pw)
    assert p.retr(1).endswith(msgs[0])
    assert p.retr(2).endswith(msgs[1])
    p.abort()
    assert s.count(user, pw) == 2
    # RSET does not undo a retrieval: QUIT after RSET still expires
    p = s.login(user, pw)
    p.retr(2)
    assert p.cmd("RSET").startswith("+OK")
    assert p.quit().startswith("+OK")
    assert s.count(user, pw) == 1


# --------------------------------------------------------------------------
# EXPIRE n: the sweep

def age_first_retrieval(s, address, days):
    """Moves the earliest retrieval record of address's mailbox days back."""
    db = sqlite3.connect(str(s.data_dir / "tern.db"), timeout=30)
    try:
        (mbox,) = db.execute("SELECT mailbox_id FROM users WHERE address = ?", (address,)).fetchone()
        rows = db.execute("SELECT sort_key FROM retrieved WHERE mailbox_id = ? ORDER BY sort_key",
                          (mbox,)).fetchall()
        assert rows, "no retrieval record for %s" % address
        db.execute("UPDATE retrieved SET first_us = first_us - ? WHERE mailbox_id = ? AND sort_key = ?",
                   (days * DAY_US, mbox, rows[0][0]))
        db.commit()
        return len(rows)
    finally:
        db.close()


@sqlite_only
def test_expire_sweep_deletes_only_old_retrievals(servers, tmp_path):
    audit = tmp_path / "audit.log"
    s = servers.create(overrides={"pop3": {"expire_days": "3", "expire_sweep_interval": "1s"},
                                  "server": {"audit_log": str(audit)}})
    a, apw, amsgs = s.mailbox(3, "sweepa")
    b, bpw, _ = s.mailbox(2, "sweepb")
    s.cli_ok("user", "expire", b, "never")
    c, cpw, _ = s.mailbox(2, "sweepc")
    s.cli_ok("user", "expire", c, "10")
    for user, pw, n in ((a, apw, 2), (b, bpw, 1), (c, cpw, 1)):
        p = s.login(user, pw)
        for i in range(1, n + 1):
            p.retr(i)
        assert p.quit().startswith("+OK")
    auidls = [u for _, u in s.login(a, apw).uidl()]
    # a: message 1 retrieved 4 days ago, 2 just now, 3 never
    assert age_first_retrieval(s, a, 4) == 2
    # b has no policy: nothing recorded, nothing expires
    db = sqlite3.connect(str(s.data_dir / "tern.db"), timeout=30)
    (bbox,) = db.execute("SELECT mailbox_id FROM users WHERE address = ?", (b,)).fetchone()
    assert db.execute("SELECT count(*) FROM retrieved WHERE mailbox_id = ?", (bbox,)).fetchone()[0] == 0
    db.close()
    # c keeps 10 days: 4 days is not enough
    age_first_retrieval(s, c, 4)
    wait_until(lambda: s.count(a, apw) == 2, timeout=20)
    p = s.login(a, apw)
    assert [u for _, u in p.uidl()] == auidls[1:]
    p.quit()
    exp = events(str(audit), "expire", a)
    assert len(exp) == 1, exp
    assert exp[0]["id"] == auidls[0] and exp[0]["reason"] == "sweep"
    assert int(exp[0]["size"]) > 0 and "retrieved" in exp[0]
    assert 'msg="expire" user=%s deleted=1 days=3' % a in s.log_text()
    # a few more sweeps: the others stay as they are
    time.sleep(2.5)
    assert s.count(a, apw) == 2
    assert s.count(b, bpw) == 2
    assert s.count(c, cpw) == 2
    # c's policy shortened to 3 days: its old retrieval now expires
    s.cli_ok("user", "expire", c, "3")
    wait_until(lambda: s.count(c, cpw) == 1, timeout=20)


# --------------------------------------------------------------------------
# LOGIN-DELAY

def test_login_delay(servers):
    s = servers.create(overrides={"pop3": {"login_delay": "2"}})
    user, pw = s.new_user("delay")
    p = s.pop3()
    assert "LOGIN-DELAY 2" in capa(p)
    p.close()
    p = s.login(user, pw)
    assert "LOGIN-DELAY 2" in capa(p)
    first = time.monotonic()
    p.quit()
    # right after: refused, with the response code, in AUTHORIZATION still
    p = s.pop3()
    assert p.cmd("USER " + user).startswith("+OK")
    r = p.cmd("PASS " + pw)
    assert r.startswith("-ERR [LOGIN-DELAY]"), r
    assert p.cmd("STAT").startswith("-ERR")
    # a wrong password learns nothing of the delay
    assert p.cmd("USER " + user).startswith("+OK")
    r = p.cmd("PASS wrong-" + pw)
    assert r.startswith("-ERR [AUTH]"), r
    p.close()
    # AUTH PLAIN is refused the same way
    p = s.pop3()
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
    r = p.cmd("AUTH PLAIN " + token)
    assert r.startswith("-ERR [LOGIN-DELAY]"), r
    p.close()
    # a second refusal a moment later: a refused login records no time
    time.sleep(0.8)
    p = s.pop3()
    p.cmd("USER " + user)
    assert p.cmd("PASS " + pw).startswith("-ERR [LOGIN-DELAY]")
    p.close()
    # longer than the delay after the first login: accepted (had a refusal
    # recorded its time, this would still be refused)
    time.sleep(max(0.0, first + 2.4 - time.monotonic()))
    p = s.login(user, pw)
    p.quit()


def test_login_delay_is_off_by_default(server):
    user, pw = server.new_user("nodelay")
    for _ in range(3):
        p = server.login(user, pw)
        p.quit()


# --------------------------------------------------------------------------
# UTF8

def test_utf8_command_and_utf8_user(server):
    user, pw = "élodie@" + server.DOMAIN, "mot-de-passe-été"
    server.add_user(user, pw)
    body = "Subject: =?utf-8?q?caf=C3=A9?=\r\nX-Raw: caf\u00e9 \u2615\r\n\r\nd\u00e9j\u00e0 vu\r\n"
    r = server.deliver_cli(user, body.encode("utf-8"))
    assert r.returncode == 0, r.stderr
    p = server.pop3()
    assert p.cmd("UTF8").startswith("+OK")
    assert p.cmd("UTF8 now").startswith("-ERR")
    assert p.cmd("USER " + user).startswith("+OK")
    assert p.cmd("PASS " + pw).startswith("+OK")
    # UTF8 is an AUTHORIZATION command
    assert p.cmd("UTF8").startswith("-ERR")
    status, lines = p.multi("RETR 1")
    assert status.startswith("+OK")
    # never rewritten: the UTF-8 octets come back as delivered
    assert b"X-Raw: caf\xc3\xa9 \xe2\x98\x95" in lines
    assert b"d\xc3\xa9j\xc3\xa0 vu" in lines
    p.quit()
    # without the UTF8 command, and with ASCII letters in upper case
    p = server.pop3()
    assert p.cmd("USER éLODIE@" + server.DOMAIN.upper()).startswith("+OK")
    assert p.cmd("PASS " + pw).startswith("+OK")
    p.quit()
    # a non-ASCII letter is not case-folded: another user
    p = server.pop3()
    p.cmd("USER Élodie@" + server.DOMAIN)
    assert p.cmd("PASS " + pw).startswith("-ERR [AUTH]")
    p.close()
    # AUTH PLAIN with UTF-8 octets
    p = server.pop3()
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
    assert p.cmd("AUTH PLAIN " + token).startswith("+OK")
    p.quit()


def test_invalid_utf8_user_names_are_refused(server):
    p = server.pop3()
    for bad in (b"\xc3\x28x@example.test", b"\xc0\xafx@example.test", b"\xed\xa0\x80@example.test",
                b"a@\xc3\xa9t\xc3\xa9.test"):
        p.send(b"USER " + bad + b"\r\n")
        assert p.line().startswith("-ERR [AUTH] Invalid user name"), bad
    p.close()
    # the CLI too, and it shows the bad octets escaped
    r = subprocess.run([server.binary, "-c", str(server.config_path), "user", "add",
                        b"\xc3(x@" + server.DOMAIN.encode()], input=b"pw\n",
                       capture_output=True, timeout=30, env=server.env())
    assert r.returncode == EX_DATAERR
    assert b"invalid UTF-8" in r.stderr
    r.stderr.decode("ascii")


# --------------------------------------------------------------------------
# the audit log

def test_audit_log_and_reopen_on_sighup(servers, tmp_path):
    audit = tmp_path / "audit.log"
    s = servers.create(overrides={"server": {"audit_log": str(audit)}})
    user, pw, msgs = s.mailbox(3, "audit")
    p = s.login(user, pw)
    uidls = dict(p.uidl())
    sizes = dict(p.list())
    assert p.retr(1).endswith(msgs[0])
    assert p.cmd("DELE 2").startswith("+OK")
    assert p.cmd("DELE 3").startswith("+OK")
    assert p.cmd("RSET").startswith("+OK")
    assert p.cmd("DELE 2").startswith("+OK")
    assert p.quit().startswith("+OK")
    mode = stat.S_IMODE(os.stat(audit).st_mode)
    assert mode & 0o027 == 0, oct(mode)   # at most 0640
    logins = events(str(audit), "login", user)
    assert len(logins) == 1
    assert logins[0]["client"] == "127.0.0.1" and logins[0]["proto"] == "pop3"
    assert logins[0]["time"].endswith("Z")
    retr = events(str(audit), "retr", user)
    assert len(retr) == 1
    assert retr[0]["id"] == uidls[1] and int(retr[0]["size"]) == sizes[1]
    dele = events(str(audit), "dele", user)
    assert [(d["id"], int(d["size"])) for d in dele] == [(uidls[2], sizes[2])]
    assert dele[0]["session"] == logins[0]["session"]
    # a session that drops deletes nothing and audits no dele
    p = s.login(user, pw)
    p.cmd("DELE 1")
    p.abort()
    assert s.count(user, pw) == 2
    assert len(events(str(audit), "dele", user)) == 1
    # every line is whole
    for ln in audit_lines(str(audit)):
        assert ln.startswith("time=") and " event=" in ln
    # rotation: rename, SIGHUP, and new lines go to a new file
    rotated = tmp_path / "audit.log.1"
    os.rename(audit, rotated)
    s.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: audit.exists())
    before = len(audit_lines(str(rotated)))
    p = s.login(user, pw)
    p.quit()
    assert len(events(str(audit), "login", user)) == 1
    assert len(audit_lines(str(rotated))) == before
    assert s.proc.poll() is None


def test_audit_log_that_cannot_be_opened_stops_the_start(servers, tmp_path):
    s = servers.create(start=False,
                       overrides={"server": {"audit_log": str(tmp_path / "no" / "such" / "dir" / "a.log")}})
    r = subprocess.run([s.binary, "-c", str(s.config_path), "serve"], capture_output=True,
                       text=True, timeout=30, env=s.env())
    assert r.returncode == 78
    assert "audit_log" in r.stderr
