"""ECS's rolling replacement of the api's tasks, rehearsed under client traffic: new tasks start
within the deployment's ``maximumPercent`` of the desired count, old targets drain for the
deregistration delay and then get SIGTERM (and SIGKILL after stopTimeout) as long as the tasks in
service stay at or above ``minimumHealthyPercent``; until every task runs the new revision. No
client request may fail.

ECS's rounding (Amazon ECS Developer Guide, "Deployment configuration"): the minimum healthy
count is the desired count times the percent rounded up, the maximum rounded down."""

from __future__ import annotations

import contextlib
import math

from harness.lifecycle import Step
from harness.plan.timing import ServiceTiming
from harness.rehearsal.balancer import Balancer, Client
from harness.rehearsal.tasks import Launcher, RunningTask, task_key
from harness.wait import wait_until

NEW = "api (new revision)"


def summary(launcher: Launcher, client: Client, old: list[RunningTask], new: list[RunningTask], during: str) -> dict:
    """What the client saw during a replacement: its requests, how many failed, by target; a failed
    request fails the first old task's record (no request may fail while tasks are replaced)."""
    failed = client.failed
    launcher.say(f"api: {during}: {len(client.answers)} client requests, {len(failed)} failed")
    if failed and old:
        old[0].life.failure = old[0].life.failure or (
            f"{len(failed)} of {len(client.answers)} client requests failed during {during}: "
            + "; ".join(f"t={a.t}s {a.target} {a.status or a.error}" for a in failed[:5])
        )
    return {
        "requests": len(client.answers),
        "failed": len(failed),
        "by_target": {t.key: sum(a.target == t.key for a in client.answers) for t in (*old, *new)},
    }


def some_more_requests(client: Client) -> None:
    """A few requests after the last change, so the picture of what the client saw ends served."""
    wait_until(lambda: len(client.answers), until=lambda n: n >= 10, timeout=10, what="a few requests afterwards")


def bounds(desired: int, svc: ServiceTiming) -> tuple[int, int]:
    """(tasks that must stay in service, tasks that may run at once) during a rolling deployment."""
    return math.ceil(desired * svc.min_healthy_percent / 100), math.floor(desired * svc.max_percent / 100)


def drain_and_stop(launcher: Launcher, balancer: Balancer, svc: ServiceTiming, tasks: list[RunningTask]) -> None:
    """Deregister ``tasks`` together, wait out the deregistration delay, then stop them together."""
    for t in tasks:
        balancer.drain(t.key)
        t.life.mark(Step.DRAINING, launcher.now())
    launcher.until(
        tasks[0].life.steps[Step.DRAINING] + svc.deregistration_delay,
        f"{len(tasks)} old target(s) to drain for the deregistration delay ({svc.deregistration_delay:g}s)",
    )
    launcher.stop_together(tasks, svc)


def replace(
    launcher: Launcher,
    stack: contextlib.ExitStack,
    svc: ServiceTiming,
    old: list[RunningTask],
    containers: list[dict],
) -> dict:
    """The rolling replacement of every task in ``old``; returns its summary (requests, failed, by
    target, and the batches: how many tasks started and stopped at each step)."""
    desired = len(old)
    floor, ceiling = bounds(desired, svc)
    balancer = Balancer()
    for t in old:
        balancer.register(t.key, t.url, t.target)
    launcher.say(
        f"api: rolling replacement of {desired} task(s) (at least {floor} in service, at most {ceiling} running) "
        "while a client sends requests"
    )
    left, new, batches = list(old), list[RunningTask](), list[dict]()
    limit = (svc.grace_period + svc.deregistration_delay + svc.stop_timeout + 60) * desired
    with Client(balancer, max_duration=limit) as c:
        while left or len(new) < desired:
            room = min(desired - len(new), ceiling - len(left) - len(new))
            if room > 0:
                keys = [task_key(NEW, i) for i in range(len(new), len(new) + room)]
                batch = launcher.start_together(stack, [(svc, containers, k) for k in keys], {"API_REVISION": "2"})
                new += batch
                for t in batch:
                    if t.main is not None:
                        balancer.register(t.key, t.url, t.target)
                launcher.await_in_service(batch)
                if not all(t.life.ok for t in batch):
                    launcher.say("api: a new task never came into service: the replacement stops here")
                    break
            stoppable = min(len(left), len(left) + sum(t.life.ok for t in new) - floor)
            if stoppable <= 0 and room <= 0:
                old[0].life.failure = old[0].life.failure or (
                    f"the deployment cannot move: {len(left)} old task(s) and no room to start or stop one "
                    f"(minimum healthy {svc.min_healthy_percent}%, maximum {svc.max_percent}% of {desired})"
                )
                break
            if stoppable > 0:
                drain_and_stop(launcher, balancer, svc, left[:stoppable])
                left = left[stoppable:]
            batches.append({"started": max(room, 0), "stopped": max(stoppable, 0)})
        some_more_requests(c)
    return {"strategy": "rolling", "batches": batches, **summary(launcher, c, old, new, "the replacement")}
