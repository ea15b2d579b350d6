"""SMTP receiving for local users (RFC 5321, RFC 1870 SIZE, RFC 6152
8BITMIME, RFC 2034/3463 enhanced status codes, RFC 2920 PIPELINING)."""
import email.message
import smtplib
import time

import pytest

from .helpers import (TIMEOUT, TIMEUUID_RE, ehlo_keywords, headers, make_message, stuff,
                      timeuuid_unix_time)

MAX_SIZE = 200000
MAX_RCPT = 5


def subjects(server, addr, pw):
    out = []
    for _, _, m in server.fetch_all(addr, pw):
        out.append(dict(headers(m)).get("subject"))
    return out


def begin(server, sender="sender@remote.test"):
    s = server.smtp()
    s.ehlo()
    r = s.cmd("MAIL FROM:<%s>" % sender)
    assert r.code == 250, r
    return s


# --------------------------------------------------------------------------
# greeting, EHLO, HELO

def test_greeting_names_host(server):
    with server.smtp() as s:
        assert s.greeting.code == 220, s.greeting
        assert s.greeting.lines[0].split()[0] == server.hostname, s.greeting
        s.quit()


def test_ehlo_extensions(server):
    with server.smtp() as s:
        r = s.ehlo()
        assert r.lines[0].split()[0] == server.hostname
        kw = ehlo_keywords(r)
        for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"):
            assert k in kw, "%s not advertised: %r" % (k, r)
        assert kw["SIZE"].split()[1:] == [str(MAX_SIZE)], kw["SIZE"]
        s.quit()


def test_helo_then_mail(server):
    addr, pw = server.new_user("helo")
    with server.smtp() as s:
        r = s.cmd("HELO client.test")
        assert r.code == 250, r
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("helo", to=addr)).code == 250
        s.quit()
    assert subjects(server, addr, pw) == ["helo"]


@pytest.mark.parametrize("verb", ["EHLO", "HELO"])
def test_helo_without_domain(server, verb):
    with server.smtp() as s:
        r = s.cmd(verb)
        assert r.code == 501, r
        assert s.cmd("NOOP").code == 250


def test_smtplib_delivery_and_trace_headers(server):
    addr, pw = server.new_user("lib")
    msg = make_message("smtplib", "Hello from smtplib.\r\n", to=addr)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=TIMEOUT) as c:
        c.ehlo("client.test")
        refused = c.sendmail("origin@remote.test", [addr], msg)
        assert refused == {}
    (uid, size, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)
    h = headers(got)
    names = [n for n, _ in h]
    assert names[:len(names) - len(headers(msg))].count("received") >= 1, names
    hv = dict(h)
    assert hv["return-path"].strip() == "<origin@remote.test>", hv["return-path"]
    assert addr in hv["delivered-to"].lower()
    # Received: names this host (RFC 5321 4.4: "by" clause)
    rec = [v for n, v in h if n == "received"][0]
    assert server.hostname in rec, rec


def test_null_reverse_path(server):
    addr, pw = server.new_user("bounce")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("bounce", to=addr)).code == 250
        s.quit()
    (_, _, got), = server.fetch_all(addr, pw)
    assert dict(headers(got))["return-path"].strip() == "<>"


def test_domain_is_case_insensitive(server):
    addr, pw = server.new_user("dcase")
    local, domain = addr.split("@")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        r = s.cmd("RCPT TO:<%s@%s>" % (local, domain.upper()))
        assert r.code == 250, r
        assert s.data(make_message("dcase", to=addr)).code == 250
        s.quit()
    assert subjects(server, addr, pw) == ["dcase"]


# --------------------------------------------------------------------------
# recipients

def test_unknown_local_user(server):
    server.add_domain(server.DOMAIN)
    with begin(server) as s:
        r = s.cmd("RCPT TO:<nobody-at-all@%s>" % server.DOMAIN)
        assert r.code == 550 and r.enhanced == "5.1.1", r
        assert s.cmd("NOOP").code == 250


def test_not_an_open_relay(server):
    with begin(server) as s:
        for rc in ("victim@elsewhere.test", "victim@example.test.evil.test",
                   "victim@sub.example.test", '"victim@example.test"@elsewhere.test',
                   "@example.test:victim@elsewhere.test"):
            r = s.cmd("RCPT TO:<%s>" % rc)
            assert r.code >= 500, "%s: %r" % (rc, r)
        r = s.cmd("RCPT TO:<victim@elsewhere.test>")
        assert r.code == 550 and r.enhanced == "5.7.1", r
        # nothing accepted, so DATA cannot start (RFC 5321 3.3)
        r = s.cmd("DATA")
        assert r.code in (503, 554), r


def test_percent_hack_is_not_relayed(server):
    addr, pw = server.new_user("pct")
    with begin(server) as s:
        r = s.cmd("RCPT TO:<victim%%elsewhere.test@%s>" % server.DOMAIN)
        assert r.code >= 500, r


def test_multiple_recipients_one_copy_each(server):
    a, apw = server.new_user("multa")
    b, bpw = server.new_user("multb")
    c, cpw = server.new_user("multc")
    msg = make_message("multi", to=a)
    server.deliver_smtp([a, b, c], msg)
    for addr, pw in ((a, apw), (b, bpw), (c, cpw)):
        got = server.fetch_all(addr, pw)
        assert len(got) == 1, addr
        m = got[0][2]
        assert m.endswith(msg)
        assert addr in dict(headers(m))["delivered-to"].lower()


def test_duplicate_recipient_one_copy(server):
    addr, pw = server.new_user("dup")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.cmd("RCPT TO:<%s>" % addr)
        assert 200 <= r.code < 300, r
        assert s.data(make_message("dup", to=addr)).code == 250
        s.quit()
    assert subjects(server, addr, pw) == ["dup"]


def test_recipient_limit(server):
    users = [server.new_user("lim") for _ in range(MAX_RCPT + 1)]
    with begin(server) as s:
        for addr, _ in users[:MAX_RCPT]:
            r = s.cmd("RCPT TO:<%s>" % addr)
            assert r.code == 250, r
        r = s.cmd("RCPT TO:<%s>" % users[-1][0])
        assert (r.code == 452 and r.enhanced == "4.5.3") or (r.code >= 500 and r.enhanced == "5.5.3"), r
        assert s.data(make_message("lim")).code == 250
        s.quit()
    for addr, pw in users[:MAX_RCPT]:
        assert server.count(addr, pw) == 1
    assert server.count(*users[-1]) == 0


def test_mixed_known_unknown_recipients(server):
    a, apw = server.new_user("mixa")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<ghost-user@%s>" % server.DOMAIN).code == 550
        assert s.cmd("RCPT TO:<%s>" % a).code == 250
        assert s.data(make_message("mix", to=a)).code == 250
        s.quit()
    assert subjects(server, a, apw) == ["mix"]


def test_vrfy(server):
    addr, _ = server.new_user("vrfy")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("VRFY %s" % addr).code == 252
        assert s.cmd("VRFY nobody@%s" % server.DOMAIN).code == 252
        s.quit()


# --------------------------------------------------------------------------
# size

def test_size_parameter_over_limit(server):
    addr, _ = server.new_user("sizep")
    with server.smtp() as s:
        s.ehlo()
        r = s.cmd("MAIL FROM:<a@remote.test> SIZE=%d" % (MAX_SIZE * 2))
        assert r.code == 552 and r.enhanced == "5.3.4", r
        # the session continues
        r = s.cmd("MAIL FROM:<a@remote.test> SIZE=1000")
        assert r.code == 250, r
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("sizeok", to=addr)).code == 250
        s.quit()


def test_size_parameter_malformed(server):
    with server.smtp() as s:
        s.ehlo()
        r = s.cmd("MAIL FROM:<a@remote.test> SIZE=abc")
        assert 500 <= r.code < 600, r
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250


def test_oversize_data_without_size(server):
    addr, pw = server.new_user("big")
    body = b"".join(b"%06d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" % i
                    for i in range(2 * MAX_SIZE // 70))
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.data(make_message("big", body, to=addr))
        assert r.code == 552 and r.enhanced == "5.3.4", r
        # the connection is still usable for a new transaction
        assert s.cmd("RSET").code == 250
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("small", to=addr)).code == 250
        s.quit()
    assert subjects(server, addr, pw) == ["small"]


def test_smtplib_refuses_to_send_oversize_with_size(server):
    addr, pw = server.new_user("bigsize")
    body = b"y" * 70 + b"\r\n"
    msg = make_message("bigsize", body * (2 * MAX_SIZE // 72), to=addr)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=TIMEOUT) as c:
        c.ehlo("client.test")
        assert c.does_esmtp and int(c.esmtp_features["size"]) == MAX_SIZE
        with pytest.raises(smtplib.SMTPSenderRefused) as ei:
            c.sendmail("a@remote.test", [addr], msg)  # smtplib adds SIZE= itself
        assert ei.value.smtp_code == 552
    assert server.count(addr, pw) == 0


# --------------------------------------------------------------------------
# command sequencing

def test_rcpt_before_mail(server):
    addr, _ = server.new_user("seq1")
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("RCPT TO:<%s>" % addr).code == 503


def test_data_before_rcpt(server):
    with server.smtp() as s:
        s.ehlo()
        r = s.cmd("DATA")
        assert r.code in (503, 554), r
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        r = s.cmd("DATA")
        assert r.code in (503, 554), r
        assert s.cmd("NOOP").code == 250


def test_nested_mail(server):
    with begin(server) as s:
        assert s.cmd("MAIL FROM:<b@remote.test>").code == 503


def test_noop_rset_quit(server):
    addr, pw = server.new_user("rset")
    s = begin(server)
    assert s.cmd("NOOP").code == 250
    assert s.cmd("RCPT TO:<%s>" % addr).code == 250
    assert s.cmd("RSET").code == 250
    # the transaction is gone
    assert s.cmd("RCPT TO:<%s>" % addr).code == 503
    r = s.cmd("QUIT")
    assert r.code == 221, r
    assert s.is_closed()
    assert server.count(addr, pw) == 0


def test_quit_mid_transaction_discards(server):
    addr, pw = server.new_user("qmid")
    s = begin(server)
    assert s.cmd("RCPT TO:<%s>" % addr).code == 250
    assert s.cmd("QUIT").code == 221
    assert server.count(addr, pw) == 0


def test_bad_mail_syntax(server):
    with server.smtp() as s:
        s.ehlo()
        for bad in ("MAIL FROM:bad", "MAIL FROM:<bad", "MAIL TO:<a@remote.test>", "MAIL",
                    "MAIL FROM:<a@remote.test> FOO=bar"):
            r = s.cmd(bad)
            assert 500 <= r.code < 600, "%s: %r" % (bad, r)
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        for bad in ("RCPT TO:<>", "RCPT TO:", "RCPT TO:<no-at-sign>"):
            r = s.cmd(bad)
            assert 500 <= r.code < 600, "%s: %r" % (bad, r)
        assert s.cmd("NOOP").code == 250


def test_unknown_command(server):
    with server.smtp() as s:
        r = s.cmd("XYZZY frob")
        assert r.code == 500, r
        assert s.cmd("NOOP").code == 250


def test_commands_case_insensitive(server):
    addr, pw = server.new_user("lower")
    with server.smtp() as s:
        assert s.cmd("ehlo client.test").code == 250
        assert s.cmd("mail from:<a@remote.test>").code == 250
        assert s.cmd("rcpt to:<%s>" % addr).code == 250
        r = s.cmd("data")
        assert r.code == 354
        s.send(make_message("lower", to=addr) + b".\r\n")
        assert s.reply().code == 250
        s.quit()
    assert server.count(addr, pw) == 1


# --------------------------------------------------------------------------
# pipelining

def test_pipelined_transaction(server):
    a, apw = server.new_user("pipea")
    b, bpw = server.new_user("pipeb")
    with server.smtp() as s:
        s.ehlo()
        s.send("MAIL FROM:<p@remote.test>\r\nRCPT TO:<%s>\r\nRCPT TO:<ghost@%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
               % (a, server.DOMAIN, b))
        codes = [s.reply().code for _ in range(5)]
        assert codes == [250, 250, 550, 250, 354], codes
        s.send(stuff(make_message("pipelined", to=a)) + b".\r\nNOOP\r\nQUIT\r\n")
        assert s.reply().code == 250
        assert s.reply().code == 250
        assert s.reply().code == 221
    assert subjects(server, a, apw) == ["pipelined"]
    assert subjects(server, b, bpw) == ["pipelined"]


def test_pipelined_transactions_back_to_back(server):
    addr, pw = server.new_user("pipe2")
    with server.smtp() as s:
        s.ehlo()
        s.send(b"MAIL FROM:<p@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % addr.encode())
        for i in range(5):
            assert [s.reply().code for _ in range(3)] == [250, 250, 354]
            s.send(stuff(make_message("pipe2-%d" % i, to=addr)) + b".\r\n" +
                   (b"MAIL FROM:<p@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % addr.encode() if i < 4 else b""))
            assert s.reply().code == 250
        s.quit()
    assert subjects(server, addr, pw) == ["pipe2-%d" % i for i in range(5)]


# --------------------------------------------------------------------------
# DATA contents

def test_dot_stuffing_is_removed(server):
    addr, pw = server.new_user("dots")
    body = b".leading\r\n..two\r\n.\r\nend\r\n"
    msg = make_message("dots", body, to=addr)
    server.deliver_smtp(addr, msg)   # deliver_smtp stuffs on the way in
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)


def test_8bitmime(server):
    addr, pw = server.new_user("eight")
    body = "Grüße, ½ € — ok\r\n".encode("utf-8") + bytes(range(0x80, 0x100)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
    msg = make_message("eight", body, to=addr)
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test> BODY=8BITMIME").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(msg).code == 250
        s.quit()
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)


@pytest.mark.parametrize("n", [998, 1000])
def test_long_text_line_accepted(server, n):
    addr, pw = server.new_user("line%d" % n)
    body = b"a" * n + b"\r\nshort\r\n"
    msg = make_message("line", body, to=addr)
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.data(msg)
        assert r.code == 250, r
        s.quit()
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)


@pytest.fixture(scope="module")
def reject_server(module_servers):
    """A server with [smtp] bare_lf = reject."""
    return module_servers.create(name="reject", overrides={"smtp": {"bare_lf": "reject"}})


def lf_message(subject, to):
    """An email.message with LF line endings, as Python builds it, with
    body lines that start with dots (smtplib stuffs them after LF)."""
    msg = email.message.EmailMessage()
    msg["From"] = "origin@remote.test"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("line one\n.one dot\n..two dots\n.\n\nlast line\n")
    data = msg.as_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    return data


def test_smtplib_lf_message_is_normalized(server):
    """[smtp] bare_lf = normalize (the default): what smtplib sends for an
    LF-terminated message is stored with CRLF lines, dots unstuffed."""
    addr, pw = server.new_user("lflib")
    data = lf_message("lf-smtplib", addr)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=TIMEOUT) as c:
        c.ehlo("client.test")
        assert c.sendmail("origin@remote.test", [addr], data) == {}
    (uid, size, got), = server.fetch_all(addr, pw)   # Pop3 checks every line ends with CRLF
    # smtplib sends the data, then a CRLF because the data does not end
    # with one (an empty last line), then "." CRLF.
    want = data.replace(b"\n", b"\r\n") + b"\r\n"
    assert got.endswith(want), got[-300:]
    assert b".one dot\r\n..two dots\r\n.\r\n\r\nlast line\r\n" in got
    assert size == len(got)
    assert dict(headers(got))["subject"] == "lf-smtplib"


def test_bare_lf_in_data_is_normalized(server):
    addr, pw = server.new_user("barelf")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: barelf\r\n\r\nline one\nline two\r\n.\r\n")
        r = s.reply()
        assert r.code == 250, r
        s.quit()
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(b"Subject: barelf\r\n\r\nline one\r\nline two\r\n")


def test_smtplib_lf_message_refused_in_reject_mode(reject_server):
    server = reject_server
    addr, pw = server.new_user("lfrej")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=TIMEOUT) as c:
        c.ehlo("client.test")
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("origin@remote.test", [addr], lf_message("lf-reject", addr))
        assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.6.0"), e.value
        # the connection stays usable, and CRLF mail goes through
        c.rset()
        msg = make_message("crlf-after", to=addr)
        assert c.sendmail("origin@remote.test", [addr], msg) == {}
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)


def test_bare_lf_in_data_is_refused_in_reject_mode(reject_server):
    server = reject_server
    addr, pw = server.new_user("barelfrej")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: barelf\r\n\r\nline one\nline two\r\n.\r\n")
        r = s.reply()
        assert r.code == 550 and r.enhanced == "5.6.0", r
        # the connection stays usable
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("after-barelf", to=addr)).code == 250
        s.quit()
    assert subjects(server, addr, pw) == ["after-barelf"]


@pytest.mark.parametrize("mode", ["normalize", "reject"])
def test_bare_cr_in_data_is_refused_in_both_modes(server, reject_server, mode):
    srv = server if mode == "normalize" else reject_server
    addr, pw = srv.new_user("barecr" + mode[0])
    with begin(srv) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: barecr\r\n\r\nline one\rline two\nthree\r\n.\r\n")
        r = s.reply()
        assert r.code == 550 and r.enhanced == "5.6.0", r
        assert s.cmd("NOOP").code == 250
        s.quit()
    assert srv.count(addr, pw) == 0


def test_bare_cr_in_data_refused_or_normalised(server):
    addr, pw = server.new_user("barecr")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: barecr\r\n\r\nline one\rline two\r\n.\r\n")
        r = s.reply()
        assert r.code in (250, 550), r
        assert s.cmd("NOOP").code == 250
        s.quit()
    got = server.fetch_all(addr, pw)   # Pop3 checks each line ends with CRLF
    assert len(got) == (1 if r.code == 250 else 0)
    if got:
        assert b"\rline two" not in got[0][2].replace(b"\r\n", b"")


def smuggle(server, terminator, name):
    """Sends a message whose body holds a would-be end of data followed by
    a whole second transaction, and checks that none of it ran as commands.
    Returns the reply to the data, the sender's mailbox and the smuggled
    text."""
    sender, spw = server.new_user(name)
    victim, vpw = server.new_user(name + "v")
    smuggled = (b"MAIL FROM:<ceo@" + server.DOMAIN.encode() + b">\r\nRCPT TO:<" + victim.encode() +
                b">\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % sender).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: carrier\r\n\r\nhello" + terminator + smuggled + b".\r\n")
        r = s.reply()
        # the next reply belongs to our next command, not to smuggled ones
        r2 = s.cmd("VRFY someone")
        assert r2.code == 252, "a smuggled command was executed: %r then %r" % (r, r2)
        s.quit()
    assert server.count(victim, vpw) == 0
    return r, (sender, spw), smuggled


@pytest.mark.parametrize("terminator", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
def test_smtp_smuggling(server, terminator):
    """Only CRLF.CRLF ends DATA; the smuggled commands stay in the body."""
    r, sender, _ = smuggle(server, terminator, "smugs")
    assert r.code == 250 or (r.code == 550 and r.enhanced == "5.6.0"), r
    if r.code == 250:
        (_, _, got), = server.fetch_all(*sender)
        assert b"Subject: smuggled" in got


@pytest.mark.parametrize("terminator", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"])
def test_smuggling_with_lf_normalized_stays_data(server, terminator):
    """With bare_lf = normalize the would-be terminator becomes an empty line
    and the smuggled commands are stored as the message's own lines."""
    r, sender, smuggled = smuggle(server, terminator, "smugn")
    assert r.code == 250, r
    (_, _, got), = server.fetch_all(*sender)
    assert got.endswith(b"Subject: carrier\r\n\r\nhello\r\n\r\n" + smuggled), got[-300:]


@pytest.mark.parametrize("terminator", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
def test_smtp_smuggling_reject_mode(reject_server, terminator):
    r, sender, _ = smuggle(reject_server, terminator, "smugr")
    assert r.code == 550 and r.enhanced == "5.6.0", r
    assert reject_server.count(*sender) == 0


def test_message_id_is_minted_when_the_data_ends(server):
    """The id (the UIDL in messageid mode) orders the listing and must be
    no older than the end of the data, however slowly the data came: the
    Cassandra store's range deletes rely on it."""
    addr, pw = server.new_user("slowid")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.cmd("DATA").code == 354
        s.send(b"Subject: slow\r\n\r\nfirst half\r\n")
        time.sleep(1.5)
        before_end = time.time()
        s.send(b"second half\r\n.\r\n")
        r = s.reply()
        assert r.code == 250, r
        s.quit()
    (uidl, _, _), = server.fetch_all(addr, pw)
    assert TIMEUUID_RE.match(uidl), uidl
    assert timeuuid_unix_time(uidl) >= before_end - 0.2, (timeuuid_unix_time(uidl), before_end)


def test_empty_lines_and_crlf_dot_only_at_line_start(server):
    addr, pw = server.new_user("edge")
    body = b"\r\n\r\nx.\r\n.x\r\n \r\n. \r\n"
    msg = make_message("edge", body, to=addr)
    server.deliver_smtp(addr, msg)
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)


def test_command_line_too_long(server):
    addr, pw = server.new_user("cmdlong")
    with server.smtp() as s:
        s.ehlo()
        for n in (2000, 10000):
            r = s.cmd("NOOP " + "x" * n)
            assert r.code == 500, r
            assert s.cmd("NOOP").code == 250
        r = s.cmd("MAIL FROM:<%s@remote.test>" % ("a" * 3000))
        assert 500 <= r.code < 600, r
        assert s.cmd("RSET").code == 250
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        assert s.data(make_message("cmdlong", to=addr)).code == 250
        s.quit()
    assert server.count(addr, pw) == 1


# --------------------------------------------------------------------------
# RFC 5321 details

@pytest.mark.parametrize("rcpt", ["Postmaster", "postmaster@example.test", "POSTMASTER@Example.Test"])
def test_postmaster_accepted(server, rcpt):
    """RFC 5321 4.5.1: <Postmaster> and postmaster at every served domain
    MUST be accepted. tern delivers it to the postmaster@DOMAIN mailbox,
    which the operator creates (README: Operations)."""
    server.add_domain(server.DOMAIN)
    if "postmaster@" + server.DOMAIN not in server.users:
        server.add_user("postmaster@" + server.DOMAIN, "pm-secret")
    with begin(server) as s:
        r = s.cmd("RCPT TO:<%s>" % rcpt)
        assert r.code == 250, r
        s.quit()


def test_ehlo_mid_transaction_resets_it(server):
    """RFC 5321 4.1.4: EHLO in a session clears the transaction like RSET."""
    addr, pw = server.new_user("ehloreset")
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        s.ehlo()
        r = s.cmd("DATA")
        assert r.code in (503, 554), r
        assert s.cmd("MAIL FROM:<a@remote.test>").code == 250
        s.quit()
    assert server.count(addr, pw) == 0


def test_smtputf8_when_advertised(server):
    addr, pw = server.new_user("utf8")
    with server.smtp() as s:
        kw = ehlo_keywords(s.ehlo())
        if "SMTPUTF8" not in kw:
            pytest.skip("SMTPUTF8 not advertised")
        r = s.cmd("MAIL FROM:<jösé@remote.test> SMTPUTF8")
        assert r.code == 250, "RFC 6531: the advertised SMTPUTF8 parameter: %r" % r
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        msg = make_message("utf8", "Grüße\r\n", sender="jösé@remote.test", to=addr)
        assert s.data(msg).code == 250
        s.quit()
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)
    assert "jösé@remote.test".encode() in got.split(b"\r\n\r\n")[0]


def test_body_parameter_values(server):
    with server.smtp() as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@remote.test> BODY=7BIT").code == 250
        assert s.cmd("RSET").code == 250
        r = s.cmd("MAIL FROM:<a@remote.test> BODY=NONSENSE")
        assert 500 <= r.code < 600, r
        s.quit()


def test_size_limit_boundary(server):
    """RFC 1870: a message of exactly the advertised SIZE is accepted (the
    trace headers tern adds do not count); one octet more is refused."""
    addr, pw = server.new_user("boundary")
    msg = make_message("boundary", b"", to=addr)
    msg += (b"x" * 98 + b"\r\n") * ((MAX_SIZE - len(msg)) // 100)
    msg += b"z" * (MAX_SIZE - len(msg) - 2) + b"\r\n"
    assert len(msg) == MAX_SIZE
    with begin(server) as s:
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.data(msg)
        assert r.code == 250, r
        assert s.cmd("MAIL FROM:<a@remote.test> SIZE=%d" % MAX_SIZE).code == 250
        assert s.cmd("RCPT TO:<%s>" % addr).code == 250
        r = s.data(msg[:-2] + b"z\r\n")
        assert r.code == 552 and r.enhanced == "5.3.4", r
        s.quit()
    (_, _, got), = server.fetch_all(addr, pw)
    assert got.endswith(msg)
