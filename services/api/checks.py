"""The checks the api's health is made of: one bounded dependency check and its result, and the
task-local checks (a stalled event loop, file descriptors near their limit).

A check never waits longer than its budget, whatever the dependency does: it runs in a task that
is abandoned (cancelled, not awaited) at its deadline.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from services.common.redact import redact

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

    def as_json(self) -> dict[str, Any]:
        """The check as a health answer shows it: status, latency, time; not ``output``, the
        dependency's own error text (a host, a port, a driver's words), which the request's log
        line keeps: the public listener routes the health paths too."""
        return {
            "componentType": self.component_type,
            "observedValue": round(self.latency_ms, 1),
            "observedUnit": "ms",
            "status": self.status.value,
            "time": self.time,
        }


def loop_clock() -> float:
    """The running event loop's clock (monotonic): what the evaluation's budgets, TTLs and timers
    are measured on, so a loop with a virtual clock (the unit tests) runs them all in its time."""
    return asyncio.get_running_loop().time()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_check(check: Check, secrets: tuple[str, ...] = ()) -> CheckResult:
    """Run one check with a hard deadline; never raises, never outlives ``budget``."""
    started = loop_clock()
    stamp = now_iso()
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
    latency = (loop_clock() - started) * 1000
    if output is None:
        status = Status.PASS
    else:
        status = Status.FAIL if check.required else Status.WARN
        output = redact(output, secrets)
    return CheckResult(check.component, check.measurement, check.component_type, status, latency, stamp, output)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, CheckFailed):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class LoopMonitor:
    """Measures how late the event loop wakes a short sleep. A loop that was blocked longer than
    ``limit`` within the last ``window`` seconds (or is late right now) is a task-local problem:
    the task cannot serve, whatever its dependencies do."""

    def __init__(
        self, limit: float, *, interval: float = 0.2, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.interval, self.window, self.clock = limit, interval, window, clock
        self.last_wake: float | None = None  # None until run() started
        self.worst: tuple[float, float] | None = None  # (when it ended, lag seconds)

    def record(self, lag: float) -> None:
        now = self.clock()
        self.last_wake = now
        if lag > self.limit and (self.worst is None or now - self.worst[0] > self.window or lag >= self.worst[1]):
            self.worst = (now, lag)

    async def run(self) -> None:
        self.last_wake = self.clock()
        while True:
            t0 = self.clock()
            await asyncio.sleep(self.interval)
            self.record(max(0.0, self.clock() - t0 - self.interval))

    def problem(self) -> str | None:
        now = self.clock()
        late = 0.0 if self.last_wake is None else now - self.last_wake - self.interval
        if late > self.limit:
            return f"event loop stalled: {late:.1f}s late now (limit {self.limit:g}s)"
        if self.worst is not None and now - self.worst[0] <= self.window:
            return (
                f"event loop stalled: blocked {self.worst[1]:.1f}s, {now - self.worst[0]:.0f}s ago "
                f"(limit {self.limit:g}s)"
            )
        return None


class Throttled:
    """``check()`` at most once per ``every`` seconds; its last answer in between (a /health answer
    must stay cheap: listing the open descriptors costs as much as the rest of a cached answer)."""

    def __init__(
        self, check: Callable[[], str | None], every: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.check, self.every, self.clock = check, every, clock
        self._at: float = float("-inf")
        self._last: str | None = None

    def __call__(self) -> str | None:
        now = self.clock()
        if now - self._at >= self.every:
            self._at, self._last = now, self.check()
        return self._last


def descriptors_problem(ratio: float = 0.9, fd_dir: str = "/proc/self/fd") -> str | None:
    """Open file descriptors near the soft limit: the next connection or file will fail. Linux
    (``/proc``); elsewhere nothing is reported."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = len(os.listdir(fd_dir))
    except OSError:
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0 or used < ratio * soft:
        return None
    return f"file descriptors exhausted: {used} of {soft} open"
