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


@pytest.fixture(scope="session")
def cassandra_node():
    reason = tern_cassandra.skip_reason()
    if reason:
        pytest.skip(reason)
    if os.environ.get("TERN_CASSANDRA_RUNNING") == "1":
        yield CONTACT
        return
    missing = tern_cassandra.missing_tools()
    if missing:
        pytest.fail(missing, pytrace=False)
    cluster = tern_cassandra.CassandraCluster()
    cluster.fetch()
    cluster.ensure("single")
    yield CONTACT
    cluster.stop_all()


@pytest.fixture
def cass_servers(cassandra_node, tern_bin, tmp_path_factory, cert):
    """Creates tern servers on the Cassandra node:
    cass_servers(keyspace, pop3_ids="messageid")."""
    pool = ServerPool(tern_bin, tmp_path_factory, cert)

    def create(keyspace, pop3_ids="messageid", **kw):
        overrides = {"store": {"backend": "cassandra", "pop3_ids": pop3_ids},
                     "cassandra": {"contact_points": cassandra_node, "local_dc": "dc1",
                                   "keyspace": keyspace, "replication": "dc1:1"}}
        return pool.create(pop3_ids=pop3_ids, overrides=overrides, **kw)

    yield create
    pool.stop_all()
