"""Python side of tools/cassandra/cassandra.sh, for pytest fixtures.

One CassandraCluster object per test session owns a base directory and runs
at most one topology at a time ("single", "single-auth" or "two-dc"): all use
127.0.0.1:9042, so asking for the other one stops the running one first.
Every start and stop goes through cassandra.sh, which only ever signals the
pids it recorded itself.

    TERN_SKIP_CASSANDRA=1   skip the tests that need Cassandra
    TERN_CASSANDRA_DIR      where the nodes live (default <repo>/build/cassandra/test)
"""
import os
import shutil
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "cassandra.sh")
# topology -> the cassandra.sh start command (DIR goes after the first word)
TOPOLOGIES = {
    "single": ["start-single"],
    "single-auth": ["start-single", "auth"],   # PasswordAuthenticator, cassandra/cassandra
    # The datacenters talk through relays, so tests can cut them apart.
    "two-dc": ["start-two-dc", "relay"],
}


def skip_reason():
    """None when the tests should run, else why they are skipped."""
    if os.environ.get("TERN_SKIP_CASSANDRA") == "1":
        return "TERN_SKIP_CASSANDRA=1"
    return None


def missing_tools():
    """A message naming what is missing (java 17, mvn), or None."""
    missing = [t for t in ("java", "mvn") if shutil.which(t) is None]
    if missing:
        return ("the Cassandra tests need %s on PATH (OpenJDK 17 and Maven; "
                "scripts/install-deps.sh installs them), or set "
                "TERN_SKIP_CASSANDRA=1 to skip them" % " and ".join(missing))
    return None


class CassandraCluster:
    def __init__(self, base=None):
        self.base = base or os.environ.get(
            "TERN_CASSANDRA_DIR", os.path.join(REPO, "build", "cassandra", "test"))
        self.topology = None
        self.timings = {}

    def _run(self, *args, timeout=600):
        t0 = time.monotonic()
        proc = subprocess.run(["sh", SCRIPT] + list(args), capture_output=True,
                              text=True, timeout=timeout)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError("cassandra.sh %s failed (exit %d):\n%s%s" % (
                " ".join(args), proc.returncode, proc.stdout, proc.stderr))
        return elapsed, proc.stderr

    def dir(self, topology):
        return os.path.join(self.base, topology)

    def fetch(self):
        self._run("fetch", timeout=1200)

    def ensure(self, topology):
        """Starts topology (a key of TOPOLOGIES) unless it already runs."""
        if self.topology == topology and self.running(topology):
            return
        self.stop_all()
        cmd = TOPOLOGIES[topology]
        elapsed, log = self._run(cmd[0], self.dir(topology), *cmd[1:])
        self.timings[topology] = (elapsed, log.strip())
        self.topology = topology

    def running(self, topology):
        if not os.path.isdir(self.dir(topology)):
            return False
        out = subprocess.run(["sh", SCRIPT, "status", self.dir(topology)],
                             capture_output=True, text=True).stdout
        return "running" in out and "stopped" not in out

    def stop_node(self, n, kill=False):
        args = ["stop-node", self.dir(self.topology), str(n)]
        if kill:
            args.append("kill")
        self._run(*args)

    def nodetool(self, n, *args):
        """Runs nodetool against node N of the running topology."""
        return self._run("nodetool", self.dir(self.topology), str(n), *args)

    def kill_now(self, n):
        """SIGKILLs node N of the running topology from this process, with
        no script in between (a test that kills right after an
        acknowledgement), then lets cassandra.sh see it stopped. Only the
        pid cassandra.sh recorded, and only while it is that node's java."""
        node = os.path.join(self.dir(self.topology), "node%d" % n)
        with open(os.path.join(node, "pid")) as f:
            pid = int(f.read())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().replace(b"\0", b" ")
        if ("-Dtern.node=%s " % node).encode() not in cmdline:
            raise RuntimeError("pid %d is not node%d's java" % (pid, n))
        os.kill(pid, 9)
        self.stop_node(n, kill=True)

    def cut(self):
        """Partitions the two datacenters (two-dc only): every byte between
        them is dropped until heal()."""
        self._run("cut", self.dir(self.topology))

    def heal(self):
        self._run("heal", self.dir(self.topology))

    def start_node(self, n):
        return self._run("start-node", self.dir(self.topology), str(n))[0]

    def tls_ca(self):
        """The CA file that verifies the running nodes' TLS certificate."""
        return os.path.join(self.dir(self.topology), "tls", "ca.pem")

    def stop_all(self):
        for topology in TOPOLOGIES:
            if os.path.isdir(self.dir(topology)):
                self._run("stop", self.dir(topology))
        self.topology = None


_shared = None


def pytest_cluster(pytest):
    """The one CassandraCluster of this test process, ready to start nodes.

    Skips (TERN_SKIP_CASSANDRA=1) or fails (java/mvn missing) the calling
    test through the given pytest module, and fetches the jars once. Every
    conftest that needs Cassandra shares this object, so the topologies
    they ask for never fight over 127.0.0.1:9042.
    """
    global _shared
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    missing = missing_tools()
    if missing:
        pytest.fail(missing, pytrace=False)
    if _shared is None:
        _shared = CassandraCluster()
        _shared.fetch()
    return _shared
