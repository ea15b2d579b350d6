"""POP3 (RFC 1939, RFC 2449 CAPA, RFC 3206 response codes) against the real
server, run once per `pop3_ids` mode (messageid and uid)."""
import poplib
import time

import pytest

from .helpers import (TIMEOUT, TIMEUUID_RE, Closed, header_block, headers,
                      make_message, timeuuid_timestamp, timeuuid_unix_time, unstuff)
from .ternserver import ServerPool


@pytest.fixture(scope="module", params=["messageid", "uid"])
def server(request, tern_bin, tmp_path_factory, cert):
    pool = ServerPool(tern_bin, tmp_path_factory, cert)
    s = pool.create(pop3_ids=request.param, name="pop3-" + request.param,
                    max_message_size=2000000)
    yield s
    pool.stop_all()


@pytest.fixture
def mode(server):
    return server.sections["store"]["pop3_ids"]


def subject_of(msg):
    for name, value in headers(msg):
        if name == "subject":
            return value
    return None


def capa(p):
    status, lines = p.multi("CAPA")
    assert status.startswith("+OK"), status
    return [ln.decode().upper() for ln in lines]


def cap_names(lines):
    return {ln.split()[0] for ln in lines if ln.strip()}


# --------------------------------------------------------------------------
# greeting, CAPA, authentication

def test_greeting_is_ok(server):
    with server.pop3() as p:
        assert p.greeting.startswith("+OK")
        assert p.cmd("QUIT").startswith("+OK")


def test_capa_before_and_after_login(server):
    addr, pw = server.new_user("capa")
    required = {"TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
    with server.pop3() as p:
        caps = capa(p)
        assert required <= cap_names(caps), caps
        # TLS is configured and not active on this connection (RFC 2595)
        assert "STLS" in cap_names(caps), caps
        p.login(addr, pw)
        caps2 = capa(p)
        # RFC 2449: CAPA is valid in the TRANSACTION state too
        assert {"TOP", "UIDL", "RESP-CODES", "PIPELINING"} <= cap_names(caps2), caps2
        assert p.quit().startswith("+OK")


def test_login_with_full_address(server):
    addr, pw = server.new_user("login")
    with server.pop3() as p:
        assert p.cmd("USER " + addr).startswith("+OK")
        assert p.cmd("PASS " + pw).startswith("+OK")
        assert p.stat() == (0, 0)
        assert p.quit().startswith("+OK")


def test_wrong_password_gives_auth_code(server):
    addr, pw = server.new_user("badpw")
    with server.pop3() as p:
        assert p.cmd("USER " + addr).startswith("+OK")
        r = p.cmd("PASS " + pw + "x")
        assert r.startswith("-ERR [AUTH]"), r
    # a fresh connection still logs in with the right password
    with server.login(addr, pw) as p:
        assert p.quit().startswith("+OK")


def test_unknown_user_fails_login(server):
    with server.pop3() as p:
        r = p.cmd("USER nobody-here@example.test")
        if r.startswith("+OK"):
            r = p.cmd("PASS whatever")
            assert r.startswith("-ERR [AUTH]"), r
        else:
            assert r.startswith("-ERR"), r


def test_unknown_domain_user_fails_login(server):
    with server.pop3() as p:
        r = p.cmd("USER someone@not-local.test")
        if r.startswith("+OK"):
            r = p.cmd("PASS whatever")
            assert r.startswith("-ERR [AUTH]"), r
        else:
            assert r.startswith("-ERR"), r


def test_login_after_failed_attempt_same_session(server):
    addr, pw = server.new_user("retry")
    with server.pop3() as p:
        p.cmd("USER " + addr)
        assert p.cmd("PASS nope").startswith("-ERR")
        # RFC 1939: the server may close or return to AUTHORIZATION
        try:
            r = p.cmd("USER " + addr)
        except (Closed, OSError):
            return
        assert r.startswith("+OK"), r
        assert p.cmd("PASS " + pw).startswith("+OK")
        assert p.quit().startswith("+OK")


def test_pass_without_user(server):
    addr, pw = server.new_user("nouser")
    with server.pop3() as p:
        assert p.cmd("PASS " + pw).startswith("-ERR")
        assert p.cmd("QUIT").startswith("+OK")


@pytest.mark.parametrize("cmds", [("STAT", "LIST", "LIST 1", "RETR 1"),
                                  ("DELE 1", "UIDL", "UIDL 1"), ("TOP 1 0", "RSET", "NOOP")])
def test_transaction_commands_before_auth(server, cmds):
    # a few per connection: a bad-command budget may close a longer session
    with server.pop3() as p:
        for c in cmds:
            r = p.cmd(c)
            assert r.startswith("-ERR"), "%s before login: %r" % (c, r)
        assert p.cmd("QUIT").startswith("+OK")
        assert p.is_closed()


def test_user_pass_not_allowed_after_login(server):
    addr, pw = server.new_user("twice")
    with server.login(addr, pw) as p:
        assert p.cmd("USER " + addr).startswith("-ERR")
        assert p.cmd("PASS " + pw).startswith("-ERR")
        assert p.cmd("NOOP").startswith("+OK")
        assert p.quit().startswith("+OK")


def test_pass_with_spaces(server):
    addr, _ = server.add_user("spaces@example.test", "two words  and more")
    with server.pop3() as p:
        p.cmd("USER " + addr)
        r = p.cmd("PASS two words  and more")
        assert r.startswith("+OK"), "RFC 1939 allows spaces in the PASS argument: %r" % r
        p.quit()


def test_pass_line_of_255_octets_is_parsed(server):
    """RFC 2449: command lines up to 255 octets including CRLF."""
    addr, pw = server.new_user("longpass")
    with server.pop3() as p:
        assert p.cmd("USER " + addr).startswith("+OK")
        line = "PASS " + "x" * 248
        assert len(line) + 2 == 255
        r = p.cmd(line)
        assert r.startswith("-ERR [AUTH]"), "a 255-octet PASS line is a wrong password, got %r" % r


def test_noop_and_empty_maildrop(server):
    addr, pw = server.new_user("empty")
    with server.login(addr, pw) as p:
        assert p.cmd("NOOP").startswith("+OK")
        assert p.stat() == (0, 0)
        assert p.list() == []
        assert p.uidl() == []
        assert p.cmd("RETR 1").startswith("-ERR")
        assert p.quit().startswith("+OK")


# --------------------------------------------------------------------------
# STAT / LIST / UIDL / RETR

def test_stat_list_uidl_consistent_and_exact_sizes(server):
    addr, pw, msgs = server.mailbox(3, "consist")
    with server.login(addr, pw) as p:
        count, total = p.stat()
        listing = p.list()
        uidls = p.uidl()
        assert count == 3
        assert [n for n, _ in listing] == [1, 2, 3]
        assert [n for n, _ in uidls] == [1, 2, 3]
        assert total == sum(s for _, s in listing)
        for n, size in listing:
            r = p.cmd("LIST %d" % n)
            assert r.split()[:3] == ["+OK", str(n), str(size)], r
            r = p.cmd("UIDL %d" % n)
            assert r.split()[:3] == ["+OK", str(n), dict(uidls)[n]], r
            msg = p.retr(n)
            assert len(msg) == size, "LIST says %d octets, RETR sent %d" % (size, len(msg))
            # the message as sent is intact after the trace headers tern adds
            assert msg.endswith(msgs[n - 1]), msg[-300:]
        assert p.quit().startswith("+OK")


def test_trace_headers_are_counted_in_size(server):
    addr, pw = server.new_user("trace")
    server.deliver_smtp(addr, make_message("trace", to=addr), sender="origin@remote.test")
    with server.login(addr, pw) as p:
        (n, size), = p.list()
        msg = p.retr(1)
        names = [h for h, _ in headers(msg)]
        for h in ("received", "return-path", "delivered-to"):
            assert h in names, "%s: missing in %r" % (h, header_block(msg))
        assert len(msg) == size
        hv = dict(headers(msg))
        assert "origin@remote.test" in hv["return-path"]
        assert addr in hv["delivered-to"].lower()
        p.quit()


def test_listing_is_fixed_at_login(server):
    addr, pw, _ = server.mailbox(1, "fixed")
    with server.login(addr, pw) as p:
        assert p.stat()[0] == 1
        server.deliver_smtp(addr, make_message("fixed-late", to=addr))
        assert p.stat()[0] == 1, "mail delivered during the session must not appear"
        assert [n for n, _ in p.list()] == [1]
        assert len(p.uidl()) == 1
        assert p.cmd("LIST 2").startswith("-ERR")
        assert p.cmd("RETR 2").startswith("-ERR")
        assert p.quit().startswith("+OK")
    with server.login(addr, pw) as p:
        assert p.stat()[0] == 2
        assert subject_of(p.retr(2)) == "fixed-late"
        p.quit()


def test_a_long_listing_streams_in_pieces_and_keeps_pipelined_order(server):
    """A UIDL of 2,500 messages (about 110 kB, two pieces of 64 KiB) sent
    pipelined with LIST and STAT after a DELE: every line in order, the
    DELE'd message left out, and the replies after it in their order."""
    n = 2500
    addr, pw, _ = server.mailbox(n, "long")
    with server.login(addr, pw) as p:
        uids = p.uidl()
        assert [k for k, _ in uids] == list(range(1, n + 1))
        assert len({u for _, u in uids}) == n
        assert p.cmd("DELE 1000").startswith("+OK")
        p.send("UIDL\r\nLIST\r\nSTAT\r\nNOOP\r\n")
        status = p.readline()
        assert status.startswith(b"+OK"), status
        want = [("%d %s" % (k, u)).encode() for k, u in uids if k != 1000]
        assert p.read_multi() == want
        assert p.readline().startswith(b"+OK")
        listed = p.read_multi()
        assert len(listed) == n - 1 and listed[0].startswith(b"1 ") and b"1000 " not in [
            x[:5] for x in listed] and listed[-1].startswith(b"%d " % n)
        assert p.readline().startswith(b"+OK %d " % (n - 1))
        assert p.readline().startswith(b"+OK")  # NOOP
        assert p.quit().startswith("+OK")


def test_order_is_arrival_order(server, mode):
    addr, pw, _ = server.mailbox(6, "order")
    server.deliver_cli(addr, b"Subject: order-7\n\ncli delivered\n")
    with server.login(addr, pw) as p:
        subjects = [subject_of(p.retr(n)) for n in range(1, 8)]
        assert subjects == ["order-%d" % i for i in range(1, 8)]
        uids = [u for _, u in p.uidl()]
        p.quit()
    if mode == "messageid":
        stamps = [timeuuid_timestamp(u) for u in uids]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), \
            "TimeUUID timestamps must increase in arrival order: %r" % uids


def test_uidl_format(server, mode):
    addr, pw, _ = server.mailbox(3, "uidfmt")
    with server.login(addr, pw) as p:
        uids = [u for _, u in p.uidl()]
        p.quit()
    assert len(set(uids)) == 3
    for u in uids:
        # RFC 1939: 1 to 70 characters in 0x21..0x7E (checked by the parser)
        assert 1 <= len(u) <= 70
    if mode == "messageid":
        for u in uids:
            assert TIMEUUID_RE.match(u), "not a lowercase version-1 UUID: %r" % u
            t = timeuuid_unix_time(u)
            assert abs(t - time.time()) < 3600, "TimeUUID time %s is not now (%s)" % (t, time.time())


def test_uidl_unique_across_mailboxes(server):
    a, apw, _ = server.mailbox(2, "uniqa")
    b, bpw, _ = server.mailbox(2, "uniqb")
    ua = {u for u, _, _ in server.fetch_all(a, apw)}
    ub = {u for u, _, _ in server.fetch_all(b, bpw)}
    assert len(ua) == 2 and len(ub) == 2
    if server.sections["store"]["pop3_ids"] == "messageid":
        assert not (ua & ub), "message ids must be unique across mailboxes"


def test_uidl_stable_across_sessions_deletes_and_restart(server):
    addr, pw, _ = server.mailbox(4, "stable")
    first = server.fetch_all(addr, pw)
    assert server.fetch_all(addr, pw) == first
    # deleting a message does not renumber the ids of the others
    with server.login(addr, pw) as p:
        assert p.cmd("DELE 2").startswith("+OK")
        assert p.quit().startswith("+OK")
    after = server.fetch_all(addr, pw)
    assert [(u, m) for u, _, m in after] == [(u, m) for i, (u, _, m) in enumerate(first) if i != 1]
    server.restart()
    assert server.fetch_all(addr, pw) == after


def test_uidl_never_reused_after_deleting_newest(server):
    addr, pw, _ = server.mailbox(3, "reuse")
    seen = {u for u, _, _ in server.fetch_all(addr, pw)}
    with server.login(addr, pw) as p:
        assert p.cmd("DELE 3").startswith("+OK")
        assert p.quit().startswith("+OK")
    server.deliver_smtp(addr, make_message("reuse-new", to=addr))
    now = server.fetch_all(addr, pw)
    assert len(now) == 3
    new_uid = now[-1][0]
    assert subject_of(now[-1][2]) == "reuse-new"
    assert new_uid not in seen, "UIDL %r of a new message reuses a deleted message's id" % new_uid


def test_retr_8bit_and_large_message_exact(server):
    addr, pw = server.new_user("big")
    body = b"".join(b"line %06d \xc3\xa9\xe2\x82\xac abcdefghijklmnopqrstuvwxyz\r\n" % i for i in range(20000))
    msg = make_message("big", body, to=addr)
    assert len(msg) > 700000
    server.deliver_smtp(addr, msg)
    with server.login(addr, pw) as p:
        (n, size), = p.list()
        got = p.retr(1)
        assert got.endswith(msg)
        assert len(got) == size
        p.quit()


def test_maildrops_are_separate(server):
    a, apw, _ = server.mailbox(2, "sepa")
    b, bpw, _ = server.mailbox(1, "sepb")
    assert server.count(a, apw) == 2
    assert server.count(b, bpw) == 1


# --------------------------------------------------------------------------
# DELE / RSET / QUIT

def test_dele_marks_rset_unmarks_quit_applies(server):
    addr, pw, _ = server.mailbox(4, "dele")
    with server.login(addr, pw) as p:
        full = p.list()
        total = sum(s for _, s in full)
        assert p.cmd("DELE 1").startswith("+OK")
        assert p.cmd("DELE 1").startswith("-ERR"), "DELE of a deleted message"
        assert p.cmd("LIST 1").startswith("-ERR")
        assert p.cmd("RETR 1").startswith("-ERR")
        assert p.cmd("TOP 1 0").startswith("-ERR")
        assert p.cmd("UIDL 1").startswith("-ERR")
        # RFC 1939: STAT and LIST do not count deleted messages
        assert p.stat() == (3, total - full[0][1])
        assert [n for n, _ in p.list()] == [2, 3, 4]
        assert [n for n, _ in p.uidl()] == [2, 3, 4]
        assert p.cmd("RSET").startswith("+OK")
        assert p.stat() == (4, total)
        assert p.cmd("LIST 1").startswith("+OK")
        assert p.cmd("DELE 2").startswith("+OK")
        assert p.cmd("DELE 4").startswith("+OK")
        assert p.quit().startswith("+OK")
    left = server.fetch_all(addr, pw)
    assert [subject_of(m) for _, _, m in left] == ["dele-1", "dele-3"]


def test_deleting_everything(server):
    addr, pw, _ = server.mailbox(3, "delall")
    with server.login(addr, pw) as p:
        for n in (1, 2, 3):
            assert p.cmd("DELE %d" % n).startswith("+OK")
        assert p.stat() == (0, 0)
        assert p.quit().startswith("+OK")
    with server.login(addr, pw) as p:
        assert p.stat() == (0, 0)
        p.quit()


def test_drop_without_quit_deletes_nothing(server):
    addr, pw, _ = server.mailbox(3, "drop")
    p = server.login(addr, pw)
    for n in (1, 2, 3):
        assert p.cmd("DELE %d" % n).startswith("+OK")
    p.close()
    q = server.login(addr, pw)
    q.abort()
    # give a (wrong) server a moment to act on the drop before checking
    time.sleep(0.3)
    assert server.count(addr, pw) == 3


def test_abrupt_reset_without_quit_deletes_nothing(server):
    addr, pw, _ = server.mailbox(2, "rst")
    p = server.login(addr, pw)
    assert p.cmd("DELE 1").startswith("+OK")
    p.abort()
    time.sleep(0.3)
    assert server.count(addr, pw) == 2


def test_concurrent_sessions_delete_in_one(server):
    addr, pw, _ = server.mailbox(3, "conc")
    a = server.login(addr, pw)
    b = server.login(addr, pw)
    assert a.stat()[0] == 3 and b.stat()[0] == 3
    assert a.cmd("DELE 1").startswith("+OK")
    assert a.quit().startswith("+OK")
    r = b.cmd("RETR 1")
    assert r.startswith("-ERR"), "RETR of a message expunged by another session: %r" % r
    r = b.cmd("TOP 1 0")
    assert r.startswith("-ERR"), r
    # the rest is still readable
    assert subject_of(b.retr(2)) == "conc-2"
    assert b.cmd("DELE 3").startswith("+OK")
    assert b.quit().startswith("+OK"), "QUIT after a concurrent expunge must succeed"
    left = server.fetch_all(addr, pw)
    assert [subject_of(m) for _, _, m in left] == ["conc-2"], "no resurrection, DELE 3 applied"


def test_concurrent_sessions_both_delete_same(server):
    addr, pw, _ = server.mailbox(2, "both")
    a = server.login(addr, pw)
    b = server.login(addr, pw)
    assert a.cmd("DELE 1").startswith("+OK")
    assert b.cmd("DELE 1").startswith("+OK")
    assert a.quit().startswith("+OK")
    assert b.quit().startswith("+OK")
    left = server.fetch_all(addr, pw)
    assert [subject_of(m) for _, _, m in left] == ["both-2"]


def test_quit_in_authorization_state(server):
    with server.pop3() as p:
        assert p.cmd("QUIT").startswith("+OK")
        assert p.is_closed()


def test_quit_closes_connection(server):
    addr, pw, _ = server.mailbox(1, "qclose")
    p = server.login(addr, pw)
    assert p.cmd("QUIT").startswith("+OK")
    assert p.is_closed()


# --------------------------------------------------------------------------
# byte-stuffing and message termination

def test_byte_stuffing_on_the_wire(server):
    addr, pw = server.new_user("stuff")
    body = b".hidden\r\n..double\r\nnormal\r\n.\r\n. space\r\nend\r\n"
    msg = make_message("stuff", body, to=addr)
    server.deliver_smtp(addr, msg)
    with server.login(addr, pw) as p:
        size = p.list()[0][1]
        status, raw = p.multi("RETR 1")
        assert status.startswith("+OK")
        tail = raw[-6:]
        assert tail == [b"..hidden", b"...double", b"normal", b"..", b".. space", b"end"], tail
        assert len(unstuff(raw)) == size, "size counts the unstuffed octets"
        p.quit()
    # and a real client unstuffs it back
    c = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT)
    c.user(addr)
    c.pass_(pw)
    _, lines, _ = c.retr(1)
    assert lines[-6:] == [b".hidden", b"..double", b"normal", b".", b". space", b"end"]
    c.quit()


def test_deliver_without_trailing_newline_is_terminated(server):
    addr, pw = server.new_user("nonl")
    r = server.deliver_cli(addr, b"Subject: nonl\nFrom: a@b.test\n\nfirst\nno newline at end")
    assert r.returncode == 0, r.stderr
    with server.login(addr, pw) as p:
        (n, size), = p.list()
        p.send("RETR 1\r\n")
        assert p.line().startswith("+OK")
        raw = p.read_multi()
        assert raw[-2:] == [b"first", b"no newline at end"], raw
        # RFC 1939 sec. 11 tolerates a size that differs by the added CRLF
        assert size in (len(unstuff(raw)), len(unstuff(raw)) - 2), (size, len(unstuff(raw)))
        # the session is still in sync after the multi-line reply
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()


def test_deliver_ending_in_lone_dot_without_newline(server):
    addr, pw = server.new_user("dotend")
    r = server.deliver_cli(addr, b"Subject: dotend\n\nlast line\n.")
    assert r.returncode == 0, r.stderr
    with server.login(addr, pw) as p:
        status, raw = p.multi("RETR 1")
        assert status.startswith("+OK")
        assert raw[-2:] == [b"last line", b".."], "a final lone '.' must be stuffed: %r" % raw
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()


def test_deliver_cli_lf_becomes_crlf(server):
    addr, pw = server.new_user("lf")
    r = server.deliver_cli(addr, b"Subject: lf\nX-A: b\n\none\ntwo\n")
    assert r.returncode == 0, r.stderr
    with server.login(addr, pw) as p:
        (n, size), = p.list()
        msg = p.retr(1)   # Pop3 asserts every wire line ends with CRLF
        assert msg.endswith(b"Subject: lf\r\nX-A: b\r\n\r\none\r\ntwo\r\n")
        assert size == len(msg)
        p.quit()


# --------------------------------------------------------------------------
# TOP

def test_top(server):
    addr, pw = server.new_user("top")
    body = b"b1\r\n.b2\r\nb3\r\nb4\r\nb5\r\n"
    server.deliver_smtp(addr, make_message("top", body, to=addr))
    with server.login(addr, pw) as p:
        full = p.retr(1)
        hdr = header_block(full)
        status, raw = p.multi("TOP 1 0")
        assert status.startswith("+OK")
        assert unstuff(raw) == hdr, "TOP n 0 gives the headers and the blank line"
        status, raw = p.multi("TOP 1 2")
        assert unstuff(raw) == hdr + b"b1\r\n.b2\r\n"
        assert raw[-1] == b"..b2", "TOP output is byte-stuffed too"
        status, raw = p.multi("TOP 1 5")
        assert unstuff(raw) == full
        status, raw = p.multi("TOP 1 1000")
        assert unstuff(raw) == full
        for bad in ("TOP 1", "TOP", "TOP 1 -1", "TOP 1 x", "TOP 2 0", "TOP 0 0"):
            assert p.cmd(bad).startswith("-ERR"), bad
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()


def test_top_with_poplib(server):
    addr, pw = server.new_user("toplib")
    server.deliver_smtp(addr, make_message("toplib", b"x1\r\nx2\r\n", to=addr))
    c = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT)
    c.user(addr)
    c.pass_(pw)
    _, lines, _ = c.top(1, 1)
    assert b"Subject: toplib" in lines
    assert lines[-2:] == [b"", b"x1"]
    c.quit()


# --------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("arg", ["0", "99", "abc", "-1", "1x", "4294967296", "+1"])
def test_bad_message_numbers(server, arg):
    addr, pw, _ = server.mailbox(1, "badnum")
    with server.login(addr, pw) as p:
        for c in ("LIST %s", "RETR %s", "DELE %s", "UIDL %s", "TOP %s 0"):
            r = p.cmd(c % arg)
            assert r.startswith("-ERR"), "%s -> %r" % (c % arg, r)
        assert p.stat()[0] == 1
        assert p.cmd("NOOP").startswith("+OK")
        assert p.quit().startswith("+OK")
    assert server.count(addr, pw) == 1


def test_missing_arguments(server):
    addr, pw, _ = server.mailbox(1, "noarg")
    with server.login(addr, pw) as p:
        for c in ("RETR", "DELE", "TOP"):
            assert p.cmd(c).startswith("-ERR"), c
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()
    assert server.count(addr, pw) == 1


def test_unknown_commands(server):
    addr, pw = server.new_user("unk")
    with server.pop3() as p:
        assert p.cmd("XYZZY").startswith("-ERR")
        assert p.cmd("HELO there").startswith("-ERR")
        p.login(addr, pw)
        assert p.cmd("XYZZY").startswith("-ERR")
        assert p.cmd("NOOP").startswith("+OK")
        p.quit()


def test_commands_are_case_insensitive(server):
    addr, pw, _ = server.mailbox(1, "case")
    with server.pop3() as p:
        assert p.cmd("user " + addr).startswith("+OK")
        assert p.cmd("pass " + pw).startswith("+OK")
        assert p.cmd("stat").startswith("+OK 1 ")
        assert p.cmd("noop").startswith("+OK")
        p.cmd("Quit")


def test_pipelining(server):
    addr, pw, msgs = server.mailbox(2, "pipe")
    with server.pop3() as p:
        p.send("USER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nNOOP\r\nXYZZY\r\nLIST 1\r\nQUIT\r\n"
               % (addr, pw))
        assert p.line().startswith("+OK")          # USER
        assert p.line().startswith("+OK")          # PASS
        assert p.line().startswith("+OK 2 ")       # STAT
        assert p.line().startswith("+OK")
        assert len(p.read_multi()) == 2            # LIST
        assert p.line().startswith("+OK")
        assert len(p.read_multi()) == 2            # UIDL
        assert p.line().startswith("+OK")
        assert unstuff(p.read_multi()).endswith(msgs[0])  # RETR 1
        assert p.line().startswith("+OK")
        assert b"Subject: pipe-2" in p.read_multi()       # TOP 2 0
        assert p.line().startswith("+OK")          # NOOP
        assert p.line().startswith("-ERR")         # XYZZY
        assert p.line().startswith("+OK 1 ")       # LIST 1
        assert p.line().startswith("+OK")          # QUIT
        assert p.is_closed()


def test_overlong_line(server):
    addr, pw = server.new_user("long")
    with server.pop3() as p:
        p.send("NOOP " + "x" * 10000 + "\r\n")
        try:
            r = p.line()
        except (Closed, OSError):
            r = None   # closing the connection is acceptable
        if r is not None:
            assert r.startswith("-ERR"), r
            try:
                alive = p.cmd("USER " + addr)
            except (Closed, OSError):
                alive = None
            if alive is not None:
                assert alive.startswith("+OK"), alive
                assert p.cmd("PASS " + pw).startswith("+OK")
                p.quit()
    with server.login(addr, pw) as p:
        p.quit()


def test_nul_byte_in_command(server):
    addr, pw = server.new_user("nul")
    with server.pop3() as p:
        p.send(b"NO\x00OP\r\n")
        try:
            r = p.line()
        except (Closed, OSError):
            r = None
        if r is not None:
            assert r.startswith("-ERR"), r
        p.close()
    with server.pop3() as p:
        p.send(b"USER " + addr.encode() + b"\x00junk\r\n")
        try:
            r = p.line()
            if r.startswith("+OK"):
                r = p.cmd("PASS " + pw)
                assert r.startswith("-ERR"), "a NUL must not be ignored in USER: %r" % r
        except (Closed, OSError):
            pass
    with server.login(addr, pw) as p:
        p.quit()


def test_bare_lf_command(server):
    addr, pw = server.new_user("barelf")
    with server.pop3() as p:
        p.send(b"USER " + addr.encode() + b"\n")
        got = p.read_available(1.0)
        if not got:
            # the server waits for CRLF: complete the line
            p.send(b"\r\n")
            got = p.readline()
        assert got.startswith(b"+OK") or got.startswith(b"-ERR"), got
        assert got.endswith(b"\r\n")
        # the session is still usable with proper CRLF lines
        r = p.cmd("USER " + addr)
        assert r.startswith("+OK"), r
        assert p.cmd("PASS " + pw).startswith("+OK")
        p.quit()


def test_abrupt_disconnect_mid_retr(server):
    addr, pw = server.new_user("midretr")
    body = b"".join(b"%08d........................................................\r\n" % i for i in range(25000))
    server.deliver_smtp(addr, make_message("midretr", body, to=addr))
    for _ in range(3):
        p = server.login(addr, pw)
        p.send("RETR 1\r\n")
        p.read_exact(1000)
        p.abort()
    p = server.login(addr, pw)
    p.send("RETR 1\r\n")
    p.read_exact(5000)
    p.close()
    with server.login(addr, pw) as p:
        assert p.stat()[0] == 1
        assert p.retr(1).endswith(body)
        p.quit()


def test_concurrent_deliveries_get_unique_ordered_ids(server, mode):
    """Parallel SMTP and LMTP deliveries to one mailbox: every message gets
    its own UIDL and the listing is in id order (no lost or doubled ids)."""
    import threading
    addr, pw = server.new_user("par")
    errors = []

    def worker(t):
        try:
            if t % 2:
                server.deliver_smtp_many(addr, [make_message("par-%d-%d" % (t, i), to=addr) for i in range(6)])
            else:
                for i in range(6):
                    with server.lmtp() as c:
                        c.ehlo(verb="LHLO")
                        assert c.cmd("MAIL FROM:<p@remote.test>").code == 250
                        assert c.cmd("RCPT TO:<%s>" % addr).code == 250
                        r = c.data(make_message("par-%d-%d" % (t, i), to=addr))
                        assert r.code == 250, r
                        c.quit()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    assert not errors, errors
    got = server.fetch_all(addr, pw)
    assert len(got) == 24
    uids = [u for u, _, _ in got]
    assert len(set(uids)) == 24, "duplicate UIDLs: %r" % uids
    subjects = [subject_of(m) for _, _, m in got]
    assert len(set(subjects)) == 24
    for t in range(4):   # each sender's messages keep their order
        mine = [s for s in subjects if s.startswith("par-%d-" % t)]
        assert mine == ["par-%d-%d" % (t, i) for i in range(6)], mine
    if mode == "messageid":
        stamps = [timeuuid_timestamp(u) for u in uids]
        assert stamps == sorted(stamps), "listing not in message-id order"
