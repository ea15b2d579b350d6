"""The configuration contract (design.md): INI with [section], key = value
and # comments; unknown sections or keys and bad values stop start-up with
FILE:LINE: and what is wrong."""
import signal
import socket
import subprocess
import time

import pytest

from .ternserver import CLI_TIMEOUT, check_sanitizer_output, free_ports, sqlite_only
from .helpers import TIMEOUT, Pop3, Smtp


def base_lines(tmp_path, ports):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return [
        "# tern configuration used by the config tests",
        "",
        "[server]",
        "hostname = tern.test",
        "data_dir = %s" % data,
        "",
        "[smtp]",
        "listen = 127.0.0.1:%d" % ports[0],
        "max_message_size = 100000",
        "max_recipients = 10",
        "",
        "[lmtp]",
        "listen = 127.0.0.1:%d" % ports[1],
        "",
        "[pop3]",
        "listen = 127.0.0.1:%d" % ports[2],
        "",
        "[store]",
        "backend = sqlite",
        "pop3_ids = messageid",
        "",
        "[auth]",
        "plaintext = tls_or_loopback",
    ]


def with_line(lines, section, line):
    """Inserts `line` right after the [section] header; returns (text, lineno)."""
    i = lines.index("[%s]" % section) + 1
    out = lines[:i] + [line] + lines[i:]
    return "\n".join(out) + "\n", i + 1


def run_serve(tern_bin, path, timeout=TIMEOUT):
    """Runs `tern -c path serve`, which is expected to fail. Returns the
    CompletedProcess; a server that keeps running is stopped and fails."""
    p = subprocess.Popen([str(tern_bin), "-c", str(path), "serve"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail("tern serve kept running with a bad configuration; stderr:\n%s" % err)
    check_sanitizer_output(err, "tern serve")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def assert_points_at(r, path, lineno):
    assert r.returncode != 0, "start-up must fail; stderr: %s" % r.stderr
    want = ["%s:%d:" % (path, n) for n in (lineno if isinstance(lineno, tuple) else (lineno,))]
    assert any(w in r.stderr for w in want), "expected %s in stderr, got:\n%s" % (" or ".join(want), r.stderr)


BAD = [
    ("server", "colour = blue", "colour"),
    ("smtp", "max_message_size = abc", "max_message_size"),
    ("smtp", "max_message_size = -5", "max_message_size"),
    ("smtp", "max_message_size = 10zz", "max_message_size"),
    ("smtp", "max_recipients = many", "max_recipients"),
    ("smtp", "listen = 127.0.0.1:notaport", "listen"),
    ("pop3", "listen = 127.0.0.1:99999", "listen"),
    ("lmtp", "listen = nonsense", "listen"),
    ("pop3", "listen_tls = 127.0.0.1:", "listen_tls"),
    ("store", "pop3_ids = banana", "pop3_ids"),
    ("store", "backend = mysql", "backend"),
    ("auth", "plaintext = sometimes", "plaintext"),
    ("server", "this line has no equals sign", None),
    ("server", "= value without key", None),
]


@pytest.mark.parametrize("section,line,word", BAD, ids=[b[1] for b in BAD])
def test_bad_line_names_file_and_line(tern_bin, tmp_path, section, line, word):
    ports = free_ports(3)
    text, lineno = with_line(base_lines(tmp_path, ports), section, line)
    path = tmp_path / "bad.conf"
    path.write_text(text)
    r = run_serve(tern_bin, path)
    assert_points_at(r, path, lineno)
    if word:
        assert word in r.stderr, r.stderr
    # nothing listens
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports[2]), timeout=1).close()


def test_bad_tls_min_version(tern_bin, tmp_path, cert):
    ports = free_ports(3)
    lines = base_lines(tmp_path, ports) + ["", "[tls]", "cert = %s" % cert[0], "key = %s" % cert[1],
                                           "min_version = 1.7"]
    path = tmp_path / "bad.conf"
    path.write_text("\n".join(lines) + "\n")
    r = run_serve(tern_bin, path)
    assert_points_at(r, path, len(lines))


def test_unknown_section(tern_bin, tmp_path):
    ports = free_ports(3)
    lines = base_lines(tmp_path, ports)
    lines[5:5] = ["[bogus]", "key = value"]
    path = tmp_path / "bad.conf"
    path.write_text("\n".join(lines) + "\n")
    r = run_serve(tern_bin, path)
    assert_points_at(r, path, (6, 7))
    assert "bogus" in r.stderr


def test_unterminated_section_header(tern_bin, tmp_path):
    ports = free_ports(3)
    lines = base_lines(tmp_path, ports)
    lines[5:5] = ["[smtp"]
    path = tmp_path / "bad.conf"
    path.write_text("\n".join(lines) + "\n")
    r = run_serve(tern_bin, path)
    assert_points_at(r, path, 6)


def test_key_outside_section(tern_bin, tmp_path):
    ports = free_ports(3)
    lines = ["hostname = early"] + base_lines(tmp_path, ports)
    path = tmp_path / "bad.conf"
    path.write_text("\n".join(lines) + "\n")
    r = run_serve(tern_bin, path)
    assert_points_at(r, path, 1)


def test_cli_commands_also_reject_bad_config(tern_bin, tmp_path):
    ports = free_ports(3)
    text, lineno = with_line(base_lines(tmp_path, ports), "server", "colour = blue")
    path = tmp_path / "bad.conf"
    path.write_text(text)
    r = subprocess.run([str(tern_bin), "-c", str(path), "domain", "list"],
                       capture_output=True, text=True, timeout=CLI_TIMEOUT)
    check_sanitizer_output(r.stderr, "tern domain list")
    assert_points_at(r, path, lineno)


def test_missing_config_file(tern_bin, tmp_path):
    path = tmp_path / "does-not-exist.conf"
    r = run_serve(tern_bin, path)
    assert r.returncode != 0
    assert "does-not-exist.conf" in r.stderr, r.stderr


def test_comments_blank_lines_and_spacing_accepted(tern_bin, tmp_path):
    ports = free_ports(3)
    lines = base_lines(tmp_path, ports)
    # spacing variants and comments everywhere
    lines = [ln.replace(" = ", "=") if ln.startswith("hostname") else ln for ln in lines]
    lines = [("   " + ln + "   ") if ln.startswith("max_recipients") else ln for ln in lines]
    lines.insert(7, "  # an indented comment")
    lines.insert(3, "")
    lines.append("# trailing comment")
    path = tmp_path / "ok.conf"
    path.write_text("\n".join(lines) + "\n")
    p = subprocess.Popen([str(tern_bin), "-c", str(path), "serve"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline_ok = False
        for _ in range(int(TIMEOUT / 0.05)):
            if p.poll() is not None:
                pytest.fail("tern serve exited %s with a valid config:\n%s" % (p.returncode, p.stderr.read()))
            try:
                with Pop3(ports[2]) as c:
                    assert c.greeting.startswith("+OK")
                deadline_ok = True
                break
            except OSError:
                time.sleep(0.05)
        assert deadline_ok, "server did not come up"
        with Smtp(ports[0]) as s:
            r = s.ehlo()
            assert r.lines[0].split()[0] == "tern.test"
            assert "SIZE 100000" in r.lines
    finally:
        p.terminate()
        rc = p.wait(TIMEOUT)
    assert rc == 0, "exit status after SIGTERM: %s" % rc


def test_multiple_listen_addresses(servers):
    extra = free_ports(2)
    s = servers.create(start=False)
    s.sections["pop3"]["listen"] = "127.0.0.1:%d, 127.0.0.1:%d" % (s.pop3_port, extra[0])
    s.sections["smtp"]["listen"] = "127.0.0.1:%d,127.0.0.1:%d" % (s.smtp_port, extra[1])
    s.write_config()
    s.start()
    for port in (s.pop3_port, extra[0]):
        with Pop3(port) as c:
            assert c.greeting.startswith("+OK")
    for port in (s.smtp_port, extra[1]):
        with Smtp(port) as c:
            assert c.greeting.code == 220


def test_hostname_is_used(servers):
    s = servers.create(hostname="mx.hostname-check.test")
    with s.smtp() as c:
        assert "mx.hostname-check.test" in c.greeting.lines[0]
        assert c.ehlo().lines[0].split()[0] == "mx.hostname-check.test"


@sqlite_only
def test_cassandra_section_known_while_using_sqlite(servers):
    s = servers.create(start=False, overrides={"cassandra": {
        "contact_points": "127.0.0.1:9042", "local_dc": "dc1", "keyspace": "tern",
        "replication": "dc1:3,dc2:3", "read_consistency": "LOCAL_QUORUM",
        "write_consistency": "LOCAL_QUORUM"}})
    s.start()
    with s.pop3() as c:
        assert c.greeting.startswith("+OK")


def test_listen_port_in_use_fails(tern_bin, tmp_path):
    ports = free_ports(3)
    busy = socket.socket()
    busy.bind(("127.0.0.1", ports[2]))
    busy.listen(1)
    try:
        path = tmp_path / "busy.conf"
        path.write_text("\n".join(base_lines(tmp_path, ports)) + "\n")
        r = run_serve(tern_bin, path)
        assert r.returncode != 0
        assert str(ports[2]) in r.stderr, "the message should name the address: %s" % r.stderr
    finally:
        busy.close()


def test_missing_certificate_fails(tern_bin, tmp_path):
    ports = free_ports(4)
    lines = base_lines(tmp_path, ports) + ["", "[tls]", "cert = %s/missing-cert.pem" % tmp_path,
                                           "key = %s/missing-key.pem" % tmp_path]
    lines.insert(lines.index("[pop3]") + 1, "listen_tls = 127.0.0.1:%d" % ports[3])
    path = tmp_path / "nocert.conf"
    path.write_text("\n".join(lines) + "\n")
    r = run_serve(tern_bin, path)
    assert r.returncode != 0
    assert "missing-cert.pem" in r.stderr, r.stderr


def test_sigint_exits_zero(servers):
    s = servers.create()
    s.stop(sig=signal.SIGINT)


def test_admin_listen_without_token_file_is_refused(tern_bin, tmp_path):
    admin_port, = free_ports(1)
    ports = free_ports(4)
    text, lineno = with_line(base_lines(tmp_path, ports) + ["[admin]"], "admin",
                             "listen = 127.0.0.1:%d" % admin_port)
    path = tmp_path / "tern.conf"
    path.write_text(text)
    r = run_serve(tern_bin, path)
    assert_points_at(r, path, lineno)
    assert "token_file" in r.stderr


def test_explicit_defaults_accepted(servers):
    s = servers.create(overrides={"tls": {"min_version": "1.2"},
                                  "auth": {"plaintext": "tls_or_loopback"}})
    with s.pop3s() as c:
        assert c.greeting.startswith("+OK")


def test_deliver_with_bad_config_is_ex_config(tern_bin, tmp_path):
    ports = free_ports(3)
    text, lineno = with_line(base_lines(tmp_path, ports), "store", "pop3_ids = banana")
    path = tmp_path / "bad.conf"
    path.write_text(text)
    r = subprocess.run([str(tern_bin), "-c", str(path), "deliver", "a@example.test"],
                       input="Subject: x\n\ny\n", capture_output=True, text=True, timeout=CLI_TIMEOUT)
    check_sanitizer_output(r.stderr, "tern deliver")
    assert r.returncode == 78, "EX_CONFIG expected, got %s: %s" % (r.returncode, r.stderr)
    assert_points_at(r, path, lineno)


# --------------------------------------------------------------------------
# [queue], [relay], [dkim]: values out of range name their line; files that
# serve could not read are reported by check-config, with the key's line.

OUTBOUND_BAD = [
    ("queue", "retry_min = 0s", "retry_min"),
    ("queue", "retry_max = banana", "retry_max"),
    ("queue", "lease = 1s", "lease"),
    ("queue", "scan_interval = 1ms", "scan_interval"),
    ("queue", "node_id = %s" % ("n" * 65), "node_id"),
    ("relay", "concurrency = 0", "concurrency"),
    ("relay", "concurrency = 100000", "concurrency"),
    ("relay", "command_timeout = 30d", "command_timeout"),
    ("relay", "connect_timeout = 10ms", "connect_timeout"),
    ("relay", "tls = maybe", "tls"),
    ("relay", "port = 0", "port"),
]


def outbound_lines(tmp_path, ports, relay=(), dkim=()):
    return base_lines(tmp_path, ports) + ["", "[queue]", "", "[relay]"] + \
        list(relay) + ["", "[dkim]"] + list(dkim)


@pytest.mark.parametrize("section,line,word", OUTBOUND_BAD, ids=[b[1][:40] for b in OUTBOUND_BAD])
def test_bad_outbound_value_names_file_and_line(tern_bin, tmp_path, section, line, word):
    ports = free_ports(3)
    text, lineno = with_line(outbound_lines(tmp_path, ports), section, line)
    path = tmp_path / "bad.conf"
    path.write_text(text)
    r = run_serve(tern_bin, path)
    assert_points_at(r, path, lineno)
    assert word in r.stderr, r.stderr


def test_check_config_reports_unreadable_dkim_key_and_relay_password(tern_bin, tmp_path):
    from .test_service import check_config
    ports = free_ports(3)
    missing_key = tmp_path / "no-such-key.pem"
    missing_pw = tmp_path / "no-such-password"
    lines = outbound_lines(tmp_path, ports,
                           relay=["smarthost = 127.0.0.1:2525", "username = u",
                                  "password_file = %s" % missing_pw],
                           dkim=["domain = tern.test", "selector = s1", "key_file = %s" % missing_key])
    path = tmp_path / "outbound.conf"
    path.write_text("\n".join(lines) + "\n")
    key_line = lines.index("key_file = %s" % missing_key) + 1
    pw_line = lines.index("password_file = %s" % missing_pw) + 1
    r = check_config(tern_bin, path)
    assert r.returncode == 78, r
    assert "%s:%d: [dkim] key_file %s" % (path, key_line, missing_key) in r.stderr, r.stderr
    assert "%s:%d: [relay] password_file %s: cannot read it" % (path, pw_line, missing_pw) in r.stderr, \
        r.stderr
    # serve refuses the same, with the same words
    r = run_serve(tern_bin, path)
    assert r.returncode == 78, r.stderr
    assert "%s:%d: [dkim] key_file" % (path, key_line) in r.stderr, r.stderr

    # a key file that is no key, an empty password file
    missing_key.write_text("not a key\n")
    missing_pw.write_text("\n")
    r = check_config(tern_bin, path)
    assert r.returncode == 78, r
    assert "%s:%d: [dkim] key_file" % (path, key_line) in r.stderr, r.stderr
    assert "%s:%d: [relay] password_file %s: the first line is empty" % (path, pw_line, missing_pw) \
        in r.stderr, r.stderr

    # a smarthost check-config could not parse is reported too
    lines = outbound_lines(tmp_path, ports, relay=["smarthost = [::1"])
    path.write_text("\n".join(lines) + "\n")
    r = check_config(tern_bin, path)
    assert r.returncode == 78 and "[relay] relay: smarthost must be host:port" in r.stderr, r


def test_check_config_accepts_a_readable_dkim_key(tern_bin, tmp_path):
    from .test_service import check_config
    from .ternserver import require_tool
    ports = free_ports(3)
    key = tmp_path / "dkim.pem"
    r = subprocess.run([require_tool("openssl"), "genpkey", "-algorithm", "ed25519", "-out", str(key)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = outbound_lines(tmp_path, ports,
                           dkim=["domain = tern.test", "selector = s1", "key_file = %s" % key])
    path = tmp_path / "ok.conf"
    path.write_text("\n".join(lines) + "\n")
    r = check_config(tern_bin, path)
    assert r.returncode == 0, r.stderr
