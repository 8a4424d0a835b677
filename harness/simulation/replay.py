"""The simulator given what a rehearsal of the same plan measured, so that the two can be compared
(``harness.lifecycle.timeline`` and ``disagreements``): the model that judges every plan against
the deployment that really ran on Docker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from harness.lifecycle import Rollout, Step
from harness.simulation.simulator import Result, SimConfig, Simulation


def replay(cfg: SimConfig, rollout: Rollout, role: Callable[[str], str | None]) -> Result:
    """The simulator given what a rehearsal of the same plan measured, to compare the two: each new
    task's boot (its first passing target check, less half a check interval: the app came up
    between that check and the one before), their start-to-RUNNING time (dbinit), the old tasks'
    SIGTERM-to-exit time; checks start as the task runs and ask H passes in a row, as the
    rehearsal's poller does. ``role`` names a task "old" or "new" (None: not part of it)."""
    new = [life for name, life in rollout.tasks.items() if role(name) == "new"]
    old = [life for name, life in rollout.tasks.items() if role(name) == "old"]
    running = [life.at(Step.RUNNING) for life in new]
    boots = [
        max(0.0, life.answered - run - cfg.alb_interval / 2)
        for life, run in zip(new, running, strict=True)
        if life.answered is not None and run is not None
    ]
    if not boots:
        raise ValueError("the rehearsal has no new task whose check ever passed: nothing to replay")
    provisioning = [run - life.started for life, run in zip(new, running, strict=True) if run is not None]
    stops = [
        life.steps[Step.STOPPED] - life.steps[Step.STOPPING]
        for life in old
        if Step.STOPPED in life.steps and Step.STOPPING in life.steps
    ]
    queue = iter(boots)
    cfg = dataclasses.replace(
        cfg,
        desired=len(old),
        conservative=True,
        provisioning=sum(provisioning) / len(provisioning),
        stop_duration=sum(stops) / len(stops) if stops else 0.0,
    )
    return Simulation(cfg, lambda rng: next(queue, boots[-1]), 0, lambda rng: 0.0).run()
