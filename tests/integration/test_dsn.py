"""Delivery status notifications built by lib-mail (through
tests/unit/outbound-tool), read back by Python's email package: a valid
multipart/report with its message/delivery-status fields, whatever the
remote reply and the original header hold."""
import email
import email.policy
import email.utils
import subprocess

import pytest

from .ternserver import built_tool, check_sanitizer_output

ORIGINAL = (b"Received: from client by mx.example.com; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"From: Alice <alice@example.com>\r\nTo: bob@example.net, carol@example.org\r\n"
            b"Subject: the report\r\nMessage-ID: <1@example.com>\r\n\r\n"
            b"the body is not returned\r\n")


@pytest.fixture(scope="module")
def tool():
    return built_tool("outbound-tool")


def dsn(tool, *rcpts, sender="alice@example.com", envid="-", header=ORIGINAL):
    """rcpts: (address, action, status, diagnostic, remote) tuples."""
    argv = [str(tool), "dsn", "mx.example.com", sender, envid]
    for r in rcpts:
        argv += list(r)
    r = subprocess.run(argv, input=header, capture_output=True, timeout=60)
    check_sanitizer_output(r.stderr, "outbound-tool")
    assert r.returncode == 0, r.stderr
    raw = r.stdout
    for line in raw.split(b"\r\n")[:-1]:
        assert b"\n" not in line and b"\r" not in line and len(line) < 998
        assert all(0x20 <= c < 0x7f or c == 9 for c in line), line
    assert raw.endswith(b"\r\n")
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def no_defects(msg):
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)


def parts(msg):
    return [p.get_content_type() for p in msg.iter_parts()]


def status_blocks(msg):
    """The per-message block and the per-recipient blocks."""
    ds = [p for p in msg.iter_parts() if p.get_content_type() == "message/delivery-status"]
    assert len(ds) == 1
    return ds[0].get_payload()


def test_report_structure(tool):
    raw, msg = dsn(tool, ("bob@example.net", "failed", "5.1.1", "550 5.1.1 <bob@example.net>: "
                          "no such user", "mx.example.net"),
                   ("carol@example.org", "delayed", "4.4.1", "connection timed out", "-"),
                   envid="QQ314159")
    no_defects(msg)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert parts(msg) == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"].addresses[0].addr_spec == "alice@example.com"
    sender = msg["From"].addresses[0]
    assert sender.display_name == "Mail Delivery System"
    assert sender.addr_spec == "MAILER-DAEMON@mx.example.com"
    assert email.utils.parsedate_to_datetime(msg["Date"]) is not None
    assert msg["Message-ID"].endswith("@mx.example.com>")

    blocks = status_blocks(msg)
    assert len(blocks) == 3
    per_msg, bob, carol = blocks
    assert per_msg["Reporting-MTA"] == "dns; mx.example.com"
    assert per_msg["Original-Envelope-Id"] == "QQ314159"
    assert email.utils.parsedate_to_datetime(per_msg["Arrival-Date"]) is not None
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Action"] == "failed" and bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.net"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: no such user"
    assert email.utils.parsedate_to_datetime(bob["Last-Attempt-Date"]) is not None
    assert carol["Final-Recipient"] == "rfc822; carol@example.org"
    assert carol["Action"] == "delayed" and carol["Status"] == "4.4.1"
    assert carol["Remote-MTA"] is None
    assert carol["Diagnostic-Code"] == "X-tern; connection timed out"

    text = next(msg.iter_parts()).get_content()
    assert "bob@example.net" in text and "no such user" in text
    headers = list(msg.iter_parts())[2].get_payload(decode=True)
    assert headers == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"


def test_delayed_only(tool):
    _, msg = dsn(tool, ("carol@example.org", "delayed", "4.4.1", "-", "-"), header=b"")
    no_defects(msg)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert parts(msg) == ["text/plain", "message/delivery-status"]
    assert status_blocks(msg)[1]["Action"] == "delayed"


def test_hostile_diagnostic(tool):
    """A remote reply with CRLF, a fake boundary, a fake part and 8-bit
    octets, and an original header that tries the same, stay text."""
    hostile = ("550 5.7.1 rejected\r\n--tern-report.x\r\nContent-Type: text/html\r\n\r\n"
               "<script>\x01</script>\r\n.\r\n")
    header = (b"From: alice@example.com\r\n--tern-report.x--\r\nSubject: caf\xc3\xa9\r\n"
              b"Content-Type: text/html\r\n\r\n--tern-report.x\r\nbody\r\n")
    raw, msg = dsn(tool, ("bob@example.net\r\nBcc: eve@example.org", "failed", "5.7.1\r\nX: y",
                          hostile, "mx.example.net\r\nX-Injected: 1"), header=header,
                   sender="alice@example.com\r\nBcc: eve@example.org")
    no_defects(msg)
    assert parts(msg) == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    rcpt = status_blocks(msg)[1]
    assert rcpt["Diagnostic-Code"] == ("smtp; 550 5.7.1 rejected --tern-report.x Content-Type: "
                                       "text/html <script>?</script> .")
    assert rcpt["Status"] == "5.0.0"
    assert rcpt["X-Injected"] is None and rcpt["Bcc"] is None
    assert rcpt["Remote-MTA"] == "dns; mx.example.net X-Injected: 1"
    headers = list(msg.iter_parts())[2].get_payload(decode=True)
    assert headers == (b"From: alice@example.com\r\n--tern-report.x--\r\nSubject: caf??\r\n"
                       b"Content-Type: text/html\r\n")
    boundary = msg.get_boundary()
    assert raw.count(boundary.encode()) == 5    # the parameter, three delimiters, the close


def test_null_sender_refused(tool):
    r = subprocess.run([str(tool), "dsn", "mx.example.com", "", "-", "bob@example.net",
                        "failed", "5.1.1", "-", "-"], input=b"", capture_output=True, timeout=60)
    assert r.returncode == 1 and b"null sender" in r.stderr
