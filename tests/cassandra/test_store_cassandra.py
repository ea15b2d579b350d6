"""The Cassandra store, end to end through the real binary on a real node:
zero lightweight transactions in messageid mode (proven by tern's own
counters and by system.paxos), CAS-allocated UIDs in uid mode, bodies
stored once and chunked, and what expunge leaves behind."""
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from integration.helpers import headers, make_message, stuff, timeuuid_unix_time, wait_until
from integration.test_admin import start_admin_server

from integration import cqlquery
from conftest import AdminPool
from integration.ternserver import free_ports

LWT_LINE = re.compile(r"cassandra: (\d+) requests, (\d+) errors, (\d+) retries, "
                      r"(\d+) conditional statements \(LWT\), (\d+) serial reads")


def keyspace(tag):
    return "t_%s_%s" % (tag, uuid.uuid4().hex[:10])


def lwt_counts(server):
    """(conditional statements, serial reads) from the shutdown line."""
    m = LWT_LINE.findall(server.log_text())
    assert m, "no cassandra statistics line in the log:\n%s" % server.log_tail()
    return int(m[-1][3]), int(m[-1][4])


def workload(s):
    """SMTP (multi-recipient), LMTP, `tern deliver`, then POP3 sessions that
    read, TOP, delete and quit: every path that serves mail."""
    a, apw = s.new_user("lwt-a")
    b, bpw = s.new_user("lwt-b")
    for i in range(3):
        s.deliver_smtp([a, b], make_message("smtp-%d" % i, to=a))
    with s.lmtp() as c:
        c.ehlo(verb="LHLO")
        assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % a).code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: lmtp\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
        c.quit()
    s.deliver_cli(a, b"Subject: cli\n\nfrom a pipe\n")
    for user, pw, n in ((a, apw, 5), (b, bpw, 3)):
        p = s.login(user, pw)
        assert p.stat()[0] == n
        uidls = p.uidl()
        assert len(set(u for _, u in uidls)) == n
        for i in range(1, n + 1):
            p.retr(i)
            assert p.cmd("TOP %d 0" % i).startswith("+OK")
            p.read_multi()
            assert p.cmd("DELE %d" % i).startswith("+OK")
        p.quit()
        p = s.login(user, pw)
        assert p.stat()[0] == 0
        p.quit()


def test_messageid_mode_sends_no_lwt(cass_servers, cassandra_node):
    ks = keyspace("lwt")
    s = cass_servers(ks)
    workload(s)
    s.stop()
    assert lwt_counts(s) == (0, 0)
    assert cqlquery.paxos_rows(cassandra_node, ks) == 0


def test_pop3_extensions_and_import_send_no_lwt(cass_servers, cassandra_node, tmp_path):
    """EXPIRE (the retrieval records, the deletion at QUIT, the sweep),
    LOGIN-DELAY (the login times) and `tern import` with legacy UIDLs are
    plain writes too: still no conditional statement, no SERIAL read."""
    ks = keyspace("ext")
    s = cass_servers(ks, overrides={"pop3": {"expire_days": "0", "login_delay": "1",
                                             "expire_sweep_interval": "1s"}})

    def login(user, pw):
        time.sleep(1.1)         # past the login delay of the last login
        return s.login(user, pw)

    a, apw = s.new_user("ext-a")
    mbox = tmp_path / "spool.mbox"
    mbox.write_text("".join("From x@remote.test Tue Nov 14 22:%02d:00 2023\nX-UIDL: legacy-%d\n"
                            "Subject: %d\n\nbody %d\n\n" % (i, i, i, i) for i in range(3)))
    s.cli_ok("import", a, "mbox", mbox)
    s.deliver_smtp(a, make_message("new mail", to=a))
    p = login(a, apw)
    assert [u for _, u in p.uidl()][:3] == ["legacy-0", "legacy-1", "legacy-2"]
    p.retr(1)
    p.retr(4)
    assert p.cmd("DELE 2").startswith("+OK")
    p.quit()                    # 1 and 4 expire at QUIT, 2 is deleted
    p = login(a, apw)
    assert [u for _, u in p.uidl()] == ["legacy-2"]
    p.retr(1)
    p.abort()                   # no QUIT: the sweep takes it
    time.sleep(1.1)
    # each look is a login: a delay apart
    assert wait_until(lambda: s.count(a, apw) == 0, timeout=20, interval=1.2)
    s.stop()
    assert lwt_counts(s) == (0, 0)
    assert cqlquery.paxos_rows(cassandra_node, ks) == 0


def test_uid_mode_uses_cas_and_is_counted(cass_servers, cassandra_node):
    """The same workload in uid mode does use Paxos: the counters and
    system.paxos both see it, so the zero above is a real measurement."""
    ks = keyspace("uid")
    s = cass_servers(ks, pop3_ids="uid")
    workload(s)
    s.stop()
    conditional, serial = lwt_counts(s)
    # one CAS per recipient of the 4 server-side deliveries (3 × 2 + 1)
    assert conditional >= 7 and serial >= 7
    assert cqlquery.paxos_rows(cassandra_node, ks) > 0


def test_uid_mode_unique_under_concurrent_nodes(cass_servers):
    """Two tern nodes deliver to one mailbox at once: every message gets a
    UID of its own, none is lost."""
    ks = keyspace("cas")
    s1 = cass_servers(ks, pop3_ids="uid")
    s2 = cass_servers(ks, pop3_ids="uid")
    a, apw = s1.new_user("race")
    errors = []

    def send(server, tag):
        try:
            for i in range(10):
                server.deliver_smtp(a, make_message("%s-%d" % (tag, i), to=a))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(srv, t))
               for srv, t in ((s1, "one"), (s2, "two"), (s1, "three"), (s2, "four"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    p = s2.login(a, apw)
    uidls = [u for _, u in p.uidl()]
    p.quit()
    assert len(uidls) == 40
    assert len(set(uidls)) == 40
    assert all(re.fullmatch(r"[0-9A-F]{16}", u) for u in uidls)
    uids = sorted(int(u[:8], 16) for u in uidls)
    assert uids[0] >= 1 and len(set(uids)) == 40


def test_body_stored_once_and_released_by_last_reader(cass_servers, cassandra_node):
    ks = keyspace("refs")
    s = cass_servers(ks)
    users = [s.new_user("share%d" % i) for i in range(3)]
    body = "line of a shared message\r\n" * 20
    s.deliver_smtp([u for u, _ in users], make_message("shared", body, to=users[0][0]))

    def bodies():
        return cqlquery.count(cassandra_node, "SELECT count(*) FROM %s.bodies" % ks)

    assert bodies() == 1
    for i, (u, pw) in enumerate(users):
        p = s.login(u, pw)
        assert p.stat()[0] == 1
        msg = p.retr(1)
        assert b"shared" in msg
        assert p.cmd("DELE 1").startswith("+OK")
        p.quit()
        assert bodies() == (1 if i < 2 else 0)
    assert cqlquery.count(cassandra_node, "SELECT count(*) FROM %s.body_refs" % ks) == 0


def test_large_message_in_chunks(cass_servers, cassandra_node):
    ks = keyspace("big")
    s = cass_servers(ks, max_message_size=8 * 1024 * 1024)
    a, apw = s.new_user("big")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=\r\n"
    body = line * (3 * 1024 * 1024 // len(line) + 7)
    s.deliver_cli(a, b"Subject: big\r\n\r\n" + body)
    chunks = cqlquery.count(cassandra_node, "SELECT count(*) FROM %s.bodies" % ks)
    assert chunks == 4  # 1 MiB chunks
    p = s.login(a, apw)
    size = p.list()[0][1]
    got = p.retr(1)
    p.quit()
    assert len(got) == size
    assert got.endswith(body)


def test_listing_survives_restart_and_other_nodes(cass_servers):
    """Stateless nodes: what one node stored, another serves, with the same
    UIDLs; nothing lives in a node's data_dir."""
    ks = keyspace("nodes")
    s1 = cass_servers(ks)
    s2 = cass_servers(ks)
    a, apw = s1.new_user("roam")
    for i in range(5):
        s1.deliver_smtp(a, make_message("roam-%d" % i, to=a))
    p = s1.login(a, apw)
    u1 = p.uidl()
    p.quit()
    p = s2.login(a, apw)
    u2 = p.uidl()
    p.quit()
    assert u1 == u2 and len(u1) == 5


def test_unreadable_chunks_through_the_cursor(cass_servers, cassandra_node):
    """A listed message whose chunk cannot be read (the listing row
    replicated before the body) is read again at QUORUM before RETR gives
    up (design.md invariant 9): a missing first chunk answers -ERR [SYS/TEMP]
    and the session goes on; a chunk missing further on ends the connection
    after the +OK, as a multi-line reply cannot turn into an error. TOP reads
    only the chunks its lines need, so it still works on the second message.
    None of it costs a lightweight transaction."""
    ks = keyspace("unread")
    s = cass_servers(ks, max_message_size=8 * 1024 * 1024)
    a, apw = s.new_user("unread")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=\r\n"
    body = line * (3 * 1024 * 1024 // len(line))
    for subject in (b"one", b"two"):
        assert s.deliver_cli(a, b"Subject: " + subject + b"\r\n\r\n" + body).returncode == 0
    mbox = uuid.uuid5(uuid.UUID("3c6f1e52-8a41-4d0b-9e27-5ac4117de093"), a)
    ids = [uuid.UUID(bytes=row[0]) for row in cqlquery.query(
        cassandra_node, "SELECT body_id FROM %s.listing WHERE mailbox_id = %s" % (ks, mbox))]
    assert len(ids) == 2
    for mid, chunk in ((ids[0], 0), (ids[1], 2)):
        cqlquery.query(cassandra_node, "DELETE FROM %s.bodies WHERE message_id = %s AND chunk = %d"
                       % (ks, mid, chunk))
    p = s.login(a, apw)
    r = p.cmd("RETR 1")
    assert r.startswith("-ERR [SYS/TEMP]"), r
    assert p.cmd("NOOP").startswith("+OK")
    status, lines = p.multi("TOP 2 5")
    assert status.startswith("+OK"), status
    assert b"Subject: two" in lines and len(lines) - lines.index(b"") - 1 == 5
    assert p.cmd("RETR 2").startswith("+OK")
    got = b""
    while True:
        chunk = p.sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    assert not got.endswith(b"\r\n.\r\n")
    # Pieces of chunks 0 and 1 went out, nothing of chunk 2 (the piece that
    # reaches into it fails whole, and what was still queued may be dropped).
    assert 1024 * 1024 < len(got) < 2 * 1024 * 1024 + 4096, len(got)
    p.close()
    s.stop()
    assert s.log_text().count("is not readable yet") == 2
    assert lwt_counts(s) == (0, 0)


def quota_lines(server, addr):
    return [ln.strip() for ln in server.cli_ok("quota", "get", addr).stdout.splitlines()
            if ln.strip()]


def test_quotas_and_aliases_send_no_lwt(cass_servers, cassandra_node):
    """Quotas on Cassandra: the own limits live in the users row, usage is
    computed from the listing partition (no counter table, no LWT), a
    delivery over the limit is refused and a POP3 delete frees room at
    once; aliases are plain rows. None of it sends a conditional
    statement or a serial read."""
    ks = keyspace("quota")
    s = cass_servers(ks, start=False)
    s.sections["quota"] = {"messages": "2"}
    s.write_config()
    s.start()
    a, apw = s.new_user("qa")
    b, bpw = s.new_user("qb")
    s.cli_ok("quota", "set", b, "--messages", "5")
    s.cli_ok("alias", "add", "team@" + s.DOMAIN, a, b)
    assert "team@%s %s,%s" % (s.DOMAIN, a, b) in s.cli_ok("alias", "list").stdout
    for i in range(2):
        assert s.deliver_cli(a, b"Subject: a%d\n\nbody\n" % i).returncode == 0
    r = s.deliver_cli(a, b"Subject: too many\n\nbody\n")
    assert r.returncode == 75 and b"over quota" in r.stderr, r
    for i in range(3):
        assert s.deliver_cli(b, b"Subject: b%d\n\nbody\n" % i).returncode == 0
    p = s.login(a, apw)
    count, size = p.stat()
    assert count == 2
    assert quota_lines(s, a) == ["messages: used 2, limit 2 (default)",
                                 "octets: used %d, limit none" % size]
    assert p.cmd("DELE 1").startswith("+OK")
    p.quit()
    assert quota_lines(s, a)[0] == "messages: used 1, limit 2 (default)"
    assert s.deliver_cli(a, b"Subject: fits again\n\nbody\n").returncode == 0
    assert quota_lines(s, b)[0] == "messages: used 3, limit 5 (own)"
    # the own limits are the users row's columns, and go with it
    rows = cqlquery.query(cassandra_node, "SELECT quota_messages FROM %s.users WHERE address = '%s'"
                          % (ks, b))
    assert rows and int.from_bytes(rows[0][0], "big") == 5
    s.cli_ok("alias", "del", "team@" + s.DOMAIN)
    s.cli_ok("user", "del", b)
    assert cqlquery.query(cassandra_node, "SELECT address FROM %s.users WHERE address = '%s'"
                          % (ks, b)) == []
    s.stop()
    assert lwt_counts(s) == (0, 0)
    assert cqlquery.paxos_rows(cassandra_node, ks) == 0


def test_keyspace_from_before_quotas_is_migrated(cass_servers, cassandra_node):
    """A keyspace whose users table has no quota columns (an older tern)
    gets them at start-up; the users in it keep working."""
    ks = keyspace("old")
    cqlquery.query(cassandra_node, "CREATE KEYSPACE %s WITH replication = {'class':"
                   " 'NetworkTopologyStrategy', 'dc1': 1}" % ks, timeout=60)
    cqlquery.query(cassandra_node, "CREATE TABLE %s.users (address text PRIMARY KEY,"
                   " domain text, password text)" % ks, timeout=60)
    s = cass_servers(ks)
    cols = {row[0].decode() for row in cqlquery.query(
        cassandra_node, "SELECT column_name FROM system_schema.columns WHERE"
        " keyspace_name = '%s' AND table_name = 'users'" % ks)}
    assert {"quota_messages", "quota_octets"} <= cols, cols
    a, apw = s.new_user("old")
    s.cli_ok("quota", "set", a, "--messages", "1")
    assert s.deliver_cli(a, b"Subject: one\n\nbody\n").returncode == 0
    assert s.deliver_cli(a, b"Subject: two\n\nbody\n").returncode == 75
    # a second node on the migrated keyspace starts as well
    s2 = cass_servers(ks)
    assert quota_lines(s2, a)[0] == "messages: used 1, limit 1 (own)"
    assert s2.count(a, apw) == 1


# tern's mailbox ids: version-5 UUIDs of the address in this namespace.
MAILBOX_NS = uuid.UUID("3c6f1e52-8a41-4d0b-9e27-5ac4117de093")
REMINT_BOUND = 10.0     # s: REMINT_BOUND_US in store-cassandra.c
REQUEST_DELAY = 3.0     # s: each request to Cassandra, while the relay holds them
CHUNKS = 4              # 1 MiB body chunks: 4 × 3 s > 10 s from mint to the listing write


DELAY_PROXY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench", "delayproxy.py")


class DelayRelay:
    """bench/delayproxy.py in front of the node: every byte, both ways, is
    held half of `set(seconds)`, so each request takes `seconds` longer."""

    def __init__(self, target, tmp_path):
        self.port = free_ports(1)[0]
        self.file = tmp_path / "delay-ms"
        self.file.write_text("0")
        self.proc = subprocess.Popen([sys.executable, DELAY_PROXY, "127.0.0.1:%d" % self.port,
                                      "%s:9042" % target, str(self.file)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "no delay proxy"
                time.sleep(0.05)

    def set(self, seconds):
        self.file.write_text("%d" % (seconds * 1000 / 2))
        time.sleep(0.3)  # the proxy reads the file every 0.2 s

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def delay_relay(cassandra_node, tmp_path):
    """A delay relay in front of the node. A test names it before
    cass_servers, so it outlives the servers (and their keyspace drop,
    which goes through it)."""
    relay = DelayRelay(cassandra_node, tmp_path)
    yield relay
    relay.close()


def remints(server):
    status, _, text = server.admin.request("GET", "/metrics")
    assert status == 200, (status, text)
    m = re.search(r"^tern_cassandra_listing_remints_total (\d+)$", text, re.M)
    assert m, text
    return int(m.group(1))


def test_late_listing_write_mints_a_new_listing_id(cassandra_node, delay_relay, cass_servers):
    """A delivery whose body takes longer than the 10 s bound to write gets
    a listing id minted again before anything is listed (invariant 12 on the
    writer's side): every request tern sends to Cassandra takes 3 s more through
    bench/delayproxy.py from the end of the data on, so the 4 chunk writes alone take 12 s
    while no single request comes near lib-cql's 12 s deadline (nor the 5 s
    heartbeat and clock-check timeouts). The message is stored once, listed
    once, under the new id; the body and body_refs keep the first id, and
    body_refs names the new one."""
    ks = keyspace("remint")
    s = start_admin_server(AdminPool(cass_servers, ks, contact="127.0.0.1:%d" % delay_relay.port),
                           max_message_size=8 * 1024 * 1024)
    a, apw = s.new_user("remint")
    # Warm up: the delivery statements are prepared, the connections busy.
    w, _ = s.new_user("warm")
    s.deliver_smtp(w, make_message("warm-up", to=w))
    before = remints(s)
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=\r\n"
    body = line * ((CHUNKS - 1) * 1024 * 1024 // len(line) + 100)
    message = make_message("late listing", body, to=a)
    c = s.smtp()
    try:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % a).code == 250
        assert c.cmd("DATA").code == 354
        c.send(stuff(message))
        delay_relay.set(REQUEST_DELAY)
        try:
            c.sock.settimeout(120)
            t0 = time.monotonic()
            c.send(b".\r\n")
            r = c.reply()
            elapsed = time.monotonic() - t0
        finally:
            delay_relay.set(0)
        c.sock.settimeout(10)
        assert r.code == 250, "end of DATA: %r\n%s" % (r, s.log_tail())
        # The relay did hold them: 4 chunks, body_refs and the listing row.
        assert elapsed >= (CHUNKS + 2) * REQUEST_DELAY, elapsed
        c.quit()
    finally:
        c.close()
    assert remints(s) - before == 1

    mbox = uuid.uuid5(MAILBOX_NS, a)
    rows = cqlquery.query(cassandra_node, "SELECT message_id, body_id FROM %s.listing"
                          " WHERE mailbox_id = %s" % (ks, mbox))
    assert len(rows) == 1, rows
    listing_id, body_id = (uuid.UUID(bytes=v) for v in rows[0])
    assert listing_id != body_id
    late = timeuuid_unix_time(str(listing_id)) - timeuuid_unix_time(str(body_id))
    assert late > REMINT_BOUND, late
    refs = cqlquery.query(cassandra_node, "SELECT mailbox_id, listing_id FROM %s.body_refs"
                          " WHERE message_id = %s" % (ks, body_id))
    assert [[uuid.UUID(bytes=v) for v in row] for row in refs] == [[mbox, listing_id]]
    # One body, under the first id (each chunk is a partition of its own).
    assert cqlquery.count(cassandra_node, "SELECT count(*) FROM %s.bodies WHERE message_id = %s"
                          " AND chunk IN (%s)" % (ks, body_id, ", ".join(
                              str(i) for i in range(CHUNKS + 1)))) == CHUNKS
    assert "id=%s " % body_id in s.log_text()  # the delivery logs its body id

    p = s.login(a, apw)
    assert p.stat()[0] == 1
    assert p.uidl() == [(1, str(listing_id))]
    size = p.list()[0][1]
    got = p.retr(1)
    p.quit()
    assert len(got) == size
    # What was sent, byte for byte, after the trace fields tern adds (the
    # Received field names the delivery by its body id).
    trace, sent = got[:-len(message)], got[-len(message):]
    assert sent == message
    fields = headers(trace + b"\r\n")
    assert [name for name, _ in fields] == ["return-path", "delivered-to", "received"], trace
    assert fields[1][1] == a and " id %s " % body_id in fields[2][1], trace
    # No request failed or was retried: the new id came from the first
    # attempt's late listing write, not from a retried delivery.
    s.stop()
    m = LWT_LINE.findall(s.log_text())
    assert m and (int(m[-1][1]), int(m[-1][2])) == (0, 0), s.log_tail()
