"""What the Python benchmarks share: free loopback ports, and a tern server
on Cassandra with LMTP and POP3 listeners, a domain, and a clean stop."""
import os
import signal
import socket
import subprocess
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class CassandraTern:
    """tern serve on Cassandra (contact, local_dc dc1, replication repl),
    in a keyspace of its own; the domain exists, users are added by add_user."""

    def __init__(self, binary, workdir, keyspace, pop3_ids, domain, contact="127.0.0.1",
                 replication="dc1:1"):
        self.binary = binary
        self.lmtp, self.pop3 = free_port(), free_port()
        self.conf = os.path.join(workdir, keyspace + ".conf")
        with open(self.conf, "w") as f:
            f.write("[server]\nhostname = %s\ndata_dir = %s\n"
                    "[lmtp]\nlisten = 127.0.0.1:%d\n[pop3]\nlisten = 127.0.0.1:%d\n"
                    "[store]\nbackend = cassandra\npop3_ids = %s\n"
                    "[cassandra]\ncontact_points = %s\nlocal_dc = dc1\nkeyspace = %s\n"
                    "replication = %s\n" % (domain, workdir, self.lmtp, self.pop3, pop3_ids,
                                             contact, keyspace, replication))
        self.cli("domain", "add", domain)
        self.log = open(os.path.join(workdir, keyspace + ".log"), "w")
        self.proc = subprocess.Popen([binary, "-c", self.conf, "serve"], stderr=self.log)
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.pop3), 1).close()
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("tern did not start; see " + self.log.name)
                time.sleep(0.1)

    def cli(self, *args, input=None):
        subprocess.run([self.binary, "-c", self.conf] + list(args), input=input, text=True,
                       check=True, capture_output=True, timeout=120)

    def add_user(self, addr, password="pw"):
        self.cli("user", "add", addr, input=password + "\n")

    def stop(self):
        """Stops the server; returns its cassandra statistics lines."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()
        with open(self.log.name) as f:
            return [line for line in f if "conditional statements" in line]
