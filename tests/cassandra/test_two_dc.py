"""Two datacenters: dc1 (127.0.0.1) and dc2 (127.0.0.2), one Cassandra node
and one tern node each, the keyspace replicated dc1:1, dc2:1. Each tern node
talks only to its own datacenter, at LOCAL_QUORUM."""
import glob
import os
import threading
import time
import uuid

import pytest

from integration.helpers import make_message
from integration.test_admin import start_admin_server
from integration.ternserver import require_tool

from conftest import DC1, DC2, AdminPool

CONVERGE = 90  # seconds to wait for replication, hints included


def pair(cass_servers, tag):
    ks = "dc_%s_%s" % (tag, uuid.uuid4().hex[:10])
    repl = "dc1:1, dc2:1"
    t1 = cass_servers(ks, contact=DC1, local_dc="dc1", replication=repl)
    t2 = cass_servers(ks, contact=DC2, local_dc="dc2", replication=repl)
    return t1, t2


def uidls(s, addr, pw):
    p = s.login(addr, pw)
    try:
        return [u for _, u in p.uidl()]
    finally:
        p.quit()


def wait_for(pred, timeout=CONVERGE):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return True
        except Exception:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def subjects(s, addr, pw):
    """The Subject of every message listed in the mailbox, in order."""
    p = s.login(addr, pw)
    try:
        got = []
        for i in range(1, p.stat()[0] + 1):
            status, lines = p.multi("TOP %d 0" % i)
            assert status.startswith("+OK"), status
            got += [line[9:].decode() for line in lines if line.startswith(b"Subject: ")]
        return got
    finally:
        p.quit()


def test_mail_crosses_datacenters_with_the_same_uidls(two_dc, cass_servers):
    t1, t2 = pair(cass_servers, "cross")
    addr, pw = t1.new_user("cross")
    t2.users[addr] = pw
    for i in range(5):
        t1.deliver_smtp(addr, make_message("cross-%d" % i, to=addr))
    here = uidls(t1, addr, pw)
    assert len(here) == 5
    assert wait_for(lambda: uidls(t2, addr, pw) == here), "dc2 never saw dc1's mail"
    p = t2.login(addr, pw)
    assert b"cross-3" in p.retr(4)
    for i in (1, 2):
        assert p.cmd("DELE %d" % i).startswith("+OK")
    p.quit()
    assert uidls(t2, addr, pw) == here[2:]
    assert wait_for(lambda: uidls(t1, addr, pw) == here[2:]), "dc2's deletes never reached dc1"


def test_dc1_serves_while_dc2_is_down_and_dc2_converges(two_dc, cass_servers):
    t1, t2 = pair(cass_servers, "outage")
    addr, pw = t1.new_user("outage")
    t2.users[addr] = pw
    for i in range(3):
        t1.deliver_smtp(addr, make_message("before-%d" % i, to=addr))
    assert wait_for(lambda: len(uidls(t2, addr, pw)) == 3)
    two_dc.stop_node(2)
    try:
        # dc1 keeps accepting and serving mail, with no errors at all.
        for i in range(10):
            t1.deliver_smtp(addr, make_message("during-%d" % i, to=addr))
        p = t1.login(addr, pw)
        n = p.stat()[0]
        assert n == 13
        for i in range(1, n + 1):
            p.retr(i)
        for i in (1, 2):  # two messages from before the outage
            assert p.cmd("DELE %d" % i).startswith("+OK")
        p.quit()
        expected = uidls(t1, addr, pw)
        assert len(expected) == 11
        # dc2's tern answers, but cannot reach its datacenter's store.
        with t2.pop3() as c:
            c.cmd("USER %s" % addr)
            r = c.cmd("PASS %s" % pw)
            assert r.startswith("-ERR"), r
    finally:
        two_dc.start_node(2)
    # Hints replay what dc2 missed; nothing lost, nothing back from the dead.
    assert wait_for(lambda: uidls(t2, addr, pw) == expected), \
        "dc2 did not converge: %r" % (uidls(t2, addr, pw),)
    assert uidls(t1, addr, pw) == expected


def test_healthcheck_503_while_the_local_datacenter_has_no_quorum(two_dc, cass_servers):
    """The health check asks the local datacenter only: with dc2's one node
    down, dc2's tern answers 503 with Cassandra's error while dc1's stays
    healthy; once the node is back, dc2's answers 200 again."""
    ks = "health_%s" % uuid.uuid4().hex[:10]
    repl = "dc1:1, dc2:1"
    t1 = start_admin_server(AdminPool(cass_servers, ks, contact=DC1, local_dc="dc1",
                                       replication=repl))
    t2 = start_admin_server(AdminPool(cass_servers, ks, contact=DC2, local_dc="dc2",
                                       replication=repl))
    status, _, health = t2.admin.request("GET", "/healthcheck")
    assert status == 200 and health == {"store": "ok"}, health
    two_dc.stop_node(2)
    try:
        status, _, health = t2.admin.request("GET", "/healthcheck")
        assert status == 503, (status, health)
        assert health["store"] == "failing" and health["detail"].startswith("cassandra: "), health
        status, _, health = t1.admin.request("GET", "/healthcheck")
        assert status == 200 and health["store"] == "ok", (status, health)
    finally:
        two_dc.start_node(2)
    assert wait_for(lambda: t2.admin.request("GET", "/healthcheck")[0] == 200), \
        "dc2's health check did not recover"


def deliver_until(stop, s, addr, prefix, accepted):
    """Delivers messages "PREFIX-0", ... to addr through s until stop is
    set or one gets no 250 (a node died under it: no promise); appends the
    subject of each that got 250 to accepted."""
    i = 0
    while not stop.is_set():
        subject = "%s-%d" % (prefix, i)
        try:
            s.deliver_smtp(addr, make_message(subject, to=addr))
        except Exception:
            return
        accepted.append(subject)
        i += 1


def test_kill9_of_a_tern_node_loses_no_accepted_mail(two_dc, cass_servers):
    t1, t2 = pair(cass_servers, "kill")
    addr, pw = t1.new_user("kill")
    t2.users[addr] = pw
    accepted = []
    stop = threading.Event()
    threads = [threading.Thread(target=deliver_until, args=(stop, t1, addr, "k%d" % k, accepted))
               for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    t1.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert accepted, "nothing was delivered before the kill"

    def all_there():
        return set(accepted) <= set(subjects(t2, addr, pw))

    assert wait_for(all_there), "messages that got 250 are missing in dc2"
    got = subjects(t2, addr, pw)
    assert len(got) == len(set(got)), "a message shows twice"


def durable_lines(s):
    return [line for line in s.log_text().splitlines() if "cassandra: durable:" in line]


def test_start_up_says_whether_an_acknowledged_write_survives_a_node_crash(two_dc, cass_servers):
    """dc1's node runs Cassandra's default commitlog_sync: periodic (10 s) and
    the keyspace has one replica per datacenter: a kill -9 of that node may
    forget acknowledged writes, and tern says so. dc2's node runs
    commitlog_sync: group, which syncs before acknowledging."""
    ks = "dur_%s" % uuid.uuid4().hex[:10]
    repl = "dc1:1, dc2:1"
    t1 = start_admin_server(AdminPool(cass_servers, ks, contact=DC1, local_dc="dc1",
                                       replication=repl))
    lines = durable_lines(t1)
    assert len(lines) == 1, t1.log_tail()
    assert "durable: no:" in lines[0] and "commitlog_sync periodic" in lines[0], lines[0]
    assert "127.0.0.1" in lines[0] and "dc1 has 1" in lines[0], lines[0]
    assert "commitlog_sync: group (or batch)" in lines[0], lines[0]  # what to change
    # Not required: healthy, with the reason in the detail; the gauge says 0.
    status, _, health = t1.admin.request("GET", "/healthcheck")
    assert status == 200 and health["store"] == "ok", health
    assert "durable: no" in health.get("detail", ""), health
    status, _, metrics = t1.admin.request("GET", "/metrics")
    assert status == 200 and "\ntern_cassandra_durable 0\n" in metrics, metrics
    # ... and, the keyspace spanning two datacenters, no range deletes
    assert "\ntern_cassandra_range_deletes_enabled 0\n" in metrics, metrics
    assert '\ntern_cassandra_range_deletes_declined_total{reason="datacenters"} 0\n' in metrics
    assert "\ntern_cassandra_clock_ok 1\n" in metrics and "\ntern_cassandra_clock_skew_seconds -" not in metrics, metrics
    # Mail still flows: the check informs, it does not refuse.
    addr, pw = t1.new_user("dur")
    t1.deliver_smtp(addr, make_message("dur-1", to=addr))
    assert len(uidls(t1, addr, pw)) == 1

    t2 = start_admin_server(AdminPool(cass_servers, ks, contact=DC2, local_dc="dc2",
                                       replication=repl, overrides={"cassandra": {"require_durable": "yes"}}))
    lines = durable_lines(t2)
    assert len(lines) == 1 and "durable: yes:" in lines[0], t2.log_tail()
    assert "commitlog_sync group on 127.0.0.2" in lines[0], lines[0]
    status, _, health = t2.admin.request("GET", "/healthcheck")
    assert status == 200 and health == {"store": "ok"}, health
    status, _, metrics = t2.admin.request("GET", "/metrics")
    assert "\ntern_cassandra_durable 1\n" in metrics, metrics
    # check-config gives the same answer without starting a server
    r = t2.cli("check-config")
    assert r.returncode == 0, r.stderr
    assert "store: cassandra: durable: yes:" in r.stdout, r.stdout

    # require_durable = yes refuses to start on dc1: the server and every
    # command that opens the store.
    t1.stop()
    t1.sections["cassandra"]["require_durable"] = "yes"
    t1.write_config()
    r = t1.cli("domain", "list")
    assert r.returncode != 0, r.stdout
    assert "require_durable = yes, but durable: no:" in r.stderr, r.stderr
    r = t1.cli("check-config")
    assert r.returncode == 78, (r.returncode, r.stdout, r.stderr)
    assert "require_durable = yes, but durable: no:" in r.stderr, r.stderr
    t1.start(wait=False)
    rc = t1.proc.wait(timeout=120)
    t1._forget()
    assert rc != 0
    assert "require_durable = yes, but durable: no:" in t1.log_text()


def deliver_then_kill(cluster, s, n, addr, tag, seconds=2.0):
    """Delivers to addr on one SMTP connection for `seconds`, then SIGKILLs
    Cassandra node n the moment the last 250 is read: the subjects that got
    their 250."""
    acked = []
    c = s.smtp()
    c.ehlo()
    deadline = time.monotonic() + seconds
    while True:
        subject = "%s-%d" % (tag, len(acked))
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<%s>" % addr).code == 250
        r = c.data(make_message(subject, to=addr))
        assert r.code == 250, "end of DATA: %r" % r
        acked.append(subject)
        if time.monotonic() > deadline:
            cluster.kill_now(n)
            break
    c.close()
    return acked


def test_a_cassandra_node_killed_right_after_acknowledging(two_dc, cass_servers):
    """What the start-up line says is what a kill -9 shows. dc1's node runs
    commitlog_sync: periodic (10 s) with a compressed log, so its sync
    markers are written only at each sync and a kill -9 loses what a power
    cut would with the default settings (which write a marker every 100 ms
    without syncing: there a kill -9 loses up to 100 ms, a power cut up to
    10 s). It is killed the moment a 250 is read and comes back without the
    last acknowledged deliveries, as tern said at start-up ("durable: no").
    dc2's node (commitlog_sync: group) is killed the same way and keeps
    every one ("durable: yes"). The test nodes skip fsync, which a kill -9
    does not need: the page cache survives a process."""
    t1, t2 = pair(cass_servers, "crash")
    line1, = durable_lines(t1)
    line2, = durable_lines(t2)
    assert "durable: no:" in line1 and "commitlog_sync periodic" in line1, line1
    assert "durable: yes:" in line2 and "commitlog_sync group" in line2, line2
    a1, pw1 = t1.new_user("crash1")
    a2, pw2 = t1.new_user("crash2")
    t2.users[a1], t2.users[a2] = pw1, pw2
    assert wait_for(lambda: uidls(t2, a1, pw1) == [] and uidls(t2, a2, pw2) == [])
    # The keyspace and the users, written just now, must outlive the crash
    # itself: the test nodes skip flushing the schema (unsafesystem), and
    # a schema change replayed from the commit log is not loaded.
    two_dc.nodetool(1, "flush")
    two_dc.nodetool(2, "flush")

    acked = deliver_then_kill(two_dc, t1, 1, a1, "p")
    two_dc.start_node(1)
    # dc1, reading its own node only, has lost the newest deliveries (all
    # of them when no sync fell within the last 2 s).
    assert wait_for(lambda: subjects(t1, a1, pw1) is not None), t1.log_tail()
    kept = subjects(t1, a1, pw1)
    lost = [x for x in acked if x not in kept]
    assert kept == acked[:len(kept)], (kept, acked)  # a suffix is lost, nothing else
    assert lost, "dc1's periodic node kept all %d acknowledged deliveries" % len(acked)
    # dc2's replica has what dc1 kept, and the lost copies that had
    # crossed before the kill (what a nodetool repair would bring back).
    assert wait_for(lambda: set(kept) <= set(subjects(t2, a1, pw1)))
    in_dc2 = len(set(lost) & set(subjects(t2, a1, pw1)))
    print("periodic: %d acknowledged, %d lost by dc1's node, %d of them still in dc2"
          % (len(acked), len(lost), in_dc2))

    acked = deliver_then_kill(two_dc, t2, 2, a2, "g")
    two_dc.start_node(2)
    assert wait_for(lambda: subjects(t2, a2, pw2) == acked), \
        "dc2's group-commit node lost acknowledged deliveries"
    print("group: %d acknowledged, 0 lost" % len(acked))


def lwt_counts(s):
    """The conditional-statement counts tern logged when it stopped."""
    return [int(line.split(" conditional statements")[0].rsplit(" ", 1)[1])
            for line in s.log_text().splitlines() if " conditional statements (LWT)" in line]


def mailbox_in_both(cass_servers, tag, n):
    """A pair of tern nodes and a user with n messages (pre-0, ...)
    delivered in dc1 and seen in dc2: (t1, t2, addr, pw, their UIDLs)."""
    t1, t2 = pair(cass_servers, tag)
    addr, pw = t1.new_user(tag)
    t2.users[addr] = pw
    for i in range(n):
        t1.deliver_smtp(addr, make_message("pre-%d" % i, to=addr))
    pre = uidls(t1, addr, pw)
    assert wait_for(lambda: uidls(t2, addr, pw) == pre), "dc2 never saw dc1's mail"
    return t1, t2, addr, pw, pre


def test_a_partition_loses_nothing_and_brings_nothing_back(two_dc, cass_servers):
    """The two datacenters cut apart (every byte between them dropped):
    each side delivers and deletes on its own; once healed, both converge
    to the same listing with the same UIDLs, with every message that got a
    250 and none that was deleted on either side, and a repair run in dc2
    right after the heal brings nothing back. No lightweight transaction
    is sent at any point."""
    t1, t2, addr, pw, pre = mailbox_in_both(cass_servers, "cut", 4)

    two_dc.cut()
    try:
        for i in range(2):
            t1.deliver_smtp(addr, make_message("dc1-%d" % i, to=addr))
            t2.deliver_smtp(addr, make_message("dc2-%d" % i, to=addr))
        # dc1 deletes the first message, dc2 the second and the first of
        # its own; both sides delete the fourth.
        p = t1.login(addr, pw)
        ids1 = [u for _, u in p.uidl()]
        assert len(ids1) == 6 and ids1[:4] == pre, ids1  # dc2's mail cannot be seen here
        for n in (1, 4):
            assert p.cmd("DELE %d" % n).startswith("+OK")
        p.quit()
        p = t2.login(addr, pw)
        ids2 = [u for _, u in p.uidl()]
        assert len(ids2) == 6 and ids2[:4] == pre, ids2
        for n in (2, 4, 5):
            assert p.cmd("DELE %d" % n).startswith("+OK")
        p.quit()
        deleted = {pre[0], pre[3], pre[1], ids2[4]}
        only1 = set(ids1[4:])
        only2 = set(ids2[4:])
        assert not only1 & only2
        # Each side shows its own deletions at once, not yet the other's.
        assert uidls(t1, addr, pw) == [u for u in ids1 if u not in (pre[0], pre[3])]
        assert uidls(t2, addr, pw) == [u for u in ids2 if u not in (pre[1], pre[3], ids2[4])]
    finally:
        two_dc.heal()
    expected = sorted((set(pre) | only1 | only2) - deleted)
    assert len(expected) == 4

    # UIDLs are TimeUUIDs, so sorted text is not listing order in general:
    # compare as sets first, then the orders of the two sides.
    def same():
        a, b = uidls(t1, addr, pw), uidls(t2, addr, pw)
        return sorted(a) == sorted(b) == expected and a == b

    assert wait_for(same), "no convergence: dc1 %r, dc2 %r, expected %r" % (
        uidls(t1, addr, pw), uidls(t2, addr, pw), expected)
    # A repair in dc2 right after the heal (no age limit) brings nothing back.
    r = t2.cli("repair", "--min-age", "0")
    assert r.returncode == 0, r.stderr
    assert " 0 re-listed" in r.stdout, r.stdout
    assert sorted(uidls(t1, addr, pw)) == sorted(uidls(t2, addr, pw)) == expected
    got = set()
    p = t1.login(addr, pw)
    for i in range(1, p.stat()[0] + 1):
        status, lines = p.multi("TOP %d 0" % i)
        got.update(line[9:].decode() for line in lines if line.startswith(b"Subject: "))
    p.quit()
    assert got == {"pre-2", "dc1-0", "dc1-1", "dc2-1"}, got
    t1.stop()
    t2.stop()
    counts = lwt_counts(t1) + lwt_counts(t2)
    assert counts and all(n == 0 for n in counts), counts


RANGE_DELETE_MARGIN = 60  # seconds: the store's margin before a login


def test_a_delete_never_hides_mail_the_other_datacenter_took_during_a_cut(two_dc, cass_servers):
    """During a cut dc2 accepts a message, then dc1 accepts two; more than
    the range-delete margin later, dc1's user downloads and deletes all but
    the last. dc2's message is older than dc1's login minus the margin and
    older than the last message deleted, yet dc1 never saw it: a range
    delete of the deleted prefix would cover it once the cut heals (it was
    then listed nowhere). The keyspace spans two datacenters, so tern
    deletes row by row, and the message is listed on both sides."""
    t1, t2, addr, pw, pre = mailbox_in_both(cass_servers, "shadow", 2)

    two_dc.cut()
    try:
        t2.deliver_smtp(addr, make_message("dc2-during", to=addr))
        hidden = uidls(t2, addr, pw)[-1]
        for i in range(2):
            t1.deliver_smtp(addr, make_message("dc1-%d" % i, to=addr))
        # Past the margin, dc1's login sees pre-0, pre-1, dc1-0 as old
        # enough for a range delete, and dc2-during (older than dc1-0) not
        # at all.
        time.sleep(RANGE_DELETE_MARGIN + 2)
        p = t1.login(addr, pw)
        ids1 = [u for _, u in p.uidl()]
        assert len(ids1) == 4 and ids1[:2] == pre and hidden not in ids1, ids1
        assert uuid_time(hidden) < uuid_time(ids1[2])  # under a range up to dc1-0
        for n in (1, 2, 3):
            assert p.cmd("DELE %d" % n).startswith("+OK")
        p.quit()
        assert uidls(t1, addr, pw) == ids1[3:]
    finally:
        two_dc.heal()
    expected = [hidden, ids1[3]]  # in id order

    def both():
        return uidls(t1, addr, pw) == uidls(t2, addr, pw) == expected

    assert wait_for(both), "after the heal: dc1 %r, dc2 %r, expected %r (dc2-during is %s)" % (
        uidls(t1, addr, pw), uidls(t2, addr, pw), expected, hidden)
    assert sorted(subjects(t1, addr, pw)) == ["dc1-1", "dc2-during"]
    for s in (t1, t2):
        line = [x for x in s.log_text().splitlines() if "cassandra: deletes: " in x]
        assert len(line) == 1 and "deletes: row by row (keyspace dc_shadow_" in line[0] and \
            "is replicated in 2 datacenters)" in line[0], s.log_tail()
    t1.stop()
    t2.stop()
    assert ", 0 range deletes, 0 declined for clock skew, 1 declined for replication across" \
        " datacenters" in t1.log_text(), t1.log_tail()


def uuid_time(u):
    """A TimeUUID UIDL's 60-bit timestamp, to order ids as Cassandra does."""
    return uuid.UUID(u).time


def test_a_node_whose_clock_is_off_refuses_mail_with_451(two_dc, cass_servers, tmp_path):
    """A tern node whose clock is 30 s ahead of the Cassandra nodes'
    (libfaketime shifts it) would mint listing ids that range deletes
    elsewhere misjudge (invariant 12): it measures the skew at start and
    answers 451 at the end of DATA, while a node with the right clock
    delivers to the same mailbox."""
    require_tool("faketime")
    # The library the faketime command preloads, preloaded directly so that
    # tern is the process the test signals.
    libs = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    assert libs, "libfaketimeMT.so.1 not found (the faketime package installs it)"
    ks = "skew_%s" % uuid.uuid4().hex[:10]
    # One datacenter: only there may a QUIT delete by range at all.
    good = cass_servers(ks, contact=DC1, local_dc="dc1", replication="dc1:1")
    assert "cassandra: deletes: by range (keyspace %s is replicated in one datacenter)" % ks \
        in good.log_text(), good.log_tail()
    addr, pw = good.new_user("skew")
    wrapper = tmp_path / "tern-ahead"
    wrapper.write_text("#!/bin/sh\nLD_PRELOAD=%s FAKETIME=+30s"
                       " exec %s \"$@\"\n" % (libs[0], good.binary))
    wrapper.chmod(0o755)
    ahead = cass_servers(ks, contact=DC1, local_dc="dc1", replication="dc1:1",
                         start=False)
    ahead.binary = str(wrapper)
    # faketime is preloaded, ahead of a sanitizer's runtime.
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env_asan = os.environ["ASAN_OPTIONS"]
    os.environ["ASAN_OPTIONS"] = env_asan + ":verify_asan_link_order=0"
    try:
        ahead.start()
    finally:
        os.environ["ASAN_OPTIONS"] = env_asan
    assert "this node's clock differs from a local Cassandra node's by 3" in ahead.log_text(), \
        ahead.log_tail()
    s = ahead.smtp()
    try:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.data(make_message("skewed", to=addr))
        assert r.code == 451, r
    finally:
        s.quit()
    good.deliver_smtp(addr, make_message("on-time", to=addr))
    assert len(uidls(good, addr, pw)) == 1
    # Its download-and-delete: the range-delete margin is measured on its
    # clock, so it deletes row by row, never by range; the good node,
    # deleting the same kind of old messages, uses one range tombstone.
    for s, tag in ((ahead, "a"), (good, "g")):
        user, upw = good.new_user("old" + tag)
        md = tmp_path / ("md-" + tag)
        for sub in ("cur", "new", "tmp"):
            (md / sub).mkdir(parents=True)
        for i in range(3):  # names give 2001 as their delivery time
            (md / "cur" / ("100000000%d.M%dP1.old:2,S" % (i, i))).write_bytes(
                make_message("old-%s-%d" % (tag, i), to=user))
        r = good.cli("import", user, "maildir", str(md))
        assert r.returncode == 0, r.stderr
        p = s.login(user, upw)
        assert p.stat()[0] == 3
        for n in (1, 2):
            assert p.cmd("DELE %d" % n).startswith("+OK")
        p.quit()
        assert [subj for subj in subjects(good, user, upw)] == ["old-%s-2" % tag]
    ahead.stop()
    assert "listing ids minted again (late listing write), 0 deliveries refused" not in \
        ahead.log_text()
    assert " deliveries refused for clock skew, 0 range deletes, 1 declined for clock skew," \
        " 0 declined for replication across datacenters" in ahead.log_text(), ahead.log_tail()
    good.stop()
    assert ", 1 range deletes, 0 declined for clock skew, 0 declined for replication" \
        in good.log_text(), good.log_tail()
