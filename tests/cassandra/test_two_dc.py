"""Two datacenters: dc1 (127.0.0.1) and dc2 (127.0.0.2), one Cassandra node
and one tern node each, the keyspace replicated dc1:1, dc2:1. Each tern node
talks only to its own datacenter, at LOCAL_QUORUM."""
import threading
import time
import uuid

import pytest

from integration.helpers import make_message

from conftest import DC1, DC2

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


def test_kill9_of_a_tern_node_loses_no_accepted_mail(two_dc, cass_servers):
    t1, t2 = pair(cass_servers, "kill")
    addr, pw = t1.new_user("kill")
    t2.users[addr] = pw
    accepted, lock = [], threading.Lock()
    stop = threading.Event()

    def sender(k):
        i = 0
        while not stop.is_set():
            subject = "k%d-%d" % (k, i)
            try:
                t1.deliver_smtp(addr, make_message(subject, to=addr))
            except Exception:
                return  # the node died under this delivery: no 250, no promise
            with lock:
                accepted.append(subject)
            i += 1

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    t1.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert accepted, "nothing was delivered before the kill"

    def subjects():
        p = t2.login(addr, pw)
        try:
            got = []
            for i in range(1, p.stat()[0] + 1):
                status, lines = p.multi("TOP %d 0" % i)
                assert status.startswith("+OK"), status
                for line in lines:
                    if line.startswith(b"Subject: "):
                        got.append(line[9:].decode())
            return got
        finally:
            p.quit()

    def all_there():
        got = subjects()
        return set(accepted) <= set(got)

    assert wait_for(all_there), "messages that got 250 are missing in dc2"
    got = subjects()
    assert len(got) == len(set(got)), "a message shows twice"
