"""A TCP relay in front of a Cassandra node that makes every request slow
on demand: what the client sends is held `delay` seconds before it is
passed on, and the answers come back at once. While a delay is set, each
request takes at least that long, and none takes much longer, so a test
can make a sequence of writes slow without any one of them reaching the
client's request deadline. Loopback only; one thread per direction of
each connection.

    relay = DelayRelay("127.0.0.1")     # listens on 127.0.0.1:relay.port
    relay.delay = 3.0                   # from now on (and for bytes queued)
    relay.delay = 0                     # what is queued goes at once
    relay.close()
"""
import queue
import socket
import threading
import time


class DelayRelay:
    def __init__(self, target_host, target_port=9042):
        assert target_host.startswith("127."), "loopback only"
        self.target = (target_host, target_port)
        self.delay = 0.0
        self._lock = threading.Lock()
        self._socks = []
        self._threads = []
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            self._relay(client, server)

    def _relay(self, client, server):
        """Client to server: every read stamped with its time, sent on when
        due; server to client: at once."""
        held = queue.Queue()
        self._spawn(self._copy, client, lambda d: held.put((time.monotonic(), d)),
                    lambda: held.put(None))
        self._spawn(self._send_when_due, held, server)
        self._spawn(self._copy, server, client.sendall, lambda: self._shut(client))

    @staticmethod
    def _copy(src, forward, at_end):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                forward(data)
        except OSError:
            pass
        at_end()

    def _send_when_due(self, held, dst):
        """Each read goes on `delay` seconds after it arrived (the delay in
        force now), in order."""
        try:
            while True:
                item = held.get()
                if item is None:
                    break
                while True:
                    wait = item[0] + self.delay - time.monotonic()
                    if wait <= 0:
                        break
                    time.sleep(min(wait, 0.02))
                dst.sendall(item[1])
        except OSError:
            pass
        self._shut(dst)

    @staticmethod
    def _shut(sock):
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.delay = 0.0
        with self._lock:
            self._closed = True
            socks = list(self._socks)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._listener.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout=5)
