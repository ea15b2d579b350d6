"""The alias and quota commands of the CLI (tern alias ..., tern quota ...),
used while the server runs: what they store, what they refuse (one clear
line, a sysexits code), and that quota usage follows deliveries and POP3
deletions exactly. The module's server has a [quota] default of 3 messages."""
import pytest

from .ternserver import EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_USAGE
from .test_cli import assert_mistake, lines

EX_CANTCREAT = 73
EX_UNAVAILABLE = 69


@pytest.fixture(scope="module")
def qserver(module_servers):
    return module_servers.create(overrides={"quota": {"messages": "3"}})


def quota_lines(server, addr):
    out = lines(server.cli_ok("quota", "get", addr).stdout)
    assert len(out) == 2, out
    return out


# --------------------------------------------------------------------------
# aliases

def test_alias_add_list_del(qserver):
    a, _ = qserver.new_user("al-a")
    b, _ = qserver.new_user("al-b")
    alias = "team@" + qserver.DOMAIN
    qserver.cli_ok("alias", "add", alias, a, b)
    assert "%s %s,%s" % (alias, a, b) in lines(qserver.cli_ok("alias", "list").stdout)
    # add again: the targets are added to the alias, duplicates folded
    c, _ = qserver.new_user("al-c")
    qserver.cli_ok("alias", "add", alias, b.upper(), c)
    assert "%s %s,%s,%s" % (alias, a, b, c) in lines(qserver.cli_ok("alias", "list").stdout)
    qserver.cli_ok("alias", "del", alias)
    assert not any(ln.startswith(alias + " ") for ln in
                   lines(qserver.cli_ok("alias", "list").stdout))
    r = qserver.cli("alias", "del", alias)
    assert r.returncode == EX_NOUSER
    assert_mistake(r, "unknown alias", alias)


def test_alias_list_is_sorted_and_nests(qserver):
    u, _ = qserver.new_user("nest")
    d = qserver.DOMAIN
    qserver.cli_ok("alias", "add", "mm-inner@" + d, u)
    qserver.cli_ok("alias", "add", "zz-outer@" + d, "mm-inner@" + d)
    qserver.cli_ok("alias", "add", "aa-first@" + d, "zz-outer@" + d)
    names = [ln.split(" ", 1)[0] for ln in lines(qserver.cli_ok("alias", "list").stdout)]
    assert names == sorted(names)
    assert {"aa-first@" + d, "mm-inner@" + d, "zz-outer@" + d} <= set(names)


@pytest.mark.parametrize("case", ["not-local", "is-user", "unknown-target", "self", "loop",
                                  "bad-address", "too-deep"])
def test_alias_add_refused(qserver, case):
    d = qserver.DOMAIN
    u, _ = qserver.new_user("ref")
    if case == "not-local":
        r = qserver.cli("alias", "add", "x@elsewhere.test", u)
        assert r.returncode == EX_DATAERR
        assert_mistake(r, "elsewhere.test", "not a local domain")
    elif case == "is-user":
        r = qserver.cli("alias", "add", u, "postmaster@" + d)
        assert r.returncode == EX_CANTCREAT
        assert_mistake(r, u, "is a user")
    elif case == "unknown-target":
        r = qserver.cli("alias", "add", "x1@" + d, u, "ghost@" + d)
        assert r.returncode == EX_NOUSER
        assert_mistake(r, "unknown target", "ghost@" + d)
    elif case == "self":
        r = qserver.cli("alias", "add", "me@" + d, "me@" + d)
        assert r.returncode == EX_DATAERR
        assert_mistake(r, "itself")
    elif case == "loop":
        qserver.cli_ok("alias", "add", "ring-a@" + d, u)
        qserver.cli_ok("alias", "add", "ring-b@" + d, "ring-a@" + d)
        r = qserver.cli("alias", "add", "ring-a@" + d, "ring-b@" + d)
        assert r.returncode == EX_DATAERR
        assert_mistake(r, "ring-a@" + d, "lead back")
        # the alias is left as it was
        assert "ring-a@%s %s" % (d, u) in lines(qserver.cli_ok("alias", "list").stdout)
    elif case == "bad-address":
        r = qserver.cli("alias", "add", "no spaces@" + d, u)
        assert r.returncode == EX_DATAERR
        assert_mistake(r, "invalid address")
    elif case == "too-deep":
        prev = u
        for i in range(8, 0, -1):
            qserver.cli_ok("alias", "add", "deep%d@%s" % (i, d), prev)
            prev = "deep%d@%s" % (i, d)
        r = qserver.cli("alias", "add", "deep0@" + d, prev)
        assert r.returncode == EX_DATAERR
        assert_mistake(r, "8 aliases deep")
    if case not in ("loop", "too-deep"):
        assert not any(ln.startswith(("x@", "x1@", "me@"))
                       for ln in lines(qserver.cli_ok("alias", "list").stdout))


def test_alias_usage_errors(qserver):
    for args in (("alias",), ("alias", "add", "only@" + qserver.DOMAIN),
                 ("alias", "del"), ("alias", "frob", "x@y.test")):
        r = qserver.cli(*args)
        assert r.returncode == EX_USAGE, (args, r)
        assert "usage:" in r.stderr


def test_user_and_alias_share_no_address(qserver):
    d = qserver.DOMAIN
    u, _ = qserver.new_user("share")
    qserver.cli_ok("alias", "add", "shared@" + d, u)
    r = qserver.cli("user", "add", "shared@" + d, input="pw\n")
    assert r.returncode == EX_CANTCREAT
    assert_mistake(r, "shared@" + d, "is an alias")
    qserver.cli_ok("alias", "del", "shared@" + d)
    qserver.cli_ok("user", "add", "shared@" + d, input="pw\n")


def test_domain_with_aliases_cannot_be_deleted(qserver):
    u, _ = qserver.new_user("dom")
    qserver.cli_ok("domain", "add", "aliasonly.test")
    qserver.cli_ok("alias", "add", "info@aliasonly.test", u)
    r = qserver.cli("domain", "del", "aliasonly.test")
    assert r.returncode == EX_UNAVAILABLE
    assert_mistake(r, "aliasonly.test", "aliases")
    qserver.cli_ok("alias", "del", "info@aliasonly.test")
    qserver.cli_ok("domain", "del", "aliasonly.test")


def test_deleted_target_is_kept_in_the_alias(qserver):
    """Deleting a user refuses nothing: an alias naming it keeps the row
    (delivery skips targets that no longer exist)."""
    d = qserver.DOMAIN
    a, _ = qserver.new_user("keep-a")
    b, _ = qserver.new_user("keep-b")
    qserver.cli_ok("alias", "add", "keep@" + d, a, b)
    qserver.cli_ok("user", "del", a)
    assert "keep@%s %s,%s" % (d, a, b) in lines(qserver.cli_ok("alias", "list").stdout)


# --------------------------------------------------------------------------
# quotas

def test_quota_get_shows_usage_and_where_limits_come_from(qserver):
    u, pw = qserver.new_user("qget")
    assert quota_lines(qserver, u) == ["messages: used 0, limit 3 (default)",
                                       "octets: used 0, limit none"]
    assert qserver.deliver_cli(u, b"Subject: one\n\nbody\n").returncode == 0
    p = qserver.login(u, pw)
    count, size = p.stat()
    p.quit()
    assert count == 1
    assert quota_lines(qserver, u) == ["messages: used 1, limit 3 (default)",
                                       "octets: used %d, limit none" % size]
    qserver.cli_ok("quota", "set", u, "--messages", "10", "--octets", "2K")
    assert quota_lines(qserver, u) == ["messages: used 1, limit 10 (own)",
                                       "octets: used %d, limit 2048 (own)" % size]
    # one limit at a time; the other is kept
    qserver.cli_ok("quota", "set", u, "--octets", "1M")
    assert quota_lines(qserver, u)[0] == "messages: used 1, limit 10 (own)"
    assert quota_lines(qserver, u)[1] == "octets: used %d, limit 1048576 (own)" % size
    qserver.cli_ok("quota", "set", u, "--messages", "none", "--octets", "none")
    assert quota_lines(qserver, u) == ["messages: used 1, limit 3 (default)",
                                       "octets: used %d, limit none" % size]


def test_quota_refuses_delivery_and_usage_follows_deletes(qserver):
    u, pw = qserver.new_user("qfull")
    for i in range(3):
        assert qserver.deliver_cli(u, b"Subject: m%d\n\nbody\n" % i).returncode == 0
    r = qserver.deliver_cli(u, b"Subject: one too many\n\nbody\n")
    assert r.returncode == EX_TEMPFAIL, r
    assert b"over quota" in r.stderr
    assert quota_lines(qserver, u)[0] == "messages: used 3, limit 3 (default)"
    p = qserver.login(u, pw)
    assert p.stat()[0] == 3
    assert p.cmd("DELE 1").startswith("+OK")
    p.quit()
    assert quota_lines(qserver, u)[0] == "messages: used 2, limit 3 (default)"
    assert qserver.deliver_cli(u, b"Subject: fits again\n\nbody\n").returncode == 0
    # an own limit above the default lets more in
    qserver.cli_ok("quota", "set", u, "--messages", "4")
    assert qserver.deliver_cli(u, b"Subject: fourth\n\nbody\n").returncode == 0
    assert qserver.deliver_cli(u, b"Subject: fifth\n\nbody\n").returncode == EX_TEMPFAIL
    assert qserver.count(u, pw) == 4


def test_quota_octets_limit(qserver):
    u, pw = qserver.new_user("qoct")
    qserver.cli_ok("quota", "set", u, "--messages", "100")
    assert qserver.deliver_cli(u, b"Subject: first\n\n" + b"x" * 500 + b"\n").returncode == 0
    used = int(quota_lines(qserver, u)[1].split()[2].rstrip(","))
    qserver.cli_ok("quota", "set", u, "--octets", str(used + 10))
    r = qserver.deliver_cli(u, b"Subject: second\n\nlonger than ten octets\n")
    assert r.returncode == EX_TEMPFAIL and b"over quota" in r.stderr
    assert qserver.count(u, pw) == 1


@pytest.mark.parametrize("args,words", [
    (("--messages", "0"), ["--messages", "at least 1"]),
    (("--messages", "2K"), ["--messages"]),
    (("--octets", "-5"), ["--octets"]),
    (("--octets", "12X"), ["--octets", "K, M or G"]),
    (("--octets", "99999999999999999999"), ["--octets"]),
])
def test_quota_set_bad_values(qserver, args, words):
    u, _ = qserver.new_user("qbad")
    r = qserver.cli("quota", "set", u, *args)
    assert r.returncode == EX_USAGE
    assert_mistake(r, *words)
    assert quota_lines(qserver, u)[0] == "messages: used 0, limit 3 (default)"


def test_quota_unknown_user_and_usage(qserver):
    ghost = "ghost-q@" + qserver.DOMAIN
    for args in (("quota", "get", ghost), ("quota", "set", ghost, "--messages", "5")):
        r = qserver.cli(*args)
        assert r.returncode == EX_NOUSER
        assert_mistake(r, "unknown user", ghost)
    for args in (("quota",), ("quota", "get"), ("quota", "set", ghost),
                 ("quota", "set", ghost, "--messages"), ("quota", "set", ghost, "--bogus", "1")):
        r = qserver.cli(*args)
        assert r.returncode == EX_USAGE, (args, r)
