"""A private Dovecot (Debian's dovecot-pop3d) for the tests that compare tern
with the real thing: unprivileged-style set-up on a loopback port with a
static passdb and userdb (every user's home, its Maildir, is
mail/USER), as bench/run.sh starts it.

Dovecot refuses to serve mail owned by UID 0, and its mail processes run as
the mail owner: as root the mail belongs to Debian's "mail" user and the
login processes run as dovenull; otherwise everything runs as whoever runs
the tests. Its directory is a world-readable one under /tmp of its own
(pytest's temporary directories are private to their owner)."""
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from .helpers import TIMEOUT, Pop3
from .ternserver import free_ports


def dovecot_binary():
    path = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not os.access(path, os.X_OK):
        pytest.fail("dovecot is not installed (Debian: dovecot-pop3d; make deps installs it)")
    return path


class Dovecot:
    PASSWORD = "dovecot-secret"

    def __init__(self, name="tern-test", mail_location="maildir:~", settings=""):
        self.binary = dovecot_binary()
        self.dir = tempfile.mkdtemp(prefix="tern-dovecot-")
        os.chmod(self.dir, 0o755)
        self.port = free_ports(1)[0]
        if os.getuid() == 0:
            self.login_user, self.internal_user = "dovenull", "dovecot"
            self.mail_uid, self.mail_gid = pwd.getpwnam("mail").pw_uid, grp.getgrnam("mail").gr_gid
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            self.login_user = self.internal_user = me
            self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
        for sub in ("run", "state", "mail"):
            os.mkdir(os.path.join(self.dir, sub))
            os.chmod(os.path.join(self.dir, sub), 0o755)
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log = os.path.join(self.dir, "dovecot.log")
        with open(self.conf, "w") as f:
            f.write("""base_dir = {d}/run
state_dir = {d}/state
instance_name = {name}-{port}
log_path = {log}
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = {login}
default_internal_user = {internal}
first_valid_uid = {uid}
mail_location = {mail_location}
{settings}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""".format(d=self.dir, name=name, port=self.port, log=self.log, login=self.login_user,
           internal=self.internal_user, uid=self.mail_uid, gid=self.mail_gid,
           password=self.PASSWORD, mail_location=mail_location, settings=settings))
        self.running = False

    def maildir(self, name):
        """A new empty directory for the Maildir of user `name` (every user
        logs in with PASSWORD; not yet owned by the mail user: call own()
        once it is filled)."""
        path = os.path.join(self.dir, "mail", name)
        os.makedirs(path)
        return path

    def own(self, path):
        """Gives a Maildir (recursively) to the mail user."""
        for root, dirs, files in os.walk(path):
            os.chown(root, self.mail_uid, self.mail_gid)
            for f in files:
                os.chown(os.path.join(root, f), self.mail_uid, self.mail_gid)

    def start(self):
        # The master daemonizes: its children must not hold our pipes.
        err = os.path.join(self.dir, "start.err")
        with open(err, "w") as e:
            r = subprocess.run([self.binary, "-c", self.conf], stdin=subprocess.DEVNULL,
                               stdout=e, stderr=e, timeout=60)
        assert r.returncode == 0, "dovecot did not start: %s\n%s" % (open(err).read(),
                                                                    self.log_tail())
        self.running = True
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("dovecot did not listen on %d:\n%s" % (self.port, self.log_tail()))
                time.sleep(0.05)

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "run", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        pid = self.master_pid()
        if pid is None:
            self.running = False
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.running = False

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def pop3(self, user):
        p = Pop3(self.port)
        p.login(user, self.PASSWORD)
        return p
