"""Request bodies on the wire, over raw sockets to the api served by uvicorn on loopback (its
dependencies in memory): the size limit holds for a chunked body that has no Content-Length, a
body sent too slowly is cut off at the read deadline, and a good chunked body is served."""

import asyncio
import json
import select
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from harness.ports import free_port, release
from harness.wait import wait_until
from services.api.app import create_app
from services.api.config import load_settings
from services.api.mlflow_client import MlflowClient
from suites.unit.fakes import PASSWORD, FakeMlflow, FakeStore

pytestmark = pytest.mark.unit
LIMIT = 4096
DEADLINE = 1.0


@pytest.fixture
def served(monkeypatch):
    """The api on a free loopback port: a real uvicorn server in a thread, stopped afterwards."""
    monkeypatch.setenv("API_DATABASE_URL", f"postgresql://app:{PASSWORD}@db:5432/api")
    monkeypatch.setenv("API_MLFLOW_URL", "http://mlflow:5000/mlflow")
    monkeypatch.setenv("API_MAX_BODY_BYTES", str(LIMIT))
    monkeypatch.setenv("API_BODY_TIMEOUT", str(DEADLINE))
    settings = load_settings()
    store, fake = FakeStore(), FakeMlflow()
    mlflow = MlflowClient(
        settings.mlflow_url, timeout=1, retries=0, backoff=0, transport=httpx.MockTransport(fake.handle)
    )
    port = free_port()
    release(port)
    config = uvicorn.Config(
        create_app(settings, store=store, mlflow=mlflow),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, interval=0.05, what="uvicorn to start on loopback")
    yield port, store
    server.should_exit = True
    thread.join(10)


def exchange(port: int, head: bytes, chunks: list[bytes], pause: float = 0.0) -> tuple[int, dict, float]:
    """Send ``head`` then each chunk (``pause`` seconds apart, stopping when the server has
    answered or closed), read the answer; (status, JSON body, seconds from the head to the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        started = time.monotonic()
        s.sendall(head)
        for chunk in chunks:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([s], [], [], pause)[0]:  # the server answered (or closed): stop sending
                break
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            try:
                more = s.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            data += more
        took = time.monotonic() - started
    head_text, _, body = data.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    return status, json.loads(body[: _length(data)] or b"{}"), took


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def chunked(payload: bytes, size: int) -> list[bytes]:
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


HEAD = b"POST /runs HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"


def test_a_chunked_body_over_the_limit_is_413_and_records_nothing(served):
    port, store = served
    payload = json.dumps({"experiment": "e", "params": {"p": "x" * (LIMIT * 2)}}).encode()
    status, body, _ = exchange(port, HEAD + b"Transfer-Encoding: chunked\r\n\r\n", chunked(payload, 1024))
    assert status == 413, body
    assert body["error"] == "request body too large" and str(LIMIT) in body["detail"] and body["request_id"]
    assert store.rows == {}


def test_a_chunked_body_within_the_limit_is_served(served):
    port, store = served
    payload = json.dumps({"experiment": "e", "params": {"p": "x" * (LIMIT // 2)}}).encode()
    status, body, _ = exchange(port, HEAD + b"Transfer-Encoding: chunked\r\n\r\n", chunked(payload, 512))
    assert status == 201, body
    assert len(store.rows) == 1


def test_a_body_sent_too_slowly_is_cut_off_at_the_read_deadline(served):
    port, store = served
    payload = json.dumps({"experiment": "e", "params": {"p": "slow"}}).encode()
    head = HEAD + b"Content-Length: %d\r\n\r\n" % len(payload)
    # a few bytes every 0.4 s: the whole body would take about 4 s, the deadline is 1 s
    status, body, took = exchange(port, head, [payload[i : i + 5] for i in range(0, len(payload), 5)], pause=0.4)
    assert status == 408, body
    assert body["error"] == "request timeout" and f"{DEADLINE:g} s" in body["detail"]
    assert DEADLINE <= took < DEADLINE + 1.5, took
    assert store.rows == {}


def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(served):
    port, store = served
    status, body, took = exchange(port, HEAD + b"Content-Length: %d\r\n\r\n" % (LIMIT + 1), [])
    assert status == 413 and body["request_id"], body
    assert took < DEADLINE, "answered at once, not at the read deadline"
