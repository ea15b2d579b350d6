"""tern import / tern export against the real thing: a Maildir that
Dovecot (dovecot-pop3d) has indexed itself, a Courier-style Maildir with its
courierpop3dsizelist, an mbox with X-UIDL headers that Dovecot serves too.
The same mailbox imported into tern must give the same UIDL and LIST answers
(and the same messages) as the server it leaves; an export served by Dovecot
must give the UIDLs tern showed. Also: the --uidl modes, message ids from the
original delivery time (Maildir name, From_ line, Date:), a rerun imports
nothing, progress on a terminal, a UIDL that breaks RFC 1939 stops the import
before anything is written, --batch goes on past a broken mailbox. Runs on
the configured backend (TERN_TEST_BACKEND)."""
import os
import pty
import re
import shutil
import subprocess

import pytest

from .dovecotserver import Dovecot
from .helpers import timeuuid_unix_time
from .ternserver import CLI_TIMEOUT

EX_DATAERR = 65


@pytest.fixture(scope="module")
def dovecot():
    d = Dovecot()
    d.start()
    yield d
    if os.environ.get("TERN_KEEP_DOVECOT") == "1":
        d.stop()   # its directory (and log) stays for a look
    else:
        d.cleanup()


@pytest.fixture(scope="module")
def dovecot_mbox():
    """Dovecot serving each user's INBOX from the mbox file ~/inbox, with
    the X-UIDL headers as UIDLs (pop3_reuse_xuidl), as a site that moved
    from qpopper to Dovecot has it."""
    d = Dovecot(name="tern-test-mbox", mail_location="mbox:~/mail:INBOX=~/inbox",
                settings="pop3_reuse_xuidl = yes\nmbox_read_locks = fcntl\n"
                         "mbox_write_locks = fcntl\n")
    d.start()
    yield d
    d.cleanup()


def message(n, body_lines=3, extra_headers="", date=None):
    """A message with LF line ends (as Maildir and mbox files have them)."""
    date = date or "Tue, 14 Nov 2023 22:%02d:00 +0000" % (n % 60)
    body = "".join("line %d of message %d\n" % (i, n) for i in range(body_lines))
    return ("From: sender%d@remote.test\nTo: user@example.test\nSubject: message %d\n"
            "Date: %s\n%s\n%s" % (n, n, date, extra_headers, body))


def crlf(text):
    return text.replace("\n", "\r\n").encode()


def pop3_view(p):
    """What a POP3 client sees: STAT, LIST, UIDL, and every message."""
    st = p.stat()
    lst = p.list()
    uidl = p.uidl()
    msgs = [p.retr(i) for i, _ in lst]
    p.quit()
    return st, lst, uidl, msgs


def tern_view(server, user, password):
    return pop3_view(server.login(user, password))


def summary(r):
    m = re.search(r"imported (\d+) messages \((\d+) octets\), skipped (\d+) already there, "
                  r"of (\d+) in .*; UIDLs: ([a-z-]+)", r.stdout)
    assert m, "no summary line in %r (stderr %r)" % (r.stdout, r.stderr)
    return {"imported": int(m.group(1)), "octets": int(m.group(2)),
            "skipped": int(m.group(3)), "total": int(m.group(4)), "uidl": m.group(5)}


def write_maildir(path, files):
    """files: [(subdir, name, text)]."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for sub, name, text in files:
        with open(os.path.join(path, sub, name), "w") as f:
            f.write(text)


# --------------------------------------------------------------------------
# Dovecot: its own dovecot-uidlist, then the way back with export

def test_dovecot_maildir_import_and_export(server, dovecot):
    md = dovecot.maildir("dove1")
    files = [
        ("new", "1700000000.M100P1.mx", message(1)),
        ("new", "1700000000.M200P1.mx", message(2, 10)),             # same second
        ("new", "1700000005.M1P2.mx", message(3, 1, "X-Spam: no\n")),
        ("new", "1699999990.M5P3.mx", message(4, 2)),               # older than the others
        ("cur", "1700000100.M7P4.mx:2,S", message(5, 200)),         # already read
        ("new", "1700000200.M8P5.mx", "Subject: from line\n\nFrom here\n>From there\n.\n..\n"),
    ]
    write_maildir(md, files)
    dovecot.own(md)
    # Dovecot writes dovecot-uidlist when it first lists the mailbox.
    before = pop3_view(dovecot.pop3("dove1"))
    assert before[0][0] == len(files)
    assert os.path.exists(os.path.join(md, "dovecot-uidlist"))
    assert all(re.fullmatch(r"[0-9a-f]{16}", u) for _, u in before[2]), before[2]

    user, pw = server.new_user("dove")
    r = server.cli_ok("import", user, "maildir", md)
    s = summary(r)
    assert s == {"imported": len(files), "octets": before[0][1], "skipped": 0,
                 "total": len(files), "uidl": "dovecot"}, r.stdout
    after = tern_view(server, user, pw)
    assert after[0] == before[0]      # STAT
    assert after[1] == before[1]      # LIST: exact CRLF sizes
    assert after[2] == before[2]      # UIDL: the same, in the same order
    assert after[3] == before[3]      # the messages themselves

    # Twice: nothing new, everything skipped, the mailbox unchanged.
    s = summary(server.cli_ok("import", user, "maildir", md))
    assert (s["imported"], s["skipped"]) == (0, len(files))
    assert tern_view(server, user, pw)[2] == before[2]

    # The way out: an export served by Dovecot shows the same UIDLs and sizes.
    out = os.path.join(dovecot.dir, "mail", "dove1x")
    r = server.cli_ok("export", user, "maildir", out)
    assert "exported %d messages" % len(files) in r.stdout
    head = open(os.path.join(out, "dovecot-uidlist")).readline()
    assert re.fullmatch(r"3 V\d+ N%d\n" % (len(files) + 1), head), head
    dovecot.own(out)
    exported = pop3_view(dovecot.pop3("dove1x"))
    assert exported[1] == before[1]
    assert exported[2] == before[2]
    assert exported[3] == before[3]
    # An export never overwrites an earlier one.
    r = server.cli("export", user, "maildir", out)
    assert r.returncode != 0 and "new directory" in r.stderr


def test_export_of_tern_mail_served_by_dovecot(server, dovecot):
    """Mail that came to tern itself (its UIDLs are its message ids),
    exported and served by Dovecot: the same UIDLs, sizes and messages,
    dot-stuffed lines and a last line without its end included."""
    user, pw = server.new_user("leave")
    for body in (b"Subject: one\r\n\r\nhello\r\n",
                 b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n",
                 b"Subject: 8bit\r\n\r\ncaf\xc3\xa9\r\nno line end"):
        r = server.deliver_cli(user, body)
        assert r.returncode == 0, r.stderr
    before = tern_view(server, user, pw)
    assert all(len(u) == 36 for _, u in before[2])
    out = os.path.join(dovecot.dir, "mail", "leave1")
    server.cli_ok("export", user, "maildir", out)
    dovecot.own(out)
    assert pop3_view(dovecot.pop3("leave1")) == before


def test_dovecot_saved_pop3_uidl_wins(server, dovecot):
    """A P<uidl> field in dovecot-uidlist (a UIDL kept from an earlier
    migration) is what Dovecot shows, and what the import keeps."""
    md = dovecot.maildir("dove2")
    write_maildir(md, [("new", "1700001000.M1P1.mx", message(1)),
                       ("new", "1700001001.M1P1.mx", message(2))])
    dovecot.own(md)
    pop3_view(dovecot.pop3("dove2"))
    path = os.path.join(md, "dovecot-uidlist")
    lines = open(path).read().splitlines()
    # "UID [fields] :name": give the first message a saved UIDL.
    first = lines[1].split(" ", 1)
    lines[1] = "%s P%s %s" % (first[0], "legacy-uidl-0001", first[1])
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    dovecot.own(md)
    before = pop3_view(dovecot.pop3("dove2"))
    assert before[2][0] == (1, "legacy-uidl-0001"), before[2]

    user, pw = server.new_user("dovep")
    server.cli_ok("import", user, "maildir", md, "--uidl", "dovecot")
    after = tern_view(server, user, pw)
    assert after[1:] == before[1:]


def test_dovecot_pop3_order_field(server, dovecot):
    """Dovecot lists messages with an O<n> field (POP3 order, kept by a
    migration into Dovecot) first, by it; the import keeps that order."""
    md = dovecot.maildir("dove3")
    write_maildir(md, [("new", "1700002000.M1P1.mx", message(1)),
                       ("new", "1700002001.M1P1.mx", message(2, 7)),
                       ("new", "1700002002.M1P1.mx", message(3, 2))])
    dovecot.own(md)
    first = pop3_view(dovecot.pop3("dove3"))
    path = os.path.join(md, "dovecot-uidlist")
    lines = open(path).read().splitlines()
    # The third message first, then the second; the first has no O field.
    for n, order in ((3, 1), (2, 2)):
        uid, rest = lines[n].split(" ", 1)
        lines[n] = "%s O%d %s" % (uid, order, rest)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    dovecot.own(md)
    before = pop3_view(dovecot.pop3("dove3"))
    assert [u for _, u in before[2]] == [first[2][2][1], first[2][1][1], first[2][0][1]]

    user, pw = server.new_user("doveo")
    server.cli_ok("import", user, "maildir", md)
    after = tern_view(server, user, pw)
    assert after[1:] == before[1:]


# --------------------------------------------------------------------------
# Courier

def test_courier_maildir(server):
    md = str(server.dir / "courier1")
    files = [("cur", "1600000000.111.mx:2,S", message(1)),
             ("cur", "1600000050.222.mx:2,", message(2, 5)),
             ("cur", "1600000050.333.mx:2,", message(3)),
             ("cur", "1600000099.444.mx:2,", message(4))]   # not listed yet
    write_maildir(md, files)
    sizes = [len(crlf(t)) for _, _, t in files]
    # Courier's format: "/3 NEXTUID UIDVALIDITY", then "NAME SIZE UID:UIDV:UTF8".
    with open(os.path.join(md, "courierpop3dsizelist"), "w") as f:
        f.write("/3 8 1234567\n")
        f.write("1600000000.111.mx:2,S %d 5:1234567:0\n" % sizes[0])
        f.write("1600000050.222.mx:2, %d 6:1234567:0\n" % sizes[1])
        f.write("1600000050.333.mx %d 7:1234567:0\n" % sizes[2])
    user, pw = server.new_user("courier")
    s = summary(server.cli_ok("import", user, "maildir", md))
    assert (s["uidl"], s["imported"]) == ("courier", 4)
    st, lst, uidl, msgs = tern_view(server, user, pw)
    assert uidl == [(1, "UID5-1234567"), (2, "UID6-1234567"), (3, "UID7-1234567"),
                    (4, "UID8-1234567")]
    assert lst == [(i + 1, n) for i, n in enumerate(sizes)]
    assert msgs == [crlf(t) for _, _, t in files]


# --------------------------------------------------------------------------
# mbox with X-UIDL

def mbox_text(msgs):
    """mboxo, as MDAs write it: each message after a From_ line, body lines
    "From " quoted as ">From ", a blank line between messages."""
    out = []
    for i, (uidl, text) in enumerate(msgs):
        quoted = re.sub(r"(?m)^From ", ">From ", text)
        hdr = "X-UIDL: %s\n" % uidl if uidl is not None else ""
        out.append("From sender@remote.test Tue Nov 14 22:%02d:00 2023\n%s%s\n" % (i, hdr, quoted))
    return "".join(out)


# UW's c-client (pine, ipop3d) keeps a folder's state in a first message
# that neither it nor Dovecot ever shows.
UW_PSEUDO = ("From MAILER-DAEMON Tue Nov 14 21:00:00 2023\n"
             "Date: Tue, 14 Nov 2023 21:00:00 +0000\n"
             "From: Mail System Internal Data <MAILER-DAEMON@mx.test>\n"
             "Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
             "X-IMAP: 1699995600 0000000003\nStatus: RO\n\n"
             "This text is part of the internal format of your mail folder, and is not\n"
             "a real message.\n\n")


def test_mbox_x_uidl_same_as_dovecot(server, dovecot_mbox):
    """A spool as qpopper, mutt or c-client leave it (X-UIDL, Status: and
    the other fields an mbox server keeps its state in, a quoted From
    line, c-client's internal message first), served by Dovecot and
    imported into tern: the same UIDL and LIST answers, the same messages.
    Serving it makes Dovecot rewrite its state fields in the file; that
    copy imported after the first one imports nothing twice."""
    bodies = [message(1, extra_headers="Status: RO\nX-Status: A\n"),
              "Subject: quoted\nContent-Length: 52\n\nFrom the start\n>From quoted once\nplain\n",
              message(3, 40, "X-Keywords: $Label1\n  $Label2\nX-UID: 17\n"),
              message(4, 2)]
    uidls = ["a1b2c3d4e5f6", "qpopper-000002", "3f2e1d0c", "UID4-1699995600"]
    text = UW_PSEUDO + mbox_text(list(zip(uidls, bodies)))
    pristine = server.dir / "spool.mbox"
    pristine.write_text(text)
    home = dovecot_mbox.maildir("spool1")
    os.makedirs(os.path.join(home, "mail"))
    inbox = os.path.join(home, "inbox")
    with open(inbox, "w") as f:
        f.write(text)
    dovecot_mbox.own(home)
    before = pop3_view(dovecot_mbox.pop3("spool1"))
    assert [u for _, u in before[2]] == uidls, before[2]
    assert b">From the start" in before[3][1]           # Dovecot does not unquote
    assert not any(b"Status:" in m or b"X-UID:" in m for m in before[3])
    rewritten = server.dir / "spool-after-dovecot.mbox"
    shutil.copyfile(inbox, rewritten)
    after = rewritten.read_text()                       # Dovecot's own state, now in the file
    assert after != text and after.count("X-UID: ") == 4 and after.count("Status: RO") == 5

    user, pw = server.new_user("mbox")
    s = summary(server.cli_ok("import", user, "mbox", pristine))
    assert (s["uidl"], s["imported"], s["total"]) == ("x-uidl", 4, 4)
    assert s["octets"] == before[0][1]
    assert tern_view(server, user, pw) == before         # STAT, LIST, UIDL, RETR
    s = summary(server.cli_ok("import", user, "mbox", pristine))
    assert (s["imported"], s["skipped"]) == (0, 4)
    s = summary(server.cli_ok("import", user, "mbox", rewritten))
    assert (s["imported"], s["skipped"]) == (0, 4)
    # the file as Dovecot left it, into another mailbox: the same again
    user2, pw2 = server.new_user("mbox")
    server.cli_ok("import", user2, "mbox", rewritten)
    assert tern_view(server, user2, pw2) == before


def test_mbox_ids_from_the_from_line_else_date(server):
    """--uidl none shows the ids: each keeps its From_ line's time, or its
    Date: when the From_ line has none, in file order."""
    path = server.dir / "times.mbox"
    path.write_text("From a@remote.test Tue Nov 14 22:13:20 2023\nX-UIDL: ignored\n" + message(1) +
                    "\nFrom b@remote.test\n" + message(2, date="Wed, 15 Nov 2023 10:00:00 +0100") +
                    "\nFrom c@remote.test Thu Nov 16 00:00:00 2023\n" + message(3))
    user, pw = server.new_user("mboxt")
    s = summary(server.cli_ok("import", user, "mbox", path, "--uidl", "none"))
    assert (s["uidl"], s["imported"]) == ("none", 3)
    _, _, uidl, msgs = tern_view(server, user, pw)
    assert [timeuuid_unix_time(u) for _, u in uidl] == [1700000000, 1700038800, 1700092800]
    assert b"X-UIDL: ignored" in msgs[0]


def test_maildir_without_legacy_uidls_keeps_time_and_order(server):
    md = str(server.dir / "plain1")
    files = [("cur", "1650000000.M1P1.mx:2,S", message(1)),
             ("cur", "1650000000.M1P2.mx:2,S", message(2)),   # same second
             ("new", "1650000300.M9P1.mx", message(3))]
    write_maildir(md, files)
    user, pw = server.new_user("plain")
    r = server.cli_ok("import", user, "maildir", md)
    # not on a terminal: no progress line (stderr has only the store's log
    # lines, e.g. Cassandra's durability warning), one summary line
    assert "\x1b[K" not in r.stderr and " messages, " not in r.stderr, r.stderr
    assert len(r.stdout.splitlines()) == 1, r.stdout
    s = summary(r)
    assert (s["uidl"], s["imported"]) == ("none", 3)
    _, lst, uidl, msgs = tern_view(server, user, pw)
    assert msgs == [crlf(t) for _, _, t in files]
    times = [timeuuid_unix_time(u) for _, u in uidl]
    assert int(times[0]) == 1650000000 and int(times[1]) == 1650000000
    assert int(times[2]) == 1650000300
    assert times == sorted(times) and len(set(u for _, u in uidl)) == 3


def test_maildir_ids_from_date_when_the_name_has_no_time(server):
    """File names that are no Maildir timestamps (a folder made by hand or
    by a converter): each id takes the message's Date:, in name order."""
    md = str(server.dir / "undated")
    files = [("cur", "msg-a:2,S", message(1, date="Mon, 13 Nov 2023 09:00:00 +0000")),
             ("cur", "msg-b", message(2, date="Tue, 14 Nov 2023 23:13:20 +0100")),
             ("new", "msg-c", message(3, date="14 Nov 2023 22:13:21 -0000"))]
    write_maildir(md, files)
    user, pw = server.new_user("undated")
    server.cli_ok("import", user, "maildir", md)
    _, _, uidl, msgs = tern_view(server, user, pw)
    assert msgs == [crlf(t) for _, _, t in files]
    assert [timeuuid_unix_time(u) for _, u in uidl] == [1699866000, 1700000000, 1700000001]


def test_uidl_modes(server):
    """One Maildir with all three kinds of legacy UIDL: auto takes its
    dovecot-uidlist first; --uidl says which one is kept."""
    md = server.dir / "modes"
    names = ["1700000000.M1P1.mx", "1700000001.M1P1.mx"]
    files = [("cur", names[0] + ":2,S", message(1, extra_headers="X-UIDL: hdr-1\n")),
             ("cur", names[1] + ":2,S", message(2, extra_headers="X-UIDL: hdr-2\n"))]
    write_maildir(str(md), files)
    (md / "dovecot-uidlist").write_text("3 V1700000000 N3\n1 :%s:2,S\n2 :%s:2,S\n" % tuple(names))
    sizes = [len(crlf(t)) for _, _, t in files]
    (md / "courierpop3dsizelist").write_text("/3 3 42\n%s:2,S %d 1:42:0\n%s:2,S %d 2:42:0\n"
                                             % (names[0], sizes[0], names[1], sizes[1]))
    dovecot_uidls = ["000000016553f100", "000000026553f100"]   # %08Xu%08Xv, V = 0x6553f100
    want = {"auto": ("dovecot", dovecot_uidls), "dovecot": ("dovecot", dovecot_uidls),
            "courier": ("courier", ["UID1-42", "UID2-42"]),
            "x-uidl": ("x-uidl", ["hdr-1", "hdr-2"]), "none": ("none", None)}
    for mode, (shown, uidls) in want.items():
        user, pw = server.new_user("mode")
        args = [] if mode == "auto" else ["--uidl", mode]
        s = summary(server.cli_ok("import", user, "maildir", md, *args))
        assert (s["uidl"], s["imported"]) == (shown, 2), (mode, s)
        _, lst, got, _ = tern_view(server, user, pw)
        assert lst == [(1, sizes[0]), (2, sizes[1])], mode
        if uidls is None:       # the new ids, from the file names' times
            assert [timeuuid_unix_time(u) for _, u in got] == [1700000000.000001, 1700000001.000001]
        else:
            assert [u for _, u in got] == uidls, mode
    # a mode whose file the folder does not have
    os.unlink(md / "courierpop3dsizelist")
    user, _ = server.new_user("mode")
    r = server.cli("import", user, "maildir", md, "--uidl", "courier")
    assert r.returncode == EX_DATAERR and "courierpop3dsizelist" in r.stderr, r.stderr


def test_progress_on_a_terminal(server):
    """On a terminal: a progress line on stderr, redrawn in place, with the
    messages and MiB done, the rates and the time left; the summary line
    still goes to stdout."""
    md = str(server.dir / "progress")
    write_maildir(md, [("cur", "17000%05d.M1P1.mx:2,S" % i, message(i, 20)) for i in range(40)])
    user, _ = server.new_user("progress")
    master, slave = pty.openpty()
    p = subprocess.Popen([server.binary, "-c", str(server.config_path), "import", user, "maildir", md],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                         env=server.env())
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:         # EIO: the other end is closed
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    out = p.communicate(timeout=CLI_TIMEOUT)[0].decode()
    assert p.returncode == 0, (out, tty)
    tty = tty.decode()
    assert re.search(r"\r\x1b\[K%s: 40/40 messages, \d+\.\d/\d+\.\d MiB, \d+ msg/s, \d+\.\d MiB/s, "
                     r"\d+:\d\d left" % re.escape(user), tty), repr(tty)
    assert tty.endswith("\r\x1b[K"), repr(tty[-40:])       # the line is cleared at the end
    assert summary(subprocess.CompletedProcess([], 0, out, ""))["imported"] == 40
    assert len(out.splitlines()) == 1


# --------------------------------------------------------------------------
# UIDLs that would break RFC 1939: nothing is written

@pytest.mark.parametrize("case", ["duplicate", "too-long", "bad-character", "clash"])
def test_broken_uidl_stops_before_writing(server, case):
    user, pw = server.new_user("broken")
    if case == "clash":
        assert server.deliver_cli(user, b"Subject: already here\r\n\r\nhello\r\n").returncode == 0
        existing = tern_view(server, user, pw)[2][0][1]
        uidls = ["fine-1", existing]
    else:
        uidls = {"duplicate": ["same-uidl", "other", "same-uidl"],
                 "too-long": ["ok", "x" * 71],
                 "bad-character": ["ok", "caf\u00e9"]}[case]
    path = server.dir / ("broken-%s.mbox" % case)
    path.write_bytes(mbox_text([(u, message(i)) for i, u in enumerate(uidls)]).encode())
    before = tern_view(server, user, pw)
    r = server.cli("import", user, "mbox", path)
    assert r.returncode == EX_DATAERR, (r.stdout, r.stderr)
    assert "nothing was imported" in r.stderr
    assert {"duplicate": "unique", "too-long": "longer than 70", "bad-character": "0x21-0x7E",
            "clash": "already the UIDL"}[case] in r.stderr
    assert tern_view(server, user, pw) == before
    # 70 characters is still fine.
    if case == "too-long":
        path.write_text(mbox_text([("y" * 70, message(1))]))
        server.cli_ok("import", user, "mbox", path)
        assert tern_view(server, user, pw)[2] == [(1, "y" * 70)]


# --------------------------------------------------------------------------
# --batch

def test_batch_goes_on_past_a_broken_mailbox(server):
    u1, pw1 = server.new_user("batch")
    u2, pw2 = server.new_user("batch")
    m1 = server.dir / "b1.mbox"
    m1.write_text(mbox_text([("b1-1", message(1)), ("b1-2", message(2))]))
    md = str(server.dir / "b2")
    write_maildir(md, [("cur", "1700000000.M1P1.mx:2,S", message(3))])
    batch = server.dir / "batch.txt"
    batch.write_text("# address format path\n%s mbox %s\n\n%s maildir %s/missing\n%s maildir %s\n"
                     % (u1, m1, u2, md, u2, md))
    r = server.cli("import", "--batch", batch)
    assert r.returncode == EX_DATAERR, (r.stdout, r.stderr)
    assert "missing is not a Maildir" in r.stderr
    assert "2 mailboxes imported, 1 failed" in r.stdout
    assert [u for _, u in tern_view(server, u1, pw1)[2]] == ["b1-1", "b1-2"]
    assert len(tern_view(server, u2, pw2)[2]) == 1


def test_import_refuses_bad_arguments(server):
    user, _ = server.new_user("args")
    r = server.cli("import", user, "mbox", server.dir / "nope.mbox")
    assert r.returncode == EX_DATAERR and "cannot read" in r.stderr
    r = server.cli("import", user, "mbox", server.dir / "nope.mbox", "--uidl", "dovecot")
    assert r.returncode == EX_DATAERR and "Maildir" in r.stderr
    r = server.cli("import", user, "maildir", server.dir, "--uidl", "bogus")
    assert r.returncode == 64
    r = server.cli("import", "nobody@" + server.DOMAIN, "maildir",
                   str(server.dir / "plain1"))
    assert r.returncode != 0
