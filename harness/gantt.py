"""Deployments as Gantt pictures: one row per task (provisioning, start period, container healthy,
target healthy, unhealthy (a verdict the grace period may still be ignoring), in service, blue kept
without traffic for the termination wait, draining, stopping after SIGTERM, SIGKILL (a forced stop),
stopped or replaced), each task's grace period
end as a tick, the listener's moves and the deployment's verdict as lines. It reads the typed
lifecycle (``harness.lifecycle``) that the simulator and the rehearsal both fill;
``harness.pictures.gantt`` draws it."""

from __future__ import annotations

from collections.abc import Sequence

from harness.lifecycle import Lifecycle, Milestone, Rollout, Step
from harness.pictures import Mark, Row, Span, gantt


def _phases(points: list[tuple[str, float | None]], end: float) -> list[Span]:
    """Each (phase, from) pair begins where it says and lasts until the next one that happened
    (a pair whose time is None did not happen), the last until ``end``."""
    # in time order (a stable sort keeps the given order for equal times): a task replaced and then
    # stopped by a rollback has both, and "stopped" is listed first
    happened = sorted(((phase, t) for phase, t in points if t is not None and t <= end), key=lambda p: p[1])
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


def lifecycle_row(life: Lifecycle, end: float, last_shift: float | None = None) -> Row:
    """One task's row; ``last_shift``: when the listener moved all production traffic to green
    (from then on a blue task in service is kept without traffic, the rollback window)."""
    at = life.at
    started, running, in_service = at(Step.STARTED), at(Step.RUNNING), at(Step.IN_SERVICE)
    waiting, first_healthy = _first_healthy(at(Step.CONTAINER_HEALTHY), at(Step.TARGET_HEALTHY), in_service)
    kept = last_shift if life.group == "blue" and in_service is not None else None
    points = [
        # until its essential container runs (dbinit first); a task whose dbinit failed never ran
        ("provisioning", started if started is not None and (running is None or running > started) else None),
        ("start period", running),
        (waiting, first_healthy),
        ("unhealthy", at(Step.UNHEALTHY) if in_service is None else None),
        ("in service", in_service),
        ("kept, no traffic", kept),
        ("draining", at(Step.DRAINING)),
        # SIGTERM: the app drains its own requests (a replaced task's stop is part of "replaced")
        ("stopping", at(Step.STOPPING) if at(Step.REPLACED) is None else None),
        ("SIGKILL", at(Step.KILLED)),  # the stop timeout ended first: a forced stop
        ("stopped", at(Step.STOPPED)),
        ("replaced", at(Step.REPLACED)),
    ]
    marks = [Mark("grace-period-end", life.grace_end, "grace period ends", ok=life.ok)] if started is not None else []
    return Row(life.name, _phases(points, end), marks)


def rollout_rows(rollout: Rollout, end: float, axis_end: float | None = None) -> list[Row]:
    """Every task's row: phases run until ``end``; a task never in service until ``axis_end``
    (where the axis shows its grace period's end)."""
    full = next((s.at for s in reversed(rollout.shifts) if s.percent == 100), None)
    return [
        lifecycle_row(life, end if life.at(Step.IN_SERVICE) is not None else (axis_end or end), full)
        for life in rollout.tasks.values()
    ]


def rollout_marks(rollout: Rollout) -> list[Mark]:
    """The test listener's move to green, then each move of the production weights."""
    marks = []
    if Milestone.TEST_TRAFFIC in rollout.milestones:
        marks.append(Mark("test-traffic", rollout.milestones[Milestone.TEST_TRAFFIC], "test listener to green"))
    marks += [Mark(f"traffic-{s.percent}", s.at, f"{s.percent}% of traffic to green") for s in rollout.shifts]
    return marks


def extent(rollout: Rollout) -> tuple[float, float]:
    """Where the rows' phases end (a second after the last thing that happened) and where the axis
    ends (far enough to show every task's grace period end)."""
    last = rollout.end + 1.0
    return last, max([last] + [life.grace_end + 2.0 for life in rollout.tasks.values() if Step.STARTED in life.steps])


def rollout_svg(rollout: Rollout, title: str, verdict: Sequence[Mark] = (), end: float | None = None) -> str:
    """The whole deployment; ``end``: where the axis and every row end (default: ``extent``);
    ``verdict``: the deployment's own lines."""
    last, axis = extent(rollout) if end is None else (end, end)
    return gantt(rollout_rows(rollout, last, axis), title=title, marks=rollout_marks(rollout) + list(verdict), end=axis)
