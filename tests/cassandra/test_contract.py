"""The store contract suite (tests/unit/test-store.c, run by CTest on the mem
and sqlite backends) against the Cassandra backend, in both pop3_ids modes,
on a fresh keyspace."""
import os
import subprocess


def test_store_contract_on_cassandra(cassandra_node, tern_bin):
    build = os.path.dirname(os.path.abspath(os.environ.get("TERN_BIN", "build/tern")))
    binary = os.path.join(build, "tests", "unit", "test-store")
    assert os.path.exists(binary), "%s is missing: build first" % binary
    r = subprocess.run([binary, "cassandra", cassandra_node], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ", 0 failed" in r.stdout
    # The suite makes a keyspace per mode; drop them (the node's heap holds
    # every table).
    from integration import cqlquery
    for row in cqlquery.query(cassandra_node, "SELECT keyspace_name FROM system_schema.keyspaces"):
        name = row[0].decode()
        if name.startswith("contract_"):
            cqlquery.query(cassandra_node, "DROP KEYSPACE IF EXISTS %s" % name, timeout=60)
