"""Every fault kind in one table: kind -> what it targets and how it is applied.

    with fault(stack, "pause", "postgres"):                  # SIGSTOP / docker pause
    with fault(stack, "latency", "api->postgres", ms=3000):  # a toxic on the link's fault proxy
        ...                                                  # always removed at the end of the block

A new kind is one row here (and, for a network kind, one toxic class in harness/stack/toxics.py);
the scenario schema takes its kinds, targets and parameters from this table.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from harness.errors import ConfigurationError
from harness.stack.proxy import FaultProxy
from harness.stack.runtime.base import Service
from harness.stack.stack import SPECS, link_name
from harness.stack.toxics import (
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

SERVICES = ("postgres", "mlflow")  # the api is what every scenario observes
LINKS = tuple(link_name(name, dep) for name, spec in SPECS.items() for dep in spec.depends_on)


class Targets(Protocol):
    """What a fault is injected into: a stack, or a rehearsed fleet (harness.rehearsal.rehearsal.Fleet)."""

    @property
    def services(self) -> Mapping[str, Service]: ...

    @property
    def proxies(self) -> Mapping[str, FaultProxy]: ...


@dataclass(frozen=True)
class Kind:
    name: str
    on_link: bool  # a link (a toxic on its proxy), else a service
    params: tuple[str, ...]  # the parameters a scenario may give
    toxic: Callable[[dict], Toxic] | None = None  # network kinds: parameters -> toxic
    process: Callable[[Service, float], contextlib.AbstractContextManager] | None = None  # service kinds


def _toxic(cls: type[Toxic], **defaults: object) -> Callable[[dict], Toxic]:
    return lambda params: cls(**{**defaults, **params})


def _fields(cls: type[Toxic]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _respond(params: dict) -> Toxic:
    """An HTTP answer of ``status`` (default 503) with a JSON body, then close."""
    status = int(params.get("status", 503))
    body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected by the harness"}'
    head = (
        f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n"
    ).encode()
    return Respond(payload=head + body, limit=params.get("limit"))


def _cut_after(params: dict) -> Toxic:
    """``match`` is text in the upstream's answer (latin-1: a Postgres command tag such as
    "UPDATE 1\\0", NUL-terminated on the wire); ``limit`` answers are cut (default 1)."""
    return CutAfter(match=str(params.get("match", "UPDATE 1\0")).encode("latin-1"), limit=params.get("limit", 1))


def _hold(params: dict) -> Toxic:
    """``match`` is text on its way to the upstream (latin-1: an SQL statement, an HTTP path);
    ``limit`` such requests (default 1) wait in the proxy until the fault ends, then go on."""
    return Hold(match=str(params.get("match", "")).encode("latin-1"), limit=params.get("limit", 1))


@contextlib.contextmanager
def _paused(svc: Service, grace: float) -> Iterator[None]:
    svc.pause()
    try:
        yield
    finally:
        svc.resume()


@contextlib.contextmanager
def _down(svc: Service, grace: float, graceful: bool) -> Iterator[None]:
    if graceful:
        svc.stop(grace)
    else:
        svc.kill()
    try:
        yield
    finally:
        svc.start()


@contextlib.contextmanager
def _restarted(svc: Service, grace: float) -> Iterator[None]:
    svc.restart(grace)
    yield


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("kill", False, (), process=lambda svc, grace: _down(svc, grace, graceful=False)),
        Kind("stop", False, (), process=lambda svc, grace: _down(svc, grace, graceful=True)),
        Kind("pause", False, (), process=_paused),
        Kind("restart", False, (), process=_restarted),
        Kind("latency", True, _fields(Latency), _toxic(Latency, ms=1000, jitter_ms=0, direction="downstream")),
        Kind("bandwidth", True, _fields(Bandwidth), _toxic(Bandwidth, kbps=8, direction="downstream")),
        Kind("blackhole", True, _fields(Blackhole), _toxic(Blackhole)),
        Kind("reset", True, _fields(ResetPeer), _toxic(ResetPeer)),
        Kind("slow_close", True, _fields(SlowClose), _toxic(SlowClose)),
        Kind("refuse", True, (), _toxic(Refuse)),
        Kind("respond", True, ("status", "limit"), _respond),
        Kind("cut_after", True, ("match", "limit"), _cut_after),
        Kind("hold", True, ("match", "limit"), _hold),
    )
}


@contextlib.contextmanager
def fault(stack: Targets, kind: str, target: str, grace: float = 10.0, **params: object) -> Iterator[Toxic | None]:
    """Inject a fault for the duration of the block; the service or link is restored on exit.
    Yields the toxic for link faults (its ``applied`` count shows the fault took effect)."""
    row = KINDS.get(kind)
    if row is None:
        raise ConfigurationError("a fault kind", repr(kind), f"one of {', '.join(KINDS)}")
    unknown = sorted(set(params) - set(row.params))
    if unknown:
        raise ConfigurationError(
            f"parameters of the {kind} fault: {', '.join(row.params) or 'none'}",
            ", ".join(unknown),
            "see harness/faults/kinds.py",
        )
    if row.on_link:
        proxy = stack.proxies.get(target)
        if proxy is None:
            raise ConfigurationError(
                f"a fault proxy on {target}",
                "none (the stack runs without proxies)",
                "start the stack with StackConfig(proxies=True) (a rehearsal: Rehearsal(mlflow_proxy=True))",
            )
        assert row.toxic is not None
        with proxy.toxic(row.toxic(params)) as toxic:
            yield toxic
        return
    if target not in stack.services:
        raise ConfigurationError(f"a service for the {kind} fault ({', '.join(stack.services)})", repr(target), "")
    assert row.process is not None
    with row.process(stack.services[target], grace):
        yield None
