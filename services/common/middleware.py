"""Per-request work as plain ASGI, for the api and for MLflow's server: request id, body-size
limit and read deadline (the api's), latency observation and one JSON log line per request.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: that one runs every request through an
extra task and memory streams, which cost about two thirds of a cheap request's throughput here
(docs/measured.md, Benchmarks). Handlers add fields to the request's log line with ``jsonlog.add_fields``
(a context variable: the endpoint runs in the middleware's task and context)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from services.common import jsonlog

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_REQUEST_ID = 128


class BodyRejected(HTTPException):
    """Raised from ``receive`` while the app reads the body: FastAPI passes an HTTPException on
    (any other error there becomes its 400 "error parsing the body"), the app's handler answers it."""


class RequestObserver:
    """Wraps the app: every HTTP request gets an ``X-Request-ID`` (taken from the request, cut to
    128 characters, or generated); a body over ``max_body_bytes`` is answered 413, before the app
    sees it when ``Content-Length`` says so, else as soon as the bytes read pass the limit (a chunked
    body has no length); a body not received within ``body_timeout`` seconds is answered 408; an
    unhandled error is a 500 with the request id; one log line and one histogram observation
    record the outcome."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int | None,
        observe: Callable[[str, int, float], None] | None = None,
        body_timeout: float | None = 10.0,
        logger_name: str = "api",
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.observe = observe  # (route path, status, seconds)
        self.logger = logging.getLogger(logger_name)

    def _limited(self, receive: Receive, started: float) -> Receive:
        """``receive`` that counts the body's bytes and keeps the read deadline."""
        limit = self.max_body_bytes if self.max_body_bytes is not None else float("inf")
        deadline = started + (self.body_timeout if self.body_timeout is not None else float("inf"))
        read = 0
        done = False

        async def receive_limited() -> Message:
            nonlocal read, done
            if done:
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                    message = await receive()
            except TimeoutError:
                raise BodyRejected(408, f"the request body was not received within {self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    raise BodyRejected(413, f"the request body is larger than {limit} bytes")
                done = not message.get("more_body", False)
            return message

        return receive_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:MAX_REQUEST_ID]
            elif name == b"content-length":
                length = value
        rid = rid or os.urandom(16).hex()
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        token = jsonlog.request_id.set(rid)
        fields: dict[str, object] = {}
        fields_token = jsonlog.request_fields.set(fields)
        status = 0

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            limit = self.max_body_bytes
            if limit is not None and length is not None and (not length.isdigit() or int(length) > limit):
                detail = f"the request body is larger than {self.max_body_bytes} bytes"
                await _json(send_observed, 413, error_body("request body too large", detail, rid))
            else:
                # GET and HEAD bodies are never read: no counting wrapper on the hot path (/health)
                bodyless = scope["method"] in ("GET", "HEAD")
                await self.app(scope, receive if bodyless else self._limited(receive, started), send_observed)
        except Exception:
            self.logger.exception("unhandled error", extra={"fields": {"path": scope["path"]}})
            if status:
                raise  # the answer has begun: the server closes the connection
            await _json(send_observed, 500, error_body("internal error", "an unexpected error; see the log", rid))
        finally:
            elapsed = time.perf_counter() - started
            if self.observe is not None:
                self.observe(getattr(scope.get("route"), "path", "unmatched"), status, elapsed)
            ms = round(elapsed * 1000, 2)
            jsonlog.request_line(self.logger, rid, scope["method"], scope["path"], status, ms, fields)
            jsonlog.request_fields.reset(fields_token)
            jsonlog.request_id.reset(token)


def error_body(error: str, detail: str, request_id: str | None, **extra: object) -> dict[str, Any]:
    """Every error the api answers has this shape (the OpenAPI ``Error`` schema)."""
    return {"error": error, "detail": detail, "request_id": request_id or "", **extra}


async def _json(send: Send, status: int, data: dict[str, Any]) -> None:
    body = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
