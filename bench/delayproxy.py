#!/usr/bin/env python3
"""A TCP relay that delays every byte by a fixed one-way latency, read from
a file so it can change while connections stay up. Stands in for netem
where the kernel has no sch_netem:

    delayproxy.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_FILE

DELAY_FILE holds the delay in milliseconds (missing or empty: 0). Order is
kept; bandwidth is not limited. Loopback only.
"""
import asyncio
import sys
import time


class Delay:
    def __init__(self, path):
        self.path, self.value, self.checked = path, 0.0, 0.0

    def get(self):
        now = time.monotonic()
        if now - self.checked > 0.2:
            self.checked = now
            try:
                with open(self.path) as f:
                    self.value = float(f.read().strip() or 0) / 1000.0
            except (OSError, ValueError):
                self.value = 0.0
        return self.value


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await queue.put((time.monotonic() + delay.get(), data))
    except (ConnectionError, OSError):
        pass
    await queue.put((0, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def main():
    lhost, lport = sys.argv[1].rsplit(":", 1)
    thost, tport = sys.argv[2].rsplit(":", 1)
    delay = Delay(sys.argv[3])
    for h in (lhost, thost):
        assert h.startswith("127."), "loopback only"

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pump(cr, sw, delay), pump(sr, cw, delay))

    server = await asyncio.start_server(handle, lhost, int(lport), reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
