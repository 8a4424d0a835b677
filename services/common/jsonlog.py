"""One JSON object per log line, secrets scrubbed, correlation id carried in a context var.

Secrets are masked in each string of the line (keys too) before the line is encoded: masking the
encoded text could cut a JSON string open (a client's request id ``password=x``) and misses a
password that JSON escapes (a quote, a backslash, a non-ASCII character)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from services.common.redact import redact

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# the fields of the current request's log line, which its handler may add to (add_fields)
request_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("request_fields", default=None)
# one encoder for every line: json.dumps with arguments builds a new encoder per call
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))
_escape = json.encoder.encode_basestring_ascii


class _JsonHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that also takes ``request_line``'s lines: those written while an event
    loop runs are collected and written together once the loop's current iteration is done (one
    write for every request the iteration finished, instead of one each). Any other line, a flush
    and logging's shutdown write the collected lines first, so the order stays the order of events."""

    formatter: JsonFormatter
    lock: threading.RLock

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        try:
            self.fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None  # an in-memory stream (tests)
        self.pending: list[bytes] = []
        self.scheduled = False

    def add(self, data: bytes) -> None:
        with self.lock:
            if self.fd is None:
                self.stream.write(data.decode())
                self.stream.flush()
                return
            self.pending.append(data)
            if self.scheduled:
                return
            try:
                asyncio.get_running_loop().call_soon(self.write_pending)
                self.scheduled = True
            except RuntimeError:  # no event loop: write now
                self.write_pending()

    def write_pending(self) -> None:
        with self.lock:
            self.scheduled = False
            assert self.fd is not None  # lines are collected only for a stream with a descriptor
            data = b"".join(self.pending)
            self.pending.clear()
            while data:
                data = data[os.write(self.fd, data) :]

    def emit(self, record: logging.LogRecord) -> None:
        if self.pending:
            self.write_pending()
        super().emit(record)

    def flush(self) -> None:
        if self.pending:
            self.write_pending()
        super().flush()


_HANDLER: _JsonHandler | None = None


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.service = service
        self.service_json = _escape(service)
        self.secrets = secrets
        self._second = -1
        self._stamp = ""

    def timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds; the part up to the second is reused within a second."""
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp}.{int((created - second) * 1000):03d}+00:00"

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        msg: str,
        rid: str | None,
        fields: object = None,
        exc: str | None = None,
    ) -> str:
        line = {"ts": self.timestamp(created), "level": level, "service": self.service, "logger": logger, "msg": msg}
        if rid:
            line["request_id"] = rid
        if isinstance(fields, dict):
            line.update(fields)
        if exc:
            line["exc"] = exc
        return _ENCODER.encode(scrub(line, self.secrets))

    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            getattr(record, "request_id", None) or request_id.get(),
            getattr(record, "fields", None),
            self.formatException(record.exc_info) if record.exc_info else None,
        )


def scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with ``redact`` applied to every string in it, keys included (dicts, lists and
    tuples are rebuilt; anything else the encoder shows as ``str``, so it is masked as that)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets) if isinstance(k, str) else k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value), secrets)


def configure(service: str, level: str = "INFO", secrets: tuple[str, ...] = (), stream: TextIO | None = None) -> None:
    """Route the root logger and uvicorn's loggers through the JSON formatter."""
    # no caller, thread or process lookups per record: the lines never show them (the logging
    # HOWTO's "Optimization" section); a request line costs about half as much without them
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    global _HANDLER
    handler = _HANDLER = _JsonHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # the per-request line is ours; uvicorn's access log would duplicate it
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)


def log(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: object) -> None:
    logger.log(level, msg, extra={"fields": fields})


def add_fields(fields: dict[str, Any]) -> None:
    """Add ``fields`` to the current request's log line (nothing outside a request)."""
    current = request_fields.get()
    if current is not None:
        current.update(fields)


def request_line(
    logger: logging.Logger, rid: str, method: str, path: str, status: int, duration_ms: float, extra: dict[str, Any]
) -> None:
    """The request's line, the same as ``log(logger, "request", method=..., path=..., status=...,
    duration_ms=..., **extra)`` with ``rid`` as its request id, assembled from pre-escaped pieces
    (one JSON encoder call only for ``extra``, when there is any): it is written on every request."""
    handler = _HANDLER
    if handler is None or not logger.isEnabledFor(logging.INFO):
        token = request_id.set(rid)
        try:
            log(logger, "request", method=method, path=path, status=status, duration_ms=duration_ms, **extra)
        finally:
            request_id.reset(token)
        return
    fmt = handler.formatter
    secrets = fmt.secrets
    text = (
        f'{{"ts":"{fmt.timestamp(time.time())}","level":"info","service":{fmt.service_json},'
        f'"logger":{_escape(logger.name)},"msg":"request","request_id":{_escape(redact(rid, secrets))},'
        f'"method":{_escape(redact(method, secrets))},"path":{_escape(redact(path, secrets))},'
        f'"status":{status:d},"duration_ms":{duration_ms!r}'
    )
    text += "," + _ENCODER.encode(scrub(extra, secrets))[1:] if extra else "}"
    handler.add((text + "\n").encode())
