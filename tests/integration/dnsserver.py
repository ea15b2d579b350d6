"""An authoritative DNS server on loopback for the outbound-delivery tests.

NSD serves the zones a test gives; a zone can be DNSSEC-signed (ldns-keygen
and ldns-signzone, ECDSA P-256 with NSEC), and `trust_anchor` is then a file
of the signed zones' DS records, for the resolver under test
(relay_settings.trust_anchor_file, relay-probe --ta). Names of a zone that
have no records answer NXDOMAIN (with an NSEC proof when signed); a name
with records of other types only answers NOERROR without data.

    dns = DnsServer("127.0.0.53")
    dns.zone("example.test", [
        ("example.test", "MX", "10 mx1.example.test."),
        ("mx1.example.test", "A", "127.0.0.61"),
    ])
    dns.zone("sec.test", [...], signed=True)
    dns.start()          # dns.resolver == "127.0.0.53:PORT"
    ...
    dns.stop()           # the port is free when this returns

Records are (owner, type, rdata) as in a zone file; an owner without a
trailing dot is taken as absolute all the same. A null MX (RFC 7505) is
("example.test", "MX", "0 ."). `tlsa_3_1_1(cert_pem)` gives the rdata of a
DANE-EE SPKI SHA-256 record for a certificate. A zone added or changed
after start() takes effect at the next start() (stop first).
"""
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT = 10.0


def _tool(name):
    path = shutil.which(name)
    if not path:
        pytest.fail("required tool '%s' is not installed (scripts/install-deps.sh installs it)" % name)
    return path


def _abs(name):
    return name if name.endswith(".") else name + "."


def free_port(host):
    """A port free for both UDP and TCP on host."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind((host, 0))
            port = t.getsockname()[1]
            u.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port on %s" % host)


def tlsa_3_1_1(cert_pem):
    """'3 1 1 HEX': DANE-EE, SubjectPublicKeyInfo, SHA-256, of a PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_pem_x509_certificate(Path(cert_pem).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "3 1 1 " + hashlib.sha256(spki).hexdigest()


def query(host, port, name, qtype=6, timeout=1.0):
    """One UDP query; returns the reply's RCODE, or None without a reply."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", 0x7e57, 0, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(packet, (host, port))
        data, _ = s.recvfrom(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 12 or data[:2] != packet[:2]:
        return None
    return data[3] & 0x0f


class DnsServer:
    """NSD on host:port (a free port when None) with the zones added."""

    def __init__(self, host="127.0.0.53", port=None):
        self.host = host
        self.port = port
        self.zones = {}     # name -> (records, signed)
        self.proc = None
        self.dir = Path(tempfile.mkdtemp(prefix="tern-dns-"))
        self.trust_anchor = None

    @property
    def resolver(self):
        return "%s:%d" % (self.host, self.port)

    def zone(self, name, records, signed=False):
        """Adds (or replaces) a zone: records as (owner, type, rdata)."""
        self.zones[_abs(name).lower()] = (list(records), signed)

    def _write_zone(self, name, records, signed):
        lines = ["$TTL 30",
                 "%s IN SOA ns.%s hostmaster.%s 1 3600 600 86400 30" % (name, name, name),
                 "%s IN NS ns.%s" % (name, name),
                 "ns.%s IN A %s" % (name, self.host)]
        for owner, rtype, rdata in records:
            lines.append("%s IN %s %s" % (_abs(owner), rtype, rdata))
        path = self.dir / (name + "zone")
        path.write_text("\n".join(lines) + "\n")
        if not signed:
            return path.name, None
        keygen, signzone = _tool("ldns-keygen"), _tool("ldns-signzone")
        r = subprocess.run([keygen, "-a", "ECDSAP256SHA256", "-k", name], cwd=self.dir,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        base = r.stdout.strip()
        r = subprocess.run([signzone, "-o", name, path.name, base], cwd=self.dir,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return path.name + ".signed", (self.dir / (base + ".ds")).read_text()

    def start(self):
        nsd = _tool("nsd")
        if self.port is None:
            self.port = free_port(self.host)
        conf = ["server:",
                "  ip-address: %s@%d" % (self.host, self.port),
                "  port: %d" % self.port,
                '  username: ""', '  chroot: ""',
                '  zonesdir: "%s"' % self.dir,
                '  database: ""',
                '  zonelistfile: "%s/zone.list"' % self.dir,
                '  xfrdfile: "%s/xfrd.state"' % self.dir,
                '  xfrdir: "%s"' % self.dir,
                '  pidfile: "%s/nsd.pid"' % self.dir,
                '  logfile: "%s/nsd.log"' % self.dir,
                "  server-count: 1", "  verbosity: 1", "  do-ip6: no",
                "remote-control:", "  control-enable: no"]
        anchors = []
        for name, (records, signed) in sorted(self.zones.items()):
            zonefile, ds = self._write_zone(name, records, signed)
            if ds:
                anchors.append(ds)
            conf += ["zone:", "  name: %s" % name, '  zonefile: "%s"' % zonefile]
        if anchors:
            self.trust_anchor = str(self.dir / "trust-anchor.ds")
            Path(self.trust_anchor).write_text("".join(anchors))
        (self.dir / "nsd.conf").write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen([nsd, "-d", "-c", str(self.dir / "nsd.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        probe = next(iter(self.zones), "test.")
        deadline = time.monotonic() + START_TIMEOUT
        while query(self.host, self.port, probe, timeout=0.2) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                log = (self.dir / "nsd.log").read_text() if (self.dir / "nsd.log").exists() else ""
                self.stop()
                raise RuntimeError("nsd did not start: %s %s" % (err, log))
        return self

    def stop(self):
        """Stops NSD and waits for it, so the port is free on return."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc.stderr.close()
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
