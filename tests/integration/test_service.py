"""tern as a system service: started as root, it binds, then runs as
[server] user (checked in /proc: all four uids and gids, and the groups),
and serves; start-up refuses a data_dir the user does not own, names an
unknown user at FILE:LINE; systemd's notifications (READY=1 only after the
drop, RELOADING=1/READY=1 around SIGHUP, STOPPING=1); logging to syslog
(a socket at /dev/log in a mount namespace of the server's own); `tern
check-config` with every problem at once.

The target user is `nobody` (group `nogroup`), present on every Debian
system. Privilege drops need root: these tests fail when not run as root,
since they could not test anything otherwise."""
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .helpers import TIMEOUT, make_message, wait_until
from .ternserver import (CLI_TIMEOUT, EX_CONFIG, TernServer, _RUNNING, check_sanitizer_output,
                         free_ports, require_tool, sqlite_only)

USER = "nobody"


@pytest.fixture(autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.fail("test_service.py tests privilege drops and must run as root")


def target():
    pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid, sorted(set(os.getgrouplist(USER, pw.pw_gid)))


@pytest.fixture
def svc_dir():
    """A directory the target user can reach (pytest's own tmp dirs are
    private to root)."""
    d = Path(tempfile.mkdtemp(prefix="tern-service-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class ServiceServer(TernServer):
    """A TernServer in a directory of its own, with extra environment."""

    def __init__(self, binary, workdir, extra_env=None, **kw):
        self.extra_env = extra_env or {}
        super().__init__(binary, workdir, **kw)

    def env(self):
        env = super().env()
        env.update(self.extra_env)
        return env


def make_server(tern_bin, svc_dir, cert=None, user=USER, own=True, extra_env=None,
                binary=None, server_keys=None):
    s = ServiceServer(binary or tern_bin, svc_dir / "srv", cert=cert, extra_env=extra_env)
    os.chmod(s.dir, 0o755)
    if user is not None:
        s.sections["server"]["user"] = user
    s.sections["server"].update(server_keys or {})
    if own:
        uid, gid, _ = target()
        os.chown(s.data_dir, uid, gid)
    s.write_config()
    return s


def proc_ids(pid):
    """{'Uid': [real, effective, saved, fs], 'Gid': [...], 'Groups': [...]}."""
    out = {}
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(v) for v in value.split()]
    return out


def assert_runs_as_target(pid):
    uid, gid, groups = target()
    ids = proc_ids(pid)
    assert ids["Uid"] == [uid] * 4, ids
    assert ids["Gid"] == [gid] * 4, ids
    assert sorted(ids["Groups"]) == groups, ids


def stop(s):
    if s.proc is not None:
        s.stop()


# --------------------------------------------------------------------------
# the privilege drop

def test_drops_to_user_and_serves(tern_bin, svc_dir, cert):
    s = make_server(tern_bin, svc_dir, cert=cert)
    s.start()
    try:
        assert_runs_as_target(s.proc.pid)
        # every thread, the worker pool's included
        for task in Path("/proc/%d/task" % s.proc.pid).iterdir():
            assert_runs_as_target(int(task.name))
        uid, gid, _ = target()
        # what the server created belongs to the user
        for f in s.data_dir.iterdir():
            assert f.stat().st_uid == uid, "%s is owned by uid %d" % (f, f.stat().st_uid)
        # the administrative commands, run as root, also act as the user:
        # the files they touch stay the server's
        addr, pw = s.new_user("dropped")
        for f in s.data_dir.iterdir():
            assert f.stat().st_uid == uid, "%s is owned by uid %d after a CLI command" % (
                f, f.stat().st_uid)
        # the server serves: SMTP in, POP3 out (STLS with a key read as root)
        msg = make_message("after-drop", "Body.\r\n", to=addr)
        s.deliver_smtp(addr, msg)
        got = s.fetch_all(addr, pw)
        assert len(got) == 1 and b"after-drop" in got[0][2]
        with s.pop3() as p:
            assert p.cmd("STLS").startswith("+OK")
            p.starttls()
            p.login(addr, pw)
            assert p.stat()[0] == 1
            p.quit()
        log = s.log_text()
        assert re.search(r'msg="privileges dropped" user=nobody uid=%d gid=%d' % (uid, gid), log), log
        # the sockets are bound before the drop (the log has no line for
        # that), listening only after it, once the store is open
        assert log.index('msg="privileges dropped"') < log.index('msg="listening"') < \
            log.index('msg="tern ready"')
    finally:
        stop(s)


def test_group_sets_the_gid(tern_bin, svc_dir):
    uid, _, _ = target()
    group = grp.getgrnam("daemon")
    s = make_server(tern_bin, svc_dir, server_keys={"group": "daemon"})
    s.start()
    try:
        ids = proc_ids(s.proc.pid)
        assert ids["Uid"] == [uid] * 4
        assert ids["Gid"] == [group.gr_gid] * 4, ids
        # initgroups: the user's own groups plus the chosen one
        assert sorted(ids["Groups"]) == sorted(set(os.getgrouplist(USER, group.gr_gid))), ids
    finally:
        stop(s)


def run_serve(s, timeout=TIMEOUT):
    """tern serve that must fail: (exit status, stderr)."""
    r = subprocess.run([str(s.binary), "-c", str(s.config_path), "serve"], capture_output=True,
                       text=True, timeout=timeout, env=s.env())
    check_sanitizer_output(r.stderr, "tern serve")
    return r.returncode, r.stderr


def test_data_dir_owned_by_root_is_refused(tern_bin, svc_dir):
    s = make_server(tern_bin, svc_dir, own=False)
    rc, err = run_serve(s)
    assert rc == EX_CONFIG, err
    assert ("data_dir %s is owned by root, not by nobody: chown -R nobody:nogroup %s"
            % (s.data_dir, s.data_dir)) in err, err
    assert not (s.data_dir / "tern.db").exists(), "nothing may be created in a refused data_dir"
    # the spool too
    uid, gid, _ = target()
    os.chown(s.data_dir, uid, gid)
    (s.data_dir / "spool").mkdir()
    rc, err = run_serve(s)
    assert rc == EX_CONFIG, err
    assert "the spool %s/spool is owned by root, not by nobody" % s.data_dir in err, err


def test_missing_data_dir_is_refused(tern_bin, svc_dir):
    s = make_server(tern_bin, svc_dir)
    missing = svc_dir / "nowhere"
    s.sections["server"]["data_dir"] = str(missing)
    s.write_config()
    rc, err = run_serve(s)
    assert rc == EX_CONFIG, err
    assert "data_dir %s does not exist: install -d -o nobody -g nogroup %s" % (missing, missing) \
        in err, err


def test_unknown_user_names_file_and_line(tern_bin, svc_dir):
    s = make_server(tern_bin, svc_dir, user="no-such-user-tern")
    lines = s.config_path.read_text().splitlines()
    lineno = lines.index("user = no-such-user-tern") + 1
    rc, err = run_serve(s)
    assert rc == EX_CONFIG, err
    assert '%s:%d: [server] user "no-such-user-tern": no such user' % (s.config_path, lineno) \
        in err, err


def test_group_without_user_is_an_error(tern_bin, svc_dir):
    s = make_server(tern_bin, svc_dir, user=None, server_keys={"group": "nogroup"})
    lines = s.config_path.read_text().splitlines()
    lineno = lines.index("group = nogroup") + 1
    rc, err = run_serve(s)
    assert rc == EX_CONFIG, err
    assert "%s:%d: [server] group needs user" % (s.config_path, lineno) in err, err


def test_not_root_and_not_the_user_is_an_error(tern_bin, svc_dir):
    # started as nobody, asked to run as daemon: only root could switch
    s = make_server(tern_bin, svc_dir, user="daemon", own=False)
    binary = svc_dir / "tern"
    shutil.copy2(tern_bin, binary)
    uid, gid, _ = target()
    r = subprocess.run([str(binary), "-c", str(s.config_path), "serve"], capture_output=True,
                       text=True, timeout=TIMEOUT, env=s.env(), user=uid, group=gid,
                       extra_groups=[])
    check_sanitizer_output(r.stderr, "tern serve")
    assert r.returncode == EX_CONFIG, r.stderr
    assert "only root can switch" in r.stderr, r.stderr


def test_already_the_user_is_fine(tern_bin, svc_dir):
    # started by nobody itself (setpriv), with user = nobody: nothing to drop
    require_tool("setpriv")
    uid, gid, _ = target()
    binary = svc_dir / "tern"
    shutil.copy2(tern_bin, binary)
    wrapper = svc_dir / "tern-as-nobody"
    wrapper.write_text('#!/bin/sh\nexec setpriv --reuid=%d --regid=%d --clear-groups %s "$@"\n'
                       % (uid, gid, binary))
    wrapper.chmod(0o755)
    s = make_server(tern_bin, svc_dir, binary=wrapper)
    s.start()
    try:
        uid, gid, _ = target()
        ids = proc_ids(s.proc.pid)
        assert ids["Uid"] == [uid] * 4 and ids["Gid"] == [gid] * 4, ids
        assert 'msg="privileges dropped"' not in s.log_text()
        addr, pw = s.new_user("self")
        assert s.count(addr, pw) == 0
    finally:
        stop(s)


def test_root_without_user_on_a_public_address_warns(tern_bin, svc_dir):
    s = make_server(tern_bin, svc_dir, user=None)
    port, = free_ports(1)
    s.sections["pop3"]["listen"] = "127.0.0.1:%d, 0.0.0.0:%d" % (s.pop3_port, port)
    s.write_config()
    s.start()
    try:
        assert re.search(r'level=warn msg="running as root and listening beyond loopback: '
                         r'set \[server\] user [^"]*" address=0\.0\.0\.0:%d' % port,
                         s.log_text()), s.log_text()
    finally:
        stop(s)
    # loopback only: no warning
    two = svc_dir / "two"
    two.mkdir()
    s2 = make_server(tern_bin, two, user=None)
    s2.start()
    try:
        assert "listening beyond loopback" not in s2.log_text()
    finally:
        stop(s2)


def make_admin_server(tern_bin, svc_dir, token_text):
    """A server to run as the user with the admin API on a free port, its
    token file the user's (0600): (server, port, token file)."""
    port, = free_ports(1)
    token = svc_dir / "admin.token"
    token.write_text(token_text + "\n")
    token.chmod(0o600)
    uid, gid, _ = target()
    os.chown(token, uid, gid)
    s = make_server(tern_bin, svc_dir)
    s.sections["admin"] = {"listen": "127.0.0.1:%d" % port, "token_file": str(token)}
    s.write_config()
    return s, port, token


def test_admin_api_after_the_drop(tern_bin, svc_dir):
    # the admin API reads its token and binds as the user: a token file
    # the user owns (0600) works; one root owns is refused at start-up
    import urllib.request
    s, port, token = make_admin_server(tern_bin, svc_dir, "s3cret-admin-token")
    r = check_config(tern_bin, s.config_path)
    assert r.returncode == 0, r.stderr
    s.start()
    try:
        req = urllib.request.Request("http://127.0.0.1:%d/healthcheck" % port,
                                     headers={"Authorization": "Bearer s3cret-admin-token"})
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            assert resp.status == 200
    finally:
        stop(s)
    os.chown(token, 0, 0)
    r = check_config(tern_bin, s.config_path)
    assert r.returncode == EX_CONFIG
    assert r.stderr.splitlines() == [
        "%s: [admin] token_file %s is not owned by nobody, who reads it: chown nobody %s"
        % (s.config_path, token, token)], r.stderr
    rc, err = run_serve(s)
    assert rc == EX_CONFIG and "token_file" in err, err


@sqlite_only
def test_healthcheck_503_when_sqlite_is_not_writable(tern_bin, svc_dir):
    """Run as the user (root could write anyway), the server reports a
    database file, then a data_dir, it may no longer write to: 503 naming
    the path, and 200 again once the mode is back."""
    import json
    import urllib.error
    import urllib.request
    s, port, _ = make_admin_server(tern_bin, svc_dir, "health-admin-token-0123456789")

    def health():
        req = urllib.request.Request("http://127.0.0.1:%d/healthcheck" % port,
                                     headers={"Authorization": "Bearer health-admin-token-0123456789"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    s.start()
    try:
        assert_runs_as_target(s.proc.pid)
        assert health() == (200, {"store": "ok"})
        db = s.data_dir / "tern.db"
        for path, mode in ((db, 0o400), (s.data_dir, 0o500)):
            before = stat.S_IMODE(path.stat().st_mode)
            path.chmod(mode)
            try:
                status, body = health()
                assert status == 503, (path, status, body)
                assert body["store"] == "failing", body
                assert "not writable" in body["detail"] and str(db) in body["detail"], body
            finally:
                path.chmod(before)
            assert health() == (200, {"store": "ok"})
    finally:
        stop(s)


# --------------------------------------------------------------------------
# systemd notifications

class NotifySocket:
    """What systemd does for Type=notify: a datagram socket named by
    NOTIFY_SOCKET (abstract, so that the dropped server can reach it)."""

    def __init__(self):
        self.name = "tern-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.messages = []

    @property
    def env(self):
        return {"NOTIFY_SOCKET": "@" + self.name}

    def next(self, timeout=TIMEOUT):
        """The next message, as a dict."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            raise AssertionError("no message from the server in %ss; got %r"
                                 % (timeout, self.messages))
        fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        self.messages.append(fields)
        return fields

    def close(self):
        self.sock.close()


def test_sd_notify_ready_reload_stopping(tern_bin, svc_dir, cert):
    notify = NotifySocket()
    s = make_server(tern_bin, svc_dir, cert=cert, extra_env=notify.env)
    try:
        s.start(wait=False)
        ready = notify.next()
        # READY=1 comes after the drop (the ids as it arrives) ...
        ids = proc_ids(s.proc.pid)
        assert ready["READY"] == "1", notify.messages
        assert "serving" in ready.get("STATUS", ""), ready
        uid, gid, _ = target()
        assert ids["Uid"] == [uid] * 4, ids
        # ... and after the listeners: the ports accept at once
        for port in s.listen_ports():
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert 'msg="tern ready"' in s.log_text()
        s.proc.send_signal(signal.SIGHUP)
        reloading = notify.next()
        assert reloading.get("RELOADING") == "1", notify.messages
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert notify.next().get("READY") == "1", notify.messages
        s.stop()
        assert notify.next().get("STOPPING") == "1", notify.messages
    finally:
        stop(s)
        notify.close()


# --------------------------------------------------------------------------
# syslog

SYSLOG_WRAPPER = r"""#!/bin/sh
# tern in a mount namespace of its own whose /dev/log is the test's socket
# (the machine's /dev is left alone).
dir=%(dir)s
exec unshare -m --propagation private sh -c '
set -e
mkdir -p "$0/olddev"
mount --rbind /dev "$0/olddev"
mount -t tmpfs -o mode=755 tern-test-dev /dev
for d in null zero random urandom; do
	touch "/dev/$d"
	mount --bind "$0/olddev/$d" "/dev/$d"
done
ln -s "$0/log" /dev/log
exec "$@"' "$dir" %(tern)s "$@"
"""


def test_syslog(tern_bin, svc_dir):
    require_tool("unshare")
    require_tool("mount")
    logdir = svc_dir / "syslog"
    logdir.mkdir()
    os.chmod(logdir, 0o755)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(logdir / "log"))
    os.chmod(logdir / "log", 0o666)
    wrapper = svc_dir / "tern-syslog"
    wrapper.write_text(SYSLOG_WRAPPER % {"dir": logdir, "tern": tern_bin})
    wrapper.chmod(0o755)
    s = make_server(tern_bin, svc_dir, binary=wrapper, server_keys={"log": "syslog"})
    lines = []
    done = threading.Event()

    def receive():
        # read at once, as a syslog daemon does: a full socket would block
        # the server's syslog() calls
        sock.settimeout(0.2)
        while not done.is_set():
            try:
                lines.append(sock.recv(8192).decode(errors="replace"))
            except socket.timeout:
                pass
            except OSError:
                return

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()

    def read_until(pattern, timeout=TIMEOUT):
        assert wait_until(lambda: any(re.search(pattern, line) for line in list(lines)),
                          timeout=timeout), "no %r in syslog; got:\n%s" % (pattern, "\n".join(lines))

    try:
        s.start()
        pid = s.proc.pid
        # facility mail (2), info (6): <22>; ident tern with the pid;
        # no ts= (syslog stamps the line)
        read_until(r'^<22>.*tern\[%d\]: level=info msg="tern ready"' % pid)
        assert_runs_as_target(pid)
        addr, pw = s.new_user("syslogged")
        s.count(addr, pw)
        read_until(r'^<22>.*tern\[%d\]: level=info session=pop3#\d+ msg="login ok" user=%s '
                   % (pid, re.escape(addr)))
        assert not any("ts=" in line for line in lines), lines
        s.stop()
        read_until(r'tern\[%d\]: level=info msg="tern stopped"' % pid)
        # nothing went to stderr but what the namespace set-up might say
        assert "level=" not in s.log_text(), s.log_text()
    finally:
        stop(s)
        done.set()
        reader.join()
        sock.close()


def test_log_level_warn_hides_info(tern_bin, svc_dir):
    s = make_server(tern_bin, svc_dir, server_keys={"log_level": "warn"})
    s.start()
    try:
        addr, pw = s.new_user("quiet")
        s.count(addr, pw)
        with s.pop3() as p:
            p.cmd("USER " + addr)
            p.cmd("PASS wrong")
        s.stop()
        log = s.log_text()
        assert "level=info" not in log, log
    finally:
        stop(s)


# --------------------------------------------------------------------------
# check-config

def check_config(tern_bin, path, env=None):
    r = subprocess.run([str(tern_bin), "-c", str(path), "check-config"], capture_output=True,
                       text=True, timeout=CLI_TIMEOUT, env=env)
    check_sanitizer_output(r.stderr, "tern check-config")
    return r


def test_check_config_reports_every_problem(tern_bin, svc_dir):
    ports = free_ports(2)
    path = svc_dir / "bad.conf"
    data = svc_dir / "rootdata"
    data.mkdir()
    text = "\n".join([
        "[server]",                                   # 1
        "data_dir = %s" % data,                       # 2
        "user = nobody",                              # 3
        "colour = blue",                              # 4
        "[smtp]",                                     # 5
        "listen = 127.0.0.1:%d" % ports[0],           # 6
        "max_message_size = lots",                    # 7
        "this line has no equals sign",               # 8
        "[pop3]",                                     # 9
        "listen_tls = 127.0.0.1:%d" % ports[1],       # 10
        "[bogus]",                                    # 11
        "key = value",                                # 12
        "[tls]",                                      # 13
        "cert = %s/missing-cert.pem" % svc_dir,       # 14
        "key = %s/missing-key.pem" % svc_dir,         # 15
        "min_version = 1.7",                          # 16
        "[admin]",                                    # 17
        "listen = 127.0.0.1:%d" % ports[1],           # 18
    ]) + "\n"
    path.write_text(text)
    r = check_config(tern_bin, path)
    assert r.returncode == EX_CONFIG, r
    got = r.stderr.splitlines()
    want = [
        '%s:4: unknown key "colour" in [server]' % path,
        '%s:7: max_message_size: invalid size "lots"' % path,
        '%s:8: expected "key = value"' % path,
        "%s:11: unknown section [bogus]" % path,
        '%s:16: min_version: invalid value "1.7"' % path,
        "%s:18: [admin] listen needs token_file" % path,
        "%s: [tls] cert %s/missing-cert.pem: cannot load" % (path, svc_dir),
        "%s: data_dir %s is owned by root, not by nobody: chown -R nobody:nogroup %s"
        % (path, data, data),
    ]
    assert len(got) == len(want), "\n".join(got)
    for line, start in zip(got, want):
        assert line.startswith(start), "%r does not start with %r\nall:\n%s" % (
            line, start, "\n".join(got))
    assert r.stdout == ""
    # nothing was started or created
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert list(data.iterdir()) == []


def test_check_config_ok(tern_bin, svc_dir, cert):
    s = make_server(tern_bin, svc_dir, cert=cert)
    r = check_config(tern_bin, s.config_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "%s: ok" % s.config_path
    assert "pop3 127.0.0.1:%d" % s.pop3_port in out[1]
    assert "smtps 127.0.0.1:%d" % s.smtps_port in out[1]
    assert "as user nobody" in out[1]
    assert r.stderr == ""
    # it bound nothing
    assert not (s.data_dir / "tern.db").exists()


def test_check_config_token_file_and_unknown_user(tern_bin, svc_dir):
    ports = free_ports(2)
    path = svc_dir / "t.conf"
    path.write_text("[server]\ndata_dir = %s\nuser = no-such-user-tern\n"
                    "[pop3]\nlisten = 127.0.0.1:%d\n"
                    "[admin]\nlisten = 127.0.0.1:%d\ntoken_file = %s/no-token\n"
                    % (svc_dir, ports[0], ports[1], svc_dir))
    r = check_config(tern_bin, path)
    assert r.returncode == EX_CONFIG
    assert r.stderr.splitlines() == [
        '%s:3: [server] user "no-such-user-tern": no such user' % path,
        "%s: [admin] token_file %s/no-token: cannot read: No such file or directory"
        % (path, svc_dir),
    ], r.stderr


def test_check_config_missing_file(tern_bin, svc_dir):
    r = check_config(tern_bin, svc_dir / "absent.conf")
    assert r.returncode == EX_CONFIG
    assert "absent.conf: cannot open" in r.stderr


def test_serve_prints_every_problem(tern_bin, svc_dir):
    path = svc_dir / "bad.conf"
    path.write_text("[server]\ncolour = blue\n[smtp]\nmax_recipients = many\nlisten = x\n")
    r = subprocess.run([str(tern_bin), "-c", str(path), "serve"], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == EX_CONFIG
    lines = r.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["%s:2" % path, "%s:4" % path,
                                                       "%s:5" % path], lines
