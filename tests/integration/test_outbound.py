"""Outbound mail end to end: submission, the queue, MX delivery to a sink,
DKIM, DSNs, and a node killed with mail queued.

A DNS server (NSD, tests/integration/dnsserver.py) on 127.0.0.53 serves
remote.test (MX -> 127.0.0.61) and an SMTP sink (smtpsink.py) listens on
127.0.0.61; tern's [relay] resolver and port point at them. Signatures
are checked with a real verifier (dkimpy), the DSNs with Python's email
parser.
"""
import base64
import email
import email.policy
import socket
import subprocess
import time

import pytest

from .dnsserver import DnsServer, free_port
from .helpers import TIMEOUT, Smtp, client_tls_context, make_message
from .smtpsink import SmtpSink
from .ternserver import free_ports, require_tool

SINK_HOST = "127.0.0.61"
DNS_HOST = "127.0.0.53"
DELIVER_TIMEOUT = 60 if TIMEOUT > 10 else 30


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("dkim")
    key = d / "ed25519.pem"
    r = subprocess.run([require_tool("openssl"), "genpkey", "-algorithm", "ed25519", "-out", str(key)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return key


@pytest.fixture(scope="module")
def sink_port():
    return free_port(SINK_HOST)


@pytest.fixture(scope="module")
def dns():
    d = DnsServer(DNS_HOST)
    d.zone("remote.test", [
        ("remote.test", "MX", "10 mx.remote.test."),
        ("mx.remote.test", "A", SINK_HOST),
    ])
    d.zone("nullmx.test", [("nullmx.test", "MX", "0 .")])
    d.start()
    yield d
    d.stop()


@pytest.fixture
def sink(sink_port, cert):
    s = SmtpSink(SINK_HOST, sink_port, cert=cert[0], key=cert[1])
    yield s
    s.stop()


def outbound_sections(dns, sink_port, dkim_key, **extra):
    """The configuration of a node that submits and relays to the sink:
    {section: {key: value}}, extra's keys merged in."""
    sections = {
        "submission": {"listen": "127.0.0.1:%d" % free_ports(1)[0]},
        "relay": {"smarthost": None, "resolver": dns.resolver, "port": str(sink_port), "tls": "may",
                  "connect_timeout": "2s", "command_timeout": "5s"},
        "queue": {"retry_min": "1s", "retry_max": "2s", "scan_interval": "200ms",
                  "lease": "3s", "node_id": "node-a"},
        "dkim": {"domain": "example.test", "selector": "s1", "key_file": str(dkim_key)},
    }
    for sec, keys in extra.items():
        sections.setdefault(sec, {}).update(keys)
    return sections


def with_submission_port(s):
    s.submission_port = int(s.sections["submission"]["listen"].rsplit(":", 1)[1])
    return s


def outbound_server(servers, dns, sink_port, dkim_key, **extra):
    return with_submission_port(servers.create(overrides=outbound_sections(dns, sink_port, dkim_key,
                                                                           **extra)))


def auth_plain(user, password):
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def submit(s, user, pw, rcpts, message, sender=None):
    """Submits over port 587: STARTTLS, AUTH, MAIL, RCPT..., DATA. Returns
    the final reply."""
    c = Smtp(s.submission_port)
    c.ehlo()
    assert c.cmd("STARTTLS").code == 220
    c.starttls(client_tls_context())
    c.ehlo()
    r = c.cmd("AUTH PLAIN " + auth_plain(user, pw))
    assert r.code == 235, r
    r = c.cmd("MAIL FROM:<%s>" % (sender or user))
    assert r.code == 250, r
    for rc in rcpts:
        r = c.cmd("RCPT TO:<%s>" % rc)
        assert r.code == 250, (rc, r)
    r = c.data(message)
    c.quit()
    return r


def queue_list(s):
    return s.cli_ok("queue", "list").stdout


def wait_queue_empty(s, timeout=DELIVER_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        out = queue_list(s)
        if out.strip().endswith("0 messages queued"):
            return
        assert time.monotonic() < deadline, "the queue never emptied:\n%s\n%s" % (out, s.log_tail())
        time.sleep(0.2)


def message_to(sender, rcpt, subject, body="hello from tern\r\n"):
    return ("From: Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
            "Message-ID: <%s@example.test>\r\n\r\n%s" % (sender, rcpt, subject, subject.replace(" ", "-"),
                                                          body)).encode()


def test_submission_wants_tls_then_auth(servers, dns, sink_port, dkim_key):
    s = outbound_server(servers, dns, sink_port, dkim_key)
    user, pw = s.new_user("sub")
    c = Smtp(s.submission_port)
    r = c.ehlo()
    assert "STARTTLS" in r.lines
    assert not any(l.startswith("AUTH") for l in r.lines), r.lines
    assert c.cmd("MAIL FROM:<%s>" % user).code == 530
    r = c.cmd("AUTH PLAIN " + auth_plain(user, pw))
    assert r.code == 530 and "STARTTLS" in r.text, r
    assert c.cmd("STARTTLS").code == 220
    c.starttls(client_tls_context())
    r = c.ehlo()
    assert any(l.startswith("AUTH") for l in r.lines), r.lines
    assert c.cmd("MAIL FROM:<%s>" % user).code == 530
    assert c.cmd("AUTH PLAIN " + auth_plain(user, pw)).code == 235
    assert c.cmd("MAIL FROM:<%s>" % user).code == 250
    c.quit()


def test_submissions_port_is_tls_from_the_start(servers):
    port = free_ports(1)[0]
    s = servers.create(overrides={"submission": {"listen_tls": "127.0.0.1:%d" % port}})
    user, pw = s.new_user("tls465")
    c = Smtp(port, tls=True, ctx=client_tls_context())
    r = c.ehlo()
    assert "STARTTLS" not in r.lines
    assert any(l.startswith("AUTH") for l in r.lines), r.lines
    assert c.cmd("MAIL FROM:<%s>" % user).code == 530
    assert c.cmd("AUTH PLAIN " + auth_plain(user, pw)).code == 235
    assert c.cmd("MAIL FROM:<%s>" % user).code == 250
    c.quit()


def test_no_relay_without_auth_and_no_forged_sender(servers, dns, sink_port, dkim_key, sink):
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key)
    user, pw = s.new_user("forge")
    other, _ = s.new_user("other")
    # Port 25, unauthenticated: a remote recipient is relaying.
    c = s.smtp()
    c.ehlo()
    assert c.cmd("MAIL FROM:<someone@elsewhere.test>").code == 250
    r = c.cmd("RCPT TO:<friend@remote.test>")
    assert r.code == 550 and r.enhanced == "5.7.1", r
    c.quit()
    # Authenticated (loopback allows AUTH without TLS on port 25): the
    # sender must be the login or an alias that delivers to it.
    c = s.smtp()
    c.ehlo()
    assert c.cmd("AUTH PLAIN " + auth_plain(user, pw)).code == 235
    r = c.cmd("MAIL FROM:<%s>" % other)
    assert r.code == 553 and r.enhanced == "5.7.1", r
    r = c.cmd("MAIL FROM:<>")
    assert r.code == 553, r
    r = c.cmd("MAIL FROM:<nobody@example.test>")
    assert r.code == 553, r
    s.cli_ok("alias", "add", "me-too@example.test", user)
    assert c.cmd("MAIL FROM:<me-too@example.test>").code == 250
    assert c.cmd("RCPT TO:<friend@remote.test>").code == 250
    c.quit()
    assert sink.messages == []


def dkim_record(s):
    out = s.cli_ok("dkim", "record").stdout.strip()
    # s1._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=..."
    name, rest = out.split(" IN TXT ", 1)
    assert name == "s1._domainkey.example.test.", out
    return rest.strip().strip('"')


def test_submitted_mail_reaches_the_sink_signed_and_local_mail_stays_local(servers, dns, sink_port,
                                                                          dkim_key, sink):
    import dkim
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key)
    user, pw = s.new_user("alice")
    local, lpw = s.new_user("bob")
    msg = message_to(user, "friend@remote.test", "signed mail")
    r = submit(s, user, pw, ["friend@remote.test", "Other@Remote.Test", local], msg)
    assert r.code == 250, r
    assert sink.wait_for(1, DELIVER_TIMEOUT), s.log_tail()
    m = sink.messages[0]
    assert m.mail_from == user
    assert sorted(m.rcpts) == ["friend@remote.test", "other@remote.test"]
    assert m.tls, "the sink offers STARTTLS: [relay] tls = may uses it"
    assert b"\r\nSubject: signed mail\r\n" in m.data
    record = dkim_record(s).encode()

    def dnsfunc(name, timeout=5):
        assert name in (b"s1._domainkey.example.test.", "s1._domainkey.example.test."), name
        return record
    assert m.data.startswith(b"DKIM-Signature:"), m.data[:200]
    assert dkim.verify(m.data, dnsfunc=dnsfunc), "dkimpy does not verify the signature"
    # Tampered: fails.
    assert not dkim.verify(m.data.replace(b"hello from tern", b"hello from eve"), dnsfunc=dnsfunc)
    # The local recipient got it from the same transaction, unsigned, not through the queue.
    assert s.count(local, lpw) == 1
    wait_queue_empty(s)
    log = s.log_text()
    assert "result=sent" in log and 'tls="TLSv1.' in log, log[-3000:]


def test_sink_down_then_up_is_delivered_on_retry(servers, dns, sink_port, dkim_key, sink):
    s = outbound_server(servers, dns, sink_port, dkim_key)
    user, pw = s.new_user("retry")
    assert submit(s, user, pw, ["later@remote.test"], message_to(user, "later@remote.test", "retry")).code == 250
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while True:
        out = queue_list(s)
        if "attempts=1" in out or "attempts=2" in out:
            break
        assert time.monotonic() < deadline, out + s.log_tail()
        time.sleep(0.2)
    assert "later@remote.test pending" in out, out
    sink.start()
    assert sink.wait_for(1, DELIVER_TIMEOUT), s.log_tail()
    wait_queue_empty(s)


def pop3_messages(s, user, pw):
    p = s.login(user, pw)
    try:
        n, _ = p.stat()
        return [p.retr(i + 1) for i in range(n)]
    finally:
        p.quit()


def test_a_permanent_failure_returns_a_dsn_to_a_local_sender(servers, dns, sink_port, dkim_key, sink):
    sink.rcpt_reply = {"gone@remote.test": "550 5.1.1 no such user here"}
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key)
    user, pw = s.new_user("bounce")
    msg = message_to(user, "gone@remote.test", "will bounce")
    assert submit(s, user, pw, ["gone@remote.test", "fine@remote.test"], msg).code == 250
    assert sink.wait_for(1, DELIVER_TIMEOUT)
    assert sink.messages[0].rcpts == ["fine@remote.test"]
    wait_queue_empty(s)
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while not pop3_messages(s, user, pw):
        assert time.monotonic() < deadline, "no DSN arrived:\n" + s.log_tail()
        time.sleep(0.2)
    raw = pop3_messages(s, user, pw)[0]
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Return-Path"] == "<>"
    parts = list(dsn.iter_parts())
    status = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    assert status, [p.get_content_type() for p in parts]
    text = raw.decode("latin-1")
    assert "Final-Recipient: rfc822; gone@remote.test" in text
    assert "Action: failed" in text
    assert "Status: 5.1.1" in text
    assert "no such user here" in text
    assert "fine@remote.test" not in text.split("message/delivery-status", 1)[1].split("rfc822-headers")[0]
    assert "Subject: will bounce" in text


def test_no_bounce_for_a_bounce_and_null_mx_fails_at_once(servers, dns, sink_port, dkim_key, sink):
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key)
    user, pw = s.new_user("nullmx")
    # A null MX (RFC 7505): refused at once, DSN without waiting for retries.
    assert submit(s, user, pw, ["x@nullmx.test"], message_to(user, "x@nullmx.test", "null mx")).code == 250
    wait_queue_empty(s, timeout=20)
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while not pop3_messages(s, user, pw):
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.2)
    assert b"5.1.10" in pop3_messages(s, user, pw)[0]
    # An alias that forwards remotely, mailed from the null sender, to a
    # recipient the sink refuses: dropped, no DSN anywhere.
    sink.rcpt_reply = {"refuses@remote.test": "550 5.1.1 no"}
    s.cli_ok("alias", "add", "fwd@example.test", "refuses@remote.test")
    c = s.smtp()
    c.ehlo()
    assert c.cmd("MAIL FROM:<>").code == 250
    assert c.cmd("RCPT TO:<fwd@example.test>").code == 250
    assert c.data(make_message("a bounce", to="fwd@example.test")).code == 250
    c.quit()
    wait_queue_empty(s)
    assert "never a bounce for a bounce" in s.log_text()


def test_a_remote_senders_dsn_goes_through_the_queue_from_the_null_sender(servers, dns, sink_port,
                                                                          dkim_key, sink):
    sink.rcpt_reply = {"refuses@remote.test": "550 5.1.1 no such user"}
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key)
    s.add_domain("example.test")
    s.cli_ok("alias", "add", "fwd@example.test", "refuses@remote.test")
    s.deliver_smtp(["fwd@example.test"], make_message("forwarded", to="fwd@example.test"),
                   sender="stranger@remote.test")
    assert sink.wait_for(1, DELIVER_TIMEOUT), s.log_tail()
    m = sink.messages[0]
    assert (m.mail_from, m.rcpts) == ("", ["stranger@remote.test"]), m[:2]
    dsn = email.message_from_bytes(m.data, policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    assert b"Final-Recipient: rfc822; refuses@remote.test" in m.data
    wait_queue_empty(s)
    assert 'msg="queue DSN sent"' in s.log_text()


def test_an_alias_forwards_to_a_remote_address(servers, dns, sink_port, dkim_key, sink):
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key)
    keep, kpw = s.new_user("keeper")
    s.cli_ok("alias", "add", "team@example.test", keep, "outside@remote.test")
    s.deliver_smtp(["team@example.test"], make_message("to the team", to="team@example.test"),
                   sender="stranger@elsewhere.test")
    assert sink.wait_for(1, DELIVER_TIMEOUT), s.log_tail()
    assert sink.messages[0].rcpts == ["outside@remote.test"]
    assert sink.messages[0].mail_from == "stranger@elsewhere.test"
    assert s.count(keep, kpw) == 1


def test_a_node_killed_with_mail_queued_delivers_it_after_restart(servers, dns, sink_port, dkim_key,
                                                                 sink):
    s = outbound_server(servers, dns, sink_port, dkim_key, queue={"retry_min": "1h", "retry_max": "1h"})
    user, pw = s.new_user("crash")
    for i in range(3):
        assert submit(s, user, pw, ["c%d@remote.test" % i],
                      message_to(user, "c%d@remote.test" % i, "crash %d" % i)).code == 250
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while queue_list(s).count("attempts=1") < 3:
        assert time.monotonic() < deadline, queue_list(s) + s.log_tail()
        time.sleep(0.2)
    s.kill9()
    sink.start()
    # A restart reads the queue; the next attempt is an hour away, so a
    # flush makes it due now (as an operator would).
    s.cli_ok("queue", "flush")
    s.start()
    assert sink.wait_for(3, DELIVER_TIMEOUT), s.log_tail()
    assert sorted(r for m in sink.messages for r in m.rcpts) == ["c0@remote.test", "c1@remote.test",
                                                                 "c2@remote.test"]
    wait_queue_empty(s)


def test_queue_commands_and_admin_endpoints(servers, dns, sink_port, dkim_key):
    from .test_admin import start_admin_server
    s = start_admin_server(servers, overrides={
        "submission": {"listen": "127.0.0.1:%d" % free_ports(1)[0]},
        "relay": {"smarthost": None, "resolver": dns.resolver, "port": str(sink_port),
                  "connect_timeout": "1s"},
        "queue": {"retry_min": "1h", "retry_max": "1h", "scan_interval": "200ms", "node_id": "node-q"},
    })
    with_submission_port(s)
    user, pw = s.new_user("q")
    assert submit(s, user, pw, ["a@remote.test"], message_to(user, "a@remote.test", "one")).code == 250
    assert submit(s, user, pw, ["b@remote.test"], message_to(user, "b@remote.test", "two")).code == 250
    code, _, body = s.admin.request("GET", "/queue")
    assert code == 200, body
    msgs = body["messages"]
    assert len(msgs) == 2 and not body["truncated"]
    assert {m["recipients"][0]["address"] for m in msgs} == {"a@remote.test", "b@remote.test"}
    assert all(m["owner"] == "node-q" and m["sender"] == user for m in msgs)
    code, _, body = s.admin.request("DELETE", "/queue/" + msgs[0]["id"])
    assert code == 200, body
    code, _, body = s.admin.request("DELETE", "/queue/" + msgs[0]["id"])
    assert code == 404, body
    code, _, body = s.admin.request("DELETE", "/queue/not-an-id")
    assert code == 404, body
    code, _, body = s.admin.request("POST", "/queue/flush")
    assert code == 200 and body["due"] == 1, body
    out = queue_list(s)
    assert msgs[1]["id"] in out and msgs[0]["id"] not in out and "1 message queued" in out, out
    r = s.cli("queue", "del", msgs[1]["id"])
    assert r.returncode == 0, r.stderr
    r = s.cli("queue", "del", msgs[1]["id"])
    assert r.returncode != 0 and "no queued message" in r.stderr
    assert "0 messages queued" in queue_list(s)
    code, _, text = s.admin.request("GET", "/metrics")
    for name in ("tern_queue_messages", "tern_queue_oldest_seconds", "tern_queue_attempts_total",
                 "tern_queue_duplicates_total"):
        assert name in text, name


def test_a_smarthost_with_auth_takes_everything(servers, dns, sink_port, dkim_key, cert, tmp_path):
    # The smarthost is the sink on another address, reached without DNS;
    # it wants AUTH PLAIN after STARTTLS (tls = verify against the test CA).
    smart = SmtpSink("127.0.0.62", sink_port, cert=cert[0], key=cert[1], auth=("relay-user", "relay-pw"))
    smart.require_tls = True
    smart.start()
    try:
        pwfile = tmp_path / "relay.password"
        pwfile.write_text("relay-pw\n")
        s = outbound_server(servers, dns, sink_port, dkim_key,
                            relay={"smarthost": "127.0.0.62:%d" % sink_port, "username": "relay-user",
                                   "password_file": str(pwfile), "tls": "may"})
        user, pw = s.new_user("smart")
        assert submit(s, user, pw, ["x@anywhere.example", "y@nullmx.test"],
                      message_to(user, "x@anywhere.example", "via smarthost")).code == 250
        # Every domain goes to the smarthost, MX records or not (one
        # delivery per domain).
        assert smart.wait_for(2, DELIVER_TIMEOUT), s.log_tail()
        assert sorted(r for m in smart.messages for r in m.rcpts) == ["x@anywhere.example", "y@nullmx.test"]
        assert smart.auth_users and set(smart.auth_users) == {"relay-user"}
        assert all(m.tls for m in smart.messages)
        wait_queue_empty(s)
    finally:
        smart.stop()


def test_mail_that_cannot_go_within_max_lifetime_expires_with_a_dsn(servers, dns, sink_port, dkim_key):
    # No sink at all: every attempt fails to connect, until max_lifetime.
    s = outbound_server(servers, dns, sink_port, dkim_key,
                        queue={"retry_min": "1s", "retry_max": "1s", "max_lifetime": "3s"})
    user, pw = s.new_user("expire")
    assert submit(s, user, pw, ["late@remote.test"], message_to(user, "late@remote.test", "too late")).code == 250
    wait_queue_empty(s)
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while not pop3_messages(s, user, pw):
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.2)
    text = pop3_messages(s, user, pw)[0].decode("latin-1")
    assert "Final-Recipient: rfc822; late@remote.test" in text
    assert "Status: 4.4.7" in text
    assert "result=expired" in s.log_text()


def test_sigterm_during_a_silent_delivery_stops_at_once_and_keeps_the_mail(servers, dns, sink_port,
                                                                          dkim_key, sink):
    """A peer that takes the data and never answers would hold a delivery
    thread for the data timeout (here 20 minutes): SIGTERM must not wait
    for it (ternserver's stop allows a few seconds), and the message stays
    queued, due, the cut attempt not counted."""
    sink.hostile = "data_silent"
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key,
                        relay={"command_timeout": "10m", "connect_timeout": "1m"},
                        queue={"retry_min": "1h", "retry_max": "1h"})
    user, pw = s.new_user("stopper")
    assert submit(s, user, pw, ["slow@remote.test"],
                  message_to(user, "slow@remote.test", "slow peer")).code == 250
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while "DATA" not in [c.upper() for c in sink.commands]:
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.05)
    time.sleep(0.2)    # the data is on its way; tern waits for the reply
    s.stop()
    out = queue_list(s)
    assert "slow@remote.test pending" in out and "attempts=0" in out, out
    sink.stop()
    sink.hostile = None
    sink.start()
    s.start()
    assert sink.wait_for(1, DELIVER_TIMEOUT), s.log_tail()
    assert sink.messages[0].rcpts == ["slow@remote.test"]
    wait_queue_empty(s)


def test_a_dsn_to_a_forwarding_alias_reaches_its_local_and_remote_targets(servers, dns, sink_port,
                                                                         dkim_key, sink):
    sink.rcpt_reply = {"gone@remote.test": "550 5.1.1 no such user here"}
    sink.start()
    s = outbound_server(servers, dns, sink_port, dkim_key)
    user, pw = s.new_user("teamster")
    s.cli_ok("alias", "add", "crew@example.test", user, "crew-out@remote.test")
    assert submit(s, user, pw, ["gone@remote.test"], message_to("crew@example.test", "gone@remote.test",
                                                                "to a gone address"),
                  sender="crew@example.test").code == 250
    # The DSN: in the login's mailbox, and forwarded (from <>) to the
    # alias's remote target.
    assert sink.wait_for(1, DELIVER_TIMEOUT), s.log_tail()
    m = sink.messages[0]
    assert m.mail_from == "" and m.rcpts == ["crew-out@remote.test"], m
    assert b"multipart/report" in m.data and b"gone@remote.test" in m.data
    deadline = time.monotonic() + DELIVER_TIMEOUT
    while not pop3_messages(s, user, pw):
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.2)
    assert b"Final-Recipient: rfc822; gone@remote.test" in pop3_messages(s, user, pw)[0]
    wait_queue_empty(s)


def test_sigterm_during_a_dns_lookup_that_never_ends_stops_at_once(servers, dns, sink_port, dkim_key):
    """A resolver that never answers holds a lookup for the relay's connect
    timeout (here a minute): SIGTERM cancels it, and the mail stays queued."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.71", 0))
    try:
        s = outbound_server(servers, dns, sink_port, dkim_key,
                            relay={"resolver": "127.0.0.71:%d" % silent.getsockname()[1],
                                   "connect_timeout": "1m"},
                            queue={"retry_min": "1h", "retry_max": "1h"})
        user, pw = s.new_user("dnsstop")
        assert submit(s, user, pw, ["q@remote.test"], message_to(user, "q@remote.test", "dns stop")).code == 250
        # The runner starts on the put; the query reaches the silent resolver.
        silent.settimeout(DELIVER_TIMEOUT)
        silent.recvfrom(4096)
        s.stop()    # within ternserver's stop limit, or it fails
        out = queue_list(s)
        assert "q@remote.test pending" in out, out
    finally:
        silent.close()
