"""A minimal CQL v4 client for test assertions (count rows, read uuids),
independent of tern's own lib-cql so the tests check tern from outside."""
import os
import socket
import struct
import sys
import uuid


# The frame codec of the readiness probe (tools/cassandra/cqlping.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "cassandra"))
from cqlping import Reader, frame as _frame, recv_exact as _recv, string as _pack_string  # noqa: E402


def query(host, cql, port=9042, timeout=30):
    """Runs cql at consistency ONE; returns a list of rows of raw bytes."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        body = struct.pack(">H", 1) + _pack_string("CQL_VERSION") + _pack_string("3.0.0")
        s.sendall(_frame(0, 0x01, body))
        op, _ = _read(s)
        assert op == 0x02, "STARTUP: opcode %d" % op
        q = cql.encode()
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0)
        s.sendall(_frame(1, 0x07, body))
        op, data = _read(s)
        r = Reader(data)
        if op == 0x00:
            code = r.int()
            raise RuntimeError("CQL error 0x%04x: %s" % (code, r.string()))
        kind = r.int()
        if kind != 2:
            return []
        flags, ncols = r.int(), r.int()
        if flags & 0x0002:
            r.take(r.int())
        if not flags & 0x0004:
            glob = flags & 0x0001
            if glob:
                r.string(), r.string()
            for _ in range(ncols):
                if not glob:
                    r.string(), r.string()
                r.string()
                r.option()
        rows = []
        for _ in range(r.int()):
            row = []
            for _ in range(ncols):
                n = r.int()
                row.append(None if n < 0 else r.take(n))
            rows.append(row)
        return rows
    finally:
        s.close()


def _read(sock):
    """One response frame, with the tracing id, warnings and custom payload
    (frame flags 0x02, 0x08, 0x04) skipped."""
    _, flags, _, op, length = struct.unpack(">BBhBi", _recv(sock, 9))
    r = Reader(_recv(sock, length))
    if flags & 0x02:
        r.take(16)
    if flags & 0x08:
        for _ in range(r.short()):
            r.string()
    if flags & 0x04:
        for _ in range(r.short()):
            r.string()
            r.take(r.int())
    return op, r.d[r.p:]


def count(host, cql, port=9042):
    rows = query(host, cql, port)
    return struct.unpack(">q", rows[0][0])[0]


def table_ids(host, keyspace, port=9042):
    rows = query(host, "SELECT id FROM system_schema.tables WHERE keyspace_name = '%s'"
                 % keyspace, port)
    return [uuid.UUID(bytes=r[0]) for r in rows]


def paxos_rows(host, keyspace, port=9042):
    """Rows of system.paxos that belong to the tables of keyspace."""
    total = 0
    for tid in table_ids(host, keyspace, port):
        total += count(host, "SELECT count(*) FROM system.paxos WHERE cf_id = %s ALLOW FILTERING"
                       % tid, port)
    return total
