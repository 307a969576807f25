#!/usr/bin/env python3
"""A TCP delay line: the round-trip time of a WAN without its throughput limit.

    delayline.py LISTEN_HOST:PORT TARGET_HOST:PORT RTT_MS [--log FILE]

Every client connection accepted on LISTEN gets its own connection to TARGET.
Each byte is delivered half the round-trip time after it arrived, in each
direction, so a request and its response take one RTT more than without the
line. A new connection costs one RTT more before its first byte goes out (a
TCP handshake over the real link), so a request on a fresh connection takes
two RTTs, as it does over a WAN.

A delay line, not a pause: chunks are timestamped as they arrive and released
when they are due while later chunks keep arriving, so the line holds a
round-trip's worth of data in flight and throughput is whatever the path
behind it allows (the bench harness puts a `tc tbf` rate limit there). What it
does not model: the TCP slow start and congestion window of a real long path
(both legs of the proxied connection have a near-zero RTT), loss and jitter.

Memory per direction is bounded: reading pauses while more than QUEUE_LIMIT
bytes wait, or while the receiving side's socket buffer is full.

Stops on SIGTERM or SIGINT. With --log, one line per closed connection:
{"up": bytes client->target, "down": bytes target->client, "s": seconds open}.
"""
import argparse
import asyncio
import ctypes
import json
import signal
import socket
import sys

QUEUE_LIMIT = 32 << 20
RESUME_BELOW = QUEUE_LIMIT // 2
WRITE_HIGH_WATER = 1 << 20


class Direction:
    """One direction of a proxied connection: chunks wait here until due."""

    def __init__(self, loop, delay, not_before=0.0):
        self.loop = loop
        self.delay = delay
        self.not_before = not_before  # no byte leaves earlier (the handshake's RTT)
        self.queue = []  # (due, bytes or None for end of stream); a list used as a FIFO
        self.head = 0
        self.queued = 0
        self.timer = None
        self.source = None  # transport we read from
        self.sink = None  # transport we write to (None until connected)
        self.sink_paused = False
        self.reading_paused = False
        self.done = False
        self.bytes = 0
        self.on_done = None

    def push(self, data):
        due = max(self.loop.time(), self.not_before) + self.delay
        self.queue.append((due, data))
        if data is not None:
            self.queued += len(data)
            self.bytes += len(data)
        self._throttle()
        self._schedule()

    def _schedule(self):
        if self.timer is not None or self.head == len(self.queue) or self.sink is None or self.sink_paused:
            return
        due = self.queue[self.head][0]
        self.timer = self.loop.call_at(due, self._flush)

    def _flush(self):
        self.timer = None
        now = self.loop.time()
        while self.head < len(self.queue) and not self.sink_paused:
            due, data = self.queue[self.head]
            if due > now:
                break
            self.head += 1
            if data is None:
                self._finish()
                return
            self.queued -= len(data)
            self.sink.write(data)
        if self.head > 1024 and self.head * 2 > len(self.queue):
            del self.queue[: self.head]
            self.head = 0
        self._throttle()
        self._schedule()

    def _finish(self):
        self.done = True
        if self.sink.can_write_eof():
            self.sink.write_eof()
        if self.on_done:
            self.on_done()

    def _throttle(self):
        if self.source is None:
            return
        full = self.queued > QUEUE_LIMIT or self.sink_paused
        if full and not self.reading_paused:
            self.reading_paused = True
            self.source.pause_reading()
        elif not full and self.reading_paused and self.queued < RESUME_BELOW:
            self.reading_paused = False
            self.source.resume_reading()

    def attach_sink(self, transport):
        self.sink = transport
        self._schedule()

    def sink_pause(self, paused):
        self.sink_paused = paused
        self._throttle()
        if not paused:
            self._schedule()

    def cancel(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Side(asyncio.Protocol):
    """One socket of a proxied connection: what it receives goes into `inbound`;
    `outbound` is the direction that writes to it."""

    def __init__(self, conn, inbound, outbound):
        self.conn = conn
        self.inbound = inbound
        self.outbound = outbound
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.inbound.source = transport
        self.outbound.attach_sink(transport)

    def data_received(self, data):
        self.inbound.push(data)

    def eof_received(self):
        self.inbound.push(None)
        return True  # keep the other half open until its data is delivered

    def pause_writing(self):
        self.outbound.sink_pause(True)

    def resume_writing(self):
        self.outbound.sink_pause(False)

    def connection_lost(self, exc):
        self.conn.close(error=exc is not None)


class Connection:
    def __init__(self, line):
        self.line = line
        loop = line.loop
        self.opened = loop.time()
        self.up = Direction(loop, line.half, not_before=self.opened + line.rtt)
        self.down = Direction(loop, line.half)
        self.up.on_done = self.down.on_done = self._maybe_close
        self.client = Side(self, self.up, self.down)
        self.target = None
        self.closed = False

    async def connect(self):
        host, port = self.line.target
        try:
            _, self.target = await self.line.loop.create_connection(
                lambda: Side(self, self.down, self.up), host, port)
        except OSError as exc:
            print(f"delayline: connecting to {host}:{port} failed: {exc}", file=sys.stderr)
            self.close(error=True)

    def _maybe_close(self):
        if self.up.done and self.down.done:
            self.close(error=False)

    def close(self, error):
        if self.closed:
            return
        self.closed = True
        self.up.cancel()
        self.down.cancel()
        for side in (self.client, self.target):
            if side is not None and side.transport is not None:
                if error:
                    side.transport.abort()
                else:
                    side.transport.close()
        self.line.log(self)


class Line:
    def __init__(self, loop, target, rtt_ms, log_path):
        self.loop = loop
        self.target = target
        self.rtt = rtt_ms / 1000.0
        self.half = self.rtt / 2
        self.logf = open(log_path, "a", buffering=1) if log_path else None

    def accept(self):
        conn = Connection(self)
        self.loop.create_task(conn.connect())
        return conn.client

    def log(self, conn):
        if self.logf:
            self.logf.write(json.dumps({"up": conn.up.bytes, "down": conn.down.bytes,
                                        "s": round(self.loop.time() - conn.opened, 4)}) + "\n")


def keep_freed_buffers():
    """Every chunk read is a new 256 KiB bytes object; by default glibc maps
    each freshly and unmaps it when freed, so every chunk costs page faults
    (and on these VMs the host's too). Raising the mmap and trim thresholds
    makes freed chunks come back from the heap."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD


def hostport(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("listen", type=hostport)
    ap.add_argument("target", type=hostport)
    ap.add_argument("rtt_ms", type=float)
    ap.add_argument("--log")
    a = ap.parse_args()
    if a.rtt_ms < 0:
        ap.error("RTT_MS must not be negative")
    keep_freed_buffers()
    loop = asyncio.get_running_loop()
    line = Line(loop, a.target, a.rtt_ms, a.log)
    server = await loop.create_server(line.accept, a.listen[0], a.listen[1], reuse_address=True, backlog=512)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"delayline: {a.listen[0]}:{a.listen[1]} -> {a.target[0]}:{a.target[1]}, RTT {a.rtt_ms:g} ms",
          file=sys.stderr, flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
