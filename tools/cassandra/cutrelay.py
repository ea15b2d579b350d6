#!/usr/bin/env python3
"""A TCP relay between Cassandra nodes that can cut the link, for the
partition tests (the kernel has no netem and there may be no iptables):

    cutrelay.py LISTEN_HOST:PORT TARGET_HOST:PORT CUT_FILE

While CUT_FILE exists the link behaves like a network partition: bytes in
both directions of every connection are dropped (nothing is forwarded, no
connection is closed, so the peers see silence and time out), and new
connections are accepted and fed to the same black hole. When CUT_FILE
disappears, the black-holed connections are closed (their streams have
lost bytes, as after a real partition the peers' TCP connections would
have died) and new connections are forwarded again. The relay shows that
it has applied a cut with the file CUT_FILE.LISTEN_HOST (removed on heal).

tools/cassandra/cassandra.sh start-two-dc DIR relay points each node's
broadcast address at its relay (127.0.0.3 for node1, 127.0.0.4 for node2),
so every byte between the two datacenters passes through two relays.
Loopback only.
"""
import asyncio
import os
import sys


class Link:
    def __init__(self, cut_file, name):
        self.cut_file = cut_file
        # Exists while this relay is cutting: `cassandra.sh cut` waits for it.
        self.ack_file = "%s.%s" % (cut_file, name)
        self.cut = False
        self.acknowledge()
        self.conns = set()  # (client writer, server writer or None, generation)
        self.generation = 0

    async def watch(self):
        while True:
            cut = os.path.exists(self.cut_file)
            if cut != self.cut:
                self.cut = cut
                self.generation += 1
                if not cut:
                    # Healed: the connections that lived through the cut
                    # have lost bytes; close them so the peers reconnect.
                    for entry in list(self.conns):
                        for w in entry[:2]:
                            if w is not None:
                                w.close()
                    self.conns.clear()
                self.acknowledge()
            await asyncio.sleep(0.05)

    def acknowledge(self):
        if self.cut:
            open(self.ack_file, "w").close()
        elif os.path.exists(self.ack_file):
            os.unlink(self.ack_file)


async def pump(reader, writer, link, generation):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if link.cut or link.generation != generation:
                continue  # dropped, like packets in a partition
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        writer.close()
    except (ConnectionError, OSError, RuntimeError):
        pass


async def main():
    lhost, lport = sys.argv[1].rsplit(":", 1)
    thost, tport = sys.argv[2].rsplit(":", 1)
    for h in (lhost, thost):
        assert h.startswith("127."), "loopback only"
    link = Link(sys.argv[3], lhost)

    async def handle(cr, cw):
        generation = link.generation
        if link.cut:
            entry = (cw, None, generation)
            link.conns.add(entry)
            try:
                while await cr.read(65536):
                    pass  # the black hole
            except (ConnectionError, OSError):
                pass
            link.conns.discard(entry)
            cw.close()
            return
        try:
            sr, sw = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cw.close()
            return
        entry = (cw, sw, generation)
        link.conns.add(entry)
        await asyncio.gather(pump(cr, sw, link, generation), pump(sr, cw, link, generation))
        link.conns.discard(entry)

    server = await asyncio.start_server(handle, lhost, int(lport), reuse_address=True)
    asyncio.ensure_future(link.watch())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
