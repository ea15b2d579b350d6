"""Abuse limits: total and per-client connection limits, slow clients
bounded by the command deadline, the DATA rate and the login deadline, the
configurable bad-command budget, idle timeouts and the smaller input caps
before login. Every limit is set small here to keep the tests fast."""
import socket
import time

import pytest

from .helpers import TIMEOUT, Closed, Pop3, Smtp
from .security_helpers import Pop3From, SmtpFrom, plain


def wait_log(server, text, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        assert time.monotonic() < deadline, "no %r in the log:\n%s" % (text, server.log_tail())
        time.sleep(0.05)


def trickle(conn, data, interval, until_closed=True):
    """Sends data one byte every `interval` seconds; returns the seconds
    until the server closed (or None if it never did) and what it said."""
    t0 = time.monotonic()
    said = b""
    for ch in data:
        try:
            conn.send(bytes([ch]))
        except OSError:
            return time.monotonic() - t0, said
        try:
            said += conn.read_available(interval)
        except Closed:
            return time.monotonic() - t0, said
        except OSError:
            return time.monotonic() - t0, said
    return None, said


# --------------------------------------------------------------------------
# connection limits

def test_max_connections_total(servers):
    s = servers.create(overrides={"limits": {"max_connections": "3"}})
    time.sleep(0.3)  # the fixture's readiness probes are gone
    held = [Pop3(s.pop3_port), Smtp(s.smtp_port), Pop3(s.pop3_port)]
    try:
        assert held[0].greeting.startswith("+OK") and held[1].greeting.code == 220
        assert held[2].greeting.startswith("+OK")
        with Pop3(s.pop3_port) as p:
            assert p.greeting.startswith("-ERR [SYS/TEMP]"), p.greeting
            assert p.is_closed()
        with Smtp(s.smtp_port) as c:
            assert c.greeting.code == 421 and c.greeting.enhanced == "4.7.0", c.greeting
            assert c.is_closed()
        wait_log(s, "max_connections = 3")
        # trusted clients count against the total too
        held[0].quit()
        time.sleep(0.2)
        with Pop3(s.pop3_port) as p:
            assert p.greeting.startswith("+OK"), p.greeting
    finally:
        for c in held:
            c.close()


def test_max_connections_per_ip(servers):
    s = servers.create(overrides={"limits": {"max_connections_per_ip": "2"}})
    held = [Pop3From(s.pop3_port), SmtpFrom(s.smtp_port)]
    try:
        with Pop3From(s.pop3_port) as p:
            assert p.greeting.startswith("-ERR [SYS/TEMP]") and "your address" in p.greeting, p.greeting
        with SmtpFrom(s.smtp_port) as c:
            assert c.greeting.code == 421 and c.greeting.enhanced == "4.7.0", c.greeting
        wait_log(s, "max_connections_per_ip = 2")
        # other addresses are not affected; trusted ones are exempt
        with Pop3From(s.pop3_port, source="127.0.0.3") as p:
            assert p.greeting.startswith("+OK")
        more = [Pop3(s.pop3_port) for _ in range(4)]
        assert all(p.greeting.startswith("+OK") for p in more)
        for p in more:
            p.close()
        # a slot frees when a session ends
        held.pop(0).quit()
        time.sleep(0.2)
        with Pop3From(s.pop3_port) as p:
            assert p.greeting.startswith("+OK"), p.greeting
    finally:
        for c in held:
            c.close()


def test_refusal_over_implicit_tls(servers):
    s = servers.create(overrides={"limits": {"max_connections_per_ip": "1"}})
    with Pop3From(s.pop3s_port, tls=True) as first:
        assert first.greeting.startswith("+OK")
        with Pop3From(s.pop3s_port, tls=True) as p:
            assert p.greeting.startswith("-ERR [SYS/TEMP]"), p.greeting
        with SmtpFrom(s.smtps_port, tls=True) as c:
            assert c.greeting.code == 421, c.greeting


# --------------------------------------------------------------------------
# slow clients

def test_slow_command_line_bounded(servers):
    """One byte a second never completing a line: the command deadline ends
    the session although the idle timeout never fires."""
    s = servers.create(overrides={"limits": {"command_timeout": "2s"}})
    with Pop3(s.pop3_port) as p:
        t, said = trickle(p, b"USER " + b"a" * 60, 0.5)
        assert t is not None and 1.5 < t < 6, (t, said)
        assert b"-ERR Command not received in time" in said, said
    with Smtp(s.smtp_port) as c:
        t, said = trickle(c, b"EHLO " + b"a" * 60, 0.5)
        assert t is not None and t < 6 and b"421 4.4.2" in said, (t, said)
    wait_log(s, "command timeout")


def test_slow_but_steady_commands_are_fine(servers):
    s = servers.create(overrides={"limits": {"command_timeout": "2s"}})
    with Pop3(s.pop3_port) as p:
        for _ in range(3):
            t, said = trickle(p, b"CAPA\r\n", 0.25)  # 1.5 s per command
            assert t is None and said.startswith(b"+OK"), said
        assert p.cmd("QUIT").startswith("+OK")


def test_slow_data_bounded(servers):
    s = servers.create(overrides={"limits": {"command_timeout": "1s", "min_data_rate": "200"}})
    addr, pw = s.new_user("slowdata")
    with Smtp(s.smtp_port) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % addr).code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: slow\r\n\r\n" + b"x" * 100 + b"\r\n")  # 0.5 s of credit
        t, said = trickle(c, b"y" * 100, 0.4)
        assert t is not None and t < 6, (t, said)
        assert b"421 4.4.2 Message data arriving too slowly" in said, said
    assert s.count(addr, pw) == 0


def test_login_deadline(servers):
    s = servers.create(overrides={"limits": {"login_timeout": "2s"}})
    with Pop3(s.pop3_port) as p:
        t0 = time.monotonic()
        with pytest.raises((Closed, OSError)):
            for _ in range(40):
                assert p.multi("CAPA")[0].startswith(("+OK", "-ERR"))
                time.sleep(0.25)
        assert time.monotonic() - t0 < 6
    addr, pw = s.new_user("intime")
    with Pop3(s.pop3_port) as p:
        p.login(addr, pw)
        time.sleep(2.5)  # the deadline ends at login
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()


def test_idle_timeouts(servers):
    s = servers.create(overrides={"limits": {"idle_timeout_preauth": "1s"},
                                  "pop3": {"idle_timeout": "2s"},
                                  "smtp": {"idle_timeout": "1s"}})
    with Pop3(s.pop3_port) as p:
        assert p.is_closed(4)
    with Smtp(s.smtp_port) as c:
        assert c.reply().code == 421
    addr, pw = s.new_user("idle")
    with Pop3(s.pop3_port) as p:
        p.login(addr, pw)
        time.sleep(1.3)  # past the pre-auth idle timeout, within the logged-in one
        assert p.cmd("NOOP").startswith("+OK")
        assert p.line().startswith("-ERR Autologout")


# --------------------------------------------------------------------------
# bad commands and input caps

def test_bad_command_budget_key(servers):
    s = servers.create(overrides={"limits": {"max_bad_commands": "3"}})
    with Pop3(s.pop3_port) as p:
        assert p.cmd("BOGUS").startswith("-ERR")
        assert p.cmd("BOGUS").startswith("-ERR")
        assert p.cmd("BOGUS").startswith("-ERR")
        assert p.line().startswith("-ERR Too many bad commands")
        assert p.is_closed()
    with Smtp(s.smtp_port) as c:
        for _ in range(3):
            r = c.cmd("BOGUS")
        assert r.code == 500
        assert c.reply().code == 421
        assert c.is_closed()


def test_failed_logins_use_the_budget(servers):
    s = servers.create(overrides={"limits": {"max_bad_commands": "2"},
                                  "auth": {"failure_delay_initial": "10ms",
                                           "failure_delay_max": "10ms"}})
    addr, _ = s.new_user("budget")
    with Pop3From(s.pop3s_port, tls=True) as p:
        assert p.cmd("AUTH PLAIN " + plain(addr, "x")).startswith("-ERR [AUTH]")
        assert p.cmd("AUTH PLAIN " + plain(addr, "y")).startswith("-ERR [AUTH]")
        assert p.line().startswith("-ERR Too many bad commands")


def test_smaller_line_cap_before_login(servers):
    s = servers.create(overrides={"limits": {"line_max_preauth": "100", "line_max": "2000"}})
    addr, pw = s.new_user("caps")
    with Pop3(s.pop3_port) as p:
        assert p.cmd("USER " + "a" * 200).startswith("-ERR Line too long")
        p.login(addr, pw)
        r = p.cmd("LIST " + "1" * 600)
        assert r.startswith("-ERR") and "too long" not in r, r
        assert p.cmd("LIST " + "1" * 3000).startswith("-ERR Line too long")
        p.quit()


@pytest.mark.parametrize("section,key,value", [
    ("limits", "command_timeout", "soon"), ("limits", "max_connections", "0"),
    ("limits", "min_data_rate", "0"), ("auth", "failure_delay_max", "1ms"),
    ("limits", "line_max", "100"), ("lmtp", "starttls", "perhaps")])
def test_bad_limit_values_are_config_errors(servers, section, key, value):
    s = servers.create(start=False, overrides={section: {key: value}})
    r = s.cli("domain", "list")
    assert r.returncode == 78, r
    assert key in r.stderr, r.stderr
