"""The admin HTTP API of `tern serve` (docs/admin-api.md): the token, the
error replies, every resource created, read and deleted, repair tasks,
metrics and the health check, against the real server on loopback.
"""
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import time

import pytest

from .helpers import TIMEOUT, make_message, wait_until
from .test_cli import pop3_login_ok
from .ternserver import BACKEND, REPO, free_ports



class Admin:
    """A client of one server's admin API: one connection per request
    unless a connection is passed."""

    def __init__(self, port, token, tls_ctx=None):
        self.port, self.token, self.tls_ctx = port, token, tls_ctx

    def connect(self):
        if self.tls_ctx is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT,
                                               context=self.tls_ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)

    def request(self, method, path, body=None, token=True, headers=None, conn=None):
        """(status, headers, decoded body: JSON when it is JSON, else text)."""
        h = dict(headers or {})
        if token is True:
            token = self.token
        if token:
            h["Authorization"] = "Bearer " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        own = conn is None
        c = conn or self.connect()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            if own:
                c.close()
        ctype = hdrs.get("content-type", "")
        if ctype.startswith("application/json") and data:
            return r.status, hdrs, json.loads(data)
        return r.status, hdrs, data.decode(errors="replace")

    def ok(self, method, path, body=None, want=200):
        st, h, b = self.request(method, path, body)
        assert st == want, "%s %s -> %s %r (want %s)" % (method, path, st, b, want)
        return b


def start_admin_server(pool, metrics_public=False, tls=False, token=None, **kw):
    s = pool.create(start=False, **kw)
    s.admin_token = token or secrets.token_hex(32)
    tf = s.dir / "admin.token"
    tf.write_text(s.admin_token + "\n")
    os.chmod(tf, 0o600)
    while True:
        port = free_ports(1)[0]
        if port not in s.listen_ports():
            break
    s.admin_port = port
    s.sections["admin"] = {"listen": "127.0.0.1:%d" % port, "token_file": str(tf),
                           "metrics_public": "yes" if metrics_public else "no",
                           "tls": "yes" if tls else None}
    s.write_config()
    s.start()
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "admin port never accepted:\n" + s.log_tail()
            time.sleep(0.02)
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=str(s.sections["tls"]["cert"]))
        ctx.check_hostname = False
    s.admin = Admin(port, s.admin_token, ctx)
    return s


@pytest.fixture(scope="module")
def srv(module_servers):
    return start_admin_server(module_servers)


@pytest.fixture(scope="module")
def api(srv):
    return srv.admin


_seq = [0]


def unique(tag):
    _seq[0] += 1
    return "%s%d-%s" % (tag, _seq[0], secrets.token_hex(3))


def new_domain(api):
    d = unique("dom") + ".test"
    api.ok("PUT", "/domains/" + d, want=201)
    return d


def new_user(api, domain=None, password=None):
    domain = domain or new_domain(api)
    addr = "%s@%s" % (unique("u"), domain)
    password = password or secrets.token_hex(8)
    api.ok("PUT", "/users/" + addr, {"password": password}, want=201)
    return addr, password


def assert_error(st, h, b, want):
    assert st == want, "status %s %r (want %s)" % (st, b, want)
    assert h.get("content-type") == "application/json", h
    assert isinstance(b, dict) and isinstance(b.get("error"), str) and b["error"], b


# --------------------------------------------------------------------------
# the token and the error replies

def test_no_token_is_401(api):
    for headers in ({}, {"Authorization": "Basic " + api.token},
                    {"Authorization": "Bearer"}, {"Authorization": api.token}):
        st, h, b = api.request("GET", "/domains", token=None, headers=headers)
        assert_error(st, h, b, 401)
        assert h.get("www-authenticate") == "Bearer"


def test_wrong_token_is_401(api):
    for tok in ("nope", api.token[:-1], api.token + "x", api.token.upper(), "x" * 5000):
        st, h, b = api.request("GET", "/users", token=tok)
        assert_error(st, h, b, 401)
        assert h.get("www-authenticate") == "Bearer"
    # an unauthenticated request to an unknown path learns nothing more
    st, h, b = api.request("GET", "/no/such/thing", token="nope")
    assert_error(st, h, b, 401)
    # the right token, with the scheme in another case and extra spaces
    st, h, b = api.request("GET", "/domains", token=None,
                           headers={"Authorization": "bearer   %s " % api.token})
    assert st == 200, b


def test_unknown_path_is_404(api):
    for path in ("/", "/nope", "/domains/a.test/b", "/users/", "/users//mailbox",
                 "/users/a@b.test/mailbox/x", "/tasks/repair/x", "/domainsx"):
        st, h, b = api.request("GET", path)
        assert_error(st, h, b, 404)


def test_wrong_method_is_405_with_allow(api):
    cases = [("DELETE", "/domains", "GET"), ("POST", "/users/a@b.test", "PUT, DELETE"),
             ("GET", "/tasks/repair", "POST"), ("PUT", "/healthcheck", "GET"),
             ("PATCH", "/aliases/a@b.test", "GET, PUT, DELETE"), ("DELETE", "/quota/a@b.test", "GET, PUT"),
             ("HEAD", "/metrics", "GET"), ("OPTIONS", "/users", "GET")]
    for method, path, allow in cases:
        st, h, b = api.request(method, path)
        assert st == 405, (method, path, st, b)
        assert h.get("allow") == allow, (method, path, h)
        if method != "HEAD":
            assert_error(st, h, b, 405)


def test_bad_json_is_400_and_changes_nothing(api):
    d = new_domain(api)
    addr = "bad-json@" + d
    bodies = ['{"password":', '["secret"]', '"secret"', '{"password": 5}', '{"password": ""}',
              '{"password": "a", "password": "b"}', '{"password": "x", "admin": true}',
              '{"password": "{NOPE}abc"}', '{"password": "a\\u0000b"}', '{}', '',
              '{"password": "%s"}' % ("p" * 1025), '{"password": "ok"} trailing']
    for body in bodies:
        st, h, b = api.request("PUT", "/users/" + addr, body=body)
        assert_error(st, h, b, 400)
    assert addr not in api.ok("GET", "/users")["users"]
    # a bad path argument
    for path in ("/users/not-an-address", "/users/a@b@c", "/users/%00x@" + d,
                 "/domains/bad_domain!", "/domains/" + "a" * 300):
        st, h, b = api.request("PUT", path, body={"password": "secret"})
        assert_error(st, h, b, 400)
    st, h, b = api.request("GET", "/users?domain=bad_domain!")
    assert_error(st, h, b, 400)
    # a domain PUT takes no keys
    st, h, b = api.request("PUT", "/domains/nokeys.test", body={"x": 1})
    assert_error(st, h, b, 400)
    assert "nokeys.test" not in api.ok("GET", "/domains")["domains"]


def test_body_over_the_cap_is_refused(api):
    d = new_domain(api)
    addr = "big@" + d
    st, h, b = api.request("PUT", "/users/" + addr,
                           body=json.dumps({"password": "p" * (80 * 1024)}))
    assert st == 413, (st, b)
    assert addr not in api.ok("GET", "/users")["users"]


def raw_exchange(api, data):
    """Sends data on a connection of its own; what came back until the
    server closed it (or stopped sending)."""
    s = socket.create_connection(("127.0.0.1", api.port), timeout=2)
    out = b""
    try:
        s.sendall(data)
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    finally:
        s.close()
    return out


def test_malformed_http_is_refused_and_changes_nothing(srv, api):
    """What the HTTP layer refuses (not HTTP, headers over 8 KiB, a body
    announced over 64 KiB, a malformed chunk, a NUL in the path, a client
    gone mid-body) gets its status or a closed connection, never a change
    or a crash; pipelined requests are answered in order."""
    d = new_domain(api)
    auth = b"Authorization: Bearer " + api.token.encode() + b"\r\n"
    put = b"PUT /users/raw@" + d.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth
    cases = [
        (b"HELLO\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /domains HTTP/1.1\r\nHost: x\r\n" + auth +
         b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(9)) + b"\r\n", b"HTTP/1.1 400 "),
        (put + b"Content-Length: 99999999999\r\n\r\n", b"HTTP/1.1 413 "),
        (put + b"Content-Length: -5\r\n\r\n", b"HTTP/1.1 400 "),
        (put + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", b"HTTP/1.1 413 "),
        (b"GET /dom\x00ains HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n", b"HTTP/1.1 400 "),
        (put + b"Content-Length: 100\r\n\r\n{\"password\"", b""),
    ]
    for data, want in cases:
        out = raw_exchange(api, data)
        assert out.startswith(want), (data[:60], out[:200])
    # a correct chunked body is taken
    body = json.dumps({"password": "chunked-secret"}).encode()
    out = raw_exchange(api, b"PUT /users/chunked@" + d.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth +
                       b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                       b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:]))
    assert out.startswith(b"HTTP/1.1 201 "), out[:200]
    # three pipelined requests, three answers in order
    get = b"GET /users?domain=" + d.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth
    out = raw_exchange(api, get + b"\r\n" + b"GET /nope HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n" +
                       get + b"Connection: close\r\n\r\n")
    assert re.findall(rb"HTTP/1.1 (\d+) ", out) == [b"200", b"404", b"200"], out
    assert api.ok("GET", "/users?domain=" + d)["users"] == ["chunked@" + d]
    assert healthy(api.ok("GET", "/healthcheck"))
    assert srv.proc.poll() is None


# --------------------------------------------------------------------------
# domains and users

def test_domains_created_listed_deleted(api):
    d = unique("Dom") + ".TEST"
    low = d.lower()
    st, h, b = api.request("PUT", "/domains/" + d)
    assert st == 201 and b == {"domain": low, "created": True}, (st, b)
    assert h["content-type"] == "application/json"
    st, h, b = api.request("PUT", "/domains/" + low)
    assert st == 200 and b == {"domain": low, "created": False}, (st, b)
    assert low in api.ok("GET", "/domains")["domains"]
    # URL-encoded names are decoded
    st, h, b = api.request("DELETE", "/domains/" + low.replace(".", "%2E"))
    assert st == 204 and b == "", (st, b)
    assert low not in api.ok("GET", "/domains")["domains"]
    st, h, b = api.request("DELETE", "/domains/" + low)
    assert_error(st, h, b, 404)


def test_domain_with_users_cannot_be_deleted(api):
    d = new_domain(api)
    addr, _ = new_user(api, d)
    st, h, b = api.request("DELETE", "/domains/" + d)
    assert_error(st, h, b, 409)
    assert d in b["error"]
    assert d in api.ok("GET", "/domains")["domains"]
    api.ok("DELETE", "/users/" + addr, want=204)
    api.ok("DELETE", "/domains/" + d, want=204)


def test_users_created_changed_listed_deleted_and_pop3_logs_in(srv, api):
    d = new_domain(api)
    other = new_domain(api)
    addr = unique("Alice") + "@" + d.upper()
    low = addr.lower()
    st, h, b = api.request("PUT", "/users/" + addr.replace("@", "%40"), {"password": "first-secret"})
    assert st == 201 and b == {"user": low, "created": True}, (st, b)
    assert pop3_login_ok(srv, low, "first-secret")
    # change the password
    st, h, b = api.request("PUT", "/users/" + low, {"password": "second-secret"})
    assert st == 200 and b == {"user": low, "created": False}, (st, b)
    assert not pop3_login_ok(srv, low, "first-secret")
    assert pop3_login_ok(srv, low, "second-secret")
    # the list and its domain filter
    other_user, _ = new_user(api, other)
    assert {low, other_user} <= set(api.ok("GET", "/users")["users"])
    only = api.ok("GET", "/users?domain=" + d.upper())["users"]
    assert low in only and other_user not in only
    assert all(u.endswith("@" + d) for u in only)
    st, h, b = api.request("GET", "/users?domain=unknown-" + d)
    assert_error(st, h, b, 404)
    # delete
    api.ok("DELETE", "/users/" + low, want=204)
    assert low not in api.ok("GET", "/users")["users"]
    assert not pop3_login_ok(srv, low, "second-secret")
    st, h, b = api.request("DELETE", "/users/" + low)
    assert_error(st, h, b, 404)


def test_user_in_unknown_domain_is_404(api):
    st, h, b = api.request("PUT", "/users/x@unknown-%s.test" % secrets.token_hex(4),
                           {"password": "secret"})
    assert_error(st, h, b, 404)
    assert "unknown domain" in b["error"]


def test_prehashed_password(srv, api):
    d = new_domain(api)
    addr = "hashed@" + d
    crypt = subprocess.run(["openssl", "passwd", "-6", "hashed-secret"], capture_output=True,
                           text=True, check=True).stdout.strip()
    api.ok("PUT", "/users/" + addr, {"password": "{SHA512-CRYPT}" + crypt}, want=201)
    assert pop3_login_ok(srv, addr, "hashed-secret")
    assert not pop3_login_ok(srv, addr, "{SHA512-CRYPT}" + crypt)


def test_client_gone_while_its_job_runs(srv, api):
    """The client sends a request whose job takes a while (an argon2id
    hash) and disconnects at once: the job finishes, nothing crashes."""
    d = new_domain(api)
    addrs = ["gone%d@%s" % (i, d) for i in range(5)]
    for a in addrs:
        body = json.dumps({"password": "gone-secret"}).encode()
        s = socket.create_connection(("127.0.0.1", api.port), timeout=TIMEOUT)
        s.sendall(b"PUT /users/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (a.encode(), api.token.encode(), len(body), body))
        s.close()
    wait_until(lambda: set(addrs) <= set(api.ok("GET", "/users")["users"]))
    assert pop3_login_ok(srv, addrs[0], "gone-secret")


def test_keepalive_connection_serves_several_requests(api):
    c = api.connect()
    try:
        d = unique("ka") + ".test"
        assert api.request("PUT", "/domains/" + d, conn=c)[0] == 201
        assert d in api.request("GET", "/domains", conn=c)[2]["domains"]
        assert api.request("GET", "/nope", conn=c)[0] == 404
        assert api.request("GET", "/domains", token="wrong", conn=c)[0] == 401
        assert api.request("DELETE", "/domains/" + d, conn=c)[0] == 204
    finally:
        c.close()


# --------------------------------------------------------------------------
# mailbox usage, aliases, quotas (store functions from the store work)

def test_mailbox_usage(srv, api):
    addr, pw = new_user(api)
    assert api.ok("GET", "/users/%s/mailbox" % addr) == {"messages": 0, "octets": 0}
    srv.deliver_smtp_many(addr, [make_message("m%d" % i, to=addr) for i in range(3)])
    p = srv.login(addr, pw)
    sizes = dict(p.list())
    p.quit()
    assert api.ok("GET", "/users/%s/mailbox" % addr) == {"messages": 3,
                                                         "octets": sum(sizes.values())}
    st, h, b = api.request("GET", "/users/nobody@%s/mailbox" % addr.split("@")[1])
    assert_error(st, h, b, 404)


def test_aliases_created_read_deleted(api):
    d = new_domain(api)
    u1, _ = new_user(api, d)
    u2, _ = new_user(api, d)
    alias = "Team@" + d
    low = alias.lower()
    st, h, b = api.request("PUT", "/aliases/" + alias, {"targets": [u1.upper(), u2]})
    assert st == 201, (st, b)
    assert b["alias"] == low and b["targets"] == [u1, u2]
    assert sorted(api.ok("GET", "/aliases")["aliases"][low]) == sorted([u1, u2])
    assert sorted(api.ok("GET", "/aliases/" + low)["targets"]) == sorted([u1, u2])
    st, h, b = api.request("PUT", "/aliases/" + low, {"targets": [u1]})
    assert st == 200 and b["created"] is False, (st, b)
    assert api.ok("GET", "/aliases/" + low)["targets"] == [u1]
    # a target named twice (in any case) is one target, in the answer as stored
    st, h, b = api.request("PUT", "/aliases/" + low, {"targets": [u2, u1, u2.upper(), u1]})
    assert st == 200 and b["targets"] == [u2, u1], (st, b)
    assert sorted(api.ok("GET", "/aliases/" + low)["targets"]) == sorted([u1, u2])
    api.ok("PUT", "/aliases/" + low, {"targets": [u1]})
    api.ok("DELETE", "/aliases/" + low, want=204)
    assert low not in api.ok("GET", "/aliases")["aliases"]
    st, h, b = api.request("DELETE", "/aliases/" + low)
    assert_error(st, h, b, 404)
    st, h, b = api.request("GET", "/aliases/" + low)
    assert_error(st, h, b, 404)


def test_alias_remote_targets(api):
    d = new_domain(api)
    u1, _ = new_user(api, d)
    a = "fwd@" + d
    far = "someone@far-away.example"
    assert api.ok("PUT", "/aliases/" + a, {"targets": [u1, far]}, want=201)["targets"] == [u1, far]
    assert api.ok("GET", "/aliases/" + a)["targets"] == [u1, far]
    # the unknown target named is the local one, not the remote address
    ghost = "ghost@" + d
    st, h, b = api.request("PUT", "/aliases/" + a, {"targets": [far, ghost]})
    assert_error(st, h, b, 400)
    assert ghost in b["error"] and far not in b["error"]
    assert api.ok("GET", "/aliases/" + a)["targets"] == [u1, far]


def test_alias_errors_change_nothing(api):
    d = new_domain(api)
    u1, _ = new_user(api, d)
    a1, a2 = "a1@" + d, "a2@" + d
    api.ok("PUT", "/aliases/" + a1, {"targets": [u1]}, want=201)
    api.ok("PUT", "/aliases/" + a2, {"targets": [a1]}, want=201)
    # a loop
    st, h, b = api.request("PUT", "/aliases/" + a1, {"targets": [a2]})
    assert_error(st, h, b, 409)
    assert api.ok("GET", "/aliases/" + a1)["targets"] == [u1]
    # an unknown target is named
    ghost = "ghost@" + d
    st, h, b = api.request("PUT", "/aliases/" + a1, {"targets": [u1, ghost]})
    assert_error(st, h, b, 400)
    assert ghost in b["error"]
    # an alias over a user, bad bodies
    for body in ({"targets": [a1]}, ):
        st, h, b = api.request("PUT", "/aliases/" + u1, body)
        assert_error(st, h, b, 400)
    for body in ({"targets": []}, {"targets": "x@" + d}, {"targets": [5]}, {"targets": ["nope"]},
                 {"targets": [u1] * 65}, {"targets": [u1], "x": 1}, {}):
        st, h, b = api.request("PUT", "/aliases/" + a1, body)
        assert_error(st, h, b, 400)
    assert api.ok("GET", "/aliases/" + a1)["targets"] == [u1]
    # a user cannot take an alias's address, a domain with aliases stays
    st, h, b = api.request("PUT", "/users/" + a1, {"password": "secret"})
    assert_error(st, h, b, 409)
    assert a1 not in api.ok("GET", "/users")["users"]
    api.ok("DELETE", "/users/" + u1, want=204)
    st, h, b = api.request("DELETE", "/domains/" + d)
    assert_error(st, h, b, 409)


def test_quota_read_set_cleared(api):
    addr, _ = new_user(api)
    q = api.ok("GET", "/quota/" + addr)
    assert q["messages"] == {"used": 0, "limit": None, "own": None}
    assert q["octets"] == {"used": 0, "limit": None, "own": None}
    q = api.ok("PUT", "/quota/" + addr, {"messages": 5})
    assert q["messages"]["own"] == 5 and q["messages"]["limit"] == 5
    assert q["octets"]["own"] is None
    # a missing key leaves that limit as it is
    q = api.ok("PUT", "/quota/" + addr, {"octets": 100000})
    assert q["messages"]["own"] == 5 and q["octets"]["own"] == 100000
    assert api.ok("GET", "/quota/" + addr) == q
    # bad values change nothing
    for body in ({"messages": 0}, {"messages": -1}, {"messages": 1.5}, {"messages": "5"},
                 {"messages": True}, {"octets": [1]}, {"bytes": 5}, ["x"]):
        st, h, b = api.request("PUT", "/quota/" + addr, body)
        assert_error(st, h, b, 400)
    assert api.ok("GET", "/quota/" + addr) == q
    # null: no limit of the user's own
    q = api.ok("PUT", "/quota/" + addr, {"messages": None, "octets": None})
    assert q["messages"]["own"] is None and q["octets"]["own"] is None
    st, h, b = api.request("GET", "/quota/nobody@" + addr.split("@")[1])
    assert_error(st, h, b, 404)


# --------------------------------------------------------------------------
# repair tasks

def follow_task(api, tid):
    seen = []

    def done():
        t = api.ok("GET", "/tasks/" + tid)
        seen.append(t["status"])
        return t if t["status"] in ("done", "failed") else None

    return wait_until(done, timeout=TIMEOUT * 3), seen


def test_repair_task_followed_to_done(srv, api):
    addr, pw = new_user(api)
    srv.deliver_smtp(addr, make_message("repair me", to=addr))
    st, h, b = api.request("POST", "/tasks/repair", {"dry_run": True, "min_age": 0, "per_second": 0})
    assert st == 202, (st, b)
    tid = b["id"]
    assert h.get("location") == "/tasks/" + tid
    t, seen = follow_task(api, tid)
    assert set(seen) <= {"waiting", "running", "done"}, seen
    assert t["status"] == "done", t
    assert t["type"] == "repair" and t["id"] == tid
    for k in ("submitted", "started", "finished"):
        assert isinstance(t[k], str) and t[k].endswith("Z") and "T" in t[k], t
    keys = {"refs_scanned", "listing_scanned", "bodies_scanned", "relisted",
            "deletes_finished", "unlisted", "swept", "skipped", "orphaned"}
    if BACKEND == "cassandra":   # the scan walks the token ring, as `tern repair` shows it
        keys |= {"token_reached", "covered_percent", "rows_scanned", "rows_per_second",
                 "seconds_left"}
    assert set(t["report"]) == keys and set(t["progress"]) == keys
    assert t["report"]["listing_scanned"] >= 1, t
    if BACKEND == "cassandra":
        r = t["report"]
        assert r["token_reached"] == 2 ** 63 - 1 and r["covered_percent"] == 100.0, r
        assert r["rows_scanned"] == r["refs_scanned"] + r["listing_scanned"] + r["bodies_scanned"]
        assert r["rows_per_second"] > 0 and r["seconds_left"] == 0, r
        # resumed after a token: the options say from where, the range is
        # the rest of the ring
        st, _, b = api.request("POST", "/tasks/repair", {"dry_run": True, "from": 0})
        assert st == 202, b
        t2, _ = follow_task(api, b["id"])
        assert t2["status"] == "done" and t2["options"]["from"] == 0, t2
        assert t2["report"]["covered_percent"] == 100.0, t2
    assert t["options"] == {"dry_run": True, "per_second": 0, "min_age": 0}
    assert "error" not in t
    # the message is untouched
    assert srv.count(addr, pw) == 1
    # the list, newest first
    st2, _, b2 = api.request("POST", "/tasks/repair")
    assert st2 == 202
    listed = api.ok("GET", "/tasks")["tasks"]
    ids = [x["id"] for x in listed]
    assert ids.index(b2["id"]) < ids.index(tid)
    follow_task(api, b2["id"])


def test_repair_task_bad_options_and_unknown_task(api):
    before = len(api.ok("GET", "/tasks")["tasks"])
    for body in ({"dry_run": "yes"}, {"per_second": -1}, {"per_second": 1.5},
                 {"min_age": "10"}, {"min_age": 10 ** 12}, {"sweep": False}, {"from": "1"},
                 {"from": 1.5}, "[1]", "{"):
        st, h, b = api.request("POST", "/tasks/repair", body)
        assert_error(st, h, b, 400)
    assert len(api.ok("GET", "/tasks")["tasks"]) == before
    st, h, b = api.request("GET", "/tasks/00000000-0000-1000-8000-000000000000")
    assert_error(st, h, b, 404)


# --------------------------------------------------------------------------
# health check and metrics

def healthy(b):
    """A healthy answer: {"store": "ok"}; on a test Cassandra node (one
    replica, commitlog_sync periodic) with the durability warning in its
    detail, which does not fail the check without require_durable."""
    if BACKEND == "cassandra" and "detail" in b:
        return b["store"] == "ok" and b["detail"].startswith("cassandra: durable: no:")
    return b == {"store": "ok"}


def test_healthcheck_ok(api):
    st, h, b = api.request("GET", "/healthcheck")
    assert st == 200 and healthy(b), (st, b)
    assert h["content-type"] == "application/json"
    st, h, b = api.request("GET", "/healthcheck", token=None)
    assert_error(st, h, b, 401)


@pytest.mark.skipif(BACKEND != "sqlite", reason="moves the SQLite file")
def test_healthcheck_503_when_the_store_is_unusable(srv, api):
    """A database file that is no longer the one the server opened (moved
    away, as by a botched restore) makes the store unusable: 503 with the
    reason, and 200 again once it is back."""
    db = srv.data_dir / "tern.db"
    moved = srv.data_dir / "tern.db.moved"
    os.rename(db, moved)
    try:
        st, h, b = api.request("GET", "/healthcheck")
        assert st == 503, (st, b)
        assert h["content-type"] == "application/json"
        assert b["store"] == "failing" and "tern.db" in b["detail"], b
    finally:
        os.rename(moved, db)
    st, h, b = api.request("GET", "/healthcheck")
    assert st == 200 and b == {"store": "ok"}, (st, b)


def test_metrics_needs_the_token_unless_public(servers, api):
    st, h, b = api.request("GET", "/metrics", token=None)
    assert_error(st, h, b, 401)
    st, h, b = api.request("GET", "/metrics")
    assert st == 200, (st, b)
    assert h["content-type"] == "text/plain; version=0.0.4"
    pub = start_admin_server(servers, metrics_public=True)
    st, h, b = pub.admin.request("GET", "/metrics", token=None)
    assert st == 200 and h["content-type"] == "text/plain; version=0.0.4", (st, b)
    # only /metrics is public
    for method, path in (("GET", "/domains"), ("GET", "/healthcheck"), ("PUT", "/metrics")):
        st, h, b = pub.admin.request(method, path, token=None)
        assert_error(st, h, b, 401)


# --------------------------------------------------------------------------
# the token file, TLS, the connection cap

def serve_fails(servers, text_or_mode, *words):
    s = servers.create(start=False)
    tf = s.dir / "admin.token"
    if isinstance(text_or_mode, int):
        tf.write_text(secrets.token_hex(16) + "\n")
        os.chmod(tf, text_or_mode)
    elif text_or_mode is not None:
        tf.write_text(text_or_mode)
        os.chmod(tf, 0o600)
    s.sections["admin"] = {"listen": "127.0.0.1:%d" % free_ports(1)[0], "token_file": str(tf)}
    s.write_config()
    r = s.cli("serve")
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert str(tf) in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_token_file_problems_stop_the_start(servers):
    serve_fails(servers, None, "cannot open")
    serve_fails(servers, "\n", "empty")
    serve_fails(servers, "", "empty")
    serve_fails(servers, "two words\n", "printable")
    serve_fails(servers, 0o640, "group or others", "chmod 600")
    serve_fails(servers, 0o604, "group or others")


def test_token_file_crlf_and_later_lines(servers):
    s = start_admin_server(servers, token="tok-" + secrets.token_hex(16))
    tf = s.dir / "admin.token"
    s.stop()
    tf.write_text(s.admin_token + "\r\nsecond line is ignored\n")
    s.start()
    wait_until(lambda: _accepts(s.admin_port))
    assert s.admin.request("GET", "/domains")[0] == 200
    assert s.admin.request("GET", "/domains", token="second line is ignored")[0] == 401


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_tls(servers):
    s = start_admin_server(servers, tls=True)
    assert healthy(s.admin.ok("GET", "/healthcheck"))
    d = unique("tls") + ".test"
    s.admin.ok("PUT", "/domains/" + d, want=201)
    # plaintext HTTP on the TLS port gets no answer
    plain = Admin(s.admin_port, s.admin_token)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/domains")
    # after a SIGHUP reload, new connections still work
    s.proc.send_signal(1)
    wait_until(lambda: "TLS certificate and key reloaded" in s.log_text())
    assert d in s.admin.ok("GET", "/domains")["domains"]


def test_tls_needs_a_certificate(servers):
    s = servers.create(start=False, tls=False, cert=None)
    tf = s.dir / "admin.token"
    tf.write_text("abcdefghijklmnopqrstuvwxyz\n")
    os.chmod(tf, 0o600)
    s.sections["admin"] = {"listen": "127.0.0.1:%d" % free_ports(1)[0], "token_file": str(tf),
                           "tls": "yes"}
    s.write_config()
    r = s.cli("serve")
    assert r.returncode == 78 and "[admin] tls" in r.stderr, (r.returncode, r.stderr)


def test_connection_cap(servers):
    api = start_admin_server(servers).admin
    conns = []
    try:
        refused = None
        for i in range(70):
            c = api.connect()
            conns.append(c)
            st, h, b = api.request("GET", "/healthcheck", conn=c)
            if st == 503:
                refused = i
                assert h.get("connection", "").lower() == "close", h
                assert "too many" in b["error"]
                break
            assert st == 200, (st, b)
        assert refused == 64, refused
        # a connection that already has a slot keeps being served
        assert api.request("GET", "/healthcheck", conn=conns[0])[0] == 200
        for c in conns[:10]:
            c.close()
        conns = conns[10:]
        wait_until(lambda: api.request("GET", "/healthcheck")[0] == 200)
    finally:
        for c in conns:
            c.close()


# --------------------------------------------------------------------------
# the documentation of the endpoints

ROW_RE = re.compile(r"^\| `(GET|PUT|POST|DELETE) (/[^`?\[ ]*)(?:\?[^`]*|\[[^`]*\])?` \|(.*)$")


def documented(path, section_start):
    """{(method, path pattern)} of the endpoint table after section_start,
    and the rows' remaining text."""
    text = path.read_text()
    text = text[text.index(section_start):]
    rows = {}
    for line in text.splitlines():
        m = ROW_RE.match(line)
        if m:
            rows[(m.group(1), m.group(2))] = m.group(3)
        elif rows and not line.startswith("|"):
            break
    assert rows, "no endpoint table in %s" % path
    return rows


def concrete(pattern):
    return (pattern.replace("{domain}", "readme.test").replace("{address}", "x@readme.test")
            .replace("{id}", "00000000-0000-1000-8000-000000000000"))


def test_readme_documents_every_endpoint_with_curl(api):
    """The README's endpoint table and docs/admin-api.md's name the same
    endpoints; each README row has a curl example of its method and path;
    and for every documented path the server takes exactly the documented
    methods (its 405 lists them in Allow)."""
    readme = documented(REPO / "README.md", "### The admin HTTP API")
    full = documented(REPO / "docs" / "admin-api.md", "## Endpoints")
    assert set(readme) == set(full)
    for (method, pattern), rest in readme.items():
        m = re.search(r"`(curl [^`]*)`", rest)
        assert m, "no curl example for %s %s" % (method, pattern)
        example = m.group(1)
        want = re.search(r"-X (\w+)", example)
        assert (want.group(1) if want else "GET") == method, example
        url = re.search(r"\$H(/[^\s\"?]*)", example)
        assert url, example
        regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern))
        assert re.fullmatch(regex, url.group(1)), (pattern, example)
    methods = {}
    for method, pattern in readme:
        methods.setdefault(pattern, set()).add(method)
    for pattern, want in methods.items():
        st, h, b = api.request("OPTIONS", concrete(pattern))
        assert st == 405, (pattern, st, b)
        assert set(h["allow"].split(", ")) == want, (pattern, h["allow"], want)
