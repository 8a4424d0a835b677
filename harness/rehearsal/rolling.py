"""ECS's rolling replacement of the api's task, rehearsed under client traffic: the new revision
comes into service, the old target drains for the deregistration delay, then gets SIGTERM and,
after stopTimeout, SIGKILL. No client request may fail."""

from __future__ import annotations

import contextlib

from harness.lifecycle import Step
from harness.plan.timing import ServiceTiming
from harness.rehearsal.balancer import Balancer, Client
from harness.rehearsal.tasks import Launcher, RunningTask
from harness.wait import wait_until


def summary(launcher: Launcher, client: Client, old: RunningTask, new: RunningTask, during: str) -> dict:
    """What the client saw during a replacement: its requests, how many failed, by target; a failed
    request fails the old task's record (no request may fail while tasks are replaced)."""
    failed = client.failed
    launcher.say(f"api: {during}: {len(client.answers)} client requests, {len(failed)} failed")
    if failed:
        old.life.failure = old.life.failure or (
            f"{len(failed)} of {len(client.answers)} client requests failed during {during}: "
            + "; ".join(f"t={a.t}s {a.target} {a.status or a.error}" for a in failed[:5])
        )
    return {
        "requests": len(client.answers),
        "failed": len(failed),
        "by_target": {k: sum(a.target == k for a in client.answers) for k in (old.key, new.key)},
    }


def some_more_requests(client: Client) -> None:
    """A few requests after the last change, so the picture of what the client saw ends served."""
    wait_until(lambda: len(client.answers), until=lambda n: n >= 10, timeout=10, what="a few requests afterwards")


def replace(
    launcher: Launcher, stack: contextlib.ExitStack, svc: ServiceTiming, old: RunningTask, containers: list[dict]
) -> dict:
    """The rolling replacement of ``old``; returns its summary (requests, failed, by target)."""
    balancer = Balancer()
    balancer.register(old.key, old.url, old.target)
    launcher.say("api: rolling replacement: a new revision starts while a client sends requests")
    with Client(balancer, max_duration=svc.grace_period + svc.deregistration_delay + svc.stop_timeout + 60) as c:
        new = launcher.start(stack, svc, containers, "api (new revision)", {"API_REVISION": "2"})
        if new.main is not None:
            balancer.register(new.key, new.url, new.target)
        launcher.await_in_service([new])
        if new.life.ok:
            balancer.drain(old.key)
            old.life.mark(Step.DRAINING, launcher.now())
            launcher.until(
                old.life.steps[Step.DRAINING] + svc.deregistration_delay,
                f"the old target to drain for its deregistration delay ({svc.deregistration_delay:g}s)",
            )
            launcher.stop(old, svc)
            some_more_requests(c)
    return {"strategy": "rolling", **summary(launcher, c, old, new, "the replacement")}
