"""Readiness: health+json aggregation of the dependency checks (``checks.py``), a cache with
single flight and stale-while-revalidate, and the fleet-safe view the load balancer reads.

The answer must never wait longer than the checks' budgets, whatever a dependency does: each
check has a hard deadline, and an evaluation abandons what a failed required check makes moot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from services.api.checks import Check, CheckResult, Status, loop_clock, now_iso, run_check

HEALTH_MEDIA_TYPE = "application/health+json"
SERVICE_ID = "api"


class Phase(str, Enum):
    """Where the task is in its life, as the load balancer should treat it."""

    STARTING = "starting"  # a required dependency has not answered once yet: not in service
    SERVING = "serving"  # in service; a dependency outage from now on is a warning
    DRAINING = "draining"  # SIGTERM seen: fail so the load balancer takes the target out


@dataclass(frozen=True)
class Evaluation:
    """One run of the dependency checks; cached and shared by every caller. ``encoded`` keeps what
    the answers from it share (their body without the age, their log summary), made once."""

    checks: tuple[CheckResult, ...]
    computed_at: float
    encoded: dict[tuple[object, ...], Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class HealthReport:
    status: Status
    checks: tuple[CheckResult, ...]
    computed_at: float
    output: str | None = None
    cached: bool = False
    phase: Phase = Phase.SERVING
    age: float = 0.0  # seconds since the dependency checks ran
    stale: bool = False  # older than the TTL: served while one refresh runs
    evaluation: Evaluation | None = field(default=None, compare=False, repr=False)

    @property
    def http_status(self) -> int:
        return 503 if self.status is Status.FAIL else 200

    def _static_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status.value,
            "serviceId": SERVICE_ID,
            "version": "1",
            "phase": self.phase.value,
        }
        if self.stale:
            body["stale"] = True
        if self.output:
            body["output"] = self.output
        grouped: dict[str, list[dict[str, Any]]] = {}
        for c in self.checks:
            grouped.setdefault(f"{c.component}:{c.measurement}", []).append(c.as_json())
        body["checks"] = grouped
        return body

    def as_json(self) -> dict[str, Any]:
        return {**self._static_json(), "ageSeconds": round(self.age, 3)}

    def _shared(self, what: str, make: Callable[[], object]) -> Any:
        """``make()`` once per evaluation and answer kind (status, phase, staleness, output)."""
        if self.evaluation is None:
            return make()
        key = (what, self.status, self.phase, self.stale, self.output)
        cache = self.evaluation.encoded
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def body(self) -> bytes:
        """``as_json()`` encoded. Every answer from one evaluation shares all but its age, so that
        part is encoded once and the age appended (a cached /health costs about what /health/live
        does)."""
        head: bytes = self._shared(
            "body", lambda: (json.dumps(self._static_json(), separators=(",", ":"))[:-1] + ',"ageSeconds":').encode()
        )
        return head + repr(round(self.age, 3)).encode() + b"}"

    def log_fields(self) -> dict[str, Any]:
        """What the request's log line says about the answer."""
        summary = self._shared(
            "log",
            lambda: {
                c.component: {
                    "status": c.status.value,
                    "latency_ms": round(c.latency_ms, 1),
                    **({"output": c.output} if c.output else {}),
                }
                for c in self.checks
            },
        )
        return {
            "health": self.status.value,
            "phase": self.phase.value,
            "cached": self.cached,
            "age_s": round(self.age, 3),
            "checks": summary,
            **({"output": self.output} if self.output else {}),
        }


def aggregate(results: tuple[CheckResult, ...], required: Mapping[str, bool]) -> Status:
    """fail if a required check failed, warn if only optional ones failed or any warned, else pass."""
    status = Status.PASS
    for r in results:
        if r.status is Status.FAIL and required.get(r.component, True):
            return Status.FAIL
        if r.status is not Status.PASS:
            status = Status.WARN
    return status


@dataclass
class HealthService:
    """Two views of one cached evaluation of the dependency checks.

    ``report()`` is the load balancer's view and cannot take the fleet down: a task is out of
    service (``fail``) until every required dependency has answered once, so a task with a broken
    dependency configuration never enters service; once in service, a failing dependency is
    shared by every task, so it reports ``warn`` (HTTP 200) with the failure in the body; only
    trouble of the task itself fails it at once: draining, a stalled event loop, exhausted file
    descriptors (``local_checks``). ``report(deep=True)`` is the monitoring view: a failing
    required dependency is ``fail``.

    The evaluation runs at most once per ``ttl`` for all concurrent callers (single flight).
    Older than ``ttl`` but at most ``max_stale`` seconds: the last evaluation is served at once
    while one refresh runs (stale-while-revalidate); the body reports its age. Older than that
    (or none yet): the caller waits for the refresh, which the checks' budgets bound."""

    checks: tuple[Check, ...]
    ttl: float
    max_stale: float | None = None
    secrets: tuple[str, ...] = ()
    clock: Callable[[], float] = loop_clock  # the evaluation's clock: its event loop's
    on_evaluation: Callable[[tuple[CheckResult, ...]], None] | None = None
    on_check: Callable[[CheckResult], None] | None = None  # every check run that finished, re-runs too
    local_checks: tuple[Callable[[], str | None], ...] = ()
    draining: bool = False
    _cached: Evaluation | None = field(default=None, init=False)
    _inflight: asyncio.Task[Any] | None = field(default=None, init=False)
    _answered: set[str] = field(default_factory=set, init=False)

    @property
    def required(self) -> dict[str, bool]:
        return {c.component: c.required for c in self.checks}

    @property
    def waiting_for(self) -> list[str]:
        """Required dependencies that have not answered once yet."""
        return [c.component for c in self.checks if c.required and c.component not in self._answered]

    @property
    def phase(self) -> Phase:
        if self.draining:
            return Phase.DRAINING
        return Phase.STARTING if self.waiting_for else Phase.SERVING

    async def report(self, deep: bool = False) -> HealthReport:
        if self.draining:
            return HealthReport(Status.FAIL, (), self.clock(), output="draining: shutting down", phase=Phase.DRAINING)
        evaluation, cached, stale = await self._evaluation()
        checks, age = evaluation.checks, max(0.0, self.clock() - evaluation.computed_at)
        deps = aggregate(checks, self.required)
        failing = [c.component for c in checks if c.status is Status.FAIL]
        local = [p for p in (f() for f in self.local_checks) if p]
        phase = self.phase
        if local:
            status, output = Status.FAIL, "; ".join(local)
        elif phase is Phase.STARTING:
            status, output = (
                Status.FAIL,
                ("not in service yet: no healthy answer yet from " + ", ".join(self.waiting_for)),
            )
        elif deps is Status.FAIL and not deep:
            status, output = (
                Status.WARN,
                (
                    f"dependency failing: {', '.join(failing)}; the task still serves "
                    "(a shared outage must not drain the fleet); /health/deep fails"
                ),
            )
        elif deps is Status.FAIL:
            status, output = Status.FAIL, f"dependency failing: {', '.join(failing)}"
        else:
            status, output = deps, None
        return HealthReport(status, checks, evaluation.computed_at, output, cached, phase, age, stale, evaluation)

    async def _evaluation(self) -> tuple[Evaluation, bool, bool]:
        cached = self._cached
        if cached is not None:
            age = self.clock() - cached.computed_at
            if age < self.ttl:
                return cached, True, False
            if self.max_stale is not None and age <= self.max_stale:
                self._refresh()
                return cached, True, True
        # shield: a caller that disconnects must not cancel the evaluation others wait on
        return await asyncio.shield(self._refresh()), False, False

    def _refresh(self) -> asyncio.Task[Any]:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._evaluate())
            self._inflight.add_done_callback(self._clear_inflight)
        return self._inflight

    def _clear_inflight(self, task: asyncio.Task[Any]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()

    async def aclose(self) -> None:
        """Cancel a refresh still running (at shutdown)."""
        task = self._inflight
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _evaluate(self) -> Evaluation:
        """Run the checks concurrently; once a required check fails the verdict is fail, so the
        others are abandoned rather than awaited (a frozen database must not also wait out
        MLflow's retries, which hang on the same database).

        While a slow check runs, a check that passed is run again each TTL, so a dependency that
        fails meanwhile ends the evaluation within TTL + its own budget, however long the slow
        check takes: a database that freezes after its check passed, while MLflow's check waits on
        that same database, is not hidden behind MLflow's retries. What still runs once every check
        has a result is abandoned; the evaluation keeps each check's last result."""
        started = self.clock()
        running: dict[asyncio.Future[CheckResult], Check] = {}
        passed_at: dict[Check, float] = {}  # checks that passed and are not running again
        by_check: dict[Check, CheckResult] = {}

        def start(c: Check) -> None:
            running[asyncio.ensure_future(run_check(c, self.secrets))] = c

        for c in self.checks:
            start(c)
        failed: list[CheckResult] = []
        try:
            while len(by_check) < len(self.checks) and not failed:
                # a passed check is due again at ``at + ttl``: the wait and the test below use that one
                # deadline (two roundings of it could disagree by a float's last bit, and the loop spin)
                rerun_in = min(passed_at.values()) + self.ttl - self.clock() if passed_at and self.ttl > 0 else None
                done, _ = await asyncio.wait(
                    set(running),
                    timeout=None if rerun_in is None else max(0.0, rerun_in),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for t in done:
                    c = running.pop(t)
                    by_check[c] = t.result()
                    if self.on_check is not None:
                        self.on_check(by_check[c])
                    if by_check[c].status is Status.PASS:
                        passed_at[c] = self.clock()
                failed = [r for r in by_check.values() if r.status is Status.FAIL]
                for c, at in list(passed_at.items()):
                    if not failed and self.ttl > 0 and self.clock() >= at + self.ttl:
                        del passed_at[c]
                        start(c)
        finally:  # what still runs is abandoned, also when this evaluation is cancelled
            for t in running:
                t.cancel()
        for c in self.checks:
            if c not in by_check:
                by_check[c] = CheckResult(
                    c.component,
                    c.measurement,
                    c.component_type,
                    Status.WARN,
                    (self.clock() - started) * 1000,
                    now_iso(),
                    f"not awaited: verdict already fail ({failed[0].component} failed)",
                )
        results = tuple(by_check[c] for c in self.checks)
        self._answered.update(r.component for r in results if r.status is Status.PASS)
        if self.on_evaluation is not None:
            self.on_evaluation(results)
        evaluation = Evaluation(results, self.clock())
        self._cached = evaluation
        return evaluation
