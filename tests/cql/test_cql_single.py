"""lib-cql against one real Cassandra 5.0 node (127.0.0.1, dc1)."""
import subprocess

import pytest

from conftest import run_scenario


@pytest.mark.parametrize("scenario", [
    "basic", "types", "paging", "prepared", "batch", "errors", "unavailable",
    "lwt-stats", "concurrency", "timeout",
])
def test_scenario(single, itest, scenario):
    out = run_scenario(itest, scenario)
    if scenario == "unavailable":
        assert "required 2 alive 1" in out
    if scenario == "paging":
        assert "10000 rows" in out


def test_tls(single, itest, tmp_path):
    """The node accepts TLS (optionally): verified against its CA, unverified,
    and refused with a CA that did not sign it."""
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=other", "-keyout", str(tmp_path / "other.key"),
                    "-out", str(other)], check=True, capture_output=True)
    out = run_scenario(itest, "tls", single.tls_ca(), str(other))
    assert "certificate verify failed" in out


def test_node_stopped_mid_request(single, itest):
    """Writes run while the node is killed: the calls fail with a temporary
    error instead of hanging, and the same session recovers on restart."""
    proc = subprocess.Popen([itest, "127.0.0.1", "node-stop"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "READY":
                single.stop_node(1, kill=True)
            elif line.strip() == "DOWN":
                single.start_node(1)
                proc.stdin.write("restarted\n")
                proc.stdin.flush()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # leave a running node for whoever comes next
        if not single.running("single"):
            single.start_node(1)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "OK node-stop" in out
