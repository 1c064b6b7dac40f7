"""A shaping TCP proxy: a WAN link (round-trip delay + finite bandwidth) in front of a local endpoint.

Every data benchmark otherwise runs on loopback against the sandbox, where a request costs ~3 ms of the server's
CPU and bandwidth is free. Users talk to a cloud region tens of milliseconds away over a link of finite bandwidth,
where concurrency and bytes decide. `WanProxy` listens on 127.0.0.1 only and forwards bytes to ``upstream`` (any
TCP service: the sandbox's S3 port, Azurite's HTTPS port — TLS passes through untouched), shaping both directions:

- delay: each chunk is delivered ``rtt / 2`` after it was sent (after its serialization, below), in order, in
  each direction, so a request/response exchange costs one ``rtt`` more than on loopback;
- connection set-up: ``connect_rtts`` round trips more (1 by default: the TCP handshake; 0 turns it off) before the
  first byte moves, charged like a client's keep-alive pool pays them: only for a connection that raises the number
  open at once above its earlier peak (a new slot in the pool). The sandbox's S3 server closes every connection
  after one response, so a client there opens a connection per request, where on a real endpoint it would reuse
  one; charging each of them a handshake would penalise every request by one more round trip than a real cloud
  does (``pool=False`` charges every connection);
- bandwidth: one token bucket per direction shared by every connection (``mbit`` megabit/s = 10^6 bit/s,
  default 100): a chunk leaves when the link has sent everything queued before it, like a router queue;
- bounds: at most ``max_connections`` open at once (more wait for a slot) and at most ``max_buffered`` bytes read
  but not yet delivered across all connections (a reader waits when the limit is reached; TCP pushes back).

As a library::

    from bench.wan import WanProxy
    with WanProxy("http://127.0.0.1:9000", rtt_ms=30, mbit=100) as url:   # -> "http://127.0.0.1:<port>"
        ...                                                                 # point clients at url
    # proxy.stats: connections, bytes each way

From the command line: ``python bench/wan.py --upstream http://127.0.0.1:9000 [--rtt-ms 30] [--mbit 100]``
prints the proxy's URL and serves until Ctrl-C; ``python bench/wan.py --self-check`` starts a local echo
upstream and prints the measured round trip and throughput each way through the proxy (~5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

CHUNK = 64 * 1024
"""Largest chunk read from a socket at once (bytes)."""


@dataclass
class Stats:
    """What went through the proxy: connections accepted, bytes each way (``up`` = client to upstream), connections
    open now and at most at once."""

    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    peak_connections: int = 0
    open_connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _Link:
    """One direction of the link: a shared transmitter (token bucket of ``rate`` bytes/s with a ``burst`` allowance)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst_s = burst / rate if rate else 0.0
        self.busy_until = 0.0  # loop time when everything queued so far has been sent

    def send(self, now: float, size: int) -> float:
        """Queue ``size`` bytes at ``now``; the loop time when their last byte has left (seconds)."""
        if not self.rate:
            return now
        start = max(self.busy_until, now - self.burst_s)
        self.busy_until = start + size / self.rate
        return max(self.busy_until, now)


class WanProxy:
    """A shaping TCP proxy on 127.0.0.1 in front of ``upstream``, run on an asyncio loop in a background thread.

    Args:
        upstream: ``scheme://host:port`` (or ``host:port``) of the service to shape; the proxy's URL keeps the scheme.
        rtt_ms: round-trip delay added per request/response exchange (milliseconds, >= 0): each chunk is delivered
            ``rtt_ms / 2`` late in each direction, order preserved.
        mbit: bandwidth of each direction in 10^6 bit/s, shared by all connections; 0 = unlimited.
        connect_rtts: extra round trips before a new connection carries data (the TCP handshake; 0 = none).
        pool: charge ``connect_rtts`` only for connections above the earlier peak of open ones (see above).
        max_connections: connections served at once; more are accepted and wait for a slot.
        max_buffered: bytes read from either side but not yet delivered, across all connections.
        port: the port to listen on (0 = any free port).

    Use as a context manager (``with WanProxy(...) as url``) or call `start` / `stop`. ``stats`` counts
    connections and bytes. Raises OSError when the port cannot be bound.
    """

    def __init__(self, upstream: str, rtt_ms: float = 30.0, mbit: float = 100.0, *, connect_rtts: int = 1,
                 pool: bool = True, max_connections: int = 256, max_buffered: int = 64 * 2**20, port: int = 0) -> None:
        parts = urlsplit(upstream if "//" in upstream else f"tcp://{upstream}")
        if not parts.hostname or not parts.port:
            raise ValueError(f"upstream {upstream!r} needs a host and a port")
        self.scheme, self.host, self.upstream_port = parts.scheme, parts.hostname, parts.port
        self.delay = max(rtt_ms, 0.0) / 2000.0
        self.rate = mbit * 1e6 / 8
        self.connect_rtts, self.pool = connect_rtts, pool
        self.max_connections, self.max_buffered = max_connections, max_buffered
        self.port = port
        self.stats = Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``scheme://127.0.0.1:port`` of the proxy (valid once started)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the proxy's thread; returns its URL once it listens."""
        self._thread = threading.Thread(target=self._run, name="wan-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self.url

    def stop(self) -> None:
        """Close the listener and every connection, and join the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_connections)
        self._buffered = 0
        self._room = asyncio.Condition()
        burst = max(CHUNK, int(self.rate * 0.005)) if self.rate else 0  # ~5 ms of line rate
        self._links = {"up": _Link(self.rate, burst), "down": _Link(self.rate, burst)}
        self._tasks: set[asyncio.Task[Any]] = set()
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, limit=CHUNK)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- one connection -------------------------------------------------------------------------------------------
    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with self._slots:
                with self.stats.lock:
                    self.stats.connections += 1
                    self.stats.open_connections += 1
                    new_slot = self.stats.open_connections > self.stats.peak_connections
                    self.stats.peak_connections = max(self.stats.peak_connections, self.stats.open_connections)
                try:
                    if new_slot or not self.pool:
                        await asyncio.sleep(2 * self.delay * self.connect_rtts)
                    u_reader, u_writer = await asyncio.open_connection(self.host, self.upstream_port, limit=CHUNK)
                    for sock in (c_writer.get_extra_info("socket"), u_writer.get_extra_info("socket")):
                        if sock is not None:
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    await asyncio.gather(self._pump(c_reader, u_writer, "up"), self._pump(u_reader, c_writer, "down"))
                except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
                    pass  # a peer hung up, or the proxy is stopping
                finally:
                    with self.stats.lock:
                        self.stats.open_connections -= 1
                    for writer in (c_writer, locals().get("u_writer")):
                        if writer is not None:
                            writer.close()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        """Read chunks, pass each through the link (bandwidth) and the delay line, write them in order."""
        loop = asyncio.get_running_loop()
        link = self._links[direction]
        line: collections.deque[tuple[float, bytes]] = collections.deque()
        arrived = asyncio.Event()
        done = False

        async def deliver() -> None:
            while True:
                while not line:
                    if done:
                        return
                    arrived.clear()
                    await arrived.wait()
                due, data = line[0]
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                line.popleft()
                try:
                    writer.write(data)
                    await writer.drain()
                finally:
                    await self._release(len(data))

        deliverer = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._reserve(len(data))
                sent = link.send(loop.time(), len(data))
                if sent > loop.time():
                    await asyncio.sleep(sent - loop.time())  # the link is busy: the sender waits (backpressure)
                with self.stats.lock:
                    if direction == "up":
                        self.stats.bytes_up += len(data)
                    else:
                        self.stats.bytes_down += len(data)
                line.append((sent + self.delay, data))
                arrived.set()
        finally:
            done = True
            arrived.set()
            with contextlib.suppress(OSError, ConnectionError):
                await deliverer
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()

    async def _reserve(self, size: int) -> None:
        async with self._room:
            await self._room.wait_for(lambda: self._buffered == 0 or self._buffered + size <= self.max_buffered)
            self._buffered += size

    async def _release(self, size: int) -> None:
        async with self._room:
            self._buffered -= size
            self._room.notify_all()


# ---- self-check ---------------------------------------------------------------------------------------------------
def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """A tiny upstream: ``P\\n`` -> ``p``; ``D <n>\\n`` -> n bytes; ``U <n>\\n`` + n bytes -> ``ok\\n``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rfile:
            for line in rfile:
                verb, *arg = line.split()
                if verb == b"P":
                    conn.sendall(b"p")
                elif verb == b"D":
                    conn.sendall(bytes(int(arg[0])))
                elif verb == b"U":
                    left = int(arg[0])
                    while left:
                        left -= len(rfile.read(min(left, CHUNK)))
                    conn.sendall(b"ok\n")

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return listener, thread


def self_check(rtt_ms: float, mbit: float, megabytes: int = 10) -> dict[str, float]:
    """Measure the proxy against a local echo upstream.

    Returns:
        {"rtt_ms": median ping-pong on an open connection, "connect_ms": connect + first exchange,
         "down_mbit"/"up_mbit": throughput of ``megabytes`` MB one way, in 10^6 bit/s}.
    """
    listener, _ = _echo_server()
    upstream = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    out: dict[str, float] = {}
    try:
        with WanProxy(upstream, rtt_ms=rtt_ms, mbit=mbit) as url:
            port = urlsplit(url).port
            started = time.perf_counter()
            conn = socket.create_connection(("127.0.0.1", port))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                conn.sendall(b"P\n")
                conn.recv(1)
                out["connect_ms"] = (time.perf_counter() - started) * 1000
                pings = []
                for _ in range(10):
                    started = time.perf_counter()
                    conn.sendall(b"P\n")
                    conn.recv(1)
                    pings.append(time.perf_counter() - started)
                out["rtt_ms"] = statistics.median(pings) * 1000
                size = megabytes * 10**6
                started = time.perf_counter()
                conn.sendall(b"D %d\n" % size)
                got = 0
                while got < size:
                    got += len(conn.recv(1 << 20))
                out["down_mbit"] = size * 8 / 1e6 / (time.perf_counter() - started)
                started = time.perf_counter()
                conn.sendall(b"U %d\n" % size)
                block = bytes(CHUNK)
                for _ in range(size // CHUNK):
                    conn.sendall(block)
                conn.sendall(bytes(size % CHUNK))
                conn.recv(3)
                out["up_mbit"] = size * 8 / 1e6 / (time.perf_counter() - started)
    finally:
        listener.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", help="scheme://host:port to shape (e.g. the sandbox's S3 endpoint)")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="added round trip, ms (default 30)")
    parser.add_argument("--mbit", type=float, default=100.0, help="bandwidth per direction, Mbit/s (default 100)")
    parser.add_argument("--connect-rtts", type=int, default=1, help="extra round trips per new connection")
    parser.add_argument("--no-pool", action="store_true", help="charge the handshake to every connection")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--self-check", action="store_true", help="measure RTT and throughput through the proxy")
    args = parser.parse_args()
    if args.self_check:
        got = self_check(args.rtt_ms, args.mbit)
        print(f"asked: rtt {args.rtt_ms:.0f} ms, {args.mbit:.0f} Mbit/s each way")
        print(f"measured: rtt {got['rtt_ms']:.1f} ms, connect + first exchange {got['connect_ms']:.1f} ms, "
              f"down {got['down_mbit']:.1f} Mbit/s, up {got['up_mbit']:.1f} Mbit/s")
        return
    if not args.upstream:
        parser.error("--upstream is required (or --self-check)")
    proxy = WanProxy(args.upstream, args.rtt_ms, args.mbit, connect_rtts=args.connect_rtts,
                     pool=not args.no_pool, max_connections=args.max_connections, port=args.port)
    print(proxy.start(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()
        print(f"{proxy.stats.connections} connections, {proxy.stats.bytes_up} bytes up, "
              f"{proxy.stats.bytes_down} bytes down", file=sys.stderr)


if __name__ == "__main__":
    main()
