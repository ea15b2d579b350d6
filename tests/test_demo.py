"""What `make run` prints works: scripts/demo-setup.sh makes the demo's
certificate and admin token, and its hint names the admin API at the
address of etc/tern-demo.conf. The demo configuration is then served (on
free ports instead of its fixed ones, which may be taken on this machine)
and every command of the hint is run as printed, the ports aside: a
domain and a user added, a message sent with swaks and read back with
curl over POP3, and the two admin API calls answered.

The binary is the one under test ($TERN_BIN, default build/tern)."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 30


def tern_binary():
    path = Path(os.environ.get("TERN_BIN") or (REPO / "build" / "tern"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("tern binary not found at %s (build it, or set TERN_BIN)" % path)
    return path


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def hint_commands(text):
    """The commands of the hint, continuation lines joined."""
    commands, current = [], ""
    for line in text.splitlines():
        if not line.startswith("  ") and not current:
            continue
        line = line.strip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        commands.append(current + line)
        current = ""
    return [c for c in commands if c]


def wait_accepting(port, proc, log):
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, "tern exited:\n" + log.read_text()
            assert time.monotonic() < deadline, "port %d never accepted:\n%s" % (port, log.read_text())
            time.sleep(0.05)


def test_make_run_hint_reaches_the_admin_api(tmp_path):
    for tool in ("openssl", "curl", "swaks"):
        assert shutil.which(tool), "%s is not installed (scripts/packages.txt)" % tool
    binary = tern_binary()
    demo = (REPO / "etc" / "tern-demo.conf").read_text()
    admin = re.search(r"^\[admin\]\n(?:[^\[]*\n)*?listen = (\S+)$", demo, re.M)
    assert admin, "the demo configuration serves no admin API"
    # the demo's ports, replaced by free ones
    fixed = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", demo)))
    ports = dict(zip(fixed, map(str, free_ports(len(fixed)))))
    config = tmp_path / "tern-demo.conf"
    config.write_text(re.sub(r"127\.0\.0\.1:(\d+)", lambda m: "127.0.0.1:" + ports[m.group(1)], demo))

    r = subprocess.run(["sh", str(REPO / "scripts" / "demo-setup.sh"), str(binary.parent),
                        str(config)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    hint = r.stdout
    assert "admin HTTP API" in hint and admin.group(1) in hint, hint
    token = tmp_path / "var" / "admin.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}\n", token.read_text())
    assert (tmp_path / "var" / "tls" / "cert.pem").is_file()

    commands = hint_commands(hint[hint.index("In another terminal:"):hint.index("Stop with")])
    admin_calls = [c for c in commands if admin.group(1) in c]
    assert len(admin_calls) == 2, commands
    assert all('Authorization: Bearer $(cat var/admin.token)' in c for c in admin_calls), admin_calls

    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(binary), "-c", str(config), "serve"], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        for port in ports.values():
            wait_accepting(int(port), proc, log)
        results = []
        for c in commands:
            if not re.match(r"(\S*/tern|echo|swaks|curl) ", c):
                continue
            run = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: "127.0.0.1:" + ports[m.group(1)], c)
            r = subprocess.run(["sh", "-c", run], cwd=tmp_path, capture_output=True, text=True,
                               timeout=TIMEOUT)
            assert r.returncode == 0, (run, r.stdout, r.stderr)
            results.append((c, r.stdout))
        pop3 = [out for c, out in results if "pop3://" in c]
        assert len(pop3) == 1 and "Subject:" in pop3[0], results
        listing, created = [json.loads(out) for c, out in results if c in admin_calls]
        assert "example.test" in listing["domains"], listing
        assert created == {"user": "bob@example.test", "created": True}, created
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0, log.read_text()
