"""`tern repair` on Cassandra: drift between listings and bodies is found,
re-checked and fixed; interrupted deletions are completed, never undone;
unreferenced bodies are swept, referenced ones never; running it during
POP3 sessions brings nothing back from the dead; run as an admin API
task it reports its progress while it runs, and on a terminal it shows it."""
import os
import pty
import re
import subprocess
import threading
import time
import uuid

from integration.helpers import make_message
from integration.test_admin import start_admin_server

from integration import cqlquery

from conftest import AdminPool

# tern's namespace for mailbox ids (src/lib/uuid.c)
MAILBOX_NS = uuid.UUID("3c6f1e52-8a41-4d0b-9e27-5ac4117de093")


def mailbox_id(addr):
    return uuid.uuid5(MAILBOX_NS, addr)


def body_id(node, ks, addr, uidl):
    """The body id of the message listed as uidl (its listing id): bodies
    and references are keyed by it."""
    rows = cqlquery.query(node, "SELECT body_id FROM %s.listing WHERE mailbox_id = %s AND "
                          "message_id = %s" % (ks, mailbox_id(addr), uidl))
    return uuid.UUID(bytes=rows[0][0])


def keyspace(tag):
    return "r_%s_%s" % (tag, uuid.uuid4().hex[:10])


def repair(s, *args):
    r = subprocess.run([s.binary, "-c", str(s.config_path), "repair", "--min-age", "0"]
                       + list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def fixed(out, what):
    """The number before `what` in the report line."""
    line = [l for l in out.splitlines() if what in l][0]
    words = line.replace(",", "").split()
    return int(words[words.index(what.split()[0]) - 1])


def uidls(s, addr, pw):
    p = s.login(addr, pw)
    u = [x for _, x in p.uidl()]
    p.quit()
    return u


def setup(cass_servers, tag, n=3):
    ks = keyspace(tag)
    s = cass_servers(ks)
    addr, pw = s.new_user(tag)
    for i in range(n):
        s.deliver_smtp(addr, make_message("%s-%d" % (tag, i), to=addr))
    return ks, s, addr, pw


def test_missing_listing_row_is_listed_again(cass_servers, cassandra_node):
    ks, s, addr, pw = setup(cass_servers, "relist")
    before = uidls(s, addr, pw)
    lost = before[1]
    cqlquery.query(cassandra_node, "DELETE FROM %s.listing WHERE mailbox_id = %s AND "
                   "message_id = %s" % (ks, mailbox_id(addr), lost))
    assert uidls(s, addr, pw) == [before[0], before[2]]
    out = repair(s, "--dry-run")
    assert fixed(out, "re-listed") == 1
    assert uidls(s, addr, pw) == [before[0], before[2]], "--dry-run changed something"
    out = repair(s)
    assert fixed(out, "re-listed") == 1
    assert uidls(s, addr, pw) == before
    p = s.login(addr, pw)
    assert b"relist-1" in p.retr(2)
    p.quit()
    assert fixed(repair(s), "re-listed") == 0


def test_interrupted_expunge_is_completed_not_undone(cass_servers, cassandra_node):
    ks, s, addr, pw = setup(cass_servers, "halfdel")
    before = uidls(s, addr, pw)
    victim = body_id(cassandra_node, ks, addr, before[0])
    # An expunge that stopped right after marking the reference.
    cqlquery.query(cassandra_node, "UPDATE %s.body_refs SET deleted = true WHERE "
                   "message_id = %s AND mailbox_id = %s" % (ks, victim, mailbox_id(addr)))
    out = repair(s)
    assert fixed(out, "interrupted") == 1
    assert uidls(s, addr, pw) == before[1:]
    assert cqlquery.count(cassandra_node, "SELECT count(*) FROM %s.bodies WHERE message_id = %s "
                          "AND chunk = 0" % (ks, victim)) == 0


def test_listing_row_whose_body_is_gone_is_removed(cass_servers, cassandra_node):
    ks, s, addr, pw = setup(cass_servers, "nobody")
    before = uidls(s, addr, pw)
    cqlquery.query(cassandra_node, "DELETE FROM %s.bodies WHERE message_id = %s AND chunk = 0"
                   % (ks, body_id(cassandra_node, ks, addr, before[2])))
    p = s.login(addr, pw)
    assert p.cmd("RETR 3").startswith("-ERR [SYS/TEMP]")
    assert p.cmd("NOOP").startswith("+OK"), "the session survives a missing body"
    p.quit()
    out = repair(s)
    assert fixed(out, "unlisted") == 1
    assert uidls(s, addr, pw) == before[:2]


def test_sweep_removes_only_unreferenced_bodies(cass_servers, cassandra_node):
    ks, s, addr, pw = setup(cass_servers, "sweep")
    orphan = uuid.uuid1()
    cqlquery.query(cassandra_node, "INSERT INTO %s.bodies (message_id, chunk, data) VALUES "
                   "(%s, 0, 0x48656c6c6f)" % (ks, orphan))
    bodies = "SELECT count(*) FROM %s.bodies" % ks
    assert cqlquery.count(cassandra_node, bodies) == 4
    out = repair(s, "--sweep-only")
    assert fixed(out, "unreferenced") == 1
    assert cqlquery.count(cassandra_node, bodies) == 3
    p = s.login(addr, pw)
    for i in (1, 2, 3):
        assert b"sweep-%d" % (i - 1) in p.retr(i)
    p.quit()


def test_repair_during_pop3_deletes_resurrects_nothing(cass_servers):
    ks, s, addr, pw = setup(cass_servers, "race", n=30)
    everything = uidls(s, addr, pw)
    stop = threading.Event()
    reports = []

    def loop():
        while not stop.is_set():
            reports.append(repair(s))

    t = threading.Thread(target=loop)
    t.start()
    try:
        for _ in range(4):
            p = s.login(addr, pw)
            n = p.stat()[0]
            for i in range(1, min(5, n) + 1):
                assert p.cmd("DELE %d" % i).startswith("+OK")
            p.quit()
    finally:
        stop.set()
        t.join()
    reports.append(repair(s))
    assert uidls(s, addr, pw) == everything[20:]
    assert all(fixed(r, "re-listed") == 0 for r in reports)


def test_repair_resumes_from_a_token(cass_servers, cassandra_node):
    """The repair walks the token ring in order and says how far it got, so
    `--from TOKEN` resumes after TOKEN: a reference whose partition token is
    at most TOKEN is not looked at again, one just after it is."""
    ks, s, addr, pw = setup(cass_servers, "resume")
    before = uidls(s, addr, pw)
    lost = before[0]
    body = body_id(cassandra_node, ks, addr, lost)
    rows = cqlquery.query(cassandra_node, "SELECT token(message_id) FROM %s.body_refs WHERE "
                          "message_id = %s" % (ks, body))
    token = int.from_bytes(rows[0][0], "big", signed=True)
    cqlquery.query(cassandra_node, "DELETE FROM %s.listing WHERE mailbox_id = %s AND "
                   "message_id = %s" % (ks, mailbox_id(addr), lost))
    out = repair(s, "--from", str(token))
    assert fixed(out, "re-listed") == 0
    assert "token reached: 9223372036854775807 (the whole ring)" in out, out
    assert uidls(s, addr, pw) == before[1:]
    out = repair(s, "--from", str(token - 1))
    assert fixed(out, "re-listed") == 1
    assert uidls(s, addr, pw) == before
    r = subprocess.run([s.binary, "-c", str(s.config_path), "repair", "--from", "x1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--from needs a token" in r.stderr


def test_admin_repair_task_reports_progress_while_it_runs(cass_servers, cassandra_node):
    """POST /tasks/repair runs the repair inside the server: paced to a few
    rows a second, the task is seen running (in GET /tasks/{id} and in
    GET /tasks) with counters that only grow and the share of the token
    ring covered, then done with a report equal to its last progress."""
    ks = keyspace("task")
    s = start_admin_server(AdminPool(cass_servers, ks))
    addr, pw = s.new_user("task")
    for i in range(4):
        s.deliver_smtp(addr, make_message("task-%d" % i, to=addr))
    tid = s.admin.ok("POST", "/tasks/repair", {"dry_run": True, "per_second": 4, "min_age": 0},
                     want=202)["id"]
    seen, listed_running = [], False
    deadline = time.monotonic() + 120
    while True:
        t = s.admin.ok("GET", "/tasks/" + tid)
        seen.append(t)
        if t["status"] == "running" and not listed_running:
            listed = {x["id"]: x["status"] for x in s.admin.ok("GET", "/tasks")["tasks"]}
            listed_running = listed.get(tid) in ("running", "done")
        if t["status"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.05)
    assert t["status"] == "done", t
    running = [x["progress"] for x in seen if x["status"] == "running"]
    assert running, [x["status"] for x in seen]
    assert listed_running
    counters = ("refs_scanned", "listing_scanned", "bodies_scanned")
    for before, after in zip(running, running[1:] + [t["progress"]]):
        for k in counters + ("token_reached",):
            assert after[k] >= before[k], (k, before, after)
    assert any(p[k] < t["progress"][k] for p in running for k in counters), running
    assert all(0 <= p["covered_percent"] <= 100 for p in running), running
    assert t["progress"]["covered_percent"] > 99.99 and t["report"] == t["progress"], t
    assert t["report"]["listing_scanned"] >= 4, t
    assert len(uidls(s, addr, pw)) == 4


def repair_on_a_terminal(s, *args):
    """Runs `tern repair` with its stderr on a pseudo-terminal; returns
    (stdout, what the terminal received)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([s.binary, "-c", str(s.config_path), "repair", "--min-age", "0"]
                                + list(args), stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        out = proc.stdout.read().decode()
        assert proc.wait(timeout=120) == 0, seen
        return out, seen.decode()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


PROGRESS = re.compile(r"\rtoken reached (-?\d+) \((\d+\.\d)% of the range\), (\d+) rows scanned,"
                      r" (\d+) rows/s, (\d+) s left")


def test_repair_shows_its_progress_on_a_terminal(cass_servers, cassandra_node):
    """On a terminal the repair rewrites one line after each of the 256
    token ranges: the token reached, the share of the range covered, the
    rows scanned, the rate and the time left; from a token, only the
    ranges after it."""
    ks, s, addr, pw = setup(cass_servers, "tty")
    out, seen = repair_on_a_terminal(s)
    steps = PROGRESS.findall(seen)
    assert len(steps) == 256, seen[-500:]
    tokens = [int(t) for t, _, _, _, _ in steps]
    assert tokens == sorted(tokens) and tokens[-1] == 2 ** 63 - 1, tokens[-3:]
    assert [float(p) for _, p, _, _, _ in steps][-1] == 100.0
    assert steps[127][1] == "50.0", steps[127]
    rows = [int(r) for _, _, r, _, _ in steps]
    assert rows == sorted(rows) and rows[-1] == 9, rows[-1]  # 3 references, listing rows, bodies
    assert steps[-1][4] == "0"
    assert seen.endswith("\n") and "token reached: 9223372036854775807 (the whole ring)" in out
    # from the middle of the ring: half the ranges
    out, seen = repair_on_a_terminal(s, "--from", "0")
    steps = PROGRESS.findall(seen)
    assert len(steps) == 128 and steps[63][1] == "50.0", seen[-500:]
