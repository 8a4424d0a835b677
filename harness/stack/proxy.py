"""A small TCP fault proxy, modelled on Toxiproxy's toxics, run on its own event loop thread.

    with FaultProxy(upstream=("127.0.0.1", 5432)) as proxy:      # clients connect to proxy.port
        with proxy.toxic(Latency(ms=3000, jitter_ms=200)):        # removed at the end of the block
            ...

Toxics (at most one of each kind at a time; they compose):
  Latency(ms, jitter_ms, direction)   delay every chunk
  Bandwidth(kbps, direction)          cap throughput
  Blackhole()                         accept, read and drop; never answer, never close (live connections
                                      go silent too; with a limit, new ones past it pass)
  ResetPeer(after_ms, limit)          close affected connections with RST (SO_LINGER 0)
  SlowClose(ms)                       delay closing the client side after the upstream closed
  Refuse()                            partition: new connections are refused, live ones are cut
  Respond(payload, limit)             answer new connections with fixed bytes and close (an HTTP 503)
  CutAfter(match, limit)              when the upstream's answer holds ``match``, drop it and cut the
                                      connection: the request took effect, its answer is lost
  Hold(match, limit)                  a request that holds ``match`` waits in the proxy until the toxic
                                      is removed (a fault injected while one known request is in flight)
``limit`` applies a toxic to the next N connections only (a transient failure); for CutAfter, to
the next N answers that match.

A proxy in front of a Postgres that serves TLS (``tls=PostgresTls(...)``) takes part in the
protocol's TLS negotiation on both sides: it answers the client's SSLRequest with a certificate of
the stack's own authority (which the client verifies, as it verifies Postgres), and opens its own
verified TLS connection upstream. Toxics then see the protocol in clear, as they did before TLS: a
proxy that only relayed the encrypted bytes could not find a command tag or a statement in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator

from harness.errors import HarnessError
from harness.stack.pgwire import PostgresTls, accept, upstream
from harness.stack.toxics import (
    BOTH,
    DOWN,
    UP,
    Bandwidth,
    Blackhole,
    CutAfter,
    Hold,
    Latency,
    Refuse,
    ResetPeer,
    Respond,
    SlowClose,
    Toxic,
)

CHUNK = 16384


def _rst(writer: asyncio.StreamWriter) -> None:
    """Cut a client's connection with a reset (SO_LINGER 0, then abort). A TLS connection that
    closed meanwhile has lost its protocol: asking its transport for the socket raises
    AttributeError (CPython's _SSLProtocolTransport), and there is nothing left to reset."""
    try:
        sock = writer.get_extra_info("socket")
    except AttributeError:
        sock = None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        name: str = "proxy",
        listen_host: str = "127.0.0.1",
        port: int = 0,
        tls: PostgresTls | None = None,
    ) -> None:
        self.upstream, self.name, self.listen_host, self.requested_port = upstream, name, listen_host, port
        self.tls = tls
        self.port = 0
        self.toxics: dict[str, Toxic] = {}
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._born: dict[asyncio.StreamWriter, float] = {}  # client side -> when it was accepted (monotonic)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy {name}", daemon=True)
        self._server: asyncio.Future | None = None
        self._sock: socket.socket | None = None
        self._pending: set[socket.socket] = set()
        self._tasks: set[asyncio.Future] = set()

    # -- lifecycle (called from the test thread) -------------------------------------
    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen(self.requested_port))
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def live(self) -> int:
        """Connections open through the proxy right now."""
        return len(self._conns)

    def live_since(self, t: float) -> int:
        """Connections open right now that were accepted at ``t`` (``time.monotonic()``) or later:
        a fresh connection of an operation in flight, not a client's kept idle ones."""
        return self._call(self._live_since(t))

    async def _live_since(self, t: float) -> int:
        return sum(1 for client, _ in self._conns if self._born.get(client, 0.0) >= t)

    # -- toxics ------------------------------------------------------------------
    def add(self, toxic: Toxic) -> None:
        self._call(self._add(toxic))

    def remove(self, kind: str) -> None:
        self._call(self._remove(kind))

    def clear(self) -> None:
        for kind in list(self.toxics):
            self.remove(kind)

    @contextlib.contextmanager
    def toxic(self, toxic: Toxic) -> Iterator[Toxic]:
        """The toxic holds for the block and is always removed, even when the block raises."""
        self.add(toxic)
        try:
            yield toxic
        finally:
            self.remove(toxic.kind)

    async def _add(self, toxic: Toxic) -> None:
        if toxic.kind in self.toxics:
            raise HarnessError(
                f"at most one {toxic.kind} toxic on {self.name}",
                "one already active",
                "remove it first or use proxy.toxic(...) as a context manager",
            )
        self.toxics[toxic.kind] = toxic
        if isinstance(toxic, Refuse):
            await self._stop_listening()
            # the closed port itself refuses every attempt (the kernel answers, not us): count it once
            toxic.applied += 1 + self._cut_all()
        elif isinstance(toxic, (ResetPeer, Respond)) and toxic.limit is None:
            toxic.applied += self._cut_all()  # live keep-alive connections must see the fault too

    async def _remove(self, kind: str) -> None:
        toxic = self.toxics.pop(kind, None)
        if isinstance(toxic, Refuse):
            await self._listen(self.port)
        if isinstance(toxic, Blackhole):
            self._cut_all()  # held connections would otherwise hang forever
        if isinstance(toxic, Hold):
            toxic.released.set()

    def _cut_all(self) -> int:
        cut = 0
        for client, up in list(self._conns):
            _rst(client)
            cut += 1
            if up is not None:
                up.transport.abort()
        return cut

    # -- serving -------------------------------------------------------------------
    async def _listen(self, port: int) -> None:
        for _ in range(50):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.listen_host, port))
                sock.listen(128)
                break
            except OSError:
                sock.close()
                if port == 0:
                    raise
                await asyncio.sleep(0.05)  # the old listening socket is still closing
        else:
            raise HarnessError(f"{self.name} to listen again on {port}", "address in use", "")
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._server = asyncio.ensure_future(self._accept_loop(sock))

    async def _accept_loop(self, sock: socket.socket) -> None:
        """Our own accept loop (not asyncio's Server): every accepted socket is tracked at once, so a
        partition can cut it; asyncio's Server can hold a half-accepted socket across its close."""
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(sock)
            self._pending.add(conn)
            task = asyncio.ensure_future(self._adopt(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        prelude: bytes | None = None
        try:
            if self.tls is None:
                reader, writer = await asyncio.open_connection(sock=conn)
            else:
                reader, writer, prelude = await accept(conn, self.tls)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        finally:
            self._pending.discard(conn)
        await self._handle(reader, writer, prelude)

    async def _stop_listening(self) -> None:
        if self._server is None:
            return
        self._server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._server
        self._server = None
        assert self._sock is not None  # set with the server
        # connections still in the kernel's accept queue: accept and reset them
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                break
            self._pending.add(conn)
        for conn in list(self._pending):
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            self._pending.discard(conn)
        self._sock.close()

    async def _shutdown(self) -> None:
        await self._stop_listening()
        self._cut_all()
        for task in list(self._tasks):
            task.cancel()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prelude: bytes | None = None
    ) -> None:
        refuse = self.toxics.get("refuse")
        if refuse is not None:
            refuse.hit()
            _rst(writer)
            return
        respond = self.toxics.get("respond")
        if isinstance(respond, Respond) and respond.claims():
            respond.hit()
            writer.write(respond.payload)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        entry: tuple = (writer, None)
        self._conns.add(entry)
        self._born[writer] = time.monotonic()
        try:
            blackhole = self.toxics.get("blackhole")
            if isinstance(blackhole, Blackhole) and blackhole.claims():
                blackhole.hit()
                while await reader.read(CHUNK):
                    pass
                return
            passed = blackhole  # accepted past this blackhole's limit: it does not silence this one
            reset = self.toxics.get("resetpeer")
            reset_this = reset if isinstance(reset, ResetPeer) and reset.claims() else None
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _rst(writer)
                return
            self._conns.discard(entry)
            entry = (writer, up_writer)
            self._conns.add(entry)
            if self.tls is not None:
                try:
                    await upstream(self.tls, up_reader, up_writer, prelude)
                except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
                    _rst(writer)
                    up_writer.transport.abort()
                    return
            if reset_this is not None:
                reset_this.hit()
                await asyncio.sleep(reset_this.after_ms / 1000)
                _rst(writer)
                up_writer.transport.abort()
                return
            await asyncio.gather(
                self._pipe(reader, up_writer, UP, writer, passed),
                self._pipe(up_reader, writer, DOWN, writer, passed),
                return_exceptions=True,
            )
        finally:
            self._conns.discard(entry)
            self._born.pop(writer, None)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        direction: str,
        client: asyncio.StreamWriter,
        passed: Toxic | None = None,
    ) -> None:
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                if direction == UP and self._intercept(client, dst):
                    return
                hold = self.toxics.get("hold")
                if direction == UP and isinstance(hold, Hold) and hold.match in data and hold.claims():
                    hold.hit()
                    await hold.released.wait()
                cut = self.toxics.get("cutafter")
                if direction == DOWN and isinstance(cut, CutAfter) and cut.match in data and cut.claims():
                    cut.hit()
                    _rst(client)  # the answer is dropped with the connection
                    return
                await self._delay(direction, len(data))
                blackhole = self.toxics.get("blackhole")
                if blackhole is not None and blackhole is not passed:
                    blackhole.hit()
                    continue  # swallowed: a live connection goes silent too
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if direction == DOWN:
                slow = self.toxics.get("slowclose")
                if isinstance(slow, SlowClose):
                    slow.hit()
                    await asyncio.sleep(slow.ms / 1000)
            with contextlib.suppress(Exception):
                if dst.can_write_eof():
                    dst.write_eof()
                else:
                    dst.close()

    def _intercept(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> bool:
        """A limited reset or response also hits the next request on a live connection."""
        reset = self.toxics.get("resetpeer")
        if isinstance(reset, ResetPeer) and reset.limit is not None and reset.claims():
            reset.hit()
            _rst(client)
            upstream.transport.abort()
            return True
        respond = self.toxics.get("respond")
        if isinstance(respond, Respond) and respond.limit is not None and respond.claims():
            respond.hit()
            client.write(respond.payload)
            client.close()
            upstream.transport.abort()
            return True
        return False

    async def _delay(self, direction: str, size: int) -> None:
        lat = self.toxics.get("latency")
        if isinstance(lat, Latency) and lat.direction in (direction, BOTH):
            lat.hit()
            jitter = random.uniform(-lat.jitter_ms, lat.jitter_ms) if lat.jitter_ms else 0.0
            await asyncio.sleep(max(0.0, lat.ms + jitter) / 1000)
        bw = self.toxics.get("bandwidth")
        if isinstance(bw, Bandwidth) and bw.direction in (direction, BOTH):
            bw.hit()
            await asyncio.sleep(size / (bw.kbps * 1024))
