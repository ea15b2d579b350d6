"""Protocol helpers for the integration tests: raw line clients for POP3,
SMTP and LMTP that keep the exact bytes on the wire (poplib and smtplib hide
CRLF details and stuffing), message builders and small polling utilities.

Everything here is written from RFC 1939, 2449, 5321 and 2033; nothing in it
knows how tern is implemented.
"""
import os
import re
import socket
import ssl
import time

SANITIZED = os.environ.get("TERN_SANITIZED") == "1"
# Every blocking operation in the suite uses this timeout, so a hung server
# fails a test instead of hanging the run.
TIMEOUT = 40.0 if SANITIZED else 10.0

CRLF = b"\r\n"


class Closed(Exception):
    """The peer closed the connection while a reply was expected."""


def client_tls_context(minimum=None, maximum=None):
    """A client context that accepts the suite's self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


class LineConn:
    """A line-oriented TCP (optionally TLS) connection that never reads past
    what it was asked for, so a STARTTLS/STLS upgrade starts on a clean
    boundary and leftover bytes can be detected."""

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=TIMEOUT, ctx=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        if tls:
            self.sock = (ctx or client_tls_context()).wrap_socket(self.sock)

    # --- raw I/O -------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed("connection closed by server; buffered: %r" % self.buf[:200])
        self.buf += chunk

    def readline(self):
        """One line including its terminator (LF, normally CRLF)."""
        while b"\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_available(self, wait=0.5):
        """Whatever arrives within `wait` seconds (b"" if nothing)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("closed")
            self.buf += chunk
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(old)
        out, self.buf = self.buf, b""
        return out

    def is_closed(self, wait=TIMEOUT):
        """True if the server closes the connection within `wait` seconds
        (data arriving before the close is discarded)."""
        deadline = time.monotonic() + wait
        old = self.sock.gettimeout()
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = self.sock.recv(65536)
                except (socket.timeout, TimeoutError):
                    return False
                except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                    return True
                if not chunk:
                    return True
            return False
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass

    def starttls(self, ctx=None):
        assert self.buf == b"", "server sent bytes after the TLS go-ahead: %r" % self.buf
        self.sock = (ctx or client_tls_context()).wrap_socket(self.sock)

    def abort(self):
        """Close with a TCP RST (SO_LINGER 0): an abrupt disconnect."""
        try:
            raw = self.sock
            if isinstance(raw, ssl.SSLSocket):
                raw = socket.socket(fileno=raw.detach())
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raw.close()
        except OSError:
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# POP3

class Pop3(LineConn):
    """Raw POP3 client. Replies are returned as str without CRLF; multi-line
    bodies as a list of raw wire lines (bytes, CRLF stripped, still
    dot-stuffed) so tests can check stuffing and line endings exactly."""

    def __init__(self, port, **kw):
        super().__init__(port, **kw)
        self.greeting = self.line()

    def line(self):
        raw = self.readline()
        assert raw.endswith(CRLF), "POP3 line not terminated by CRLF: %r" % raw
        return raw[:-2].decode("latin-1")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def read_multi(self):
        """Reads the lines of a multi-line response up to the terminating
        dot line. Returns the raw (still stuffed) lines without CRLF."""
        lines = []
        while True:
            raw = self.readline()
            assert raw.endswith(CRLF), "POP3 line not terminated by CRLF: %r" % raw[:200]
            raw = raw[:-2]
            if raw == b".":
                return lines
            lines.append(raw)

    def multi(self, text):
        """Sends a command expecting a multi-line reply. Returns (status,
        raw_lines); raw_lines is None when the status is -ERR."""
        status = self.cmd(text)
        if status.startswith("+OK"):
            return status, self.read_multi()
        return status, None

    def login(self, user, password):
        r = self.cmd("USER " + user)
        assert r.startswith("+OK"), "USER %s: %s" % (user, r)
        r = self.cmd("PASS " + password)
        assert r.startswith("+OK"), "PASS for %s: %s" % (user, r)
        return r

    def stat(self):
        r = self.cmd("STAT")
        m = re.match(r"^\+OK (\d+) (\d+)(?: |$)", r)
        assert m, "bad STAT reply %r" % r
        return int(m.group(1)), int(m.group(2))

    def list(self):
        status, lines = self.multi("LIST")
        assert status.startswith("+OK"), status
        out = []
        for ln in lines:
            m = re.match(rb"^(\d+) (\d+)$", ln)
            assert m, "bad scan listing line %r" % ln
            out.append((int(m.group(1)), int(m.group(2))))
        return out

    def uidl(self):
        status, lines = self.multi("UIDL")
        assert status.startswith("+OK"), status
        out = []
        for ln in lines:
            m = re.match(rb"^(\d+) ([\x21-\x7e]{1,70})$", ln)
            assert m, "bad unique-id listing line %r" % ln
            out.append((int(m.group(1)), m.group(2).decode()))
        return out

    def retr(self, n):
        """The message as delivered: unstuffed lines joined with CRLF (each
        line, including the last, ends with CRLF)."""
        status, lines = self.multi("RETR %d" % n)
        assert status.startswith("+OK"), "RETR %d: %s" % (n, status)
        return unstuff(lines)

    def quit(self):
        r = self.cmd("QUIT")
        self.close()
        return r


def unstuff(raw_lines):
    out = []
    for ln in raw_lines:
        if ln.startswith(b"."):
            ln = ln[1:]
        out.append(ln + CRLF)
    return b"".join(out)


# --------------------------------------------------------------------------
# SMTP / LMTP

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "ddd-" / "ddd "

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """The RFC 3463 enhanced status code of the first line, or None."""
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s|$)", self.lines[0] if self.lines else "")
        return m.group(1) if m else None

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


class Smtp(LineConn):
    """Raw SMTP/LMTP client."""

    def __init__(self, port, greet=True, **kw):
        super().__init__(port, **kw)
        self.greeting = self.reply() if greet else None

    def reply(self):
        lines = []
        while True:
            raw = self.readline()
            assert raw.endswith(CRLF), "SMTP reply line not terminated by CRLF: %r" % raw
            s = raw[:-2].decode("latin-1")
            m = re.match(r"^(\d{3})([ -])(.*)$", s) or re.match(r"^(\d{3})()()$", s)
            assert m, "malformed SMTP reply line %r" % s
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(int(m.group(1)), lines)

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def ehlo(self, name="client.test", verb="EHLO"):
        r = self.cmd("%s %s" % (verb, name))
        assert r.code == 250, "%s: %r" % (verb, r)
        return r

    def data(self, message):
        """Sends DATA and the dot-stuffed message; returns the final reply."""
        r = self.cmd("DATA")
        assert r.code == 354, "DATA: %r" % r
        self.send(stuff(message) + b".\r\n")
        return self.reply()

    def quit(self):
        try:
            r = self.cmd("QUIT")
        except (Closed, OSError):
            r = None
        self.close()
        return r


def ehlo_keywords(reply):
    """Extension keywords (upper case) of an EHLO reply -> full line."""
    out = {}
    for ln in reply.lines[1:]:
        parts = ln.split()
        if parts:
            out[parts[0].upper()] = ln
    return out


def stuff(message):
    """SMTP/POP3 transparency (RFC 5321 4.5.2) for a CRLF message; makes
    sure the result ends with CRLF."""
    if not message.endswith(CRLF):
        message += CRLF
    lines = message.split(CRLF)[:-1]
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + CRLF for ln in lines)


def make_message(subject, body="Hello.\r\n", sender="sender@remote.test", to="rcpt@example.test",
                 extra_headers=()):
    if isinstance(body, str):
        body = body.encode()
    head = [
        "From: <%s>" % sender,
        "To: <%s>" % to,
        "Subject: %s" % subject,
        "Message-ID: <%s@remote.test>" % re.sub(r"[^A-Za-z0-9.-]", "-", subject),
    ] + list(extra_headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def header_block(msg):
    """The header block (through the empty line) of a CRLF message."""
    i = msg.find(b"\r\n\r\n")
    assert i >= 0, "no header/body separator in %r" % msg[:300]
    return msg[: i + 4]


def headers(msg):
    """List of (name_lower, value) of the header block, unfolded."""
    out = []
    for ln in header_block(msg)[:-4].split(b"\r\n"):
        if ln[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + ln.strip().decode("latin-1"))
            continue
        name, _, value = ln.partition(b":")
        out.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    return out


def wait_until(pred, timeout=TIMEOUT, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


TIMEUUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def timeuuid_timestamp(u):
    """The 60-bit timestamp (100 ns ticks since 1582-10-15) of a v1 UUID."""
    h = u.replace("-", "")
    time_low = int(h[0:8], 16)
    time_mid = int(h[8:12], 16)
    time_hi = int(h[12:16], 16) & 0x0FFF
    return (time_hi << 48) | (time_mid << 32) | time_low


def timeuuid_unix_time(u):
    return (timeuuid_timestamp(u) - 0x01B21DD213814000) / 1e7
