"""Outbound delivery (src/lib-relay) against real servers on loopback.

relay-probe (built next to $TERN_BIN) delivers a message through the relay
library; the DNS answers come from NSD (dnsserver.py: one unsigned set of
zones and one DNSSEC-signed zone for DANE), and the far ends are SmtpSinks
(smtpsink.py), each on its own 127.0.0.x address and all on one port, the
probe's --port. Certificates: a test CA, a leaf it signed for the TLS hosts'
names, and a self-signed one.
"""
import datetime
import socket
import subprocess
from pathlib import Path

import pytest

from .dnsserver import DnsServer, free_port, tlsa_3_1_1
from .smtpsink import SmtpSink
from .ternserver import binary_path

PROBE_TIMEOUT = 60
DNS_HOST = "127.0.0.70"

# name -> address of the hosts in the zones
HOSTS = {
    "mx1.example.test": "127.0.0.71",   # nothing listens there
    "mx2.example.test": "127.0.0.72",
    "amx.test": "127.0.0.73",           # no MX: the A record
    "mx.tls.test": "127.0.0.74",        # CA-signed certificate
    "mx.badtls.test": "127.0.0.75",     # self-signed certificate
    "mx.sec.test": "127.0.0.76",        # DANE: matching TLSA
    "mxbad.sec.test": "127.0.0.77",     # DANE: TLSA that matches nothing
    "mx.hostile.test": "127.0.0.78",
    "mxg1.greet.test": "127.0.0.80",    # 421 greeting
    "mxg2.greet.test": "127.0.0.81",
}
SMARTHOST = "127.0.0.79"


def _certs(d):
    """A CA, a leaf for the TLS hosts signed by it, a self-signed leaf."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem, key, cert):
        (d / (stem + ".key")).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (d / (stem + ".pem")).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return d / (stem + ".pem"), d / (stem + ".key")

    def build(subject, issuer, key, sign_key, ca, sans):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                                critical=False)
        return b.sign(sign_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("tern test CA", "tern test CA", ca_key, ca_key, True, None)
    ca_pem, _ = write("ca", ca_key, ca)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = build("mx.tls.test", "tern test CA", leaf_key, ca_key, False,
                 ["mx.tls.test", "mx.sec.test", "mxbad.sec.test", SMARTHOST])
    good = write("good", leaf_key, leaf)
    self_key = ec.generate_private_key(ec.SECP256R1())
    self_signed = build("mx.badtls.test", "mx.badtls.test", self_key, self_key, False,
                        ["mx.badtls.test"])
    bad = write("bad", self_key, self_signed)
    return ca_pem, good, bad


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    probe = binary_path().parent / "relay-probe"
    if not probe.is_file():
        pytest.fail("relay-probe not found at %s (cmake --build build)" % probe)
    d = tmp_path_factory.mktemp("relay")
    ca, good, bad = _certs(d)
    port = free_port(HOSTS["mx2.example.test"])

    def a(host):
        return (host, "A", HOSTS[host])

    dns = DnsServer(DNS_HOST)
    dns.zone("example.test", [
        ("example.test", "MX", "10 mx1.example.test."),
        ("example.test", "MX", "20 mx2.example.test."),
        a("mx1.example.test"), a("mx2.example.test"),
        ("txt.example.test", "TXT", '"a name without MX or A"'),
    ])
    dns.zone("amx.test", [a("amx.test")])
    dns.zone("nullmx.test", [("nullmx.test", "MX", "0 .")])
    dns.zone("tls.test", [("tls.test", "MX", "10 mx.tls.test."), a("mx.tls.test")])
    dns.zone("badtls.test", [("badtls.test", "MX", "10 mx.badtls.test."), a("mx.badtls.test")])
    dns.zone("hostile.test", [("hostile.test", "MX", "10 mx.hostile.test."), a("mx.hostile.test")])
    dns.zone("greet.test", [("greet.test", "MX", "10 mxg1.greet.test."),
                            ("greet.test", "MX", "20 mxg2.greet.test."),
                            a("mxg1.greet.test"), a("mxg2.greet.test")])
    dns.zone("sec.test", [
        ("sec.test", "MX", "10 mx.sec.test."), a("mx.sec.test"),
        ("_%d._tcp.mx.sec.test" % port, "TLSA", tlsa_3_1_1(good[0])),
        ("mismatch.sec.test", "MX", "10 mxbad.sec.test."), a("mxbad.sec.test"),
        ("_%d._tcp.mxbad.sec.test" % port, "TLSA", "3 1 1 " + "00" * 32),
    ], signed=True)
    dns.start()
    yield {"probe": probe, "dns": dns, "port": port, "ca": ca, "good": good, "bad": bad}
    dns.cleanup()


@pytest.fixture
def sinks(env):
    """sinks(host_name or address, cert=..., auth=...) starts a sink on the
    shared port; all are stopped after the test."""
    started = []

    def make(host, tls=None, **kw):
        cert = {"good": env["good"], "bad": env["bad"], None: (None, None)}[tls]
        s = SmtpSink(HOSTS.get(host, host), env["port"], cert=cert[0], key=cert[1],
                     name=host, **kw)
        started.append(s.start())
        return s

    yield make
    for s in started:
        s.stop()


class Result:
    def __init__(self, out):
        self.rcpts, self.report, self.reports = {}, {}, {}
        for line in out.splitlines():
            key, _, rest = line.partition(": ")
            if key in ("mx", "addr", "tls", "error"):
                self.report.setdefault(key, rest)
                self.reports.setdefault(key, []).append(rest)
                continue
            addr, result, code, status, reply = (line.split(" ", 4) + [""])[:5]
            self.rcpts.setdefault(addr, []).append((result, int(code), status, reply))

    def all(self, key):
        """Every report's value of key (one per --parallel delivery)."""
        return self.reports[key]

    def one(self, addr):
        return self.rcpts[addr][0]


MESSAGE = b"From: a@sender.test\r\nSubject: test\r\n\r\nhello\r\n"


def probe(env, sender, domain, *rcpts, message=MESSAGE, args=(), resolver=None,
          timeout=PROBE_TIMEOUT):
    cmd = [str(env["probe"]), "--resolver", resolver or env["dns"].resolver,
           "--port", str(env["port"]), "--ta", env["dns"].trust_anchor,
           "--connect-timeout", "3000", "--command-timeout", "5000",
           "--data-timeout", "5000"] + list(args) + [sender, domain] + list(rcpts)
    r = subprocess.run(cmd, input=message, capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return Result(r.stdout.decode())


# ------------------------------------------------------------------ MX rules

def test_mx_preference_first_down_second_used(env, sinks):
    s = sinks("mx2.example.test")
    r = probe(env, "a@sender.test", "example.test", "u@example.test")
    assert r.one("u@example.test")[:3] == ("ok", 250, "2.0.0")
    assert r.report["mx"] == "mx2.example.test"
    assert r.report["addr"] == HOSTS["mx2.example.test"]
    assert r.report["error"] == ""
    assert s.wait_for(1, 5)
    m = s.messages[0]
    assert (m.mail_from, m.rcpts, m.data, m.tls) == ("a@sender.test", ["u@example.test"],
                                                     MESSAGE, False)


def test_a_fallback_without_mx(env, sinks):
    s = sinks("amx.test")
    r = probe(env, "", "amx.test", "u@amx.test")
    assert r.one("u@amx.test")[0] == "ok"
    assert r.report["mx"] == "amx.test"
    assert s.wait_for(1, 5) and s.messages[0].mail_from == ""


def test_null_mx_permfails_at_once(env):
    r = probe(env, "a@sender.test", "nullmx.test", "u@nullmx.test", "v@nullmx.test")
    for addr in ("u@nullmx.test", "v@nullmx.test"):
        result, code, status, _ = r.one(addr)
        assert (result, code, status) == ("permfail", 556, "5.1.10")


def test_nxdomain_is_permanent(env):
    r = probe(env, "a@sender.test", "nx.example.test", "u@nx.example.test")
    result, code, status, reply = r.one("u@nx.example.test")
    assert (result, code, status) == ("permfail", 0, "5.1.2")
    assert "NXDOMAIN" in reply


def test_name_without_mx_or_address_tempfails(env):
    """NOERROR without MX falls back to A/AAAA; without those either there
    is nowhere to deliver (temporary: the records may come)."""
    r = probe(env, "a@sender.test", "txt.example.test", "u@txt.example.test")
    assert r.one("u@txt.example.test")[0] == "tempfail"


def test_dns_down_is_temporary(env):
    down = "127.0.0.69:%d" % free_port("127.0.0.69")
    r = probe(env, "a@sender.test", "example.test", "u@example.test", resolver=down)
    result, code, status, _ = r.one("u@example.test")
    assert (result, code, status) == ("tempfail", 0, "4.4.3")


def test_a_resolver_that_never_answers_is_bounded_by_the_timeout(env):
    """A resolver that takes the queries and never answers: the lookup
    gives up after the relay's connect timeout (1 s here), not after
    libunbound's own retries (about 17 s)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.70", 0))
    try:
        r = probe(env, "a@sender.test", "example.test", "u@example.test",
                  resolver="127.0.0.70:%d" % silent.getsockname()[1],
                  args=("--connect-timeout", "1000"))
        result, code, status, reply = r.one("u@example.test")
        assert (result, code) == ("tempfail", 0), r.one("u@example.test")
        assert "no answer within 1000 ms" in reply, reply
    finally:
        silent.close()


def test_4xx_greeting_next_mx(env, sinks):
    g1 = sinks("mxg1.greet.test")
    g1.greeting = "421 4.3.2 busy"
    g2 = sinks("mxg2.greet.test")
    r = probe(env, "a@sender.test", "greet.test", "u@greet.test")
    assert r.one("u@greet.test")[0] == "ok"
    assert r.report["mx"] == "mxg2.greet.test"
    assert g1.connections == 1 and g2.wait_for(1, 5)


def test_every_mx_down_tempfails(env):
    r = probe(env, "a@sender.test", "example.test", "u@example.test")
    result, code, status, reply = r.one("u@example.test")
    assert (result, code, status) == ("tempfail", 0, "4.4.1")
    assert r.report["mx"] == "mx2.example.test" and r.report["error"]


# ------------------------------------------------------- replies and data

def test_per_recipient_replies(env, sinks):
    s = sinks("mx2.example.test")
    s.rcpt_reply = {"bad@example.test": "550 5.1.1 no such user",
                    "later@example.test": "451 4.3.0 try later"}
    r = probe(env, "a@sender.test", "example.test",
              "ok@example.test", "bad@example.test", "later@example.test")
    assert r.one("ok@example.test")[:3] == ("ok", 250, "2.0.0")
    assert r.one("bad@example.test")[:3] == ("permfail", 550, "5.1.1")
    assert r.one("bad@example.test")[3] == "550 5.1.1 no such user"
    assert r.one("later@example.test")[:3] == ("tempfail", 451, "4.3.0")
    assert s.wait_for(1, 5) and s.messages[0].rcpts == ["ok@example.test"]


def test_data_452_tempfails_all(env, sinks):
    s = sinks("mx2.example.test")
    s.data_reply = "452 4.3.1 out of space"
    s.rcpt_reply = {"bad@example.test": "550 5.1.1 no such user"}
    r = probe(env, "a@sender.test", "example.test", "a@example.test", "b@example.test",
              "bad@example.test")
    assert r.one("a@example.test")[:3] == ("tempfail", 452, "4.3.1")
    assert r.one("b@example.test")[:3] == ("tempfail", 452, "4.3.1")
    assert r.one("bad@example.test")[0] == "permfail"
    assert s.messages == []


def test_dot_stuffing_arrives_intact(env, sinks):
    s = sinks("mx2.example.test")
    body = b"Subject: dots\r\n\r\n.\r\n..two\r\n.x\r\nend\r\n."   # no final CRLF
    r = probe(env, "a@sender.test", "example.test", "u@example.test", message=body)
    assert r.one("u@example.test")[0] == "ok"
    assert s.wait_for(1, 5)
    assert s.messages[0].data == body + b"\r\n"


def test_two_messages_one_connection(env, sinks):
    s = sinks("mx2.example.test")
    s.rcpt_reply = {"bad@example.test": "550 5.1.1 no such user"}
    r = probe(env, "a@sender.test", "example.test", "bad@example.test", "u@example.test",
              args=["--messages", "2"])
    assert [x[0] for x in r.rcpts["u@example.test"]] == ["ok", "ok"]
    assert [x[0] for x in r.rcpts["bad@example.test"]] == ["permfail", "permfail"]
    assert s.wait_for(2, 5) and s.connections == 1


def test_two_messages_rset_after_refused_transaction(env, sinks):
    s = sinks("mx2.example.test")
    s.rcpt_reply = {"bad@example.test": "550 5.1.1 no such user"}
    r = probe(env, "a@sender.test", "example.test", "bad@example.test",
              args=["--messages", "2"])
    assert [x[0] for x in r.rcpts["bad@example.test"]] == ["permfail", "permfail"]
    verbs = [c.split()[0].upper() for c in s.commands]
    assert verbs == ["EHLO", "MAIL", "RCPT", "RSET", "MAIL", "RCPT", "QUIT"]


def test_malformed_address_never_sent(env, sinks):
    s = sinks("mx2.example.test")
    r = probe(env, "a@sender.test", "example.test", "u@example.test", "x>y@example.test",
              "tab\there@example.test")
    assert r.one("u@example.test")[0] == "ok"
    assert r.one("x>y@example.test")[:3] == ("permfail", 0, "5.1.3")
    assert s.wait_for(1, 5)
    assert [c for c in s.commands if c.upper().startswith("RCPT")] == ["RCPT TO:<u@example.test>"]


def test_size_refused_at_once(env, sinks):
    s = sinks("mx2.example.test")
    s.max_size = 10
    r = probe(env, "a@sender.test", "example.test", "u@example.test")
    assert r.one("u@example.test")[:3] == ("permfail", 552, "5.3.4")
    assert not any(c.upper().startswith("MAIL") for c in s.commands)


def test_size_param_sent(env, sinks):
    s = sinks("mx2.example.test")
    probe(env, "a@sender.test", "example.test", "u@example.test")
    mail = [c for c in s.commands if c.upper().startswith("MAIL")]
    assert mail == ["MAIL FROM:<a@sender.test> SIZE=%d" % len(MESSAGE)]


# --------------------------------------------------------------------- TLS

def test_may_uses_starttls_when_offered(env, sinks):
    s = sinks("mx.tls.test", tls="good")
    r = probe(env, "a@sender.test", "tls.test", "u@tls.test")
    assert r.one("u@tls.test")[0] == "ok"
    assert r.report["tls"].startswith("TLSv1.")
    assert r.report["tls"].endswith(" unverified")
    assert s.wait_for(1, 5) and s.messages[0].tls
    # EHLO again after STARTTLS
    assert [c.split()[0].upper() for c in s.commands][:3] == ["EHLO", "STARTTLS", "EHLO"]


def test_may_in_clear_without_starttls(env, sinks):
    s = sinks("mx2.example.test")
    r = probe(env, "a@sender.test", "example.test", "u@example.test")
    assert r.one("u@example.test")[0] == "ok"
    assert r.report["tls"] == "none"
    assert s.wait_for(1, 5) and not s.messages[0].tls


def test_none_never_starttls(env, sinks):
    s = sinks("mx.tls.test", tls="good")
    r = probe(env, "a@sender.test", "tls.test", "u@tls.test", args=["--tls", "none"])
    assert r.one("u@tls.test")[0] == "ok" and r.report["tls"] == "none"
    assert s.wait_for(1, 5) and not s.messages[0].tls


def test_verify_with_test_ca(env, sinks):
    s = sinks("mx.tls.test", tls="good")
    r = probe(env, "a@sender.test", "tls.test", "u@tls.test",
              args=["--tls", "verify", "--ca", str(env["ca"])])
    assert r.one("u@tls.test")[0] == "ok"
    assert r.report["tls"].endswith(" verified")
    assert s.wait_for(1, 5) and s.messages[0].tls


def test_verify_bad_certificate_tempfails(env, sinks):
    s = sinks("mx.badtls.test", tls="bad")
    r = probe(env, "a@sender.test", "badtls.test", "u@badtls.test",
              args=["--tls", "verify", "--ca", str(env["ca"])])
    result, code, status, reply = r.one("u@badtls.test")
    assert (result, status) == ("tempfail", "4.7.5")
    assert "certificate" in reply
    assert not any(c.upper().startswith("MAIL") for c in s.commands)


def test_verify_wrong_name_tempfails(env, sinks):
    """The CA-signed certificate, but on a host whose name it lacks."""
    s = sinks("mx.badtls.test", tls="good")
    r = probe(env, "a@sender.test", "badtls.test", "u@badtls.test",
              args=["--tls", "verify", "--ca", str(env["ca"])])
    assert r.one("u@badtls.test")[0] == "tempfail"
    assert s.messages == []


def test_verify_without_starttls_never_sends_in_clear(env, sinks):
    s = sinks("mx2.example.test")
    r = probe(env, "a@sender.test", "example.test", "u@example.test",
              args=["--tls", "verify", "--ca", str(env["ca"])])
    result, _, status, _ = r.one("u@example.test")
    assert (result, status) == ("tempfail", "4.7.4")
    assert not any(c.upper().startswith("MAIL") for c in s.commands)


def test_dane_match(env, sinks):
    s = sinks("mx.sec.test", tls="good")
    r = probe(env, "a@sender.test", "sec.test", "u@sec.test", args=["--tls", "dane"])
    assert r.one("u@sec.test")[0] == "ok", r.rcpts
    assert r.report["tls"].endswith(" dane")
    assert s.wait_for(1, 5) and s.messages[0].tls


def test_dane_mismatch_tempfails(env, sinks):
    s = sinks("mxbad.sec.test", tls="good")
    r = probe(env, "a@sender.test", "mismatch.sec.test", "u@mismatch.sec.test",
              args=["--tls", "dane"])
    result, _, status, reply = r.one("u@mismatch.sec.test")
    assert (result, status) == ("tempfail", "4.7.5")
    assert "TLSA" in reply
    assert s.messages == []


def test_dane_secure_tlsa_requires_starttls(env, sinks):
    s = sinks("mx.sec.test")      # no certificate: no STARTTLS offered
    r = probe(env, "a@sender.test", "sec.test", "u@sec.test", args=["--tls", "dane"])
    assert r.one("u@sec.test")[0] == "tempfail"
    assert s.messages == []


def test_dane_insecure_zone_is_may(env, sinks):
    s = sinks("mx.badtls.test", tls="bad")
    r = probe(env, "a@sender.test", "badtls.test", "u@badtls.test", args=["--tls", "dane"])
    assert r.one("u@badtls.test")[0] == "ok"
    assert r.report["tls"].endswith(" unverified")
    assert s.wait_for(1, 5) and s.messages[0].tls


def test_parallel_deliveries_share_one_relay(env, sinks):
    """Eight threads through one relay (one resolver, one TLS context) at
    once, with DANE: each delivers on its own connection."""
    s = sinks("mx.sec.test", tls="good")
    r = probe(env, "a@sender.test", "sec.test", "u@sec.test",
              args=["--tls", "dane", "--parallel", "8"])
    assert [x[0] for x in r.rcpts["u@sec.test"]] == ["ok"] * 8
    assert all(t.endswith(" dane") for t in r.all("tls"))
    assert s.wait_for(8, 10) and s.connections == 8


# -------------------------------------------------------------- smarthost

def via_smarthost(env, password="s3cret"):
    return probe(env, "a@sender.test", "elsewhere.test", "u@elsewhere.test",
                 args=["--smarthost", "%s:%d" % (SMARTHOST, env["port"]),
                       "--user", "relayuser", "--pass", password])


def test_smarthost_auth_plain(env, sinks):
    s = sinks(SMARTHOST, tls="good", auth=("relayuser", "s3cret"))
    r = via_smarthost(env)
    assert r.one("u@elsewhere.test")[0] == "ok", r.rcpts
    assert r.report["mx"] == SMARTHOST
    assert s.auth_users == ["relayuser"]
    assert s.wait_for(1, 5) and s.messages[0].tls


def test_smarthost_bad_password_tempfails(env, sinks):
    s = sinks(SMARTHOST, tls="good", auth=("relayuser", "s3cret"))
    r = via_smarthost(env, password="wrong")
    result, code, _, reply = r.one("u@elsewhere.test")
    assert (result, code) == ("tempfail", 535)
    assert "wrong" not in reply
    assert s.messages == []


def test_smarthost_auth_never_in_clear(env, sinks):
    s = sinks(SMARTHOST, auth=("relayuser", "s3cret"))    # no STARTTLS
    r = via_smarthost(env)
    assert r.one("u@elsewhere.test")[0] == "tempfail"
    assert not any(c.upper().startswith("AUTH") for c in s.commands)


# ---------------------------------------------------------------- hostile

@pytest.mark.parametrize("mode,reason", [
    ("endless", "too many lines"),
    ("no_eol", "too long"),
    ("silent", "timed out"),
    ("data_silent", "timed out"),
])
def test_hostile_server_tempfails(env, sinks, mode, reason):
    s = sinks("mx.hostile.test")
    s.hostile = mode
    r = probe(env, "a@sender.test", "hostile.test", "u@hostile.test",
              args=["--command-timeout", "1000", "--data-timeout", "1000"], timeout=30)
    result, code, status, reply = r.one("u@hostile.test")
    assert result == "tempfail"
    assert reason in reply
