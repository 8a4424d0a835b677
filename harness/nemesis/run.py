"""One nemesis run against a stack with fault proxies: concurrent clients write with keys and
retry as clients do while the seed's schedule (``schedule.draw``) runs; then every fault is
removed, the stack recovers, every unacknowledged key is sent again until recorded, and the
checker reads both stores.

The history holds every attempt (its client, key, start and end, answer) and every fault (its
start and end as applied); the verdict is the checker's list of violations, empty when the run
kept its promise. The same seed replays the same schedule and the same client decisions (which
keys, which client timeouts); the interleaving is the machine's.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from harness.errors import HarnessError
from harness.faults.kinds import Targets, fault
from harness.faults.writer import Stores, WriteResult, send_write, settle
from harness.nemesis.checker import EXPECTED, check
from harness.nemesis.schedule import Op, Schedule
from harness.wait import wait_until

LOST_ANSWER_TIMEOUT = 0.8  # a client that gives up this early loses answers the api still sends
PATIENT_TIMEOUT = 15.0


class Nemesis(Targets, Stores, Protocol):
    """What the nemesis runs against: a stack with fault proxies meets both."""


@dataclass
class Applied:
    """A fault as it was held: when it took effect and when it was removed (seconds from start)."""

    op: Op
    start: float | None = None
    end: float | None = None
    error: str | None = None


@dataclass
class Run:
    schedule: Schedule
    experiment: str
    attempts: list[WriteResult] = field(default_factory=list)
    faults: list[Applied] = field(default_factory=list)
    unsettled: list[WriteResult] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    recovered_at: float | None = None
    settled_at: float | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict:
        return {
            "schedule": self.schedule.as_json(),
            "experiment": self.experiment,
            "verdict": "ok" if self.ok else "violations",
            "violations": self.violations,
            "recovered_at": self.recovered_at,
            "settled_at": self.settled_at,
            "faults": [
                {"name": a.op.move.name, "planned": [a.op.start, a.op.end], "start": a.start, "end": a.end}
                | ({"error": a.error} if a.error else {})
                for a in self.faults
            ],
            "attempts": [
                {
                    "client": a.client,
                    "key": a.key,
                    "t": round(a.t, 3),
                    "ended": round(a.ended, 3),
                    "status": a.status,
                    "id": a.run_id,
                    "error": a.error,
                    "detail": a.detail,
                    "retry_after": a.retry_after,
                }
                for a in self.attempts
            ],
        }


def body(experiment: str, key: str) -> dict:
    return {"experiment": experiment, "name": key[-12:], "params": {"key": key}, "metrics": {"m": 1.0}}


class _Clients:
    """``count`` threads, each writing new keys one after another; a key's attempts go on while
    the answer says to retry (503, 409, no answer), up to ``attempts``, then the client moves on
    and ``settle`` finishes the key. Each client's decisions come from its own seeded random."""

    def __init__(self, api_url: str, experiment: str, seed: int, count: int, attempts: int, started: float) -> None:
        self.api_url, self.experiment, self.started = api_url, experiment, started
        self.attempts_per_key = attempts
        self.history: list[WriteResult] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(n, random.Random(seed * 1000 + n)), daemon=True)
            for n in range(count)
        ]

    def _client(self, n: int, rng: random.Random) -> None:
        i = 0
        with httpx.Client() as client:
            while not self._stop.is_set():
                key = f"{self.experiment}-c{n}-{i}"
                i += 1
                for _ in range(self.attempts_per_key):
                    client.timeout = httpx.Timeout(LOST_ANSWER_TIMEOUT if rng.random() < 0.3 else PATIENT_TIMEOUT)
                    attempt = send_write(client, self.api_url, body(self.experiment, key), key, self.started)
                    attempt.client = n
                    with self._lock:
                        self.history.append(attempt)
                    if attempt.status in (200, 201) or (attempt.status is not None and attempt.status not in EXPECTED):
                        break
                    self._stop.wait(min(attempt.retry_after or 0.2, 3.0))
                    if self._stop.is_set():
                        break
                self._stop.wait(rng.uniform(0.0, 0.2))

    def __enter__(self) -> _Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(PATIENT_TIMEOUT + 5)


def _hold(stack: Targets, applied: Applied, started: float, stop: threading.Event, grace: float) -> None:
    """Wait for the op's start, apply it, hold it to its end (or until stopped), remove it."""
    op = applied.op
    if stop.wait(max(0.0, started + op.start - time.monotonic())):
        return
    try:
        with fault(stack, op.move.kind, op.move.target, grace, **op.move.params):
            applied.start = time.monotonic() - started
            stop.wait(max(0.0, started + op.end - time.monotonic()))
        applied.end = time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - kept in the history; the run goes on without this fault
        applied.error = f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _nemesis(stack: Targets, schedule: Schedule, started: float, grace: float) -> Iterator[list[Applied]]:
    """Every op on a thread of its own (slots never overlap, by the schedule); on exit each is
    removed, also when the block fails."""
    applied = [Applied(op) for op in schedule.ops]
    stop = threading.Event()
    threads = [threading.Thread(target=_hold, args=(stack, a, started, stop, grace), daemon=True) for a in applied]
    for t in threads:
        t.start()
    try:
        yield applied
    finally:
        stop.set()
        for t in threads:
            t.join(grace + 60)
        if any(t.is_alive() for t in threads):
            raise HarnessError("the nemesis' faults removed", "a fault still held 60 s after the schedule ended")


def run(
    stack: Nemesis,
    schedule: Schedule,
    *,
    clients: int = 4,
    attempts: int = 4,
    recover_timeout: float = 180.0,
    settle_timeout: float = 120.0,
    grace: float = 10.0,
    progress: Callable[[str], None] = lambda _: None,
) -> Run:
    """The schedule against ``stack`` with ``clients`` writers; the run's history and verdict."""
    experiment = f"nemesis-{schedule.seed}-{int(time.time() * 1000) % 10**8}"
    result = Run(schedule, experiment)
    api = stack.url("api")
    started = time.monotonic()
    progress(f"seed {schedule.seed}: {len(schedule.ops)} faults over {schedule.duration:g} s, {clients} clients")
    with _Clients(api, experiment, schedule.seed, clients, attempts, started) as writers:
        with _nemesis(stack, schedule, started, grace) as applied:
            wait_until(
                lambda: time.monotonic() - started >= schedule.duration,
                timeout=schedule.duration + 5,
                interval=0.5,
                what="the schedule's end",
            )
        result.faults = applied
    result.attempts = writers.history
    progress(f"seed {schedule.seed}: faults removed; {len(result.attempts)} attempts; waiting for /health/deep")
    wait_until(
        lambda: httpx.get(f"{api}/health/deep", timeout=5).status_code,
        until=lambda status: status == 200,
        timeout=recover_timeout,
        interval=0.5,
        what="the api's /health/deep to pass after the nemesis",
    )
    result.recovered_at = time.monotonic() - started
    last = _last_per_key(result.attempts)
    result.unsettled = settle(
        list(last.values()),
        lambda client, r: send_write(client, api, body(experiment, r.key), r.key, started),
        timeout=settle_timeout,
        interval=0.3,
    )
    result.settled_at = time.monotonic() - started
    progress(f"seed {schedule.seed}: settled; checking both stores")
    result.violations = check(stack, experiment, result.attempts, last, result.unsettled)
    return result


def _last_per_key(attempts: list[WriteResult]) -> dict[str, WriteResult]:
    """Each key's last attempt (a 2xx among them counts as recorded: ``settle`` skips the key)."""
    last: dict[str, WriteResult] = {}
    for a in attempts:
        if last.get(a.key) is None or last[a.key].recorded_id is None:
            last[a.key] = a
    return last
