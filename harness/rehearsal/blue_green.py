"""CodeDeploy's ECS blue/green of the api, rehearsed under client traffic: a green task set (as many
tasks as blue) beside blue in the second target group, traffic moved on the listener by the
configuration's steps once every green task is in service, blue kept for the termination wait,
then deregistered and stopped. With the plan's test
listener, green is validated through it first (``balancer.validate``: /health pass and one write
read back) before any production traffic moves. A green that never comes into service, or fails its
validation, moves no traffic and is removed (the rollback)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from harness.lifecycle import Milestone, Shift, Step
from harness.plan.codedeploy import TRAFFIC
from harness.plan.timing import ServiceTiming
from harness.rehearsal.balancer import Balancer, Client, validate
from harness.rehearsal.rolling import drain_and_stop, some_more_requests, summary
from harness.rehearsal.tasks import Launcher, RunningTask, task_key


@dataclass(frozen=True)
class BlueGreen:
    """How the deployment group moves traffic: its configuration, the termination wait (seconds),
    and a scale for both (0.02: a canary's 5 minutes as 6 s; health timing is never scaled)."""

    traffic: str
    termination_wait: float
    time_scale: float = 1.0


def blue_green(
    launcher: Launcher,
    stack: contextlib.ExitStack,
    svc: ServiceTiming,
    blue: list[RunningTask],
    containers: list[dict],
    how: BlueGreen,
    revision_env: dict[str, str],
    balancer: Balancer | None = None,
) -> dict:
    """The blue/green deployment beside the ``blue`` task set (registered in ``balancer``, a new
    one when None); returns its summary."""
    rollout = launcher.rollout
    for t in blue:
        t.life.group = "blue"
    steps = [(after * how.time_scale, percent) for after, percent in TRAFFIC[how.traffic]]
    termination = how.termination_wait * how.time_scale
    if balancer is None:
        balancer = Balancer()
        for t in blue:
            balancer.register(t.key, t.url, t.target, group="blue")
    problem: str | None = None  # what failed the validation through the test listener
    launcher.say(
        f"api: blue/green ({how.traffic}): {len(blue)} green task(s) start beside blue while a client sends requests"
    )
    limit = svc.grace_period + steps[-1][0] + termination + svc.deregistration_delay + 120
    with Client(balancer, max_duration=limit, excused=launcher.excused) as c:
        keys = [task_key("api (green)", i) for i in range(len(blue))]
        green = launcher.start_together(
            stack, [(svc, containers, k) for k in keys], {"API_REVISION": "2", **revision_env}, "green"
        )
        for t in green:
            if t.main is not None:
                balancer.register(t.key, t.url, t.target, group="green")
        launcher.await_in_service(green)
        if all(t.life.ok for t in green):
            rollout.reached(Milestone.GREEN_IN_SERVICE, launcher.now())
            launcher.moment("green in service")
            if svc.test_listener:
                launcher.say("api: the test listener routes to green: validating it before production traffic moves")
                rollout.reached(Milestone.TEST_TRAFFIC, launcher.now())
                for t in green:  # the test listener spreads the hook's requests over every green target
                    problem = validate(t.url)
                    if problem is not None:
                        t.life.failure = f"validation through the test listener failed: {problem}"
                        break
                rollout.reached(Milestone.VALIDATED if problem is None else Milestone.VALIDATION_FAILED, launcher.now())
        rolled_back = not all(t.life.ok for t in green)
        if rolled_back:
            why = "green never in service" if problem is None else "green failed its validation"
            rollout.reached(Milestone.ROLLED_BACK, launcher.now())
            launcher.say(f"api: {why}{f' ({problem})' if problem else ''}: no traffic moved; green removed (rollback)")
            running = []
            for t in green:
                if t.main is None:
                    continue
                balancer.drain(t.key)
                t.life.mark(Step.DRAINING, launcher.now())
                t.started.reload()
                if t.started.attrs["State"]["Status"] == "running":
                    running.append(t)
            launcher.stop_together(running, svc)
        else:
            ready = launcher.now()
            for after, percent in steps:
                launcher.until(ready + after, f"the traffic step to {percent} % green")
                balancer.shift({"blue": 100 - percent, "green": percent})
                rollout.shifts.append(Shift(launcher.now(), percent))
                launcher.say(f"api: listener forwards {percent} % to green")
                launcher.moment("traffic shifted")
            launcher.until(launcher.now() + termination, "the termination wait (blue kept for a rollback)")
            rollout.reached(Milestone.TERMINATION_WAIT_OVER, launcher.now())
            drain_and_stop(launcher, balancer, svc, blue)  # the blue task set deleted: its targets deregister
        some_more_requests(c)
    # the client's clock counts from its own start; the rollout's from the first task's
    last = rollout.shifts[-1].at + (launcher.began - c.started) + 0.5 if rollout.shifts else None
    blue_keys = {t.key for t in blue}
    return {
        "strategy": "blue_green",
        "traffic": how.traffic,
        "termination_wait": termination,
        **summary(launcher, c, blue, green, "the blue/green deployment"),
        "shifts": [(s.at, s.percent) for s in rollout.shifts],
        "on_blue_after_the_last_shift": sum(
            a.target in blue_keys for a in c.answers if last is not None and a.t >= last
        ),
        "rolled_back": rolled_back,
        "validation": problem or ("passed" if Milestone.VALIDATED in rollout.milestones else None),
    }
