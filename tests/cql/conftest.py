"""Fixtures for the lib-cql tests against a real Apache Cassandra.

The nodes come from tools/cassandra (jars fetched from Maven Central on
first use). One node runs for all single-node tests, then the two-DC
cluster for the rest; both are stopped at the end of the session.
TERN_SKIP_CASSANDRA=1 skips these tests; without java/mvn they fail.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools", "cassandra"))

import tern_cassandra  # noqa: E402


def build_dir():
    tern_bin = os.environ.get("TERN_BIN")
    if tern_bin:
        return os.path.dirname(os.path.abspath(tern_bin))
    return os.path.join(REPO, "build")


@pytest.fixture(scope="session")
def cassandra():
    cluster = tern_cassandra.pytest_cluster(pytest)
    yield cluster
    cluster.stop_all()
    for topology, (elapsed, log) in cluster.timings.items():
        sys.stderr.write("\ncassandra %s: started in %.1fs\n%s\n" % (topology, elapsed, log))


@pytest.fixture(scope="session")
def itest():
    path = os.path.join(build_dir(), "tests", "cql", "cql-itest")
    if not os.path.exists(path):
        pytest.fail("%s is missing: build first (cmake --build build)" % path, pytrace=False)
    return path


@pytest.fixture
def single(cassandra):
    cassandra.ensure("single")
    return cassandra


@pytest.fixture
def single_auth(cassandra):
    cassandra.ensure("single-auth")
    return cassandra


@pytest.fixture
def two_dc(cassandra):
    cassandra.ensure("two-dc")
    return cassandra


def run_scenario(itest, scenario, *args, host="127.0.0.1", timeout=300):
    proc = subprocess.run([itest, host, scenario] + list(args), capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, "scenario %s failed:\n%s" % (scenario, out)
    assert "OK %s" % scenario in proc.stdout, out
    return proc.stdout
