#!/usr/bin/env python3
"""Readiness probe for tools/cassandra/cassandra.sh, speaking CQL v4 itself.

cqlping.py HOST PORT [--quick] [--peers N] [--auth USER:PASSWORD]
Exit 0 when STARTUP gets READY and (with --peers) system.peers has at least N
rows whose rpc_address is set; 1 otherwise. --quick only checks that the
handshake answers. No driver is needed, so readiness does not depend on tern's
own build.
"""
import socket
import struct
import sys


def frame(stream, opcode, body):
    return struct.pack(">BBhBi", 4, 0, stream, opcode, len(body)) + body


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed")
        out += chunk
    return out


def request(sock, stream, opcode, body):
    sock.sendall(frame(stream, opcode, body))
    hdr = recv_exact(sock, 9)
    _, _, rstream, rop, length = struct.unpack(">BBhBi", hdr)
    return rop, recv_exact(sock, length)


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, n):
        v = self.d[self.p:self.p + n]
        if len(v) != n:
            raise ValueError("short body")
        self.p += n
        return v

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def string(self):
        return self.take(self.short()).decode()

    def option(self):
        oid = self.short()
        if oid == 0:
            self.string()
        elif oid in (0x20, 0x22):
            self.option()
        elif oid == 0x21:
            self.option()
            self.option()
        elif oid == 0x30:
            self.string()
            self.string()
            for _ in range(self.short()):
                self.string()
                self.option()
        elif oid == 0x31:
            for _ in range(self.short()):
                self.option()


def peers_with_rpc(body):
    r = Reader(body)
    if r.int() != 2:
        return 0
    flags, ncols = r.int(), r.int()
    if flags & 2:
        n = r.int()
        if n > 0:
            r.take(n)
    if not flags & 4:
        if flags & 1:
            r.string()
            r.string()
        for _ in range(ncols):
            if not flags & 1:
                r.string()
                r.string()
            r.string()
            r.option()
    count = 0
    for _ in range(r.int()):
        set_ = False
        for _c in range(ncols):
            n = r.int()
            if n > 0:
                r.take(n)
                set_ = True
        count += 1 if set_ else 0
    return count


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    quick = "--quick" in sys.argv
    peers = int(sys.argv[sys.argv.index("--peers") + 1]) if "--peers" in sys.argv else 0
    with socket.create_connection((host, port), timeout=3) as sock:
        op, _ = request(sock, 0, 0x01, struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0"))
        if op == 0x03 and "--auth" in sys.argv:
            user, password = sys.argv[sys.argv.index("--auth") + 1].split(":", 1)
            token = b"\0" + user.encode() + b"\0" + password.encode()
            op, _ = request(sock, 0, 0x0F, struct.pack(">i", len(token)) + token)
            if op != 0x10:
                return 1
        elif op != 0x02:
            return 1
        if quick:
            return 0
        q = "SELECT rpc_address FROM system.peers"
        body = struct.pack(">i", len(q)) + q.encode() + struct.pack(">HB", 1, 0)
        op, resp = request(sock, 1, 0x07, body)
        if op != 0x08:
            return 1
        return 0 if peers_with_rpc(resp) >= peers else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, EOFError, ValueError):
        sys.exit(1)
