"""Aliases and quotas on the delivery path: an alias delivers to every user
it reaches, over SMTP and LMTP; a user at a limit is refused at RCPT with
452 4.2.2, and a message that would take a user over is refused after the
data (per recipient on LMTP, for the whole message on SMTP)."""
from .helpers import headers, make_message


def subjects(server, addr, pw):
    return [dict(headers(m)).get("subject") for _, _, m in server.fetch_all(addr, pw)]


def transaction(client, rcpts, message, sender="sender@remote.test"):
    """MAIL, the RCPTs, and DATA when one was accepted. Returns (the RCPT
    replies, the replies after the data: one for SMTP, one per accepted
    RCPT for LMTP)."""
    lmtp = client.lmtp
    r = client.cmd("MAIL FROM:<%s>" % sender)
    assert r.code == 250, r
    rcpt_replies = [client.cmd("RCPT TO:<%s>" % rc) for rc in rcpts]
    accepted = sum(1 for r in rcpt_replies if r.code == 250)
    if accepted == 0:
        client.cmd("RSET")
        return rcpt_replies, []
    final = [client.data(message)]
    if lmtp:
        final += [client.reply() for _ in range(accepted - 1)]
    return rcpt_replies, final


def connect(server, lmtp=False):
    c = server.lmtp() if lmtp else server.smtp()
    c.ehlo(verb="LHLO" if lmtp else "EHLO")
    c.lmtp = lmtp
    return c


def test_alias_delivers_to_two_users(server):
    a, apw = server.new_user("alias-a")
    b, bpw = server.new_user("alias-b")
    team = "team-%s" % a.split("@")[0]
    team += "@" + server.DOMAIN
    server.cli_ok("alias", "add", team, a, b)
    server.deliver_smtp(team, make_message("to-the-team", to=team))
    for user, pw in ((a, apw), (b, bpw)):
        msgs = server.fetch_all(user, pw)
        assert [dict(headers(m)).get("subject") for _, _, m in msgs] == ["to-the-team"]
        # each copy says whom it was delivered to
        assert ("delivered-to", user) in [(k, v) for k, v in headers(msgs[0][2])]


def test_lmtp_alias_has_one_reply_per_rcpt(server):
    a, apw = server.new_user("lalias-a")
    b, bpw = server.new_user("lalias-b")
    alias = "l-" + a
    server.cli_ok("alias", "add", alias, a, b)
    with connect(server, lmtp=True) as c:
        rcpts, final = transaction(c, [alias, b], make_message("lmtp-alias"))
        assert [r.code for r in rcpts] == [250, 250], rcpts
        assert [r.code for r in final] == [250, 250], final
        c.quit()
    # b is reached twice (through the alias and directly) and has one copy
    assert subjects(server, a, apw) == ["lmtp-alias"]
    assert subjects(server, b, bpw) == ["lmtp-alias"]


def test_nested_alias_and_loop_refused(server):
    u, pw = server.new_user("nested")
    inner = "inner-" + u
    outer = "outer-" + u
    server.cli_ok("alias", "add", inner, u)
    server.cli_ok("alias", "add", outer, inner)
    server.deliver_smtp(outer, make_message("through-two-aliases"))
    assert subjects(server, u, pw) == ["through-two-aliases"]
    # inner -> outer -> inner would loop: refused when it is created
    r = server.cli("alias", "add", inner, outer)
    assert r.returncode != 0
    assert "lead back to it" in r.stderr, r.stderr
    # and the alias is as it was
    server.deliver_smtp(inner, make_message("still-works"))
    assert subjects(server, u, pw) == ["through-two-aliases", "still-works"]


def test_postmaster_of_every_local_domain(server):
    pm = "postmaster@pm-one.test"
    server.add_user(pm, "pm-secret")
    server.add_domain("pm-two.test")
    # pm-two.test has no postmaster of its own: the fallback takes it
    server.deliver_smtp("postmaster@pm-two.test", make_message("for-pm-two"))
    assert "for-pm-two" in subjects(server, pm, "pm-secret")


def test_alias_users_count_against_max_recipients(servers):
    s = servers.create(max_recipients=2)
    users = [s.new_user("cap")[0] for _ in range(3)]
    alias = "three@" + s.DOMAIN
    s.cli_ok("alias", "add", alias, *users)
    with connect(s) as c:
        rcpts, final = transaction(c, [alias], make_message("too-many"))
        assert rcpts[0].code == 452 and rcpts[0].enhanced == "4.5.3", rcpts
        c.quit()


def test_message_quota_refuses_at_rcpt(server):
    u, pw = server.new_user("qmsg")
    server.cli_ok("quota", "set", u, "--messages", "2")
    server.deliver_smtp(u, make_message("q1"))
    server.deliver_smtp(u, make_message("q2"))
    for lmtp in (False, True):
        with connect(server, lmtp) as c:
            rcpts, _ = transaction(c, [u], make_message("q3"))
            assert rcpts[0].code == 452 and rcpts[0].enhanced == "4.2.2", rcpts
            c.quit()
    assert subjects(server, u, pw) == ["q1", "q2"]
    # room again once a message is deleted
    p = server.login(u, pw)
    assert p.cmd("DELE 1").startswith("+OK")
    assert p.quit().startswith("+OK")
    server.deliver_smtp(u, make_message("q3"))
    assert subjects(server, u, pw) == ["q2", "q3"]


def big(subject, n):
    return make_message(subject, ("x" * 70 + "\r\n") * (n // 72))


def test_octet_quota_refuses_after_data(server):
    u, pw = server.new_user("qoct")
    server.cli_ok("quota", "set", u, "--octets", "5000")
    server.deliver_smtp(u, big("first", 3000))
    with connect(server) as c:
        # under the limit at RCPT, over it with this message
        rcpts, final = transaction(c, [u], big("second", 3000))
        assert rcpts[0].code == 250, rcpts
        assert final[0].code == 452 and final[0].enhanced == "4.2.2", final
        c.quit()
    assert subjects(server, u, pw) == ["first"]
    # a smaller one still fits
    server.deliver_smtp(u, big("small", 1000))
    assert subjects(server, u, pw) == ["first", "small"]


def test_lmtp_quota_per_recipient(server):
    full, fpw = server.new_user("lfull")
    room, rpw = server.new_user("lroom")
    server.cli_ok("quota", "set", full, "--octets", "4000")
    server.deliver_smtp(full, big("before", 2500))
    with connect(server, lmtp=True) as c:
        rcpts, final = transaction(c, [full, room], big("shared", 2500))
        assert [r.code for r in rcpts] == [250, 250], rcpts
        assert final[0].code == 452 and final[0].enhanced == "4.2.2", final
        assert final[1].code == 250, final
        c.quit()
    assert subjects(server, full, fpw) == ["before"]
    assert subjects(server, room, rpw) == ["shared"]


def test_smtp_quota_is_all_or_nothing(server):
    full, fpw = server.new_user("sfull")
    room, rpw = server.new_user("sroom")
    server.cli_ok("quota", "set", full, "--octets", "4000")
    server.deliver_smtp(full, big("before", 2500))
    with connect(server) as c:
        rcpts, final = transaction(c, [room, full], big("shared", 2500))
        assert [r.code for r in rcpts] == [250, 250], rcpts
        # one reply for the message: nobody got it, so a retry makes no duplicate
        assert final[0].code == 452 and final[0].enhanced == "4.2.2", final
        c.quit()
    assert subjects(server, full, fpw) == ["before"]
    assert subjects(server, room, rpw) == []


def test_default_quota_and_own_limit(servers):
    s = servers.create(overrides={"quota": {"messages": "1"}})
    u, pw = s.new_user("dq")
    v, vpw = s.new_user("own")
    s.cli_ok("quota", "set", v, "--messages", "3")
    for user in (u, v):
        s.deliver_smtp(user, make_message("one"))
    with connect(s) as c:
        rcpts, final = transaction(c, [u], make_message("two"))
        assert rcpts[0].code == 452 and rcpts[0].enhanced == "4.2.2", rcpts
        c.quit()
    s.deliver_smtp(v, make_message("two"))
    assert subjects(s, u, pw) == ["one"]
    assert subjects(s, v, vpw) == ["one", "two"]
    # the CLI says where each limit comes from
    out = s.cli_ok("quota", "get", u).stdout
    assert "1" in out and "default" in out.lower(), out


def test_cli_deliver_to_alias_and_quota(server):
    a, apw = server.new_user("cli-a")
    b, bpw = server.new_user("cli-b")
    alias = "cli-team-" + a
    server.cli_ok("alias", "add", alias, a, b)
    r = server.deliver_cli(alias, make_message("by-cli"))
    assert r.returncode == 0, r.stderr
    assert subjects(server, a, apw) == ["by-cli"]
    assert subjects(server, b, bpw) == ["by-cli"]
    server.cli_ok("quota", "set", b, "--messages", "1")
    r = server.deliver_cli(alias, make_message("second"))
    assert r.returncode == 75, r.stderr   # EX_TEMPFAIL: the MTA retries
    assert b"quota" in r.stderr
    assert subjects(server, a, apw) == ["by-cli"]


def test_alias_with_remote_targets(server):
    """An alias may name addresses outside the local domains: the local
    targets get the message at once, the remote ones through the outbound
    queue (docs/outbound.md), over SMTP, LMTP and tern deliver alike. (The
    test servers' queue goes to a closed loopback port: ternserver.py.)"""
    a, apw = server.new_user("remote-a")
    only = "fwd-" + a
    mixed = "mixed-" + a
    server.cli_ok("alias", "add", only, "someone@far-away.example")
    server.cli_ok("alias", "add", mixed, a, "other@far-away.example")
    r = server.cli("alias", "add", "bad-" + a, "ghost@" + server.DOMAIN)
    assert r.returncode == 67, r.stderr   # a local target must exist
    listing = server.cli_ok("alias", "list").stdout
    assert "%s someone@far-away.example" % only in listing
    for lmtp in (False, True):
        with connect(server, lmtp=lmtp) as c:
            rcpts, final = transaction(c, [only, mixed], make_message("mixed-%s" % lmtp))
            assert [x.code for x in rcpts] == [250, 250], rcpts
            assert [f.code for f in final] == ([250, 250] if lmtp else [250]), final
            c.quit()
    assert subjects(server, a, apw) == ["mixed-False", "mixed-True"]
    r = server.deliver_cli(only, make_message("by-cli"))
    assert r.returncode == 0, r.stderr
    # Queued (what becomes of them is test_outbound.py's business).
    log = server.log_text()
    assert log.count("to=<someone@far-away.example> size=") >= 2, log[-3000:]   # SMTP, LMTP
    assert log.count("to=<other@far-away.example> size=") == 2, log[-3000:]
    assert "result=queued" in log
