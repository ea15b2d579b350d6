"""A scripted SMTP server on loopback: the far end of outbound delivery.

Pure Python (socket, ssl, threading), one thread per connection:

    sink = SmtpSink("127.0.0.61", port, cert=crt, key=key, auth=("u", "p"))
    sink.rcpt_reply = {"bad@x.test": "550 5.1.1 no such user",
                       "later@x.test": "451 4.3.0 try later"}
    sink.data_reply = "452 4.3.1 out of space"     # None: 250
    sink.start()
    ... deliver ...
    assert sink.wait_for(1, timeout=10)
    mail_from, rcpts, data, tls = sink.messages[0]
    sink.stop()           # listener and connections closed: the port is free

EHLO offers 8BITMIME, PIPELINING, SIZE (sink.max_size), STARTTLS when a
certificate is given (and TLS is not yet on), and AUTH PLAIN when `auth` is
given (sink.auth_users lists who logged in). sink.require_tls refuses MAIL
before STARTTLS with 530. `data` is the message as it arrived, dot-stuffing
removed, CRLF line ends kept, the final CRLF.CRLF left out.

Scripted replies (a reply is "CODE text"; several lines as a list):
greeting, ehlo_reply (replaces the whole EHLO answer), mail_reply,
rcpt_reply (per address, lower case; others get 250), data_reply (the final
reply after the data). A recipient refused at RCPT is not in the message.
sink.before_data_reply, when set, is called with the index of a message in
sink.messages once it is there, before its 250 is sent (a test can hold
the reply there).

Hostile modes, sink.hostile:
  "endless"   the greeting never ends: "220-..." continuation lines forever
  "no_eol"    the greeting is a line that never ends
  "silent"    accepts the connection and never says anything
  "data_silent"  behaves until the data's end, then never answers
The connection is held until the client leaves or stop() is called.
"""
import base64
import collections
import socket
import ssl
import threading
import time

Message = collections.namedtuple("Message", "mail_from rcpts data tls")

LINE_MAX = 65536


class _Closed(Exception):
    pass


class SmtpSink:
    def __init__(self, host="127.0.0.61", port=25, cert=None, key=None, auth=None,
                 name="sink.test"):
        self.host, self.port, self.name = host, port, name
        self.cert, self.key, self.auth = cert, key, auth
        self.greeting = "220 %s ESMTP sink" % name
        self.ehlo_reply = None
        self.mail_reply = None
        self.rcpt_reply = {}
        self.data_reply = None
        self.before_data_reply = None
        self.max_size = 10 * 1024 * 1024
        self.require_tls = False
        self.hostile = None
        self.messages = []
        self.auth_users = []
        self.connections = 0        # connections accepted
        self.commands = []          # every command line received, in order
        self._cond = threading.Condition()
        self._listener = None
        self._socks = set()
        self._threads = []
        self._stopping = False
        self._ctx = None
        if cert:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(str(cert), str(key))

    # ---------------------------------------------------------------- control

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(16)
        self.port = s.getsockname()[1]
        self._listener, self._stopping = s, False
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        """Closes the listener and every connection and joins the threads."""
        self._stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._cond:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def wait_for(self, n, timeout=10.0):
        """True once at least n messages have arrived, False after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ connections

    def _accept_loop(self):
        while not self._stopping:
            try:
                c, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                self.connections += 1
                self._socks.add(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, sock):
        conn = _Conn(sock)
        try:
            self._session(conn)
        except (_Closed, OSError, ssl.SSLError):
            pass
        finally:
            with self._cond:
                self._socks.discard(sock)
                if conn.sock is not sock:
                    self._socks.discard(conn.sock)
            try:
                conn.sock.close()
            except OSError:
                pass

    def _hold(self, conn):
        """Keeps the connection open, reading and dropping, until it ends."""
        while not self._stopping:
            if not conn.sock.recv(4096):
                return

    def _session(self, conn):
        if self.hostile == "silent":
            return self._hold(conn)
        if self.hostile == "endless":
            n = 0
            while not self._stopping:
                conn.send("220-%s line %d of a greeting that never ends" % (self.name, n))
                n += 1
            return
        if self.hostile == "no_eol":
            conn.sock.sendall(b"220 ")
            while not self._stopping:
                conn.sock.sendall(b"x" * 1024)
            return
        conn.reply(self.greeting)
        if not self.greeting.startswith("2"):
            return self._hold(conn)
        tls = False
        helo = False
        mail_from, rcpts = None, []
        while True:
            line = conn.readline()
            with self._cond:
                self.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                helo, mail_from, rcpts = True, None, []
                if self.ehlo_reply:
                    conn.reply(self.ehlo_reply)
                    continue
                if verb == "HELO":
                    conn.reply("250 %s" % self.name)
                    continue
                caps = [self.name, "8BITMIME", "PIPELINING", "SIZE %d" % self.max_size]
                if self._ctx and not tls:
                    caps.append("STARTTLS")
                if self.auth:
                    caps.append("AUTH PLAIN")
                conn.reply(["250 " + c for c in caps])
            elif verb == "STARTTLS" and self._ctx and not tls:
                conn.reply("220 2.0.0 go ahead")
                conn.starttls(self._ctx)
                with self._cond:
                    self._socks.add(conn.sock)
                tls, helo, mail_from, rcpts = True, False, None, []
            elif verb == "AUTH" and self.auth:
                parts = arg.split()
                if len(parts) < 1 or parts[0].upper() != "PLAIN":
                    conn.reply("504 5.5.4 unknown mechanism")
                    continue
                if len(parts) == 1:
                    conn.reply("334 ")
                    resp = conn.readline()
                else:
                    resp = parts[1]
                try:
                    _, user, password = base64.b64decode(resp).decode().split("\0")
                except (ValueError, UnicodeDecodeError):
                    conn.reply("501 5.5.2 bad response")
                    continue
                if (user, password) == tuple(self.auth):
                    with self._cond:
                        self.auth_users.append(user)
                    conn.reply("235 2.7.0 ok")
                else:
                    conn.reply("535 5.7.8 bad credentials")
            elif verb == "MAIL":
                if not helo:
                    conn.reply("503 5.5.1 EHLO first")
                elif self.require_tls and not tls:
                    conn.reply("530 5.7.0 STARTTLS first")
                elif self.mail_reply:
                    conn.reply(self.mail_reply)
                else:
                    size = [p for p in arg.upper().split() if p.startswith("SIZE=")]
                    if size and int(size[0][5:]) > self.max_size:
                        conn.reply("552 5.3.4 message too big")
                        continue
                    mail_from, rcpts = _path(arg), []
                    conn.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                if mail_from is None:
                    conn.reply("503 5.5.1 MAIL first")
                    continue
                rcpt = _path(arg)
                r = self.rcpt_reply.get(rcpt.lower())
                if r and not r.startswith("2"):
                    conn.reply(r)
                    continue
                rcpts.append(rcpt)
                conn.reply(r or "250 2.1.5 ok")
            elif verb == "DATA":
                if not rcpts:
                    conn.reply("554 5.5.1 no valid recipients")
                    continue
                conn.reply("354 go ahead")
                data = conn.read_data()
                if self.hostile == "data_silent":
                    return self._hold(conn)
                if self.data_reply and not self.data_reply.startswith("2"):
                    conn.reply(self.data_reply)
                else:
                    with self._cond:
                        self.messages.append(Message(mail_from, list(rcpts), data, tls))
                        index = len(self.messages) - 1
                        self._cond.notify_all()
                    if self.before_data_reply is not None:
                        self.before_data_reply(index)
                    conn.reply(self.data_reply or "250 2.0.0 queued")
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                conn.reply("250 2.0.0 ok")
            elif verb == "NOOP":
                conn.reply("250 2.0.0 ok")
            elif verb == "QUIT":
                conn.reply("221 2.0.0 bye")
                return
            else:
                conn.reply("502 5.5.2 unknown command")


def _path(arg):
    """The address of 'FROM:<a> PARAMS' or 'TO:<a>'."""
    lt, gt = arg.find("<"), arg.find(">")
    return arg[lt + 1:gt] if 0 <= lt < gt else arg.split(":", 1)[-1].strip()


class _Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def reply(self, r):
        lines = [r] if isinstance(r, str) else list(r)
        out = []
        for i, text in enumerate(lines):
            code, rest = text[:3], text[4:]
            sep = " " if i == len(lines) - 1 else "-"
            out.append(code + sep + rest)
        self.sock.sendall(("\r\n".join(out) + "\r\n").encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed()
        self.buf += chunk

    def readline_bytes(self):
        while b"\n" not in self.buf:
            if len(self.buf) > LINE_MAX:
                raise _Closed()
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def readline(self):
        return self.readline_bytes().rstrip(b"\r\n").decode("utf-8", errors="replace")

    def read_data(self):
        out = []
        while True:
            line = self.readline_bytes()
            if line == b".\r\n":
                return b"".join(out)
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)

    def starttls(self, ctx):
        # Plaintext pipelined after STARTTLS is discarded, as a server must.
        self.buf = b""
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
