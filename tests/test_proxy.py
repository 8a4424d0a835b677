"""The fault proxy's toxics against a real TCP echo server on loopback."""

import socket
import socketserver
import threading
import time

import pytest

from harness.errors import HarnessError
from harness.stack.proxy import FaultProxy
from harness.stack.toxics import (
    Bandwidth,
    Blackhole,
    Hold,
    Latency,
    Refuse,
    ResetPeer,
    Respond,
    SlowClose,
)
from harness.wait import wait_until

pytestmark = [pytest.mark.harness, pytest.mark.unit]


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data or data == b"bye":
                return
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def proxy(echo):
    with FaultProxy(echo, name="echo") as p:
        yield p


def connect(proxy, timeout=2.0):
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def roundtrip(proxy, payload=b"ping", timeout=2.0):
    with connect(proxy, timeout) as s:
        t0 = time.monotonic()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got, time.monotonic() - t0


def test_passthrough(proxy):
    assert roundtrip(proxy)[0] == b"ping"


def test_latency_with_jitter(proxy):
    with proxy.toxic(Latency(ms=300, jitter_ms=50)):
        got, took = roundtrip(proxy)
    assert got == b"ping" and 0.25 <= took < 0.25 + 0.5
    assert roundtrip(proxy)[1] < 0.2  # removed


def test_bandwidth(proxy):
    payload = b"x" * 32 * 1024
    with proxy.toxic(Bandwidth(kbps=128)):
        got, took = roundtrip(proxy, payload, timeout=5)
    assert got == payload and took >= 0.2


def test_blackhole_accepts_and_never_answers(proxy):
    with proxy.toxic(Blackhole()):
        with connect(proxy, timeout=0.5) as s:
            s.sendall(b"ping")
            with pytest.raises(socket.timeout):
                s.recv(10)
    assert roundtrip(proxy)[0] == b"ping"


def test_blackhole_silences_a_live_connection(proxy):
    with connect(proxy, timeout=0.5) as s:
        s.sendall(b"a")
        assert s.recv(10) == b"a"
        with proxy.toxic(Blackhole()):
            s.sendall(b"b")
            with pytest.raises(socket.timeout):
                s.recv(10)


def test_reset_peer(proxy):
    with proxy.toxic(ResetPeer()):
        # the RST may land while connect() is still returning: count it wherever it shows
        with pytest.raises(ConnectionResetError):
            with connect(proxy) as s:
                s.sendall(b"ping")
                s.recv(10)


def test_reset_limited_to_one_request_hits_a_live_connection_once(proxy):
    with connect(proxy) as live:
        live.sendall(b"a")
        assert live.recv(10) == b"a"
        with proxy.toxic(ResetPeer(limit=1)):
            with pytest.raises(ConnectionResetError):
                live.sendall(b"b")
                live.recv(10)
            assert roundtrip(proxy)[0] == b"ping"  # the next connection is fine


def test_slow_close(proxy):
    with proxy.toxic(SlowClose(ms=400)):
        with connect(proxy) as s:
            s.sendall(b"bye")
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert time.monotonic() - t0 >= 0.35


def test_refuse_then_listen_again_on_the_same_port(proxy):
    port = proxy.port
    with connect(proxy) as live:
        with proxy.toxic(Refuse()):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                live.sendall(b"x")
                if not live.recv(10):
                    raise ConnectionResetError("closed")
    assert proxy.port == port and roundtrip(proxy)[0] == b"ping"


def test_respond_with_fixed_bytes(proxy):
    with proxy.toxic(Respond(payload=b"HTTP/1.1 503 X\r\n\r\n")):
        with connect(proxy) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 503")


def test_hold_keeps_the_matching_request_until_the_toxic_is_removed(proxy):
    with connect(proxy) as held, connect(proxy) as other:
        with proxy.toxic(Hold(match=b"search")) as hold:
            held.sendall(b"GET /search")
            wait_until(lambda: hold.applied, until=lambda n: n == 1, timeout=2, what="the request to be held")
            other.sendall(b"GET /search")  # the limit (1) is used: the next one passes
            assert other.recv(100) == b"GET /search"
            held.settimeout(0.3)
            with pytest.raises(TimeoutError):
                held.recv(100)
            held.settimeout(2)
        assert held.recv(100) == b"GET /search"  # released with the toxic


def test_toxic_removed_even_when_the_block_fails(proxy):
    with pytest.raises(RuntimeError):
        with proxy.toxic(Latency(ms=500)):
            raise RuntimeError("test failed")
    assert proxy.toxics == {}


def test_one_toxic_of_a_kind(proxy):
    with proxy.toxic(Latency(ms=1)):
        with pytest.raises(HarnessError, match="at most one latency toxic"):
            proxy.add(Latency(ms=2))


def test_toxics_compose(proxy):
    with proxy.toxic(Latency(ms=200)), proxy.toxic(Bandwidth(kbps=1024)):
        got, took = roundtrip(proxy)
    assert got == b"ping" and took >= 0.2


def test_a_reset_of_a_tls_connection_that_closed_meanwhile_does_not_raise():
    """Seen in CI: a cut (``_cut_all``) met a TLS client connection that had closed twice; CPython's
    TLS transport then drops its protocol and ``get_extra_info`` raises AttributeError, which
    escaped from the toxic's installation and broke every later scenario of the worker."""
    import asyncio
    import asyncio.sslproto

    from harness.stack.proxy import _rst

    class TlsProtocol:  # what the transport calls on its protocol
        def _start_shutdown(self):
            pass

        def _abort(self, exc):
            raise AssertionError("a closed connection was aborted again")

        def _get_extra_info(self, name, default=None):
            return default

    loop = asyncio.new_event_loop()
    try:
        transport = asyncio.sslproto._SSLProtocolTransport(loop, TlsProtocol())
        writer = asyncio.StreamWriter(transport, asyncio.Protocol(), None, loop)
        transport.close()
        transport.close()  # the second close forgets the protocol
        _rst(writer)
        assert transport.is_closing()
    finally:
        loop.close()
