"""A discrete-event model, in virtual time, of an ECS rolling deployment behind an ALB.

Per new task: provisioning (image pull) to RUNNING and target registration; the app answers
after its boot time; container checks every I with start period S and R retries; ALB checks
every i with thresholds H/U (first healthy verdict: one passing check, "optimistic", or H of
them, "conservative" - AWS documents both); ECS ignores unhealthy signals for the grace period
G after a task starts, then replaces an unhealthy task; the circuit breaker counts replaced tasks
(a healthy task resets the count) and, at min(200, max(minimum, ceil(0.5 x desired))), fails the
deployment and rolls back. Rolling limits: at least ceil(desired x min%) healthy, at most
floor(desired x max%) running. Old tasks drain for the deregistration delay before they stop.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.plan.codedeploy import TRAFFIC
from harness.plan.timing import CIRCUIT_BREAKER_MIN, ServiceTiming, breaker_threshold


@dataclass(frozen=True)
class SimConfig:
    desired: int
    container_interval: float
    container_timeout: float
    container_retries: int
    container_start: float
    alb_interval: float
    alb_timeout: float
    healthy_threshold: int
    unhealthy_threshold: int
    grace: float
    deregistration_delay: float
    min_healthy_percent: int = 100
    max_percent: int = 200
    circuit_breaker: bool = True
    rollback: bool = True
    breaker_minimum: int = CIRCUIT_BREAKER_MIN
    provisioning: float = 0.0  # task start to RUNNING (image pull); registration happens then
    alb_path_ok: bool = True  # the ALB's health path answers the matcher once the app is up
    container_path_ok: bool = True  # the container check's command succeeds once the app is up
    # the new tasks' dependency configuration works (wrong password, wrong host: the api serves,
    # but its /health stays 503 "starting" until a dependency answered once, so never)
    dependencies_ok: bool = True
    conservative: bool = False  # first healthy verdict after H checks instead of one
    horizon: float = 3600.0  # virtual seconds before a deployment counts as stuck

    @classmethod
    def from_timing(cls, s: ServiceTiming, served_path: str | None = None, **overrides: object) -> SimConfig:
        """From the timing model; ``served_path`` (the Dockerfile's check path, which the app
        serves) decides whether the ALB and container checks can ever pass."""
        values: dict[str, object] = dict(
            desired=s.desired_count,
            container_interval=s.container.interval,
            container_timeout=s.container.timeout,
            container_retries=s.container.retries,
            container_start=s.container.start_period,
            alb_interval=s.alb.interval,
            alb_timeout=s.alb.timeout,
            healthy_threshold=s.alb.healthy_threshold,
            unhealthy_threshold=s.alb.unhealthy_threshold,
            grace=s.grace_period,
            deregistration_delay=s.deregistration_delay,
            min_healthy_percent=s.min_healthy_percent,
            max_percent=s.max_percent,
            circuit_breaker=s.circuit_breaker,
            rollback=s.rollback,
        )
        if served_path is not None:
            values.update(alb_path_ok=s.alb.path == served_path, container_path_ok=s.container.path == served_path)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]  # fields of several types; the dataclass checks names


@dataclass
class Task:
    id: int
    started: float
    ready_at: float
    running_at: float
    container: str = "UNKNOWN"  # UNKNOWN -> HEALTHY | UNHEALTHY
    alb: str = "initial"  # initial -> healthy | unhealthy
    c_fail: int = 0
    c_passed_once: bool = False
    a_pass: int = 0
    a_fail: int = 0
    alive: bool = True
    healthy_at: float | None = None
    container_healthy_at: float | None = None
    target_healthy_at: float | None = None
    unhealthy_at: float | None = None  # first container UNHEALTHY or target unhealthy verdict
    stopped_at: float | None = None


@dataclass
class OldTask:
    """A task of the running version: in service until it drains, then stopped."""

    id: int
    draining_at: float | None = None
    stopped_at: float | None = None


@dataclass
class Result:
    outcome: str  # completed | rolled_back | failed | stuck
    time: float  # virtual seconds to steady state (or to the verdict)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    replaced: int = 0
    threshold: int = 0
    tasks: list[Task] = field(default_factory=list)
    old: list[OldTask] = field(default_factory=list)
    grace: float = 0.0
    shifts: list[tuple[float, int]] = field(default_factory=list)  # blue/green: (time, percent on green)
    test_traffic_at: float | None = None  # blue/green: when the test listener began routing to green

    def describe(self, limit: int = 30) -> str:
        lines = [f"{t:8.1f}s  {what}" for t, what in self.timeline[:limit]]
        if len(self.timeline) > limit:
            lines.append(f"          ... {len(self.timeline) - limit} more events")
        breaker = f", circuit breaker threshold {self.threshold}" if self.threshold else ""
        lines.append(f"outcome: {self.outcome} after {self.time:.1f}s ({self.replaced} tasks replaced{breaker})")
        return "\n".join(lines)


class Simulation:
    def __init__(
        self,
        cfg: SimConfig,
        boot: Callable[[random.Random], float],
        seed: int = 0,
        alb_phase: Callable[[random.Random], float] | None = None,
    ) -> None:
        self.cfg, self.boot, self.rng = cfg, boot, random.Random(seed)
        self.alb_phase = alb_phase or (lambda rng: cfg.alb_interval)  # delay to the first ALB check
        self.now = 0.0
        self.events: list = []
        self.seq = itertools.count()
        self.tasks: dict[int, Task] = {}
        self.ids = itertools.count(1)
        self.old_running = cfg.desired
        self.old_draining = 0
        self.old = [OldTask(i) for i in range(1, cfg.desired + 1)]
        self.failures = 0
        self.replaced = 0
        self.timeline: list[tuple[float, str]] = []
        self.result: Result | None = None
        self.threshold = breaker_threshold(cfg.desired, cfg.breaker_minimum)

    # -- plumbing ------------------------------------------------------------------
    def at(self, t: float, kind: str, task: int = 0) -> None:
        # at equal times the checks come first: a check landing exactly at the end of the grace
        # period still counts
        heapq.heappush(self.events, (t, 1 if kind == "grace_over" else 0, next(self.seq), kind, task))

    def log(self, what: str) -> None:
        self.timeline.append((round(self.now, 3), what))

    def run(self) -> Result:
        self.log(f"deployment starts: {self.cfg.desired} old tasks in service")
        self.fill()
        while self.events and self.result is None:
            t, _, _, kind, tid = heapq.heappop(self.events)
            if t > self.cfg.horizon:
                break
            self.now = t
            getattr(self, f"on_{kind}")(tid)
        if self.result is None:
            self.result = Result("stuck", self.cfg.horizon, self.timeline, self.replaced, self.threshold)
        self.result.tasks, self.result.old = list(self.tasks.values()), self.old
        self.result.grace = self.cfg.grace
        return self.result

    # -- rolling limits ----------------------------------------------------------------
    def new_alive(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.alive]

    def fill(self) -> None:
        """Launch the new tasks still needed within max percent; when there is no room, stop an
        old task if min healthy percent still holds (draining tasks count as running)."""
        max_running = math.floor(self.cfg.desired * self.cfg.max_percent / 100)
        alive = self.new_alive()
        healthy_new = len([t for t in alive if t.healthy_at is not None])
        need = self.cfg.desired - len(alive)
        while need > 0:
            if self.old_running + self.old_draining + len(self.new_alive()) < max_running:
                self.launch()
                need -= 1
                continue
            if (
                self.old_running > 0
                and self.old_running - 1 + healthy_new >= self.min_healthy()
                and self.old_draining == 0
            ):
                self.stop_old()
            break

    def min_healthy(self) -> int:
        return math.ceil(self.cfg.desired * self.cfg.min_healthy_percent / 100)

    def launch(self) -> None:
        tid = next(self.ids)
        running_at = self.now + self.cfg.provisioning
        task = Task(tid, self.now, running_at + self.boot(self.rng), running_at)
        self.tasks[tid] = task
        self.log(f"task {tid} launched (app answers at {task.ready_at - self.now:.1f}s)")
        self.at(running_at + self.cfg.container_interval, "container_check", tid)
        self.at(running_at + self.alb_phase(self.rng), "alb_check", tid)
        self.at(self.now + self.cfg.grace, "grace_over", tid)

    def stop_old(self) -> None:
        self.old_running -= 1
        self.old_draining += 1
        old = next(o for o in self.old if o.draining_at is None)
        old.draining_at = self.now
        self.log(f"old task draining ({self.cfg.deregistration_delay:.0f}s deregistration delay)")
        self.at(self.now + self.cfg.deregistration_delay, "old_stopped", old.id)

    # -- events ------------------------------------------------------------------------
    def on_old_stopped(self, oid: int) -> None:
        self.old[oid - 1].stopped_at = self.now
        self.old_draining -= 1
        self.log("old task stopped")
        self.check_done()
        self.fill()

    def on_container_check(self, tid: int) -> None:
        task = self.tasks[tid]
        if not task.alive:
            return
        ok = self.cfg.container_path_ok and self.cfg.dependencies_ok and self.now >= task.ready_at
        if ok:
            task.c_fail = 0
            task.c_passed_once = True
            if task.container != "HEALTHY":
                task.container = "HEALTHY"
                task.container_healthy_at = task.container_healthy_at or self.now
                self.log(f"task {tid} container HEALTHY")
                self.maybe_healthy(task)
        elif task.c_passed_once or self.now - task.running_at > self.cfg.container_start:
            task.c_fail += 1
            if task.c_fail >= self.cfg.container_retries and task.container != "UNHEALTHY":
                task.container = "UNHEALTHY"
                task.unhealthy_at = task.unhealthy_at or self.now
                self.log(f"task {tid} container UNHEALTHY")
                self.maybe_replace(task)
        # a failing check that times out takes T before the next interval starts
        took = 0.0 if ok or self.now >= task.ready_at else self.cfg.container_timeout
        self.at(self.now + self.cfg.container_interval + took, "container_check", tid)

    def on_alb_check(self, tid: int) -> None:
        task = self.tasks[tid]
        if not task.alive:
            return
        ok = self.cfg.alb_path_ok and self.cfg.dependencies_ok and self.now >= task.ready_at
        need = self.cfg.healthy_threshold if (self.cfg.conservative or task.alb == "unhealthy") else 1
        if ok:
            task.a_fail, task.a_pass = 0, task.a_pass + 1
            if task.alb != "healthy" and task.a_pass >= need:
                task.alb = "healthy"
                task.target_healthy_at = task.target_healthy_at or self.now
                self.log(f"task {tid} target healthy")
                self.maybe_healthy(task)
        else:
            task.a_pass, task.a_fail = 0, task.a_fail + 1
            if task.a_fail >= self.cfg.unhealthy_threshold and task.alb != "unhealthy":
                task.alb = "unhealthy"
                task.unhealthy_at = task.unhealthy_at or self.now
                self.log(f"task {tid} target unhealthy")
                self.maybe_replace(task)
        self.at(self.now + self.cfg.alb_interval, "alb_check", tid)

    def on_grace_over(self, tid: int) -> None:
        task = self.tasks[tid]
        if task.alive and task.healthy_at is None:
            self.maybe_replace(task)

    def maybe_healthy(self, task: Task) -> None:
        if task.healthy_at is None and task.alb == "healthy" and task.container == "HEALTHY":
            task.healthy_at = self.now
            self.failures = 0  # resetOnHealthyTask
            self.log(f"task {task.id} healthy in service")
            healthy_new = len([t for t in self.new_alive() if t.healthy_at is not None])
            while (
                self.old_running > 0
                and self.old_running + healthy_new > self.min_healthy()
                and self.old_running + healthy_new > self.cfg.desired
            ):
                self.stop_old()
            self.check_done()
            self.fill()

    def maybe_replace(self, task: Task) -> None:
        unhealthy = task.alb == "unhealthy" or task.container == "UNHEALTHY"
        if not task.alive or not unhealthy or self.now < task.started + self.cfg.grace:
            return
        task.alive = False
        task.stopped_at = self.now
        self.replaced += 1
        self.failures += 1
        self.log(f"task {task.id} stopped as unhealthy (failure {self.failures} of {self.threshold})")
        if self.cfg.circuit_breaker and self.failures >= self.threshold:
            outcome = "rolled_back" if self.cfg.rollback else "failed"
            self.log(f"circuit breaker: deployment FAILED{', rolling back' if self.cfg.rollback else ''}")
            self.result = Result(outcome, self.now, self.timeline, self.replaced, self.threshold)
            return
        self.fill()

    def check_done(self) -> None:
        healthy_new = len([t for t in self.new_alive() if t.healthy_at is not None])
        if healthy_new >= self.cfg.desired and self.old_running == 0 and self.old_draining == 0:
            self.log("deployment COMPLETED")
            self.result = Result("completed", self.now, self.timeline, self.replaced, self.threshold)


def simulate(cfg: SimConfig, boot: float | Callable[[random.Random], float], seed: int = 0) -> Result:
    """Simulate one deployment; ``boot`` is seconds from RUNNING to the app answering, or a sampler."""
    sampler = boot if callable(boot) else (lambda rng, b=boot: b)
    return Simulation(cfg, sampler, seed).run()


def measured_boot(samples: list[float], factor: float) -> Callable[[random.Random], float]:
    """Boot times drawn from measured samples (seconds), scaled for Fargate."""
    return lambda rng: rng.choice(samples) * factor


class BlueGreenSimulation(Simulation):
    """A CodeDeploy blue/green deployment of an ECS service: the replacement (green) task set is
    started whole beside the original (blue), registered with the second target group, and
    judged by the same container and ALB checks; a task that fails them after its grace period is
    replaced within the task set (there is no circuit breaker). Once every green task is in
    service, production traffic moves to green in the configuration's steps; after the last one
    the blue task set is kept for ``termination_wait`` seconds (the rollback window), then drains
    for the deregistration delay and stops. Blue keeps 100% of the traffic until the first shift,
    so a green task set that never becomes healthy serves no request: the deployment never
    completes and CodeDeploy fails it at its own timeout (``horizon`` here), rolling back.

    ``alarm_after``: one of the deployment group's rollback alarms fires this many seconds after
    traffic first reached green (a new version that passes its checks but fails under production
    traffic). While blue still runs CodeDeploy stops the deployment and rolls back: all traffic to
    blue, green stopped (outcome ``rolled_back``). Once the termination wait is over there is
    nothing to roll back to: the deployment completes with the failing version serving, and the
    timeline says so.

    ``test_listener``: once green is in service, CodeDeploy first points the test listener at it
    (test traffic; the AfterAllowTestTraffic hooks validate the new version there), and production
    traffic moves ``validation`` seconds later (the hooks' run time; 0 without hooks). Without a
    test listener, production traffic is the first traffic green gets."""

    def __init__(
        self,
        cfg: SimConfig,
        boot: Callable[[random.Random], float],
        seed: int = 0,
        traffic: str = "CodeDeployDefault.ECSAllAtOnce",
        termination_wait: float = 300.0,
        alarm_after: float | None = None,
        test_listener: bool = True,
        validation: float = 0.0,
    ) -> None:
        super().__init__(cfg, boot, seed)
        self.alarm_after = alarm_after
        if validation < 0:
            raise ValueError(f"validation: expected seconds >= 0, got {validation!r}")
        self.test_listener, self.validation = test_listener, validation
        self.test_traffic_at: float | None = None
        if traffic not in TRAFFIC:
            raise ValueError(f"traffic: expected one of {', '.join(TRAFFIC)}, got {traffic!r}")
        self.steps, self.traffic, self.termination_wait = TRAFFIC[traffic], traffic, termination_wait
        self.green_percent = 0
        self.shifting = False
        self.shifts: list[tuple[float, int]] = []

    def run(self) -> Result:
        result = super().run()
        if result.outcome == "stuck":
            self.log(
                "replacement task set never healthy: blue kept 100% of the traffic; CodeDeploy fails "
                "the deployment at its timeout and rolls back"
            )
        if self.alarm_after is not None and result.outcome == "completed":  # the alarm came after blue went
            result.timeline.append(
                (
                    round(self.shifts[0][0] + self.alarm_after, 3),
                    "rollback alarm fires after blue was terminated: nothing to roll back to, the "
                    "failing version keeps serving (the termination wait is shorter than the time to alarm)",
                )
            )
        result.shifts = list(self.shifts)
        result.test_traffic_at = self.test_traffic_at
        return result

    def fill(self) -> None:
        """The replacement task set at full size from the start (no rolling limits)."""
        while len(self.new_alive()) < self.cfg.desired:
            self.launch()

    def stop_old(self) -> None:  # blue stops only after the termination wait
        return

    def maybe_healthy(self, task: Task) -> None:
        if task.healthy_at is not None or task.alb != "healthy" or task.container != "HEALTHY":
            return
        task.healthy_at = self.now
        self.log(f"task {task.id} healthy (green target group; no production traffic yet)")
        ready = len([t for t in self.new_alive() if t.healthy_at is not None]) >= self.cfg.desired
        if ready and not self.shifting:
            self.shifting = True
            start = self.now
            self.log("replacement task set ready")
            if self.test_listener:
                self.test_traffic_at = self.now
                self.log(
                    "test listener routes to green: test traffic only; the AfterAllowTestTraffic hooks "
                    f"validate the new version ({self.validation:.0f}s) before production traffic moves"
                )
                start += self.validation
            else:
                self.log("no test listener: production traffic is the first traffic green gets")
            self.log(f"production traffic shifts by {self.traffic}")
            for i, (after, _) in enumerate(self.steps):
                self.at(start + after, "shift", i)

    def maybe_replace(self, task: Task) -> None:
        unhealthy = task.alb == "unhealthy" or task.container == "UNHEALTHY"
        if not task.alive or not unhealthy or self.now < task.started + self.cfg.grace:
            return
        task.alive = False
        task.stopped_at = self.now
        self.replaced += 1
        self.log(f"task {task.id} stopped as unhealthy and replaced in the task set ({self.replaced} so far)")
        self.fill()

    def on_shift(self, step: int) -> None:
        if not self.shifts and self.alarm_after is not None:
            self.at(self.now + self.alarm_after, "alarm")
        self.green_percent = self.steps[step][1]
        self.shifts.append((self.now, self.green_percent))
        self.log(f"production traffic: {self.green_percent}% green, {100 - self.green_percent}% blue")
        if self.green_percent == 100:
            self.log(f"blue task set kept {self.termination_wait:.0f}s for rollback (termination wait)")
            self.at(self.now + self.termination_wait, "terminate_blue")

    def on_alarm(self, _: int) -> None:
        if self.old_running == 0:
            return  # blue already terminated, too late: reported when the run ends
        self.shifts.append((self.now, 0))
        self.log("rollback alarm: CodeDeploy stops the deployment and rolls back: 100% of the traffic to blue")
        for task in self.new_alive():
            task.alive, task.stopped_at = False, self.now
        self.log("replacement task set stopped")
        self.result = Result("rolled_back", self.now, self.timeline, self.replaced, 0)

    def on_terminate_blue(self, _: int) -> None:
        self.log(f"blue task set terminated: its targets drain ({self.cfg.deregistration_delay:.0f}s)")
        for old in self.old:
            self.old_running -= 1
            self.old_draining += 1
            old.draining_at = self.now
            self.at(self.now + self.cfg.deregistration_delay, "old_stopped", old.id)

    def on_old_stopped(self, oid: int) -> None:
        self.old[oid - 1].stopped_at = self.now
        self.old_draining -= 1
        if self.old_draining == 0 and self.old_running == 0:
            self.log("blue task set stopped")
            self.check_done()

    def check_done(self) -> None:
        if self.green_percent == 100 and self.old_running == 0 and self.old_draining == 0:
            self.log("deployment COMPLETED")
            self.result = Result("completed", self.now, self.timeline, self.replaced, 0)


def simulate_blue_green(
    cfg: SimConfig,
    boot: float | Callable[[random.Random], float],
    traffic: str = "CodeDeployDefault.ECSAllAtOnce",
    termination_wait: float = 300.0,
    seed: int = 0,
    alarm_after: float | None = None,
    test_listener: bool = True,
    validation: float = 0.0,
) -> Result:
    """Simulate one CodeDeploy blue/green deployment (see ``BlueGreenSimulation``)."""
    sampler = boot if callable(boot) else (lambda rng, b=boot: b)
    return BlueGreenSimulation(
        cfg, sampler, seed, traffic, termination_wait, alarm_after, test_listener, validation
    ).run()
