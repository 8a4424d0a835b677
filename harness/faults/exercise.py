"""A scenario exercised on a stack: sample the endpoints, inject the fault for its duration, remove
it, wait for recovery. The observation (the series, the writes and what went missing, how often
the fault took effect) goes to the judge (``harness.faults.judge``)."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Protocol

from harness.errors import WaitTimeout
from harness.faults.kinds import Targets, fault
from harness.faults.sampler import Sample, Sampler
from harness.faults.scenarios import Scenario
from harness.faults.writer import Stores, Writer, exactly_once
from harness.pictures import Window
from harness.stack.stack import Stack
from harness.stack.toxics import Toxic
from harness.wait import wait_until

LEASE_WAIT = 45.0  # seconds ``settle`` may take: past the api's default lease on a pending row


@dataclass
class Observation:
    scenario: Scenario
    fault_start: float  # seconds on the sampler's clock, when the fault took effect
    fault_end: float
    samples: list[Sample]
    writer: Writer | None = None
    missing: list[str] = field(default_factory=list)  # acknowledged writes not found in Postgres or MLflow
    applied: int | None = None  # link faults: how often the toxic took effect
    sampler: Sampler | None = None  # drawn in the report, with the verdicts' marks (judge.draw)
    applying: float = 0.0  # seconds the fault took to take effect (before ``fault_start``)

    def series(self, endpoint: str) -> list[Sample]:
        """Samples of ``endpoint`` as the scenario names it (MLflow's paths included)."""
        mlflow = endpoint.startswith("/mlflow/")
        return [s for s in self.samples if s.endpoint == endpoint or (mlflow and s.endpoint.endswith(endpoint))]


def exercise(stack: Stack, scenario: Scenario, settle: float) -> Observation:
    """Sample, inject the fault for its duration, remove it, wait (at most ``settle``) for recovery."""
    with contextlib.ExitStack() as es:
        sampler, writer = observe(es, stack, scenario)
        start, end, toxic, applying = hold(stack, scenario, sampler)
        recover(sampler, writer, scenario, end, settle)
    return Observation(
        scenario,
        start,
        end,
        list(sampler.samples),
        writer,
        settle_writes(stack, writer, settle),
        applied=toxic.applied if toxic is not None else None,
        sampler=sampler,
        applying=applying,
    )


class Reached(Targets, Stores, Protocol):
    """A stack, or a rehearsed fleet: what is sampled, faulted and read after."""


def observe(es: contextlib.ExitStack, target: Reached, scenario: Scenario) -> tuple[Sampler, Writer | None]:
    """The scenario's sampler (and writer) on ``target``'s api, stopped when ``es`` closes, once the
    first endpoint answered 200."""
    mlflow_root = target.url("mlflow").removesuffix("/mlflow")
    # endpoints under /mlflow/ are MLflow's own, sampled directly; the rest are the api's
    endpoints = tuple(mlflow_root + e if e.startswith("/mlflow/") else e for e in scenario.endpoints)
    sampler = es.enter_context(
        Sampler(target.url("api"), endpoints, interval=scenario.interval, timeout=30, max_duration=300)
    )
    writer = None
    if scenario.writer is not None:
        writer = es.enter_context(
            Writer(target.url("api"), scenario.writer.get("interval", 0.05), scenario.writer.get("max_requests", 5000))
        )
    wait_until(
        lambda: sampler.first(scenario.endpoints[0], 0, 200),
        timeout=10,
        what="a healthy first sample before the fault",
    )
    return sampler, writer


def hold(
    target: Targets, scenario: Scenario, sampler: Sampler, stop: threading.Event | None = None
) -> tuple[float, float, Toxic | None, float]:
    """The scenario's fault in effect on ``target`` for its duration (or until ``stop`` is set),
    then removed, its window drawn on ``sampler``'s picture: (start, end, the toxic, seconds it
    took to take effect)."""
    # the window opens when the fault is in effect (``docker pause`` returned, the toxic is
    # installed), not when its injection began: on a busy machine a pause takes a second or
    # more, which would otherwise count against the health check's detection budget
    injected = start = sampler.now()
    try:
        with fault(target, scenario.kind, scenario.target, **scenario.params) as toxic:
            start = sampler.now()
            wait_until(
                sampler.now,
                until=lambda t: t >= start + scenario.duration or (stop is not None and stop.is_set()),
                timeout=scenario.duration + 5,
                interval=0.05,
                what=f"the {scenario.duration}s fault window",
            )
    finally:  # the picture shows the window also when the fault could not be applied or removed
        end = sampler.now()
        if start - injected >= 0.05:
            sampler.windows.append(
                Window("fault-applying", injected, start, f"applying: {start - injected:.1f} s", alpha=0.05)
            )
        sampler.windows.append(Window("fault-window", start, end, f"fault: {scenario.kind} {scenario.target}"))
    return start, end, toxic, start - injected


def recover(sampler: Sampler, writer: Writer | None, scenario: Scenario, end: float, settle: float) -> None:
    """Wait (bounded) for the api to report pass again and for a few writes after; the judge
    decides whether that was in time."""
    with contextlib.suppress(WaitTimeout):
        wait_until(
            lambda: [s for s in sampler.series("/health") if s.t >= end and s.status == 200 and s.health == "pass"],
            timeout=settle,
            interval=0.1,
            what=f"/health to report pass after the {scenario.name} fault ended",
        )
        if writer is not None:
            written = len(writer.results)
            wait_until(
                lambda: len(writer.results),
                until=lambda n: n >= written + 3,
                timeout=10,
                what="a few writes after recovery",
            )


def settle_writes(stores: Stores, writer: Writer | None, settle: float) -> list[str]:
    """Every failed write again, with its key (a pending row a failed request still holds is free
    when its lease, API_CLAIM_LEASE, 30 s by default, runs out: the answers' Retry-After says when);
    then what is not recorded exactly once in ``stores``."""
    if writer is None:
        return []
    unsettled = writer.settle(timeout=max(settle, LEASE_WAIT))
    missing = [f"{r.key}: still {r.settled or r} after {r.retries} retries" for r in unsettled]
    return missing + exactly_once(stores, writer)
