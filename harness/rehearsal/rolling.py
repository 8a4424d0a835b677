"""ECS's rolling replacement of the api's tasks, rehearsed under client traffic, step for step as
the simulator (``harness.simulation.simulator``) models it:

- new tasks start while the tasks running stay within the deployment's ``maximumPercent`` of the
  desired count (old ones still draining count as running);
- each time a new task comes into service, an old one is deregistered (it drains for the
  deregistration delay, then gets SIGTERM and SIGKILL after its stopTimeout) as long as the tasks
  in service stay at or above ``minimumHealthyPercent``; with no room to start one, an old one is
  stopped first if the minimum allows it;
- a new task that is not in service when its grace period ends, or whose container turns
  UNHEALTHY, is stopped and replaced; the circuit breaker counts them and, at its threshold,
  fails the deployment and rolls it back (the old revision's tasks keep, or get back, the
  desired count);
- until every task runs the new revision. No client request may fail.

ECS's rounding (Amazon ECS Developer Guide, "Deployment configuration"): the minimum healthy
count is the desired count times the percent rounded up, the maximum rounded down."""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from harness.errors import WaitTimeout
from harness.lifecycle import Step
from harness.plan.timing import CIRCUIT_BREAKER_MIN, ServiceTiming, breaker_threshold
from harness.rehearsal.balancer import Balancer, Client
from harness.rehearsal.tasks import Launcher, RunningTask, task_key
from harness.wait import wait_until

NEW = "api (new revision)"
OLD = "api (rolled back)"  # tasks of the old revision a rollback starts


def summary(launcher: Launcher, client: Client, old: list[RunningTask], new: list[RunningTask], during: str) -> dict:
    """What the client saw during a replacement: its requests, how many failed, by target; a failed
    request fails the first old task's record (no request may fail while tasks are replaced)."""
    failed, in_faults = client.split()
    launcher.say(f"api: {during}: {len(client.answers)} client requests, {len(failed)} failed")
    if failed and old:
        old[0].life.failure = old[0].life.failure or (
            f"{len(failed)} of {len(client.answers)} client requests failed during {during}: "
            + "; ".join(f"t={a.t}s {a.target} {a.status or a.error}" for a in failed[:5])
        )
    return {
        "requests": len(client.answers),
        "failed": len(failed),
        "during_faults": len(in_faults),  # the api's own answers other than 404 within a fault injected on purpose
        "by_target": {t.key: sum(a.target == t.key for a in client.answers) for t in (*old, *new)},
    }


def some_more_requests(client: Client, count: int = 10) -> None:
    """``count`` more requests after the last change, so the picture of what the client saw ends
    served (counted from now, not from the client's start; each may take its whole timeout while
    a fault injected on purpose lasts)."""
    mark = len(client.answers)
    wait_until(
        lambda: len(client.answers) - mark,
        until=lambda n: n >= count,
        timeout=count * (client.interval + client.timeout),
        what=f"{count} client requests after the last change",
    )


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


@dataclass
class Rolling:
    """One rolling deployment's state; ``step`` does what ECS would do next, once a second."""

    launcher: Launcher
    stack: contextlib.ExitStack
    svc: ServiceTiming
    old: list[RunningTask]
    containers: list[dict]
    env: dict[str, str]
    balancer: Balancer
    pool: ThreadPoolExecutor
    running_old: list[RunningTask] = field(default_factory=list)  # old tasks not yet deregistered
    draining: list[tuple[Future, int]] = field(default_factory=list)  # each drain, and how many tasks it stops
    new: list[RunningTask] = field(default_factory=list)  # every new task started
    alive: list[RunningTask] = field(default_factory=list)  # new tasks not replaced
    failures: int = 0  # the circuit breaker's count (a task in service resets it)
    replaced: int = 0
    events: list[dict] = field(default_factory=list)  # what the deployment did, when
    outcome: str | None = None

    def __post_init__(self) -> None:
        self.desired = len(self.old)
        self.floor, self.ceiling = bounds(self.desired, self.svc)
        self.threshold = breaker_threshold(self.desired, CIRCUIT_BREAKER_MIN)
        self.running_old = list(self.old)
        self._counted: set[str] = set()  # new tasks in service already counted by the breaker's reset

    def say(self, text: str) -> None:
        self.launcher.say(f"api: {text}")

    def pending_drains(self) -> int:
        """Old tasks deregistered and not yet stopped (they still count as running)."""
        return sum(n for f, n in self.draining if not f.done())

    def step(self) -> str | None:
        """Judge the new tasks, replace a failed one (or trip the breaker), stop the old ones the
        new ones took over from, start what the limits allow; the outcome once there is one."""
        for f, _ in self.draining:
            if f.done():
                f.result()  # a drain that raised stops the rehearsal with its error
        draining = self.pending_drains()  # read once: a drain ending mid-step must not change the story
        for t in self.alive:
            if t.main is not None:
                self.launcher.judge(t)
                self.launcher.still_serving(t)
        for t in [t for t in self.alive if t.life.failure]:
            self.replace_failed(t)
            if self.outcome:
                return self.outcome
        healthy = [t for t in self.alive if t.life.in_service is not None]
        came = [t for t in healthy if t.key not in self._counted]
        if came:
            self.failures = 0  # ECS's circuit breaker: a task in service resets the count
            self._counted |= {t.key for t in healthy}
        stop = 0
        while len(self.running_old) - stop > 0 and len(self.running_old) - stop + len(healthy) > max(
            self.floor, self.desired
        ):
            stop += 1
        need = self.desired - len(self.alive)
        room = min(need, self.ceiling - len(self.running_old) - draining - len(self.alive))
        if (
            not stop
            and need > 0
            and room <= 0
            and self.running_old
            and not draining
            and len(self.running_old) - 1 + len(healthy) >= self.floor
        ):
            stop = 1  # no room to start one: stop an old task first, as far as the minimum allows
        if stop:
            batch, self.running_old = self.running_old[:stop], self.running_old[stop:]
            self.events.append({"at": self.launcher.now(), "stopped": [t.key for t in batch]})
            future = self.pool.submit(drain_and_stop, self.launcher, self.balancer, self.svc, batch)
            self.draining.append((future, len(batch)))
        if came:
            self.launcher.moment("new task in service")
        if room > 0:
            self.start(room)
        if len(healthy) == self.desired and not self.running_old and not draining and not stop:
            self.outcome = "completed"
        elif need > 0 and room <= 0 and not stop and not draining and not self.waiting():
            self.outcome = "stuck"
            self.old[0].life.failure = self.old[0].life.failure or (
                f"the deployment cannot move: {len(self.running_old)} old task(s) and no room to start or "
                f"stop one (minimum healthy {self.svc.min_healthy_percent}%, maximum "
                f"{self.svc.max_percent}% of {self.desired})"
            )
        return self.outcome

    def waiting(self) -> bool:
        """Whether a new task is still on its way into service."""
        return any(t.life.in_service is None and not t.life.failure for t in self.alive)

    def start(self, count: int, base: str = NEW, env: dict[str, str] | None = None) -> list[RunningTask]:
        keys = [task_key(base, i) for i in range(len(self.new), len(self.new) + count)]
        self.events.append({"at": self.launcher.now(), "started": keys})
        batch = self.launcher.start_together(
            self.stack, [(self.svc, self.containers, k) for k in keys], self.env if env is None else env
        )
        for t in batch:
            if t.main is not None:
                self.balancer.register(t.key, t.url, t.target)
        self.new += batch
        self.alive += batch
        self.launcher.moment("new task started")
        return batch

    def replace_failed(self, task: RunningTask) -> None:
        """ECS stops a task that failed its checks (or never started) and counts it."""
        self.alive.remove(task)
        self.replaced += 1
        self.failures += 1
        if task.main is not None:
            self.balancer.drain(task.key)
            self.launcher.discard(task)
        self.say(f"{task.key} replaced as unhealthy (failure {self.failures} of {self.threshold})")
        self.events.append({"at": self.launcher.now(), "replaced": [task.key]})
        if self.svc.circuit_breaker and self.failures >= self.threshold:
            self.roll_back()

    def roll_back(self) -> None:
        """The circuit breaker: the deployment FAILED; with rollback on, the new tasks are stopped
        and the old revision is brought back to the desired count."""
        self.outcome = "rolled_back" if self.svc.rollback else "failed"
        self.say(
            f"circuit breaker: {self.failures} failed tasks reached its threshold {self.threshold}: "
            + ("the deployment FAILED and rolls back" if self.svc.rollback else "the deployment FAILED")
        )
        self.events.append({"at": self.launcher.now(), "breaker": self.outcome})
        if not self.svc.rollback:
            return
        for t in list(self.alive):
            self.alive.remove(t)
            if t.main is not None:
                self.balancer.drain(t.key)
                t.life.mark(Step.STOPPING, self.launcher.now())  # stopped by the rollback
                self.launcher.discard(t)
        missing = self.desired - len(self.running_old)
        if missing > 0:  # old tasks already stopped come back, as the old revision
            back = self.start(missing, OLD, {})
            self.launcher.await_in_service(back)


def replace(
    launcher: Launcher,
    stack: contextlib.ExitStack,
    svc: ServiceTiming,
    old: list[RunningTask],
    containers: list[dict],
    env: dict[str, str] | None = None,
    balancer: Balancer | None = None,
) -> dict:
    """The rolling replacement of every task in ``old`` (registered in ``balancer``, a new one
    when None) by tasks of ``containers`` with ``env`` added (the new revision); returns its
    summary (outcome, requests, failed, by target, the events: which tasks started, stopped, were
    replaced, when)."""
    desired = len(old)
    if balancer is None:
        balancer = Balancer()
        for t in old:
            balancer.register(t.key, t.url, t.target)
    floor, ceiling = bounds(desired, svc)
    launcher.say(
        f"api: rolling replacement of {desired} task(s) (at least {floor} in service, at most {ceiling} running) "
        "while a client sends requests"
    )
    threshold = breaker_threshold(desired, CIRCUIT_BREAKER_MIN)
    limit = (svc.grace_period + svc.deregistration_delay + svc.stop_timeout + 60) * (desired + threshold)
    with (
        Client(balancer, max_duration=limit, excused=launcher.excused) as c,
        ThreadPoolExecutor(max_workers=desired, thread_name_prefix="drain") as pool,
    ):
        rolling = Rolling(launcher, stack, svc, old, containers, {"API_REVISION": "2"} | (env or {}), balancer, pool)
        try:
            wait_until(
                rolling.step,
                until=lambda outcome: outcome is not None,
                timeout=limit,
                interval=1.0,
                what="the rolling deployment to complete or roll back",
                fatal=(Exception,),
            )
        except WaitTimeout as exc:  # without a circuit breaker, a revision that never serves runs on
            rolling.outcome = "stuck"
            old[0].life.failure = old[0].life.failure or f"the deployment never finished: {exc}"
        for f, _ in rolling.draining:
            f.result()
        some_more_requests(c)
    return {
        "strategy": "rolling",
        "outcome": rolling.outcome,
        "events": rolling.events,
        "replaced": rolling.replaced,
        **summary(launcher, c, old, rolling.new, "the replacement"),
    }
