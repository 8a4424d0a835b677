"""Deployments as Gantt pictures: one row per task (provisioning, start period, container healthy,
target healthy, unhealthy (a verdict the grace period may still be ignoring), in service, draining,
stopped or replaced), each task's grace period end as a tick,
the circuit breaker's verdict and the deployment's end as lines. For the simulator's result and for
the rehearsal's timelines; ``harness.pictures.gantt`` draws them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from harness.pictures import Mark, Row, Span, gantt
from harness.simulation.simulator import Result

if TYPE_CHECKING:  # the rehearsal imports this module to draw
    from harness.rehearsal.rehearsal import Timeline


def _phases(points: list[tuple[str, float | None]], end: float) -> list[Span]:
    """Each (phase, from) pair begins where it says and lasts until the next one that happened
    (a pair whose time is None did not happen), the last until ``end``."""
    happened = [(phase, t) for phase, t in points if t is not None and t <= end]
    out = []
    for i, (phase, t) in enumerate(happened):
        stop = happened[i + 1][1] if i + 1 < len(happened) else end
        if stop > t:
            out.append(Span(phase, t, stop))
    return out


def _first_healthy(container: float | None, target: float | None, in_service: float | None) -> tuple[str, float | None]:
    """The phase between the start period and service: which check passed first ("container
    healthy" or "target healthy") and when; None when both passed at once (straight to in service)."""
    first = min((t for t in (container, target) if t is not None), default=None)
    phase = "container healthy" if first is not None and first == container else "target healthy"
    return phase, None if first == in_service else first


def simulation_rows(result: Result) -> tuple[list[Row], list[Mark]]:
    """The simulator's deployment: the old tasks, then the new ones in launch order."""
    end = result.time
    rows = []
    for old in result.old:
        rows.append(
            Row(
                f"old {old.id}",
                _phases([("in service", 0.0), ("draining", old.draining_at), ("stopped", old.stopped_at)], end),
            )
        )
    for task in result.tasks:
        points = [
            ("provisioning", task.started if task.running_at > task.started else None),
            ("start period", task.running_at),
            _first_healthy(task.container_healthy_at, task.target_healthy_at, task.healthy_at),
            ("unhealthy", task.unhealthy_at if task.healthy_at is None else None),
            ("in service", task.healthy_at),
            ("replaced" if task.healthy_at is None else "stopped", task.stopped_at),
        ]
        marks = [Mark("grace-period-end", task.started + result.grace, "grace period ends")]
        rows.append(Row(f"new {task.id}", _phases(points, end), marks))
    marks = [Mark(f"traffic-{pct}", t, f"{pct}% of traffic to green") for t, pct in result.shifts]
    if result.test_traffic_at is not None:
        marks.insert(0, Mark("test-traffic", result.test_traffic_at, "test listener to green"))
    if result.outcome in ("rolled_back", "failed"):
        said = "circuit breaker: rolled back" if result.outcome == "rolled_back" else "circuit breaker: failed"
        marks.append(Mark("circuit-breaker", end, f"{said} ({result.replaced} replaced)", ok=False))
    elif result.outcome == "completed":
        marks.append(Mark("completed", end, f"completed at {end:.0f} s"))
    else:
        marks.append(Mark("stuck", end, "stuck (no verdict)", ok=False))
    return rows, marks


def simulation_svg(result: Result, title: str) -> str:
    rows, marks = simulation_rows(result)
    return gantt(rows, title=title, marks=marks, end=result.time)


def rehearsal_rows(timelines: Mapping[str, Timeline]) -> tuple[list[Row], float]:
    """The rehearsal's tasks on one axis (each timeline's events count from its own start, ``offset``
    seconds after the first task started); returns the rows and the end of the axis, which shows
    every grace period's end."""
    last = max((t.offset + max(t.events.values(), default=0.0) for t in timelines.values()), default=0.0) + 1.0
    end = max([last] + [t.offset + t.grace + 2.0 for t in timelines.values()])
    rows = []
    for key, t in timelines.items():
        ev, o = t.events, t.offset
        waiting, first_healthy = _first_healthy(ev.get("container HEALTHY"), ev.get("target healthy"), t.in_service)
        stopped = next((v for k, v in ev.items() if k.startswith("stopped")), None)
        failed = bool(t.failure) and t.in_service is None
        unhealthy = ev.get("container UNHEALTHY")

        def at(v: float | None, offset: float = o) -> float | None:
            return None if v is None else offset + v

        points = [
            ("start period", o),
            (waiting, at(first_healthy)),
            ("unhealthy", at(unhealthy)),
            ("in service", at(t.in_service)),
            # blue/green: blue after the last shift, kept for the termination wait (the rollback window)
            ("kept, no traffic", at(ev.get("traffic 100 % green")) if "green in service" in ev else None),
            ("draining", at(ev.get("draining"))),
            ("stopped", at(stopped)),
            ("replaced", at(max(ev.values(), default=0.0)) if failed else None),
        ]
        marks = [Mark("grace-period-end", o + t.grace, "grace period ends", ok=t.ok)]
        rows.append(Row(key, _phases(points, last if not failed else end), marks))
    return rows, end


def rehearsal_marks(timelines: Mapping[str, Timeline]) -> list[Mark]:
    """Blue/green: each move of the listener's weights as a line."""
    marks = []
    for t in timelines.values():
        if "green in service" in t.events:
            for what, at in t.events.items():
                if what.startswith("traffic ") and what.endswith(" % green"):
                    pct = what.split()[1]
                    marks.append(Mark(f"traffic-{pct}", t.offset + at, f"{pct}% of traffic to green"))
    return marks


def rehearsal_svg(timelines: Mapping[str, Timeline], title: str) -> str:
    rows, end = rehearsal_rows(timelines)
    return gantt(rows, title=title, marks=rehearsal_marks(timelines), end=end)
