"""LMTP (RFC 2033): LHLO, pipelining, one reply per accepted recipient after
DATA, in RCPT order, with the same storage semantics as SMTP."""
import pytest

from .helpers import ehlo_keywords, headers, make_message, stuff


def subjects(server, addr, pw):
    return [dict(headers(m)).get("subject") for _, _, m in server.fetch_all(addr, pw)]


def test_greeting(server):
    with server.lmtp() as s:
        assert s.greeting.code == 220, s.greeting
        s.quit()


def test_lhlo_advertises_pipelining(server):
    with server.lmtp() as s:
        r = s.ehlo(verb="LHLO")
        assert "PIPELINING" in ehlo_keywords(r), r
        assert "ENHANCEDSTATUSCODES" in ehlo_keywords(r), r
        s.quit()


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_helo_ehlo_refused(server, verb):
    with server.lmtp() as s:
        r = s.cmd("%s client.test" % verb)
        assert 500 <= r.code < 600, "RFC 2033 4.1: %s must not be accepted on LMTP: %r" % (verb, r)
        # LHLO still works afterwards
        s.ehlo(verb="LHLO")
        s.quit()


def test_mail_before_lhlo_refused(server):
    with server.lmtp() as s:
        r = s.cmd("MAIL FROM:<a@remote.test>")
        assert r.code == 503, r


def test_one_reply_per_accepted_recipient(server):
    a, apw = server.new_user("la")
    b, bpw = server.new_user("lb")
    ghost = "ghost-lmtp@%s" % server.DOMAIN
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        r = s.cmd("RCPT TO:<%s>" % ghost)
        assert r.code == 550 and r.enhanced == "5.1.1", r
        assert s.cmd("RCPT TO:<%s>" % b).code == 250
        assert s.cmd("DATA").code == 354
        s.send(stuff(make_message("lmtp-two", to=a)) + b".\r\n")
        replies = [s.reply(), s.reply()]
        for r in replies:
            assert r.code == 250, replies
        # replies that name a recipient name them in RCPT order
        named = [x for x in ([a in r.text.lower(), b in r.text.lower()] for r in replies)]
        if all(any(n) for n in named):
            assert named == [[True, False], [False, True]], replies
        # no third reply: the next reply is NOOP's
        r = s.cmd("NOOP")
        assert r.code == 250 and "lmtp-two" not in r.text, r
        s.quit()
    assert subjects(server, a, apw) == ["lmtp-two"]
    assert subjects(server, b, bpw) == ["lmtp-two"]
    (_, _, m), = server.fetch_all(a, apw)
    hv = dict(headers(m))
    assert "received" in hv and "return-path" in hv and a in hv["delivered-to"].lower()


def test_pipelined_lmtp_session(server):
    users = [server.new_user("lp") for _ in range(3)]
    msg = make_message("lmtp-pipe")
    with server.lmtp() as s:
        s.send("LHLO client.test\r\nMAIL FROM:<s@remote.test>\r\n" +
               "".join("RCPT TO:<%s>\r\n" % u for u, _ in users) + "DATA\r\n")
        r = s.reply()
        assert r.code == 250 and "PIPELINING" in ehlo_keywords(r)
        codes = [s.reply().code for _ in range(5)]
        assert codes == [250, 250, 250, 250, 354], codes
        s.send(stuff(msg) + b".\r\nRSET\r\nQUIT\r\n")
        assert [s.reply().code for _ in range(3)] == [250, 250, 250]
        assert s.reply().code == 250  # RSET
        assert s.reply().code == 221  # QUIT
    for u, pw in users:
        assert subjects(server, u, pw) == ["lmtp-pipe"]


def test_data_without_valid_recipient(server):
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert s.cmd("RCPT TO:<ghost2@%s>" % server.DOMAIN).code == 550
        r = s.cmd("DATA")
        assert r.code == 503, "RFC 2033 4.2: DATA without a successful RCPT: %r" % r
        assert s.cmd("RSET").code == 250


def test_non_local_domain_refused(server):
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        r = s.cmd("RCPT TO:<someone@elsewhere.test>")
        assert 500 <= r.code < 600, r


def test_duplicate_recipient_reply_count(server):
    addr, pw = server.new_user("ldup")
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        r1 = s.cmd("RCPT TO:<%s>" % addr)
        r2 = s.cmd("RCPT TO:<%s>" % addr)
        accepted = [r for r in (r1, r2) if 200 <= r.code < 300]
        assert r1.code == 250
        assert s.cmd("DATA").code == 354
        s.send(stuff(make_message("ldup", to=addr)) + b".\r\n")
        for _ in accepted:
            assert s.reply().code == 250
        r = s.cmd("VRFY x")
        assert r.code == 252, "one reply per accepted RCPT, then VRFY's: %r" % r
        s.quit()
    assert subjects(server, addr, pw) == ["ldup"]


@pytest.fixture(scope="module")
def reject_server(module_servers):
    """[smtp] bare_lf governs LMTP too."""
    return module_servers.create(name="lreject", overrides={"smtp": {"bare_lf": "reject"}})


def test_bare_lf_normalized_per_recipient(server):
    a, apw = server.new_user("lnfa")
    b, bpw = server.new_user("lnfb")
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.cmd("RCPT TO:<%s>" % b).code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.cmd("DATA").code == 354
        # LF line endings, stuffed after LF, as an LF-only client sends them
        s.send(b"Subject: lf\n\none\n..two\n\r\n.\r\n")
        for _ in range(3):
            r = s.reply()
            assert r.code == 250, r
        assert s.cmd("VRFY x").code == 252
        s.quit()
    for addr, pw in ((a, apw), (b, bpw)):
        (_, size, got), = server.fetch_all(addr, pw)
        assert got.endswith(b"Subject: lf\r\n\r\none\r\n.two\r\n\r\n"), got
        assert size == len(got)


def test_bare_lf_refused_per_recipient(reject_server):
    server = reject_server
    a, apw = server.new_user("llfa")
    b, bpw = server.new_user("llfb")
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.cmd("RCPT TO:<%s>" % b).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: lf\r\n\r\none\ntwo\r\n.\r\n")
        for _ in range(2):
            r = s.reply()
            assert r.code == 550 and r.enhanced == "5.6.0", r
        assert s.cmd("VRFY x").code == 252
        s.quit()
    assert server.count(a, apw) == 0 and server.count(b, bpw) == 0


def test_bare_cr_refused_per_recipient(server):
    a, apw = server.new_user("lcra")
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: cr\r\n\r\none\rtwo\r\n.\r\n")
        for _ in range(2):
            r = s.reply()
            assert r.code == 550 and r.enhanced == "5.6.0", r
        assert s.cmd("VRFY x").code == 252
        s.quit()
    assert server.count(a, apw) == 0


@pytest.mark.parametrize("terminator", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"])
def test_smuggling_lmtp_normalized_stays_data(server, terminator):
    a, apw = server.new_user("lsmn")
    v, vpw = server.new_user("lsmnv")
    smuggled = (b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<" + v.encode() +
                b">\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n")
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: c\r\n\r\nhi" + terminator + smuggled + b".\r\n")
        r = s.reply()
        assert r.code == 250, r
        assert s.cmd("VRFY x").code == 252
        s.quit()
    assert server.count(v, vpw) == 0
    (_, _, got), = server.fetch_all(a, apw)
    assert got.endswith(b"Subject: c\r\n\r\nhi\r\n\r\n" + smuggled)


def test_smuggling_lmtp(server):
    a, apw = server.new_user("lsm")
    v, vpw = server.new_user("lsmv")
    with server.lmtp() as s:
        s.ehlo(verb="LHLO")
        assert s.cmd("MAIL FROM:<s@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: c\r\n\r\nhi\n.\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<" + v.encode() +
               b">\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
        r = s.reply()
        assert r.code in (250, 550), r
        assert s.cmd("VRFY x").code == 252
        s.quit()
    assert server.count(v, vpw) == 0
