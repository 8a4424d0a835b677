"""The toxics of the fault proxy (``harness.stack.proxy``), modelled on Toxiproxy's: what each one
does is in the proxy's docstring; here they are values a scenario or a test makes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

UP, DOWN, BOTH = "upstream", "downstream", "both"


@dataclass
class Toxic:
    limit: int | None = None  # None: every connection; N: the next N new connections
    _used: int = field(default=0, init=False, repr=False)
    applied: int = field(default=0, init=False)  # how often it took effect: a fault that never bit proves nothing

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()

    def claims(self) -> bool:
        """Whether a new connection is affected (consumes one of ``limit``)."""
        if self.limit is None:
            return True
        if self._used < self.limit:
            self._used += 1
            return True
        return False

    def hit(self) -> None:
        self.applied += 1


@dataclass
class Latency(Toxic):
    ms: float = 1000.0
    jitter_ms: float = 0.0
    direction: str = DOWN


@dataclass
class Bandwidth(Toxic):
    kbps: float = 64.0
    direction: str = DOWN


@dataclass
class Blackhole(Toxic):
    pass


@dataclass
class ResetPeer(Toxic):
    after_ms: float = 0.0


@dataclass
class SlowClose(Toxic):
    ms: float = 2000.0


@dataclass
class Refuse(Toxic):
    pass


@dataclass
class Respond(Toxic):
    payload: bytes = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: 52\r\nConnection: close\r\n\r\n"
        b'{"error_code": "TEMPORARILY_UNAVAILABLE", "via": ""}'
    )


@dataclass
class CutAfter(Toxic):
    """Postgres, for one: ``match=b"UPDATE 1"`` is the command tag of an update the server has
    committed (autocommit); the client never reads it."""

    match: bytes = b"UPDATE 1\x00"


@dataclass
class Hold(Toxic):
    """``limit`` (default 1) requests whose bytes towards the upstream hold ``match`` wait in the
    proxy until the toxic is removed; ``applied`` counts the ones held."""

    match: bytes = b""
    limit: int | None = 1
    released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
