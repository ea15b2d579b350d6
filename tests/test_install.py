"""`make install` lays out the binary, the systemd unit, the example
configuration and docs/service.md under DESTDIR, with the unit's paths
following PREFIX; the unit passes `systemd-analyze verify`; every key of
the example configuration is one tern knows, with a valid value;
`make uninstall` removes what was installed.

The binary installed is the one under test ($TERN_BIN, default
build/tern): make install never builds."""
import filecmp
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tern_binary():
    path = Path(os.environ.get("TERN_BIN") or (REPO / "build" / "tern"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("tern binary not found at %s (build it, or set TERN_BIN)" % path)
    return path


def make(*args):
    make_bin = shutil.which("make")
    assert make_bin, "make is not installed"
    return subprocess.run([make_bin, "-s", "-C", str(REPO)] + list(args), capture_output=True,
                          text=True, timeout=120)


def installed_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def install(destdir, *extra):
    binary = tern_binary()
    r = make("install", "DESTDIR=%s" % destdir, "BUILD=%s" % binary.parent, *extra)
    assert r.returncode == 0, "make install failed:\n%s%s" % (r.stdout, r.stderr)
    return binary


def test_install_layout(tmp_path):
    dest = tmp_path / "stage"
    binary = install(dest)
    assert installed_files(dest) == [
        "etc/tern/tern.conf.example",
        "usr/local/lib/systemd/system/tern.service",
        "usr/local/sbin/tern",
        "usr/local/share/doc/tern/service.md",
    ]
    sbin = dest / "usr/local/sbin/tern"
    assert filecmp.cmp(sbin, binary, shallow=False)
    assert stat.S_IMODE(sbin.stat().st_mode) == 0o755
    for f in ("etc/tern/tern.conf.example", "usr/local/lib/systemd/system/tern.service",
              "usr/local/share/doc/tern/service.md"):
        assert stat.S_IMODE((dest / f).stat().st_mode) == 0o644, f
    assert filecmp.cmp(dest / "etc/tern/tern.conf.example", REPO / "etc/tern.conf.example",
                       shallow=False)
    # the real configuration is never written
    assert not (dest / "etc/tern/tern.conf").exists()
    unit = (dest / "usr/local/lib/systemd/system/tern.service").read_text()
    assert "\nExecStart=/usr/local/sbin/tern -c /etc/tern/tern.conf serve\n" in unit
    assert "\nType=notify\n" in unit
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit
    # the hardening the service relies on, and the one writable path is
    # the example configuration's data_dir
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID",
                 "AmbientCapabilities=", "ReadWritePaths=/var/lib/tern"):
        assert "\n%s\n" % line in unit, line
    example = (REPO / "etc/tern.conf.example").read_text()
    assert re.search(r"^#?data_dir = /var/lib/tern$", example, re.M)
    assert re.search(r"^#?user = tern$", example, re.M)
    assert not re.search(r"^(User|DynamicUser|PrivateUsers)=", unit, re.M)

    r = make("uninstall", "DESTDIR=%s" % dest)
    assert r.returncode == 0, r.stderr
    assert installed_files(dest) == []


def test_install_prefix(tmp_path):
    dest = tmp_path / "stage"
    install(dest, "PREFIX=/usr")
    assert installed_files(dest) == [
        "etc/tern/tern.conf.example",
        "usr/lib/systemd/system/tern.service",
        "usr/sbin/tern",
        "usr/share/doc/tern/service.md",
    ]
    unit = (dest / "usr/lib/systemd/system/tern.service").read_text()
    assert "\nExecStart=/usr/sbin/tern -c /etc/tern/tern.conf serve\n" in unit
    assert "/usr/local" not in unit


def test_install_without_a_build_says_so(tmp_path):
    r = make("install", "DESTDIR=%s" % (tmp_path / "stage"), "BUILD=%s" % (tmp_path / "nobuild"))
    assert r.returncode != 0
    assert "run make first" in r.stderr
    assert not (tmp_path / "stage").exists()


def test_unit_verifies(tmp_path):
    """systemd-analyze verify: every key known, every value valid. The
    installed ExecStart= must exist, so the staged copy's path is used."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed (package systemd, scripts/packages.txt)"
    dest = tmp_path / "stage"
    install(dest)
    unit = (dest / "usr/local/lib/systemd/system/tern.service").read_text()
    check = tmp_path / "tern.service"
    check.write_text(unit.replace("/usr/local/sbin/tern", str(dest / "usr/local/sbin/tern")))
    r = subprocess.run([analyze, "verify", str(check)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    # unknown keys and bad values are only warnings: none may appear
    problems = [line for line in r.stderr.splitlines() if "tern.service" in line]
    assert problems == [], "\n".join(problems)


def test_example_config_keys_are_all_known(tmp_path):
    """Uncommented, every "#key = value" line of the example is a key tern
    knows, with a value it accepts; what remains are the machine's own
    facts (no tern user, no certificate, no token file here)."""
    text = (REPO / "etc/tern.conf.example").read_text()
    settings = re.findall(r"^#([A-Za-z_]+ = .*)$", text, re.M)
    assert len(settings) > 50, "the example should show every key"
    full = tmp_path / "full.conf"
    full.write_text(re.sub(r"^#([A-Za-z_]+ = )", r"\1", text, flags=re.M))
    r = subprocess.run([str(tern_binary()), "-c", str(full), "check-config"],
                       capture_output=True, text=True, timeout=60)
    allowed = (r'\[server\] user "tern": no such user',
               r"\[tls\] cert .*: cannot load",
               r"\[admin\] token_file .*: cannot read",
               r"\[dkim\] .*key_file|\[dkim\] .*/etc/tern/dkim.pem",
               r"\[relay\] password_file .*: cannot read",
               r"data_dir /var/lib/tern (does not exist|is owned by)")
    unexpected = [line for line in r.stderr.splitlines()
                  if not any(re.search(a, line) for a in allowed)]
    assert unexpected == [], "\n".join(unexpected)
    # as shipped (all commented) the file parses too
    r = subprocess.run([str(tern_binary()), "-c", str(REPO / "etc/tern.conf.example"),
                        "check-config"], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().endswith("nothing to serve: no listen address is configured"), \
        r.stderr
