"""The outbound queue on Cassandra, end to end: two tern nodes on one
keyspace, a node that dies with mail queued and the other one delivering it
(rendezvous takeover), a node that pauses longer than the lease (the one
duplicate the design allows, and its counter), a restart after kill -9, and
no lightweight transaction anywhere on the outbound path.

The DNS server, the SMTP sink and the submission helpers are those of
tests/integration/test_outbound.py."""
import os
import re
import signal
import struct
import threading
import time

from integration import cqlquery
from integration.helpers import make_message
from integration.test_admin import start_admin_server
from integration.test_outbound import (DELIVER_TIMEOUT, dkim_key, dns, message_to,  # noqa: F401
                                       outbound_sections, pop3_messages, queue_list, sink,
                                       sink_port, submit, wait_queue_empty, with_submission_port)

from conftest import AdminPool
from test_store_cassandra import keyspace, lwt_counts

LEASE_S = 3
TAKEOVER_A = 'msg="queue takeover: delivering a silent node\'s queue" node=node-a '
ENTRY_RE = re.compile(r"^(\S+) (\S+) \S+ \S+ attempts=(\d+) ", re.M)


def node(cass_servers, ks, node_id, dns, sink_port, dkim_key, **extra):
    """A tern node of keyspace ks with the admin API, relaying to the sink,
    with a lease of LEASE_S seconds."""
    extra.setdefault("queue", {}).update({"node_id": node_id, "lease": "%ds" % LEASE_S})
    sections = outbound_sections(dns, sink_port, dkim_key, **extra)
    return with_submission_port(start_admin_server(AdminPool(cass_servers, ks, overrides=sections)))


def wait_until(pred, what, s, timeout=DELIVER_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, "%s never happened:\n%s" % (what, s.log_tail())
        time.sleep(0.1)


def entries(s):
    """[(id, owner, attempts)] of `tern queue list`."""
    return [(i, o, int(a)) for i, o, a in ENTRY_RE.findall(queue_list(s))]


def heartbeats(contact, ks):
    """{node: heartbeat in µs since the epoch} of the datacenter dc1."""
    rows = cqlquery.query(contact, "SELECT node, heartbeat_us FROM %s.queue_nodes WHERE dc = 'dc1'" % ks)
    return {r[0].decode(): struct.unpack(">q", r[1])[0] for r in rows}


def metric(s, name):
    """The value of one series of GET /metrics (name with its labels)."""
    code, _, text = s.admin.request("GET", "/metrics")
    assert code == 200, text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no %s in /metrics:\n%s" % (name, text))


def wait_heartbeat_after(contact, ks, node_id, after_us, s):
    """Waits for a heartbeat of node_id later than after_us; returns it."""
    return wait_until(lambda: max(heartbeats(contact, ks).get(node_id, 0), 0) > after_us and
                      heartbeats(contact, ks)[node_id], "a heartbeat of %s" % node_id, s)


def wait_scanned(contact, ks, node_id, s):
    """Returns once node_id has read its queue at least once from now: one
    thread of the runner writes the heartbeats (a third of the lease, 1 s,
    apart) and scans (every 200 ms), so a scan starts and ends between two
    heartbeats."""
    first = wait_heartbeat_after(contact, ks, node_id, int(time.time() * 1e6), s)
    wait_heartbeat_after(contact, ks, node_id, first, s)


def test_a_dead_nodes_queue_is_delivered_once_by_another_node(cass_servers, cassandra_node, dns,
                                                             sink_port, dkim_key, sink):
    ks = keyspace("takeover")
    a = node(cass_servers, ks, "node-a", dns, sink_port, dkim_key)
    b = node(cass_servers, ks, "node-b", dns, sink_port, dkim_key)
    user, pw = a.new_user("owner")
    b.users[user] = pw
    assert submit(a, user, pw, ["far@remote.test"], message_to(user, "far@remote.test", "taken over")).code == 250
    # The sink is down: the entry stays, node-a's, attempted.
    (qid, owner, attempts), = wait_until(lambda: [e for e in entries(b) if e[2] >= 1], "an attempt", a)
    assert owner == "node-a", queue_list(b)
    a.kill9()
    sink.start()
    assert sink.wait_for(1, DELIVER_TIMEOUT), b.log_tail()
    wait_queue_empty(b)
    assert [m.rcpts for m in sink.messages] == [["far@remote.test"]]
    log = b.log_text()
    assert TAKEOVER_A in log, log[-3000:]
    assert 'msg="queue done" id=%s' % qid in log, log[-3000:]
    now = int(time.time() * 1e6)
    hb = heartbeats(cassandra_node, ks)
    assert hb["node-a"] < now - LEASE_S * 1000000, hb
    assert hb["node-b"] > now - LEASE_S * 1000000, hb
    # node-a comes back: its queue is empty, nothing goes out again, and
    # node-b gives its queue back.
    a.start()
    wait_scanned(cassandra_node, ks, "node-a", a)
    ended = 'msg="queue takeover ended" node=node-a reason="its heartbeat is back"'
    wait_until(lambda: ended in b.log_text(), "the end of the takeover", b)
    assert len(sink.messages) == 1
    assert entries(a) == []
    assert metric(a, "tern_queue_duplicates_total") == 0
    assert metric(b, "tern_queue_duplicates_total") == 0


def test_a_paused_node_and_its_taker_both_deliver_and_the_duplicate_is_counted(
        cass_servers, cassandra_node, dns, sink_port, dkim_key, sink):
    """The one duplicate at-least-once allows: node-a stops (SIGSTOP) after
    the sink has the message and before node-a has its 250; node-b presumes
    it dead and delivers again; node-a, resumed, finds its entry gone and
    counts a possible duplicate."""
    ks = keyspace("paused")
    # Replies are awaited longer than node-a stays stopped.
    slow = {"relay": {"command_timeout": "60s"}}
    a = node(cass_servers, ks, "node-a", dns, sink_port, dkim_key, **slow)
    b = node(cass_servers, ks, "node-b", dns, sink_port, dkim_key, **slow)
    user, pw = a.new_user("paused")
    release = threading.Event()
    sink.before_data_reply = lambda i: i == 0 and release.wait(2 * DELIVER_TIMEOUT)
    sink.start()
    stopped = False
    try:
        assert submit(a, user, pw, ["twice@remote.test"], message_to(user, "twice@remote.test", "twice")).code == 250
        assert sink.wait_for(1, DELIVER_TIMEOUT), a.log_tail()
        os.kill(a.proc.pid, signal.SIGSTOP)
        stopped = True
        assert sink.wait_for(2, DELIVER_TIMEOUT), b.log_tail()
        wait_queue_empty(b)
        release.set()
        os.kill(a.proc.pid, signal.SIGCONT)
        stopped = False
        wait_until(lambda: "queue entry finished by another node" in a.log_text(), "node-a's finish", a)
    finally:
        release.set()
        if stopped:
            os.kill(a.proc.pid, signal.SIGCONT)
    assert [m.rcpts for m in sink.messages] == [["twice@remote.test"]] * 2
    assert "duplicate=possible" in a.log_text(), a.log_tail()
    assert metric(a, "tern_queue_duplicates_total") == 1
    assert metric(b, "tern_queue_duplicates_total") == 0
    assert TAKEOVER_A in b.log_text()


def test_a_node_killed_with_mail_queued_delivers_it_itself_after_restart(cass_servers, cassandra_node, dns,
                                                                         sink_port, dkim_key, sink):
    ks = keyspace("restart")
    a = node(cass_servers, ks, "node-a", dns, sink_port, dkim_key)
    user, pw = a.new_user("crash")
    rcpts = ["r%d@remote.test" % i for i in range(3)]
    for r in rcpts:
        assert submit(a, user, pw, [r], message_to(user, r, "restart " + r)).code == 250
    wait_until(lambda: len([e for e in entries(a) if e[2] >= 1]) == 3, "three attempts", a)
    a.kill9()
    sink.start()
    a.start()
    assert sink.wait_for(3, DELIVER_TIMEOUT), a.log_tail()
    wait_queue_empty(a)
    assert sorted(r for m in sink.messages for r in m.rcpts) == rcpts
    after = a.log_text().rsplit("---- start ----", 1)[1]
    assert after.count('msg="queue done"') == 3, after[-3000:]
    assert "queue takeover" not in a.log_text()


def test_heartbeats_come_every_third_of_the_lease_whatever_the_scan_interval(
        cass_servers, cassandra_node, dns, sink_port, dkim_key):
    """A node that reads its queue less often than its lease must still not
    look dead to the others."""
    ks = keyspace("beat")
    a = node(cass_servers, ks, "node-a", dns, sink_port, dkim_key, queue={"scan_interval": "1h"})
    first = wait_heartbeat_after(cassandra_node, ks, "node-a", 0, a)
    second = wait_heartbeat_after(cassandra_node, ks, "node-a", first, a)
    assert second - first < LEASE_S * 1000000, (first, second)


def test_the_outbound_path_sends_no_lwt(cass_servers, cassandra_node, dns, sink_port, dkim_key, sink):
    """Queue puts, scans, updates after a deferral, deletes, a DSN into a
    mailbox and one through the queue, heartbeats and a takeover: no
    conditional statement, no SERIAL read, on either node, and no Paxos row
    in the keyspace (which the CLI's commands would show too)."""
    ks = keyspace("qlwt")
    a = node(cass_servers, ks, "node-a", dns, sink_port, dkim_key)
    b = node(cass_servers, ks, "node-b", dns, sink_port, dkim_key)
    sink.rcpt_reply = {"gone@remote.test": "550 5.1.1 no such user",
                       "later@remote.test": "451 4.3.0 try later",
                       "refuses@remote.test": "550 5.1.1 no"}
    sink.start()
    user, pw = a.new_user("lwt")
    rcpts = ["fine@remote.test", "gone@remote.test", "later@remote.test"]
    assert submit(a, user, pw, rcpts, message_to(user, "fine@remote.test", "no lwt")).code == 250
    assert sink.wait_for(1, DELIVER_TIMEOUT), a.log_tail()
    wait_until(lambda: pop3_messages(a, user, pw), "the DSN in the sender's mailbox", a)
    wait_until(lambda: [e for e in entries(a) if e[2] >= 2], "two deferred attempts", a)
    # A remote sender's DSN goes through the queue, from <>.
    a.cli_ok("alias", "add", "fwd@example.test", "refuses@remote.test")
    a.deliver_smtp(["fwd@example.test"], make_message("forwarded", to="fwd@example.test"),
                   sender="stranger@remote.test")
    wait_until(lambda: [m for m in sink.messages if m.mail_from == "" and
                        m.rcpts == ["stranger@remote.test"]], "the queued DSN", a)
    # node-a pauses past its lease: node-b takes the deferred recipient over.
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        del sink.rcpt_reply["later@remote.test"]
        wait_until(lambda: [m for m in sink.messages if m.rcpts == ["later@remote.test"]],
                   "the taken over delivery", b)
        wait_queue_empty(b)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert TAKEOVER_A in b.log_text()
    wait_scanned(cassandra_node, ks, "node-a", a)
    assert metric(a, 'tern_queue_attempts_total{result="tempfail"}') >= 2
    assert metric(a, 'tern_queue_dsn_total{to="local"}') >= 1
    assert metric(a, 'tern_queue_dsn_total{to="queued"}') >= 1
    for s in (a, b):
        assert metric(s, "tern_cassandra_conditional_statements_total") == 0
        assert metric(s, "tern_cassandra_serial_requests_total") == 0
        s.stop()
        assert lwt_counts(s) == (0, 0)
    assert cqlquery.paxos_rows(cassandra_node, ks) == 0
