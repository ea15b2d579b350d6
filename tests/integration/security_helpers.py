"""Helpers shared by the test_security_* modules: clients connecting from an
untrusted loopback address, SASL encodings, and timing.

On Linux every 127/8 address is usable without set-up, so a client socket
bound to 127.0.0.2 reaches tern on 127.0.0.1 and is seen as coming from
127.0.0.2, which the default [auth] trusted_networks (127.0.0.1/32, ::1/128)
does not include.
"""
import base64
import socket
import time

from .helpers import TIMEOUT, Pop3, Smtp, client_tls_context

UNTRUSTED = "127.0.0.2"


def _connect(conn, port, source, tls, ctx, timeout):
    conn.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                         source_address=(source, 0))
    conn.sock.settimeout(timeout)
    conn.buf = b""
    if tls:
        conn.sock = (ctx or client_tls_context()).wrap_socket(conn.sock)


class Pop3From(Pop3):
    """A POP3 client whose connection comes from `source`."""

    def __init__(self, port, source=UNTRUSTED, tls=False, ctx=None, timeout=TIMEOUT):
        _connect(self, port, source, tls, ctx, timeout)
        self.greeting = self.line()


class SmtpFrom(Smtp):
    """An SMTP/LMTP client whose connection comes from `source`."""

    def __init__(self, port, source=UNTRUSTED, tls=False, ctx=None, timeout=TIMEOUT, greet=True):
        _connect(self, port, source, tls, ctx, timeout)
        self.greeting = self.reply() if greet else None


def plain(user, password, authzid=""):
    """The base64 SASL PLAIN message (RFC 4616)."""
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def capa_names(p):
    status, lines = p.multi("CAPA")
    assert status.startswith("+OK"), status
    return {ln.decode().strip().upper() for ln in lines if ln.strip()}


def timed(fn, *args):
    """(seconds, result) of fn(*args)."""
    t0 = time.monotonic()
    r = fn(*args)
    return time.monotonic() - t0, r
