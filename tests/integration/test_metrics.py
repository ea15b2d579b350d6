"""GET /metrics on the admin API: the exposition format is well formed, and
a known workload (logins that succeed and fail, SMTP and LMTP deliveries,
refused ones too, one RETR of a known size, an unknown command) moves the
counters by exactly those amounts. On Cassandra (TERN_TEST_BACKEND=cassandra) the conditional
statement (LWT) and SERIAL counters exist and stay 0 in messageid mode, and
move in uid mode."""
import http.client
import math
import os
import re
import socket

import pytest

from .helpers import TIMEOUT, make_message, stuff, wait_until
from .ternserver import BACKEND, free_ports

TOKEN = "metrics-test-token-0123456789"

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)')


def parse(text):
    """Strict parse of format 0.0.4 as tern writes it: {family: (type,
    help)} and {(name, frozenset(labels)): value}. Asserts what must hold."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families, samples = {}, {}
    current = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, "family %s twice" % name
            assert help_text, "empty HELP for %s" % name
            current = name
            families[name] = [None, help_text]
            continue
        if line.startswith("# TYPE "):
            name, _, mtype = line[7:].partition(" ")
            assert name == current, "TYPE %s without its HELP first" % name
            assert mtype in ("counter", "gauge", "histogram"), line
            families[name][0] = mtype
            continue
        assert not line.startswith("#"), "unexpected comment %r" % line
        m = SAMPLE_RE.match(line)
        assert m, "bad sample line %r" % line
        name, labels_text, value = m.group(1), m.group(3), m.group(4)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        fam = name if name in families else base
        assert fam == current, "sample %s outside its family %s" % (name, current)
        labels = []
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = LABEL_RE.match(labels_text, pos)
                assert lm, "bad labels in %r" % line
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
        if families[fam][0] == "counter":
            assert name.endswith("_total"), "counter %s without _total" % name
        key = (name, frozenset(labels))
        assert key not in samples, "sample %r twice" % line
        samples[key] = float(value)
    for name, (mtype, _) in families.items():
        assert name.startswith("tern_"), name
        if mtype == "histogram":
            check_histograms(name, samples)
    return families, samples


def check_histograms(name, samples):
    """Buckets cumulative and increasing in le, +Inf last == _count."""
    series = {}
    for (n, labels), v in samples.items():
        if n == name + "_bucket":
            le = dict(labels)["le"]
            rest = frozenset(kv for kv in labels if kv[0] != "le")
            series.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), v))
    assert series, "histogram %s has no buckets" % name
    for rest, buckets in series.items():
        buckets.sort()
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "%s%s: buckets not cumulative" % (name, dict(rest))
        assert buckets[-1][0] == math.inf
        assert samples[(name + "_count", rest)] == buckets[-1][1]
        assert (name + "_sum", rest) in samples


def value(samples, name, **labels):
    """A sample's value; a series not created yet counts 0."""
    return samples.get((name, frozenset(labels.items())), 0)


def admin_server(pool, tmp_path_factory, name, **kw):
    """A server of pool with [admin] listen and a token file; the admin API
    must answer on it."""
    token_file = tmp_path_factory.mktemp(name + "-admin") / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_ports(1)[0]
    srv = pool.create(name=name, overrides={
        "admin": {"listen": "127.0.0.1:%d" % port, "token_file": str(token_file)}}, **kw)
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    srv.admin_port = port
    return srv


@pytest.fixture(scope="module")
def admin(module_servers, tmp_path_factory):
    return admin_server(module_servers, tmp_path_factory, "metrics")


def get_metrics(srv):
    """The body of GET /metrics, with the bearer token."""
    c = http.client.HTTPConnection("127.0.0.1", srv.admin_port, timeout=TIMEOUT)
    try:
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        body = r.read().decode()
        assert r.status == 200, "GET /metrics: %d %s" % (r.status, body[:200])
        ctype = r.getheader("Content-Type", "")
        assert ctype.startswith("text/plain"), ctype
        return body
    finally:
        c.close()


def scrape(srv):
    return parse(get_metrics(srv))[1]


def settled_delta(srv, before):
    """Once every session has ended (the open gauges are back where they
    were in before): the scrape, and delta(name, **labels) since before."""
    def settled():
        now = scrape(srv)
        return all(value(now, "tern_sessions_open", protocol=pr, tls="false")
                   == value(before, "tern_sessions_open", protocol=pr, tls="false")
                   for pr in ("pop3", "smtp", "lmtp")) and now
    after = wait_until(settled)
    assert after, "sessions still open"

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    return after, delta


def test_format_and_families(admin):
    families, samples = parse(get_metrics(admin))
    for name, mtype in [
            ("tern_build_info", "gauge"), ("tern_process_start_time_seconds", "gauge"),
            ("tern_sessions_total", "counter"), ("tern_sessions_open", "gauge"),
            ("tern_logins_total", "counter"), ("tern_commands_total", "counter"),
            ("tern_store_operation_seconds", "histogram"), ("tern_store_info", "gauge"),
            ("tern_worker_threads", "gauge"), ("tern_worker_jobs_queued", "gauge"),
            ("tern_worker_queue_wait_seconds", "histogram")]:
        assert families.get(name, [None])[0] == mtype, name
    assert value(samples, "tern_store_info", backend=BACKEND, pop3_ids="messageid") == 1
    assert value(samples, "tern_worker_threads") >= 1
    # the listeners' readiness probes were sessions already
    assert value(samples, "tern_sessions_total", protocol="pop3", tls="true") >= 1
    if BACKEND == "cassandra":
        # what the CQL client sends: by consistency, errors, retries, and
        # the LWT and SERIAL counts, present from the start
        for name in ("tern_cassandra_requests_total", "tern_cassandra_errors_total",
                     "tern_cassandra_retries_total", "tern_cassandra_timeouts_total",
                     "tern_cassandra_conditional_statements_total",
                     "tern_cassandra_serial_requests_total"):
            assert families.get(name, [None])[0] == "counter", name
        for level in ("LOCAL_QUORUM", "LOCAL_ONE", "SERIAL", "LOCAL_SERIAL"):
            assert ("tern_cassandra_requests_total",
                    frozenset({("consistency", level)})) in samples, level
    else:
        assert not any(n.startswith("tern_cassandra_") for n in families)


def test_workload_moves_counters_exactly(admin):
    srv = admin
    a, pw_a = srv.new_user("ma")
    b, pw_b = srv.new_user("mb")
    before = scrape(srv)

    # K = 3 deliveries: one SMTP message to two users, one LMTP to one.
    msg = make_message("metrics", "line\r\n.starts with a dot\r\nend\r\n", to=a)
    srv.deliver_smtp([a, b], msg)
    lm = srv.lmtp()
    lm.ehlo(verb="LHLO")
    assert lm.cmd("MAIL FROM:<s@remote.test>").code == 250
    assert lm.cmd("RCPT TO:<%s>" % a).code == 250
    r = lm.data(msg)
    assert r.code == 250, r
    lm.quit()
    wire = len(stuff(msg) + b".\r\n")

    # N = 3 good logins, M = 2 bad ones; one RETR, an unknown command.
    for _ in range(3):
        srv.login(b, pw_b).quit()
    for _ in range(2):
        p = srv.pop3()
        assert p.cmd("USER " + a).startswith("+OK")
        assert p.cmd("PASS wrong-" + pw_a).startswith("-ERR")
        p.quit()
    p = srv.pop3()
    p.login(a, pw_a)
    assert p.cmd("ZZZZ").startswith("-ERR")
    size = dict(p.list())[1]
    status, lines = p.multi("RETR 1")
    assert status.startswith("+OK %d octets" % size)
    p.quit()
    sent = sum(len(ln) + 2 for ln in lines) + 3
    # the wire form is the stored one, dot-stuffed, then ".\r\n"
    assert sent == size + sum(1 for ln in lines if ln.startswith(b".")) + 3

    after, delta = settled_delta(srv, before)
    assert delta("tern_logins_total", protocol="pop3", result="ok") == 4
    assert delta("tern_logins_total", protocol="pop3", result="failed") == 2
    assert delta("tern_logins_total", protocol="pop3", result="tempfail") == 0
    assert delta("tern_sessions_total", protocol="pop3", tls="false") == 6
    assert delta("tern_sessions_total", protocol="smtp", tls="false") == 1
    assert delta("tern_sessions_total", protocol="lmtp", tls="false") == 1
    assert delta("tern_deliveries_total", protocol="smtp", result="ok") == 2
    assert delta("tern_deliveries_total", protocol="lmtp", result="ok") == 1
    assert delta("tern_deliveries_total", protocol="smtp", result="tempfail") == 0
    assert delta("tern_deliveries_total", protocol="smtp", result="permfail") == 0
    assert delta("tern_received_octets_total", protocol="smtp") == wire
    assert delta("tern_received_octets_total", protocol="lmtp") == wire
    assert delta("tern_sent_octets_total", protocol="pop3") == sent
    assert delta("tern_commands_total", protocol="pop3", verb="RETR") == 1
    assert delta("tern_commands_total", protocol="pop3", verb="PASS") == 6
    assert delta("tern_commands_total", protocol="pop3", verb="unknown") == 1
    assert delta("tern_commands_total", protocol="smtp", verb="RCPT") == 2
    assert delta("tern_commands_total", protocol="lmtp", verb="LHLO") == 1
    # the client's verb never becomes a label value
    assert not any(dict(labels).get("verb") == "ZZZZ" for _, labels in after)
    assert delta("tern_store_operation_seconds_count", operation="deliver") >= 2
    assert delta("tern_store_operation_seconds_count", operation="maildrop_open") == 4
    assert delta("tern_worker_jobs_total") > 0
    if BACKEND == "cassandra":
        assert delta("tern_cassandra_requests_total", consistency="LOCAL_QUORUM") > 0
        # messageid mode: the delivery and POP3 paths send no LWT, no SERIAL read
        assert ("tern_cassandra_conditional_statements_total", frozenset()) in after
        assert value(after, "tern_cassandra_conditional_statements_total") == 0
        assert value(after, "tern_cassandra_serial_requests_total") == 0
        assert value(after, "tern_cassandra_requests_total", consistency="SERIAL") == 0
        assert value(after, "tern_cassandra_requests_total", consistency="LOCAL_SERIAL") == 0


def test_refused_deliveries_count_by_result(admin):
    """Per recipient user: a message refused after the data with 5xx (a
    bare CR) is permfail; over LMTP, a recipient whose quota the message
    would exceed (452 4.2.2 after the data) is tempfail, the other ok. A
    recipient refused at RCPT is no delivery."""
    srv = admin
    a, _ = srv.new_user("mfail-a")
    b, _ = srv.new_user("mfail-b")
    srv.cli_ok("quota", "set", a, "--messages", "1")
    srv.deliver_smtp(a, make_message("fills the quota", to=a))
    before = scrape(srv)

    sm = srv.smtp()
    sm.ehlo()
    assert sm.cmd("MAIL FROM:<s@remote.test>").code == 250
    r = sm.cmd("RCPT TO:<%s>" % a)
    assert (r.code, r.enhanced) == (452, "4.2.2"), r
    assert sm.cmd("RCPT TO:<%s>" % b).code == 250
    r = sm.data(make_message("bare", "a bare\r CR\r\n"))
    assert r.code == 550, r
    sm.quit()

    c, _ = srv.new_user("mfail-c")
    srv.cli_ok("quota", "set", c, "--octets", "1000")
    lm = srv.lmtp()
    lm.ehlo(verb="LHLO")
    assert lm.cmd("MAIL FROM:<s@remote.test>").code == 250
    assert lm.cmd("RCPT TO:<%s>" % c).code == 250    # empty: under the limit at RCPT
    assert lm.cmd("RCPT TO:<%s>" % b).code == 250
    replies = [lm.data(make_message("over", ("x" * 70 + "\r\n") * 20)), lm.reply()]
    assert (replies[0].code, replies[0].enhanced) == (452, "4.2.2"), replies
    assert replies[1].code == 250, replies
    lm.quit()

    _, delta = settled_delta(srv, before)
    assert delta("tern_deliveries_total", protocol="smtp", result="permfail") == 1
    assert delta("tern_deliveries_total", protocol="smtp", result="tempfail") == 0
    assert delta("tern_deliveries_total", protocol="smtp", result="ok") == 0
    assert delta("tern_deliveries_total", protocol="lmtp", result="tempfail") == 1
    assert delta("tern_deliveries_total", protocol="lmtp", result="ok") == 1
    assert delta("tern_deliveries_total", protocol="lmtp", result="permfail") == 0


@pytest.mark.skipif(BACKEND != "cassandra", reason="Cassandra's LWT counter")
def test_uid_mode_counts_lwt(servers, tmp_path_factory):
    """The comparison mode allocates UIDs with conditional updates: the
    counter the messageid alert watches does move there."""
    srv = admin_server(servers, tmp_path_factory, "metrics-uid", pop3_ids="uid")
    a, _ = srv.new_user("uid")
    before = scrape(srv)
    srv.deliver_smtp([a], make_message("uid mode"))
    after = scrape(srv)
    assert value(after, "tern_store_info", backend="cassandra", pop3_ids="uid") == 1
    assert (value(after, "tern_cassandra_conditional_statements_total")
            > value(before, "tern_cassandra_conditional_statements_total"))


def drop_from_page_cache(data_dir):
    """Asks the kernel to forget the cached pages of the store's files
    (clean ones: every commit was synced)."""
    for name in ("tern.db", "tern.db-wal"):
        path = os.path.join(str(data_dir), name)
        if os.path.exists(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def test_retr_from_memory_on_the_loop_and_from_disk_on_a_worker(servers, tmp_path_factory):
    """A one-piece message whose pages the kernel holds is sent from the
    event loop when it has nothing else ready
    (tern_store_nowait_reads_total{result="served"}); one that would need
    the disk goes to a worker ("deferred"), and either way the client gets
    the exact message. A large message and Cassandra never try."""
    srv = admin_server(servers, tmp_path_factory, "metrics-nowait")
    a, pw = srv.new_user("nowait")
    msgs = [make_message("nowait-%d" % i, os.urandom(30000).hex() + "\r\n", to=a)
            for i in range(6)]
    srv.deliver_smtp_many(a, msgs)
    big = make_message("big", ("y" * 98 + "\r\n") * 1500, to=a)  # 150 kB: two pieces
    srv.deliver_smtp(a, big)
    if BACKEND == "sqlite":
        drop_from_page_cache(srv.data_dir)
        # a commit makes every reader drop its own page cache too
        b, _ = srv.new_user("nowait-other")
        srv.deliver_smtp(b, make_message("other", to=b))

    def retr_all():
        before = scrape(srv)
        p = srv.login(a, pw)
        for i, m in enumerate(msgs + [big]):
            got = p.retr(i + 1)  # the trace fields, then the message as sent
            assert got.endswith(m) and got.startswith(b"Return-Path: "), "message %d" % (i + 1)
        p.quit()

        def delta(result):
            return (value(scrape(srv), "tern_store_nowait_reads_total", result=result)
                    - value(before, "tern_store_nowait_reads_total", result=result))
        return delta("served"), delta("deferred")

    served, deferred = retr_all()
    if BACKEND != "sqlite":
        assert (served, deferred) == (0, 0)
        return
    # cold: some read would have waited; the big one is no attempt (nor is
    # a RETR while the loop has other events ready: a worker takes it)
    assert deferred >= 1 and served + deferred <= len(msgs), (served, deferred)
    served, deferred = retr_all()
    # now in memory: on the loop (one may have met a timer's event)
    assert deferred == 0 and served >= len(msgs) - 1, (served, deferred)
