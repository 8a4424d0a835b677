"""Readiness: bounded dependency checks, health+json aggregation, TTL cache with single flight.

The answer must never wait longer than the checks' budgets, whatever a dependency does:
each check runs in a task that is abandoned (cancelled, not awaited) at its deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from services.common.redact import redact

HEALTH_MEDIA_TYPE = "application/health+json"
# Added to a check's budget before it is declared timed out, so the check's own
# timeout (which produces a better message) fires first.
DEADLINE_SLACK = 0.05


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class CheckFailed(Exception):
    """A dependency answered, but not as a healthy one does."""


@dataclass(frozen=True)
class Check:
    """One dependency check. ``observe`` returns nothing and raises on failure."""

    component: str
    component_type: str
    observe: Callable[[], Awaitable[None]]
    budget: float
    required: bool = True
    measurement: str = "responseTime"

    @property
    def key(self) -> str:
        return f"{self.component}:{self.measurement}"


@dataclass(frozen=True)
class CheckResult:
    component: str
    measurement: str
    component_type: str
    status: Status
    latency_ms: float
    time: str
    output: str | None = None

    def as_json(self) -> dict:
        body = {
            "componentType": self.component_type,
            "observedValue": round(self.latency_ms, 1),
            "observedUnit": "ms",
            "status": self.status.value,
            "time": self.time,
        }
        if self.output:
            body["output"] = self.output
        return body


@dataclass(frozen=True)
class HealthReport:
    status: Status
    checks: tuple[CheckResult, ...]
    computed_at: float
    output: str | None = None
    cached: bool = False

    @property
    def http_status(self) -> int:
        return 503 if self.status is Status.FAIL else 200

    def as_json(self, service_id: str = "api") -> dict:
        body: dict = {"status": self.status.value, "serviceId": service_id, "version": "1"}
        if self.output:
            body["output"] = self.output
        checks: dict[str, list[dict]] = {}
        for c in self.checks:
            checks.setdefault(f"{c.component}:{c.measurement}", []).append(c.as_json())
        body["checks"] = checks
        return body


def aggregate(results: tuple[CheckResult, ...], required: Mapping[str, bool]) -> Status:
    """fail if a required check failed, warn if only optional ones failed or any warned, else pass."""
    status = Status.PASS
    for r in results:
        if r.status is Status.FAIL and required.get(r.component, True):
            return Status.FAIL
        if r.status is not Status.PASS:
            status = Status.WARN
    return status


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_check(check: Check, secrets: tuple[str, ...] = ()) -> CheckResult:
    """Run one check with a hard deadline; never raises, never outlives ``budget``."""
    started = time.perf_counter()
    stamp = _now_iso()
    task = asyncio.ensure_future(check.observe())
    output: str | None = None
    try:
        done, _ = await asyncio.wait({task}, timeout=check.budget + DEADLINE_SLACK)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_swallow)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_swallow)
        output = f"timed out after {check.budget:.2f}s"
    else:
        exc = task.exception()
        if exc is not None:
            output = _describe(exc)
    latency = (time.perf_counter() - started) * 1000
    if output is None:
        status = Status.PASS
    else:
        status = Status.FAIL if check.required else Status.WARN
        output = redact(output, secrets)
    return CheckResult(check.component, check.measurement, check.component_type,
                       status, latency, stamp, output)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, CheckFailed):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _swallow(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


@dataclass
class HealthService:
    """Evaluates the checks at most once per TTL, once for all concurrent callers."""

    checks: tuple[Check, ...]
    ttl: float
    secrets: tuple[str, ...] = ()
    clock: Callable[[], float] = time.monotonic
    on_result: Callable[[CheckResult], None] | None = None
    draining: bool = False
    _cached: HealthReport | None = field(default=None, init=False)
    _inflight: asyncio.Task | None = field(default=None, init=False)

    async def report(self) -> HealthReport:
        if self.draining:
            return HealthReport(Status.FAIL, (), self.clock(), output="draining: shutting down")
        cached = self._cached
        if cached is not None and self.clock() - cached.computed_at < self.ttl:
            return HealthReport(cached.status, cached.checks, cached.computed_at, cached.output, cached=True)
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._evaluate())
            self._inflight.add_done_callback(self._clear_inflight)
        # shield: a caller that disconnects must not cancel the evaluation others wait on
        return await asyncio.shield(self._inflight)

    def _clear_inflight(self, task: asyncio.Task) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _evaluate(self) -> HealthReport:
        """Run the checks concurrently; once a required check fails the verdict is fail, so the
        others are abandoned rather than awaited (a frozen database must not also wait out
        MLflow's retries, which hang on the same database)."""
        started = time.perf_counter()
        tasks = {asyncio.ensure_future(run_check(c, self.secrets)): c for c in self.checks}
        by_check: dict[Check, CheckResult] = {}
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                by_check[tasks[t]] = t.result()
            failed = [r for r in by_check.values() if r.status is Status.FAIL]
            if failed and pending:
                for t in pending:
                    t.cancel()
                for t in pending:
                    c = tasks[t]
                    by_check[c] = CheckResult(
                        c.component, c.measurement, c.component_type, Status.WARN,
                        (time.perf_counter() - started) * 1000, _now_iso(),
                        f"not awaited: verdict already fail ({failed[0].component} failed)")
                pending = set()
        results = tuple(by_check[c] for c in self.checks)
        if self.on_result is not None:
            for r in results:
                self.on_result(r)
        status = aggregate(results, {c.component: c.required for c in self.checks})
        report = HealthReport(status, results, self.clock())
        self._cached = report
        return report
