"""The server under test, as the integration suite drives it.

The suite starts the real `tern` binary ($TERN_BIN, default build/tern) on
loopback with a temporary data_dir and free ports, and talks to it with real
clients. A `TernServer` owns one configuration and one process; it can be
started, stopped (SIGTERM, must exit 0), killed (SIGKILL) and restarted on the
same ports and data.

After every test each running server is checked: a server that died, or whose
stderr shows a sanitizer report (TERN_SANITIZED=1), fails the test.
"""
import os
import uuid
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import SANITIZED, TIMEOUT, Pop3, Smtp, make_message

REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 30.0 if SANITIZED else 5.0
CLI_TIMEOUT = 120.0 if SANITIZED else 30.0
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer")

# EX_* from sysexits.h
EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 67, 75, 78

_RUNNING = []  # servers started and not stopped, checked after each test


def binary_path():
    return Path(os.environ.get("TERN_BIN") or (REPO / "build" / "tern"))


def built_tool(name):
    """A test-only program of tests/unit, from the build tree of TERN_BIN."""
    path = binary_path().parent / "tests" / "unit" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("%s not found at %s (it is built with tern: cmake --build build)"
                    % (name, path))
    return path


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def require_tool(name):
    path = shutil.which(name)
    if not path:
        pytest.fail("required tool '%s' is not installed (scripts/install-deps.sh installs it)" % name)
    return path


def check_sanitizer_output(text, what):
    """Under TERN_SANITIZED=1 a sanitizer report from any tern process fails."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if SANITIZED and text and SANITIZER_RE.search(text):
        raise AssertionError("sanitizer report from %s:\n%s" % (what, text[-6000:]))


def render_ini(sections):
    out = []
    for name, keys in sections.items():
        if keys is None:
            continue
        out.append("[%s]" % name)
        for k, v in keys.items():
            if v is not None:
                out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


# TERN_TEST_BACKEND=cassandra runs the whole suite against a single
# Cassandra node (started by the session fixture in conftest.py).
BACKEND = os.environ.get("TERN_TEST_BACKEND", "sqlite")
# Tests that reach into the SQLite file under data_dir (locks, hashes).
sqlite_only = pytest.mark.skipif(BACKEND != "sqlite", reason="inspects the SQLite store file")


class TernServer:
    DOMAIN = "example.test"

    def __init__(self, binary, workdir, cert=None, pop3_ids="messageid", tls=True,
                 overrides=None, hostname="tern.test", max_message_size=200000,
                 max_recipients=5):
        self.binary = str(binary)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.config_path = self.dir / "tern.conf"
        self.log_path = self.dir / "server.log"
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        (self.smtp_port, self.smtps_port, self.lmtp_port,
         self.pop3_port, self.pop3s_port) = free_ports(5)
        self.tls = bool(tls and cert)
        self.sections = {
            "server": {"hostname": hostname, "data_dir": str(self.data_dir)},
            "smtp": {"listen": "127.0.0.1:%d" % self.smtp_port,
                     "max_message_size": str(max_message_size),
                     "max_recipients": str(max_recipients)},
            "lmtp": {"listen": "127.0.0.1:%d" % self.lmtp_port},
            "pop3": {"listen": "127.0.0.1:%d" % self.pop3_port},
            "store": {"backend": "sqlite", "pop3_ids": pop3_ids},
            # Mail for other domains (an alias's remote targets) goes to a
            # port nothing listens on: refused at once and kept queued, so
            # no test depends on the machine's DNS. test_outbound.py
            # replaces this with its own DNS server and sink.
            "relay": {"smarthost": "127.0.0.1:%d" % free_ports(1)[0]},
        }
        if BACKEND == "cassandra":
            # One keyspace per server keeps the servers of a run apart.
            self.sections["store"]["backend"] = "cassandra"
            self.sections["cassandra"] = {
                "contact_points": os.environ.get("TERN_CASSANDRA_CONTACT", "127.0.0.1"), "local_dc": "dc1",
                "keyspace": "it_%s" % uuid.uuid4().hex[:16], "replication": "dc1:1"}
        if self.tls:
            self.sections["smtp"]["listen_tls"] = "127.0.0.1:%d" % self.smtps_port
            self.sections["pop3"]["listen_tls"] = "127.0.0.1:%d" % self.pop3s_port
            self.sections["tls"] = {"cert": str(cert[0]), "key": str(cert[1])}
        for sec, keys in (overrides or {}).items():
            if keys is None:
                self.sections.pop(sec, None)
                continue
            self.sections.setdefault(sec, {}).update(keys)
        self.proc = None
        self.domains = set()
        self.users = {}
        self._user_seq = 0
        self._log_checked = 0
        self.write_config()

    # --- configuration and process -------------------------------------
    def write_config(self, text=None):
        self.config_path.write_text(text if text is not None else render_ini(self.sections))

    def listen_ports(self):
        ports = []
        for sec in ("smtp", "lmtp", "pop3", "submission"):
            for key in ("listen", "listen_tls"):
                v = self.sections.get(sec, {}).get(key)
                if v:
                    for hp in v.split(","):
                        ports.append(int(hp.strip().rsplit(":", 1)[1]))
        return ports

    def env(self):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def start(self, wait=True):
        assert self.proc is None, "server already running"
        self._log = open(self.log_path, "ab")
        self._log.write(b"---- start ----\n")
        self._log.flush()
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config_path), "serve"],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, env=self.env())
        _RUNNING.append(self)
        if wait:
            self.wait_ready()
        return self

    def start_timeout(self):
        # A new keyspace is created at start-up, and each schema change
        # waits until every node (both datacenters) agrees on it: on a slow
        # machine that takes longer than a listener's start.
        if self.sections["store"].get("backend") == "cassandra":
            return max(TIMEOUT, 90.0)
        return TIMEOUT

    def wait_ready(self):
        timeout = self.start_timeout()
        deadline = time.monotonic() + timeout
        for port in self.listen_ports():
            while True:
                if self.proc.poll() is not None:
                    rc = self.proc.returncode
                    self._forget()
                    pytest.fail("tern serve exited with %s during start-up:\n%s" % (rc, self.log_tail()))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("tern serve did not accept on port %d within %ss:\n%s"
                                    % (port, timeout, self.log_tail()))
                    time.sleep(0.02)

    def _forget(self):
        if self in _RUNNING:
            _RUNNING.remove(self)
        self.proc = None
        try:
            self._log.close()
        except Exception:
            pass

    def stop(self, sig=signal.SIGTERM):
        """Stops the server with `sig`; it must exit 0 within STOP_TIMEOUT."""
        if self.proc is None:
            return
        proc = self.proc
        if proc.poll() is not None:
            rc = proc.returncode
            self._forget()
            raise AssertionError("tern serve had already exited (rc %s):\n%s" % (rc, self.log_tail()))
        proc.send_signal(sig)
        try:
            rc = proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self._forget()
            raise AssertionError("tern serve did not exit within %ss of %s:\n%s"
                                 % (STOP_TIMEOUT, signal.Signals(sig).name, self.log_tail()))
        self._forget()
        assert rc == 0, "tern serve exited %s after %s (want 0):\n%s" % (
            rc, signal.Signals(sig).name, self.log_tail())
        self.check_sanitizer()

    def kill9(self):
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self._forget()

    def restart(self):
        self.stop()
        self.start()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def check_sanitizer(self):
        text = self.log_text()
        new = text[self._log_checked:]
        self._log_checked = len(text)
        if SANITIZED and SANITIZER_RE.search(new):
            raise AssertionError("sanitizer report in server stderr:\n%s" % new[-6000:])

    # --- CLI -----------------------------------------------------------
    def cli(self, *args, input=None, config=None):
        cmd = [self.binary, "-c", str(config or self.config_path)] + [str(a) for a in args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True,
                           timeout=CLI_TIMEOUT, env=self.env())
        check_sanitizer_output(r.stderr, "tern " + " ".join(map(str, args)))
        return r

    def cli_ok(self, *args, input=None):
        r = self.cli(*args, input=input)
        assert r.returncode == 0, "tern %s -> %s\nstdout: %s\nstderr: %s" % (
            " ".join(map(str, args)), r.returncode, r.stdout, r.stderr)
        return r

    def add_domain(self, domain):
        if domain not in self.domains:
            self.cli_ok("domain", "add", domain)
            self.domains.add(domain)

    def add_user(self, address, password):
        self.add_domain(address.split("@", 1)[1])
        self.cli_ok("user", "add", address, input=password + "\n")
        self.users[address] = password
        return address, password

    def new_user(self, tag="u", domain=None):
        """A fresh user with a unique address; returns (address, password)."""
        self._user_seq += 1
        addr = "%s%d@%s" % (re.sub(r"[^a-z0-9]", "", tag.lower())[:40] or "u",
                             self._user_seq, domain or self.DOMAIN)
        return self.add_user(addr, "pw-%d-secret" % self._user_seq)

    # --- clients -------------------------------------------------------
    def pop3(self, **kw):
        return Pop3(self.pop3_port, **kw)

    def pop3s(self, **kw):
        return Pop3(self.pop3s_port, tls=True, **kw)

    def smtp(self, **kw):
        return Smtp(self.smtp_port, **kw)

    def lmtp(self, **kw):
        return Smtp(self.lmtp_port, **kw)

    def login(self, user, password):
        p = self.pop3()
        p.login(user, password)
        return p

    def deliver_smtp(self, rcpts, message, sender="sender@remote.test"):
        """One SMTP transaction; every recipient must be accepted and the
        message must get 250."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        s = self.smtp()
        try:
            s.ehlo()
            r = s.cmd("MAIL FROM:<%s>" % sender)
            assert r.code == 250, "MAIL: %r" % r
            for rc in rcpts:
                r = s.cmd("RCPT TO:<%s>" % rc)
                assert r.code == 250, "RCPT %s: %r" % (rc, r)
            r = s.data(message)
            assert r.code == 250, "end of DATA: %r" % r
        finally:
            s.quit()

    def deliver_smtp_many(self, rcpt, messages, sender="sender@remote.test"):
        """Several transactions on one SMTP connection, each must get 250."""
        s = self.smtp()
        try:
            s.ehlo()
            for m in messages:
                r = s.cmd("MAIL FROM:<%s>" % sender)
                assert r.code == 250, "MAIL: %r" % r
                r = s.cmd("RCPT TO:<%s>" % rcpt)
                assert r.code == 250, "RCPT %s: %r" % (rcpt, r)
                r = s.data(m)
                assert r.code == 250, "end of DATA: %r" % r
        finally:
            s.quit()

    def mailbox(self, n, tag="box"):
        """A new user with n delivered messages (Subject: TAG-i, i from 1)."""
        addr, pw = self.new_user(tag)
        msgs = [make_message("%s-%d" % (tag, i), "Body of message %d.\r\n" % i, to=addr)
                for i in range(1, n + 1)]
        if msgs:
            self.deliver_smtp_many(addr, msgs)
        return addr, pw, msgs

    def deliver_cli(self, address, message):
        r = subprocess.run([self.binary, "-c", str(self.config_path), "deliver", address],
                           input=message, capture_output=True, timeout=CLI_TIMEOUT, env=self.env())
        check_sanitizer_output(r.stderr, "tern deliver")
        return r

    def fetch_all(self, user, password):
        """[(uidl, size, message)] for the whole maildrop; QUITs without deleting."""
        p = self.login(user, password)
        try:
            sizes = dict(p.list())
            uid = dict(p.uidl())
            out = [(uid[n], sizes[n], p.retr(n)) for n in sorted(sizes)]
            assert p.quit().startswith("+OK")
            return out
        finally:
            p.close()

    def count(self, user, password):
        p = self.login(user, password)
        try:
            return p.stat()[0]
        finally:
            p.quit()


class ServerPool:
    def drop_keyspaces(self):
        """Cassandra keeps every table of every keyspace in its heap: drop
        the keyspaces of this pool's servers once they are stopped, so a
        long run does not exhaust the test node. Best effort."""
        from . import cqlquery
        seen = set()
        for s in self.servers:
            c = s.sections.get("cassandra")
            if s.sections["store"].get("backend") != "cassandra" or not c:
                continue
            key = (c["contact_points"].split(",")[0].strip(), c["keyspace"])
            if key in seen:
                continue
            seen.add(key)
            host, _, port = key[0].partition(":")  # host:port: a relay in front of the node
            try:
                cqlquery.query(host, "DROP KEYSPACE IF EXISTS %s" % key[1], port=int(port or 9042),
                               timeout=60)
            except Exception:
                pass

    def __init__(self, binary, tmp_factory, cert):
        self.binary = binary
        self.tmp_factory = tmp_factory
        self.cert = cert
        self.servers = []

    def create(self, start=True, name="tern", **kw):
        kw.setdefault("cert", self.cert)
        s = TernServer(self.binary, self.tmp_factory.mktemp(name), **kw)
        self.servers.append(s)
        if start:
            s.start()
        return s

    def stop_all(self):
        errors = []
        for s in self.servers:
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
        self.drop_keyspaces()
        if errors:
            pytest.fail("\n\n".join(errors))
