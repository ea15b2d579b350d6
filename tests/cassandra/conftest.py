"""Fixtures for the Cassandra store tests: one real Cassandra node for the
session (tools/cassandra), and tern servers configured to use it, each with
a keyspace of its own."""
import os
import sys

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(REPO, "tools", "cassandra"))

import tern_cassandra  # noqa: E402
from integration.conftest import cert, tern_bin, _server_health  # noqa: E402,F401
from integration.ternserver import ServerPool  # noqa: E402

CONTACT = os.environ.get("TERN_CASSANDRA_CONTACT", "127.0.0.1")
# The two-datacenter cluster: dc1 and dc2 node addresses.
DC1 = os.environ.get("TERN_CASSANDRA_DC1", "127.0.0.1")
DC2 = os.environ.get("TERN_CASSANDRA_DC2", "127.0.0.2")
if os.environ.get("TERN_CASSANDRA_SCRIPT"):
    # A developer's own launcher (e.g. with other loopback addresses).
    tern_cassandra.SCRIPT = os.environ["TERN_CASSANDRA_SCRIPT"]


@pytest.fixture(scope="session")
def cluster():
    """The test process's one Cassandra launcher (shared with tests/cql, so
    the suites never fight over the same addresses); nodes start on use."""
    if os.environ.get("TERN_CASSANDRA_STORE_DIR"):
        # A developer's own directory (with TERN_CASSANDRA_SCRIPT).
        c = tern_cassandra.CassandraCluster(os.environ["TERN_CASSANDRA_STORE_DIR"])
        c.fetch()
    else:
        c = tern_cassandra.pytest_cluster(pytest)
    yield c
    c.stop_all()


@pytest.fixture(scope="session")
def cassandra_node(request):
    if os.environ.get("TERN_CASSANDRA_RUNNING") == "1":
        if tern_cassandra.skip_reason():
            pytest.skip(tern_cassandra.skip_reason())
        return CONTACT
    request.getfixturevalue("cluster").ensure("single")
    return CONTACT


@pytest.fixture(scope="module")
def two_dc(cluster):
    """dc1 on DC1 and dc2 on DC2, for the module (restarted if a test
    left a node down)."""
    cluster.ensure("two-dc")
    return cluster


@pytest.fixture
def cass_servers(request, tern_bin, tmp_path_factory, cert):
    """Creates tern servers on the Cassandra node:
    cass_servers(keyspace, pop3_ids="messageid", overrides={section: {key: value}})."""
    pool = ServerPool(tern_bin, tmp_path_factory, cert)
    # The two-datacenter tests name their contact points themselves.
    cassandra_node = None if "two_dc" in request.fixturenames else \
        request.getfixturevalue("cassandra_node")

    def create(keyspace, pop3_ids="messageid", contact=None, local_dc="dc1",
               replication="dc1:1", overrides=None, **kw):
        sections = {"store": {"backend": "cassandra", "pop3_ids": pop3_ids},
                    "cassandra": {"contact_points": contact or cassandra_node,
                                  "local_dc": local_dc, "keyspace": keyspace,
                                  "replication": replication}}
        for sec, keys in (overrides or {}).items():
            sections.setdefault(sec, {}).update(keys)
        return pool.create(pop3_ids=pop3_ids, overrides=sections, **kw)

    yield create
    pool.stop_all()


class AdminPool:
    """What integration.test_admin.start_admin_server needs of a pool: a
    create() that makes a server (not yet started) on cass_servers(*args,
    **kw)."""

    def __init__(self, cass_servers, *args, **kw):
        self.make, self.args, self.kw = cass_servers, args, kw

    def create(self, start=True, **kw):
        return self.make(*self.args, start=start, **dict(self.kw, **kw))
