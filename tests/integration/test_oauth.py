"""SASL OAUTHBEARER (RFC 7628) and XOAUTH2 over POP3 AUTH and SMTP AUTH, with
JWT bearer tokens checked against [auth] oauth_jwks_file.

The test is its own identity provider: it makes RSA and P-256 keys with the
`cryptography` package, writes them as a JWKS, and signs RS256 and ES256
tokens. Refused tokens get the JSON error challenge, then the final
failure; they earn the failed-login penalty like a wrong password; SIGHUP
swaps the key set."""
import base64
import json
import signal
import smtplib
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .helpers import TIMEOUT, Pop3, ehlo_keywords, make_message
from .security_helpers import Pop3From, SmtpFrom, capa_names, plain, timed
from .ternserver import require_tool

ISSUER = "https://idp.example.test/realms/mail"
AUDIENCE = "tern-mail"
OAUTHBEARER_ERROR = {"status": "invalid_token"}
XOAUTH2_ERROR = {"status": "401", "schemes": "bearer"}


# --------------------------------------------------------------------------
# the identity provider

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_int(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return b64url(n.to_bytes(length, "big"))


class Key:
    """A signing key and its JWK."""

    def __init__(self, kind, kid):
        self.kind, self.kid = kind, kid
        if kind == "RS256":
            self.priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pub = self.priv.public_key().public_numbers()
            self.jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                        "n": b64url_int(pub.n), "e": b64url_int(pub.e)}
        else:
            self.priv = ec.generate_private_key(ec.SECP256R1())
            pub = self.priv.public_key().public_numbers()
            self.jwk = {"kty": "EC", "crv": "P-256", "kid": kid,
                        "x": b64url_int(pub.x, 32), "y": b64url_int(pub.y, 32)}

    def sign(self, data):
        if self.kind == "RS256":
            return self.priv.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.priv.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS form, RFC 7518 3.4

    def token(self, email, lifetime=600, header=None, **claims):
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "email": email, "iat": now,
                "exp": now + lifetime}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        head = {"alg": self.kind, "kid": self.kid, "typ": "JWT"}
        head.update(header or {})
        signed = b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(body).encode())
        return signed + "." + b64url(self.sign(signed.encode()))


def write_jwks(path, *keys):
    path.write_text(json.dumps({"keys": [k.jwk for k in keys]}))


@pytest.fixture(scope="module")
def keys():
    return {"rsa": Key("RS256", "rsa-1"), "ec": Key("ES256", "ec-1"),
            "other": Key("RS256", "rsa-2")}


def oauth_overrides(jwks, **auth):
    a = {"oauth_jwks_file": str(jwks), "oauth_issuer": ISSUER, "oauth_audience": AUDIENCE}
    a.update(auth)
    # an AUTH line with a token as initial response is longer than 512
    # octets: with a JWKS file the pre-login line cap defaults to 8192
    return {"auth": a}


@pytest.fixture(scope="module")
def osrv(module_servers, keys, tmp_path_factory):
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    write_jwks(jwks, keys["rsa"], keys["ec"])
    return module_servers.create(overrides=oauth_overrides(jwks))


# --------------------------------------------------------------------------
# SASL messages

def oauthbearer(token, user=None, host="localhost", port=110):
    gs2 = "n,a=%s," % user.replace("=", "=3D").replace(",", "=2C") if user else "n,,"
    msg = "%s\x01host=%s\x01port=%d\x01auth=Bearer %s\x01\x01" % (gs2, host, port, token)
    return base64.b64encode(msg.encode()).decode()


def xoauth2(token, user):
    return base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode()).decode()


def message(mech, token, user):
    return oauthbearer(token, user) if mech == "OAUTHBEARER" else xoauth2(token, user)


def error_of(challenge_b64):
    return json.loads(base64.b64decode(challenge_b64))


KVSEP = base64.b64encode(b"\x01").decode()


def pop3_refused(p, mech, first_reply):
    """A refused token: the JSON challenge, the client's ^A, the -ERR."""
    assert first_reply.startswith("+ "), first_reply
    want = OAUTHBEARER_ERROR if mech == "OAUTHBEARER" else XOAUTH2_ERROR
    assert error_of(first_reply[2:]) == want
    final = p.cmd(KVSEP if mech == "OAUTHBEARER" else "")
    assert final.startswith("-ERR [AUTH]"), final
    return final


def smtp_refused(c, mech, first_reply, answer=None):
    assert first_reply.code == 334, first_reply
    want = OAUTHBEARER_ERROR if mech == "OAUTHBEARER" else XOAUTH2_ERROR
    assert error_of(first_reply.lines[0]) == want, first_reply
    final = c.cmd(answer if answer is not None else (KVSEP if mech == "OAUTHBEARER" else ""))
    assert final.code == 535 and "5.7.8" in final.text, final
    return final


# --------------------------------------------------------------------------
# offered where configured and allowed

def test_offered_only_when_configured(osrv, server):
    with osrv.pop3() as p:
        assert "SASL PLAIN OAUTHBEARER XOAUTH2" in capa_names(p)
        status, lines = p.multi("AUTH")
        assert lines == [b"PLAIN", b"OAUTHBEARER", b"XOAUTH2"], (status, lines)
    with osrv.smtp() as c:
        assert ehlo_keywords(c.ehlo()).get("AUTH") == "AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2"
    # a server without [auth] oauth_jwks_file neither offers nor accepts them
    with server.pop3() as p:
        assert "SASL PLAIN" in capa_names(p)
        for mech in ("OAUTHBEARER", "XOAUTH2"):
            assert p.cmd("AUTH %s" % mech).startswith("-ERR Unsupported"), mech
    with server.smtp() as c:
        assert ehlo_keywords(c.ehlo()).get("AUTH") == "AUTH PLAIN LOGIN"
        for mech in ("OAUTHBEARER", "XOAUTH2"):
            assert c.cmd("AUTH %s" % mech).code == 504


def test_plaintext_policy_applies(osrv, keys):
    # From an untrusted address without TLS, a token is a credential in
    # clear: hidden and refused before it is looked at, like PLAIN.
    addr, _ = osrv.new_user("cleartext")
    tok = keys["rsa"].token(addr)
    with Pop3From(osrv.pop3_port) as p:
        assert not any("OAUTHBEARER" in c for c in capa_names(p))
        r = p.cmd("AUTH OAUTHBEARER " + oauthbearer(tok))
        assert r.startswith("-ERR [AUTH] Plaintext"), r
    with SmtpFrom(osrv.smtp_port) as c:
        assert "AUTH" not in ehlo_keywords(c.ehlo())
        assert c.cmd("AUTH XOAUTH2 " + xoauth2(tok, addr)).code == 538
    # over TLS it is offered and works
    with Pop3From(osrv.pop3s_port, tls=True) as p:
        assert "SASL PLAIN OAUTHBEARER XOAUTH2" in capa_names(p)
        assert p.cmd("AUTH OAUTHBEARER " + oauthbearer(tok)).startswith("+OK")
        p.quit()


# --------------------------------------------------------------------------
# logins

@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_pop3_login(osrv, keys, mech, kind):
    addr, _ = osrv.new_user("pop" + kind)
    osrv.deliver_smtp(addr, make_message("hello", to=addr))
    tok = keys[kind].token(addr)
    with osrv.pop3() as p:
        r = p.cmd("AUTH %s %s" % (mech, message(mech, tok, addr)))
        assert r.startswith("+OK"), r
        assert p.stat()[0] == 1
        assert p.quit().startswith("+OK")
    # the same with a continuation
    with osrv.pop3() as p:
        assert p.cmd("AUTH %s" % mech) == "+ "
        assert p.cmd(message(mech, tok, addr)).startswith("+OK")
        assert p.stat()[0] == 1
        p.quit()


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_smtp_login(osrv, keys, mech, kind):
    addr, _ = osrv.new_user("smtp" + kind)
    tok = keys[kind].token(addr)
    with osrv.smtp() as c:
        c.ehlo()
        r = c.cmd("AUTH %s %s" % (mech, message(mech, tok, addr)))
        assert r.code == 235, r
        assert c.cmd("AUTH PLAIN " + plain(addr, "x")).code == 503  # already authenticated
    with osrv.smtp() as c:
        c.ehlo()
        r = c.cmd("AUTH %s" % mech)
        assert r.code == 334 and r.lines == [""], r
        assert c.cmd(message(mech, tok, addr)).code == 235


def test_token_names_the_user(osrv, keys):
    # OAUTHBEARER without an authzid: the token's email is the user; it is
    # normalised like any address (the domain's case does not matter).
    addr, _ = osrv.new_user("noauthz")
    local, domain = addr.split("@")
    tok = keys["ec"].token("%s@%s" % (local, domain.upper()))
    with osrv.pop3() as p:
        assert p.cmd("AUTH OAUTHBEARER " + oauthbearer(tok)).startswith("+OK")
        p.quit()
    assert 'msg="login ok" user=%s ' % addr in osrv.log_text()


def test_smtplib_xoauth2(osrv, keys):
    # A real client library's XOAUTH2, with its initial response.
    addr, _ = osrv.new_user("smtplib")
    tok = keys["rsa"].token(addr)
    c = smtplib.SMTP("127.0.0.1", osrv.smtp_port, timeout=TIMEOUT)
    try:
        c.ehlo("client.test")
        code, _ = c.auth("XOAUTH2", lambda challenge=None: "user=%s\x01auth=Bearer %s\x01\x01"
                         % (addr, tok))
        assert code == 235
    finally:
        c.quit()


# --------------------------------------------------------------------------
# refusals

def bad_tokens(keys, addr, other):
    now = int(time.time())
    rsa_key = keys["rsa"]
    none = rsa_key.token(addr, header={"alg": "none"}).rsplit(".", 1)[0] + "."
    tampered = rsa_key.token(addr)
    head, _, sig = tampered.split(".")
    evil = dict(iss=ISSUER, aud=AUDIENCE, email=other, exp=now + 600)
    tampered = ".".join([head, b64url(json.dumps(evil).encode()), sig])
    nobody = "nobody@example.test"
    return {
        "expired": rsa_key.token(addr, lifetime=-3600),
        "not yet valid": rsa_key.token(addr, nbf=now + 3600),
        "wrong issuer": rsa_key.token(addr, iss="https://evil.example/"),
        "wrong audience": rsa_key.token(addr, aud=["other-app", "more"]),
        "unknown key": keys["other"].token(addr),
        "unknown kid": rsa_key.token(addr, header={"kid": "nope"}),
        "alg none": none,
        "tampered payload": tampered,
        "no such user": rsa_key.token(nobody),
        "another user than named": rsa_key.token(other),
    }, nobody


def test_bad_tokens_refused_with_json_error(osrv, keys):
    addr, _ = osrv.new_user("victim")
    other, _ = osrv.new_user("other")
    tokens, nobody = bad_tokens(keys, addr, other)
    for why, tok in tokens.items():
        named = nobody if why == "no such user" else addr
        with osrv.pop3() as p:
            r = p.cmd("AUTH OAUTHBEARER " + oauthbearer(tok, named))
            pop3_refused(p, "OAUTHBEARER", r)
            # the session goes on: the right token works afterwards
            assert p.cmd("AUTH OAUTHBEARER " + oauthbearer(keys["ec"].token(addr))).startswith("+OK"), why
            p.quit()
        with osrv.smtp() as c:
            c.ehlo()
            r = c.cmd("AUTH XOAUTH2 " + xoauth2(tok, named))
            smtp_refused(c, "XOAUTH2", r)
            assert c.cmd("NOOP").code == 250
    log = osrv.log_text()
    for phrase in ("token=refused reason=expired", "not valid yet (nbf)", "wrong issuer",
                   "wrong audience", "bad signature", "no key with the token's kid",
                   "alg none refused", "no such user", "another user than the one named"):
        assert phrase in log, phrase
    # tokens are secrets: never in the log
    for tok in tokens.values():
        assert tok[-24:] not in log


def test_refusal_answers_and_malformed_messages(osrv, keys):
    addr, _ = osrv.new_user("answers")
    tok = keys["rsa"].token(addr, lifetime=-3600)
    # the client's answer to the error challenge may be anything, "*" too
    for answer in ("", KVSEP, "*", "garbage"):
        with osrv.smtp() as c:
            c.ehlo()
            smtp_refused(c, "OAUTHBEARER", c.cmd("AUTH OAUTHBEARER " + oauthbearer(tok)), answer)
    with osrv.pop3() as p:
        assert p.cmd("AUTH XOAUTH2") == "+ "
        pop3_refused(p, "XOAUTH2", p.cmd(xoauth2(tok, addr)))
    # messages not in the mechanism's syntax are protocol errors (no token check)
    bad = [b"p=tls-unique,,\x01auth=Bearer x\x01\x01", b"n,,\x01auth=Basic eA==\x01\x01",
           b"n,,\x01auth=Bearer x\x01", b"\x01"]
    with osrv.smtp() as c:
        c.ehlo()
        for msg in bad:
            r = c.cmd("AUTH OAUTHBEARER " + base64.b64encode(msg).decode())
            assert r.code == 501, (msg, r)
    with osrv.pop3() as p:
        r = p.cmd("AUTH XOAUTH2 " + base64.b64encode(b"auth=Bearer x\x01\x01").decode())
        assert r.startswith("-ERR [AUTH] Invalid XOAUTH2 message"), r
        r = p.cmd("AUTH OAUTHBEARER " + oauthbearer(keys["rsa"].token(addr), "not-an-address"))
        assert r.startswith("-ERR [AUTH] Invalid user name"), r


# --------------------------------------------------------------------------
# the failed-login penalty

def test_bad_token_earns_the_penalty(servers, keys, tmp_path):
    # A refused token counts like a wrong password: the next check from the
    # address, whatever its mechanism, waits the penalty out first. The
    # server's log says how long each check waited; the clock is only
    # checked for a lower bound.
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, keys["rsa"], keys["ec"])
    ov = oauth_overrides(jwks, plaintext="always", failure_delay_initial="1500ms",
                         failure_delay_max="1500ms")
    s = servers.create(overrides=ov)
    addr, pw = s.new_user("penalty")
    expired = keys["rsa"].token(addr, lifetime=-3600)
    good = keys["ec"].token(addr)
    with Pop3From(s.pop3_port) as p:
        t0, r = timed(p.cmd, "AUTH OAUTHBEARER " + oauthbearer(expired, addr))
        pop3_refused(p, "OAUTHBEARER", r)
        # the right token now waits the penalty out
        t, r = timed(p.cmd, "AUTH OAUTHBEARER " + oauthbearer(good, addr))
        assert r.startswith("+OK") and t >= 1.3, (t, r)
        p.quit()
    log = s.log_text()
    assert "token=refused reason=expired penalty_ms=0" in log, log
    # two failures from the address: each later check waited, whatever the
    # mechanism (a token after a password, a password after a token)
    with SmtpFrom(s.smtp_port) as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(addr, "wrong")).code == 535
        smtp_refused(c, "XOAUTH2", c.cmd("AUTH XOAUTH2 " + xoauth2(expired, addr)))
        t, r = timed(c.cmd, "AUTH PLAIN " + plain(addr, "wrong again"))
        assert r.code == 535 and t >= 1.3, (t, r)
    log = s.log_text()
    assert "password=******** penalty_ms=1500" in log, log
    assert "token=refused reason=expired penalty_ms=1500" in log, log
    # a trusted address has no penalty
    with Pop3(s.pop3_port) as p:
        t, r = timed(p.cmd, "AUTH OAUTHBEARER " + oauthbearer(good, addr))
        assert r.startswith("+OK") and t < 1.3, (t, r)


def test_login_delay_applies_to_tokens(servers, keys, tmp_path):
    # [pop3] login_delay: a good token soon after the last login is refused
    # with the RFC 2449 code, like a password; a refused token still gets
    # the JSON error, and learns nothing of the delay.
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, keys["rsa"], keys["ec"])
    ov = oauth_overrides(jwks)
    ov["pop3"] = {"login_delay": "300"}
    s = servers.create(overrides=ov)
    addr, _ = s.new_user("tokdelay")
    with s.pop3() as p:
        assert p.cmd("AUTH XOAUTH2 " + xoauth2(keys["rsa"].token(addr), addr)).startswith("+OK")
        p.quit()
    with s.pop3() as p:
        r = p.cmd("AUTH OAUTHBEARER " + oauthbearer(keys["ec"].token(addr)))
        assert r.startswith("-ERR [LOGIN-DELAY]"), r
        pop3_refused(p, "OAUTHBEARER",
                     p.cmd("AUTH OAUTHBEARER " + oauthbearer(keys["ec"].token(addr, lifetime=-3600))))


# --------------------------------------------------------------------------
# key rotation and bad key files

def wait_log(s, phrase, count):
    deadline = time.monotonic() + TIMEOUT
    while s.log_text().count(phrase) < count:
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.05)


def test_sighup_rotates_keys(servers, keys, tmp_path):
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, keys["rsa"])
    s = servers.create(overrides=oauth_overrides(jwks, oauth_user_claim="preferred_username"))
    addr, _ = s.new_user("rotate")
    old = keys["rsa"].token(None, preferred_username=addr)
    new_key = Key("ES256", "ec-2026")
    new = new_key.token(None, preferred_username=addr)

    def login(tok):
        with s.pop3() as p:
            r = p.cmd("AUTH OAUTHBEARER " + oauthbearer(tok))
            if r.startswith("+OK"):
                p.quit()
                return True
            pop3_refused(p, "OAUTHBEARER", r)
            return False

    assert login(old) and not login(new)
    # a token with the email claim only names no user under this setting
    assert not login(keys["rsa"].token(addr))

    # the provider publishes the new key next to the old one, then drops the old
    write_jwks(jwks, keys["rsa"], new_key)
    s.proc.send_signal(signal.SIGHUP)
    wait_log(s, "oauth_jwks_file reloaded (2 keys)", 1)
    assert login(old) and login(new)
    write_jwks(jwks, new_key)
    s.proc.send_signal(signal.SIGHUP)
    wait_log(s, "oauth_jwks_file reloaded (1 keys)", 1)
    assert login(new) and not login(old)

    # a broken file on reload keeps the last good keys
    jwks.write_text('{"keys": [{"kty": "RSA", "n": "AQAB"}]}')
    s.proc.send_signal(signal.SIGHUP)
    wait_log(s, "oauth_jwks_file reload failed, keeping the old keys", 1)
    assert "%s: key 1: RSA key without valid base64url" % jwks in s.log_text()
    assert login(new) and not login(old)


def run_serve(s):
    r = subprocess.run([s.binary, "-c", str(s.config_path), "serve"], capture_output=True,
                       text=True, timeout=TIMEOUT)
    return r.returncode, r.stderr


def test_bad_key_file_stops_start_up(servers, keys, tmp_path):
    jwks = tmp_path / "jwks.json"
    cases = [
        (None, "cannot open"),
        ("{not json", "not valid JSON: line 1"),
        ('{"keys": []}', "no usable key"),
        ('{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "AA", "y": "AA"}]}',
         'key 1 (kid "k1"): P-256 key without 32-octet base64url'),
    ]
    for text, why in cases:
        if text is None:
            jwks.unlink(missing_ok=True)
        else:
            jwks.write_text(text)
        s = servers.create(start=False, overrides=oauth_overrides(jwks))
        rc, err = run_serve(s)
        assert rc == 78, (rc, err)
        # the log line is logfmt: the quotes of the message are escaped
        assert ("[auth] oauth_jwks_file: %s: %s" % (jwks, why)).replace('"', '\\"') in err, err
    # issuer and audience are required with the key file
    write_jwks(jwks, keys["rsa"])
    for missing in ("oauth_issuer", "oauth_audience"):
        ov = oauth_overrides(jwks)
        del ov["auth"][missing]
        s = servers.create(start=False, overrides=ov)
        rc, err = run_serve(s)
        assert rc == 78, (rc, err)
        assert "oauth_jwks_file needs oauth_issuer and oauth_audience" in err, err


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
def test_curl_pop3_and_smtp(osrv, keys, tmp_path, mech):
    # curl's own OAUTHBEARER and XOAUTH2 (--oauth2-bearer), with and without
    # an initial response: it sends a message over SMTP, then lists it
    # over POP3.
    curl = require_tool("curl")
    addr, _ = osrv.new_user("curl" + mech)
    tok = keys["ec"].token(addr)
    msg = tmp_path / "msg.eml"
    msg.write_bytes(make_message("via curl", to=addr))
    common = [curl, "-sS", "--max-time", str(int(TIMEOUT)), "--user", addr + ":",
              "--oauth2-bearer", tok, "--login-options", "AUTH=" + mech]
    r = subprocess.run(common + ["--sasl-ir", "--mail-from", addr, "--mail-rcpt", addr,
                                 "--upload-file", str(msg),
                                 "smtp://127.0.0.1:%d" % osrv.smtp_port],
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(common + ["pop3://127.0.0.1:%d/" % osrv.pop3_port],
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0:1] == ["1"], r.stdout
    # a refused token: curl reads the error challenge, answers, and fails
    bad = keys["ec"].token(addr, lifetime=-3600)
    common[common.index(tok)] = bad
    r = subprocess.run(common + ["pop3://127.0.0.1:%d/" % osrv.pop3_port],
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 67, (r.returncode, r.stderr)  # CURLE_LOGIN_DENIED
