"""DKIM signatures made by lib-mail (through tests/unit/outbound-tool),
verified by an independent implementation: dkimpy, with the DNS lookup
answered by the test with the record tern prints for the key.

Keys are made with the openssl commands docs/outbound.md gives operators.
"""
import re
import subprocess

import dkim
import pytest

from .ternserver import built_tool, check_sanitizer_output, require_tool

DOMAIN, SELECTOR = "example.com", "s2024"


@pytest.fixture(scope="module")
def tool():
    return built_tool("outbound-tool")


def run(tool, *args, data=b""):
    r = subprocess.run([str(tool)] + [str(a) for a in args], input=data, capture_output=True,
                       timeout=120)
    check_sanitizer_output(r.stderr, "outbound-tool")
    return r


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def key(request, tmp_path_factory, tool):
    """(algorithm, key file, TXT record) for each algorithm."""
    openssl = require_tool("openssl")
    path = tmp_path_factory.mktemp("dkim") / ("%s.pem" % request.param)
    argv = {"rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "ed25519": ["-algorithm", "ed25519"]}[request.param]
    r = subprocess.run([openssl, "genpkey"] + argv + ["-out", str(path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = run(tool, "record", path, DOMAIN, SELECTOR)
    assert r.returncode == 0, r.stderr
    record = r.stdout.strip()
    assert re.fullmatch(rb"v=DKIM1; k=%s; p=[A-Za-z0-9+/]+=*" % request.param.encode(), record), \
        record
    return request.param, path, record


def sign(tool, key, message):
    r = run(tool, "sign", key[1], DOMAIN, SELECTOR, data=message)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(message)
    return r.stdout


def verifies(key, signed):
    def dns(name, timeout=5):
        assert name == ("%s._domainkey.%s." % (SELECTOR, DOMAIN)).encode(), name
        return key[2]
    return dkim.verify(signed, dnsfunc=dns)


def signature_field(signed):
    """The DKIM-Signature field the tool put first, with its CRLF."""
    return re.match(rb"DKIM-Signature:.*?\r\n(?![ \t])", signed, re.S).group(0)


MESSAGES = {
    "plain": b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
             b"Subject: hello\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
             b"Message-ID: <1@example.com>\r\n\r\nHello Bob.\r\n",
    # folded fields, runs of WSP and WSP at line ends
    # in the header and the body
    "folded": b"From: Alice\r\n <alice@example.com>\r\nTo: bob@example.net,\r\n\t carol@example.org"
              b"  \r\nSubject:   a   long\r\n\tsubject \t \r\nX-Other: not signed\r\n"
              b"Cc: dave@example.net\r\n\r\nline  with   spaces   \r\n\ttabbed\t\r\n"
              b"  \r\nend\r\n",
    "trailing-empty-lines": b"From: alice@example.com\r\nSubject: x\r\n\r\nbody\r\n\r\n\r\n"
                            b" \r\n\t\r\n\r\n",
    "8bit": "From: Zoë <zoe@example.com>\r\nSubject: café ☕\r\nTo: ü@example.net\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße, ça va ?\r\n".encode() + b"\xff\x80\r\n",
    "empty-body": b"From: alice@example.com\r\nSubject: nothing\r\n\r\n",
    "no-body": b"From: alice@example.com\r\nSubject: nothing\r\n",
    "several-to": b"To: a@example.net\r\nFrom: alice@example.com\r\nTo: b@example.net\r\n"
                  b"Received: x\r\nTo: c@example.net\r\n\r\n\r\nleading empty line\r\n",
    "list": b"From: list@example.com\r\nList-Id: <l.example.com>\r\n"
            b"List-Unsubscribe: <https://example.com/u>\r\n"
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nnews\r\n",
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_dkimpy_verifies(tool, key, name):
    signed = sign(tool, key, MESSAGES[name])
    assert verifies(key, signed), signed[:2000]
    field = signature_field(signed)
    for line in field.split(b"\r\n")[:-1]:
        assert len(line) <= 78, line
    tags = dict(t.strip().split(b"=", 1) for t in re.sub(rb"\r\n[ \t]", b" ", field)
                .split(b":", 1)[1].strip().rstrip(b";").split(b";"))
    assert tags[b"a"] == {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}[key[0]]
    assert tags[b"c"] == b"relaxed/relaxed" and tags[b"d"] == b"example.com"
    assert tags[b"s"] == SELECTOR.encode() and tags[b"v"] == b"1"
    assert b"l" not in tags
    h = [n.strip().lower() for n in tags[b"h"].split(b":")]
    assert h.count(b"from") == 2


def test_signed_fields(tool, key):
    """The fields listed, bottom-up duplicates and the oversigned From."""
    signed = sign(tool, key, MESSAGES["several-to"])
    h = re.search(rb"h=([^;]*);", re.sub(rb"\r\n[ \t]", b" ", signature_field(signed))).group(1)
    assert re.sub(rb"\s", b"", h) == b"From:From:To:To:To"


def modified(name, signed):
    head, _, body = signed.partition(b"\r\n\r\n")
    return {
        "body-changed": head + b"\r\n\r\n" + body.replace(b"Hello", b"Jello"),
        "body-appended": signed + b"P.S. added in transit\r\n",
        "subject-changed": signed.replace(b"Subject: hello", b"Subject: hellO"),
        "from-prepended": signed.replace(b"From: Alice", b"From: mallory@example.org\r\nFrom: Alice"),
        "from-appended": head + b"\r\nFrom: mallory@example.org\r\n\r\n" + body,
        "to-added": head + b"\r\nTo: eve@example.org\r\n\r\n" + body,
    }[name]


@pytest.mark.parametrize("change", ["body-changed", "body-appended", "subject-changed",
                                    "from-prepended", "from-appended", "to-added"])
def test_modified_after_signing_fails(tool, key, change):
    signed = sign(tool, key, MESSAGES["plain"])
    assert verifies(key, signed)
    altered = modified(change, signed)
    assert altered != signed
    assert not verifies(key, altered)


def test_unsigned_changes_still_verify(tool, key):
    """Whitespace the relaxed forms ignore, and fields not signed, may change."""
    signed = sign(tool, key, MESSAGES["plain"])
    head, _, body = signed.partition(b"\r\n\r\n")
    relaxed = (b"Received: from relay by mx; Mon, 1 Jan 2024 00:00:01 +0000\r\n" +
               head.replace(b"Subject: hello", b"Subject:  \thello  ") +
               b"\r\n\r\n" + body.replace(b"Hello Bob.", b"Hello   Bob.  ") + b"\r\n\r\n")
    assert verifies(key, relaxed)


def test_dsn_signed(tool, key):
    """A DSN built by lib-mail signs and verifies like any message."""
    r = run(tool, "dsn", "mx.example.com", "alice@example.com", "-", "bob@example.net",
            "failed", "5.1.1", "550 5.1.1 no such user", "mx.example.net",
            data=MESSAGES["plain"])
    assert r.returncode == 0, r.stderr
    assert verifies(key, sign(tool, key, r.stdout))


def test_refusals(tool, key, tmp_path):
    r = run(tool, "sign", key[1], DOMAIN, SELECTOR, data=b"Subject: no from\r\n\r\nbody\r\n")
    assert r.returncode == 1 and b"no From: header field" in r.stderr
    small = tmp_path / "rsa768.pem"
    subprocess.run([require_tool("openssl"), "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:768", "-out", str(small)], check=True,
                   capture_output=True, timeout=120)
    r = run(tool, "record", small, DOMAIN, SELECTOR)
    assert r.returncode == 1 and b"too small" in r.stderr
