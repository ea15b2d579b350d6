"""What one client can cost the server: replies it never reads, and a
reader that stops.

A client that pipelines commands and never reads must not make the server
buffer replies without bound: reading stops while a fixed amount of output
is unsent, so the server's memory grows by at most a few MiB per session
(measured as the VmRSS of the server process, before and while flooding,
after a warm-up of the same kind). And a client that stops taking output
(a RETR it no longer reads, a flood it never reads) is ended by the idle
timeout like one that stops sending, over plain TCP, POP3S and STLS.
"""
import re
import socket
import ssl
import time

import pytest

from .helpers import CRLF, SANITIZED, TIMEOUT, Pop3, Smtp, client_tls_context, make_message
from .ternserver import BACKEND

MIB = 1024 * 1024
# Growth allowed per flooding session. The output cap is 256 KiB and the
# input cap 16-256 KiB, so a few MiB is generous; under the sanitizers the
# allocator keeps freed memory in quarantine, hence the larger bound there.
RSS_BOUND = (48 if SANITIZED else 8) * MIB
STALL = 2.0          # the flood is over when the server takes nothing for this long
SMALL_RCVBUF = 16384  # a client that reads nothing needs no more


def vmrss(server):
    with open("/proc/%d/status" % server.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for the server")


def tcp_rmem_max():
    try:
        with open("/proc/sys/net/ipv4/tcp_rmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 0


def small_socket(port, tls=False, rcvbuf=SMALL_RCVBUF):
    """A connection whose receive buffer is small from the start (set
    before connect, so the window never grows)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", port))
    if tls:
        s = client_tls_context().wrap_socket(s)
    return s


class SmallPop3(Pop3):
    """The suite's POP3 client on a small_socket."""

    def __init__(self, port, tls=False):
        self.sock = small_socket(port, tls)
        self.buf = b""
        self.greeting = self.line()


class Flood:
    """Pipelines `total` octets of `line` on a connected socket, never
    reading, as fast as the server takes them."""

    def __init__(self, sock, line, total):
        self.sock = sock
        self.sock.setblocking(False)
        self.chunk = line * max(1, 65536 // len(line))
        self.total = total
        self.sent = 0

    def pump(self):
        if self.sent >= self.total:
            return False
        try:
            n = self.sock.send(self.chunk[: min(len(self.chunk), self.total - self.sent)])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return False
        self.sent += n
        return n > 0


def run_floods(server, floods):
    """Pumps every flood until all is sent or the server has taken nothing
    for STALL seconds, sampling the server's RSS; then samples one more
    second (the server finishing what it has read). Returns the peak."""
    peak = vmrss(server)
    last = time.monotonic()
    while any(f.sent < f.total for f in floods) and time.monotonic() - last < STALL:
        progress = False
        for f in floods:
            progress = f.pump() or progress
        if progress:
            last = time.monotonic()
        else:
            time.sleep(0.005)
        peak = max(peak, vmrss(server))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        peak = max(peak, vmrss(server))
        time.sleep(0.05)
    return peak


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def smtp_socket(server):
    return small_socket(server.smtp_port)


def pop3_logged_in(server, user, password):
    p = SmallPop3(server.pop3_port)
    p.login(user, password)
    return p.sock


def measure(server, make_socket, line, total, sessions=1, warmup=256 * 1024):
    """RSS growth while `sessions` clients flood `line` (after a warm-up
    flood of the same kind); returns (growth, octets taken per client)."""
    warm = [make_socket() for _ in range(sessions)]
    run_floods(server, [Flood(s, line, warmup) for s in warm])
    close_all(warm)
    time.sleep(0.5)
    before = vmrss(server)
    socks = [make_socket() for _ in range(sessions)]
    floods = [Flood(s, line, total) for s in socks]
    try:
        peak = run_floods(server, floods)
        assert server.proc.poll() is None, server.log_tail()
        return peak - before, [f.sent for f in floods]
    finally:
        close_all(socks)


def assert_cost(growth, sessions, what):
    assert growth < RSS_BOUND * sessions, (
        "%s grew the server by %.1f MiB (bound %.0f MiB)" % (what, growth / MIB,
                                                            RSS_BOUND * sessions / MIB))


# --------------------------------------------------------------------------
# (a) floods that never read

@pytest.fixture(scope="module")
def flood_server(module_servers):
    return module_servers.create(name="flood")


@pytest.fixture(scope="module")
def big_mailbox(flood_server):
    """A user with 300 messages: LIST and UIDL answer a few KiB each."""
    addr, pw, _ = flood_server.mailbox(300, tag="listing")
    return addr, pw


def test_smtp_help_flood_before_login(flood_server):
    total = 13 * MIB
    growth, sent = measure(flood_server, lambda: smtp_socket(flood_server), b"HELP\r\n", total)
    assert_cost(growth, 1, "13 MiB of pipelined HELP")
    if tcp_rmem_max() < total - MIB:
        # the server stopped reading: the kernel buffers hold the rest
        assert sent[0] < total, sent
    # the server is fine and answers others
    with Smtp(flood_server.smtp_port) as c:
        assert c.cmd("HELP").code == 214
        c.quit()


def test_pop3_capa_flood_before_login(flood_server):
    growth, _ = measure(flood_server, lambda: small_socket(flood_server.pop3_port),
                        b"CAPA\r\n", 2 * MIB)
    assert_cost(growth, 1, "2 MiB of pipelined CAPA")


@pytest.mark.parametrize("command", ["LIST", "UIDL"])
def test_pop3_listing_flood(flood_server, big_mailbox, command):
    user, pw = big_mailbox
    # 64 KiB of commands would be some 50-150 MiB of listings
    growth, _ = measure(flood_server, lambda: pop3_logged_in(flood_server, user, pw),
                        (command + "\r\n").encode(), 64 * 1024, warmup=8192)
    assert_cost(growth, 1, "pipelined %s on 300 messages" % command)
    p = flood_server.login(user, pw)
    assert len(p.list()) == 300
    p.quit()


@pytest.mark.skipif(SANITIZED, reason="the sanitizers' quarantine keeps every freed piece")
@pytest.mark.skipif(BACKEND != "sqlite", reason="on Cassandra the 16 worker threads' allocator"
                    " arenas keep the listings themselves (2 MB a login here), which hides the reply")
def test_a_listing_larger_than_the_output_cap_is_held_in_pieces(servers):
    """8 clients each ask for the UIDL of a 20,000-message mailbox (about
    900 kB) and read none of it: the server queues one piece of 64 KiB at
    a time, not the listing, so it holds a small part of 8 x 900 kB."""
    srv = servers.create(name="long-listing")
    n = 20000
    addr, pw, _ = srv.mailbox(n, "huge")
    growth, _ = measure(srv, lambda: pop3_logged_in(srv, addr, pw), b"UIDL\r\n", 60,
                        sessions=8, warmup=6)
    bound = 3 * MIB  # 8.2 MiB when the listing was queued whole
    print("8 unread UIDLs of %d messages: %.1f MiB" % (n, growth / MIB))
    assert growth < bound, "8 unread UIDLs of %d messages grew the server by %.1f MiB" % (
        n, growth / MIB)
    p = srv.login(addr, pw)
    assert len(p.uidl()) == n
    p.quit()


def test_several_flooders_at_once(flood_server, big_mailbox):
    user, pw = big_mailbox
    socks = [smtp_socket(flood_server), smtp_socket(flood_server),
             small_socket(flood_server.pop3_port), pop3_logged_in(flood_server, user, pw)]
    lines = [b"HELP\r\n", b"NOOP\r\n", b"CAPA\r\n", b"UIDL\r\n"]
    totals = [4 * MIB, 4 * MIB, 2 * MIB, 32 * 1024]
    warm = smtp_socket(flood_server)
    run_floods(flood_server, [Flood(warm, b"HELP\r\n", 65536)])
    warm.close()
    time.sleep(0.5)
    before = vmrss(flood_server)
    try:
        peak = run_floods(flood_server, [Flood(s, l, t) for s, l, t in zip(socks, lines, totals)])
    finally:
        close_all(socks)
    assert_cost(peak - before, len(socks), "four flooding sessions")


# --------------------------------------------------------------------------
# (b) a reader that stops, (c) a flooder that never reads

MESSAGE_SIZE = 5 * MIB


@pytest.fixture(scope="module")
def idle_server(module_servers):
    return module_servers.create(name="idle", max_message_size=8 * MIB,
                                 overrides={"pop3": {"idle_timeout": "2s"},
                                            "smtp": {"idle_timeout": "2s"},
                                            "limits": {"idle_timeout_preauth": "2s"}})


@pytest.fixture(scope="module")
def big_message(idle_server):
    addr, pw = idle_server.new_user("retr")
    line = b"x" * 998 + CRLF
    body = line * (MESSAGE_SIZE // len(line))
    msg = make_message("big", body, to=addr)
    idle_server.deliver_smtp(addr, msg)
    p = idle_server.login(addr, pw)
    size = dict(p.list())[1]
    p.quit()
    assert size >= MESSAGE_SIZE - 2000
    return addr, pw, size


def idle_timeouts(server, proto):
    """How many sessions of proto the server has logged as idle timeouts."""
    return len(re.findall(r"\bsession=%s#\d+ msg=\"idle timeout\"" % proto, server.log_text()))


def wait_idle_timeouts(server, proto, n, timeout):
    deadline = time.monotonic() + timeout
    while idle_timeouts(server, proto) < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_until_closed(sock, timeout):
    """Reads as fast as possible until the server's close shows (EOF or a
    reset); returns the octets read, or None if it never closed."""
    sock.setblocking(True)
    sock.settimeout(0.5)
    got = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(262144)
        except (socket.timeout, TimeoutError):
            continue
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            return got
        if not chunk:
            return got
        got += len(chunk)
    return None


@pytest.mark.parametrize("mode", ["plain", "pop3s", "stls"])
def test_stalled_retr_is_timed_out(idle_server, big_message, mode):
    user, pw, size = big_message
    before = idle_timeouts(idle_server, "pop3")
    p = SmallPop3(idle_server.pop3s_port if mode == "pop3s" else idle_server.pop3_port,
                  tls=mode == "pop3s")
    if mode == "stls":
        assert p.cmd("STLS").startswith("+OK")
        p.starttls()
    p.login(user, pw)
    t0 = time.monotonic()
    p.send("RETR 1\r\n")
    # never read: the server must give up within a generous bound
    assert wait_idle_timeouts(idle_server, "pop3", before + 1, 30), idle_server.log_tail()
    got = read_until_closed(p.sock, 30)
    elapsed = time.monotonic() - t0
    assert got is not None, "the server never closed the stalled RETR"
    assert got < size, "the whole message arrived (%d octets): not a stall" % got
    assert elapsed < 45, elapsed
    p.close()
    # and it still serves another session, the same message in full
    q = idle_server.login(user, pw)
    assert len(q.retr(1)) >= MESSAGE_SIZE - 2000
    q.quit()


@pytest.mark.parametrize("proto", ["smtp", "pop3"])
def test_flood_that_never_reads_is_timed_out(idle_server, proto):
    """Pipelining without reading, and still sending a command every half
    second: the server stops reading, and once the client has taken no
    output for the idle timeout it is closed."""
    before = idle_timeouts(idle_server, proto)
    port = idle_server.smtp_port if proto == "smtp" else idle_server.pop3_port
    line = b"HELP\r\n" if proto == "smtp" else b"CAPA\r\n"
    sock = small_socket(port)
    f = Flood(sock, line, 2 * MIB)
    t0 = time.monotonic()
    last = t0
    while f.sent < f.total and time.monotonic() - last < 1.0:
        if f.pump():
            last = time.monotonic()
        else:
            time.sleep(0.005)
    closed = False
    deadline = t0 + 30
    while time.monotonic() < deadline and idle_timeouts(idle_server, proto) <= before:
        try:
            sock.send(line)
        except (BlockingIOError, ssl.SSLWantWriteError):
            pass
        except OSError:
            closed = True
            break
        time.sleep(0.5)
    # while it was still sending: a silent client is timed out anyway
    assert closed or idle_timeouts(idle_server, proto) > before, (
        "a flooder that never reads was not timed out:\n" + idle_server.log_tail())
    assert wait_idle_timeouts(idle_server, proto, before + 1, 5), idle_server.log_tail()
    assert closed or read_until_closed(sock, 30) is not None
    sock.close()
    # others are served
    if proto == "smtp":
        with Smtp(idle_server.smtp_port) as c:
            assert c.cmd("NOOP").code == 250
    else:
        with Pop3(idle_server.pop3_port) as p:
            assert p.cmd("NOOP").startswith(("+OK", "-ERR"))


def test_line_as_long_as_the_cap_when_input_cap_equals_it(servers):
    # The settings allow input_buffer_preauth = line_max_preauth: a line of
    # exactly line_max octets (CR included) plus its LF must still be read
    # whole and answered, not wait for the command timeout.
    s = servers.create(overrides={"limits": {"line_max_preauth": "512",
                                             "input_buffer_preauth": "512"}})
    with socket.create_connection(("127.0.0.1", s.pop3_port), timeout=TIMEOUT) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"+OK")
        c.sendall(b"X" * 511 + b"\r\n")
        t0 = time.monotonic()
        line = f.readline()
        assert line.startswith(b"-ERR"), line
        assert time.monotonic() - t0 < 10, "the line waited for the command timeout"
