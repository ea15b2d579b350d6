"""Fixtures for the black-box integration suite (see ternserver.py for the
server helper and helpers.py for the protocol clients)."""
import os
import shutil
import subprocess

import pytest

from .ternserver import _RUNNING, BACKEND, ServerPool, binary_path, require_tool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="session", autouse=True)
def cassandra_backend():
    """With TERN_TEST_BACKEND=cassandra, one real Cassandra node serves the
    whole run (tools/cassandra); otherwise nothing to do."""
    if BACKEND != "cassandra":
        yield None
        return
    if os.environ.get("TERN_CASSANDRA_RUNNING") == "1":
        # A node the developer already runs on 127.0.0.1:9042 (dc1).
        yield None
        return
    import sys
    sys.path.insert(0, os.path.join(REPO, "tools", "cassandra"))
    import tern_cassandra
    cluster = tern_cassandra.pytest_cluster(pytest)
    cluster.ensure("single")
    yield cluster
    cluster.stop_all()


@pytest.fixture(scope="session")
def tern_bin(tmp_path_factory):
    """A private copy of the binary, so a rebuild during the run does not
    change (or briefly remove) the program under test."""
    path = binary_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail("tern binary not found at %s (build it: cmake -S . -B build && "
                    "cmake --build build, or set TERN_BIN)" % path)
    copy = tmp_path_factory.mktemp("bin") / "tern"
    shutil.copy2(path, copy)
    return copy


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    """A self-signed RSA certificate for CN=localhost: (cert_path, key_path)."""
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("cert")
    crt, key = d / "cert.pem", d / "key.pem"
    r = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return crt, key


@pytest.fixture(scope="module")
def module_servers(tern_bin, tmp_path_factory, cert):
    pool = ServerPool(tern_bin, tmp_path_factory, cert)
    yield pool
    pool.stop_all()


@pytest.fixture
def servers(tern_bin, tmp_path_factory, cert):
    """Per-test servers (for tests that need their own configuration)."""
    pool = ServerPool(tern_bin, tmp_path_factory, cert)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def server(module_servers):
    """The default server of a module: SQLite, TLS configured, messageid."""
    return module_servers.create()


@pytest.fixture(autouse=True)
def _server_health():
    """After each test: every server still meant to run must be alive and
    free of sanitizer reports. A dead server is restarted for the next test."""
    yield
    problems = []
    for s in list(_RUNNING):
        if s.proc is not None and s.proc.poll() is not None:
            rc = s.proc.returncode
            s._forget()
            problems.append("tern serve died during the test (rc %s):\n%s" % (rc, s.log_tail()))
            try:
                s.start()
            except BaseException as e:  # keep reporting the original death
                problems.append("restart failed: %s" % e)
            continue
        try:
            s.check_sanitizer()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n\n".join(problems))
