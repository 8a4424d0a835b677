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

from harness.gantt import rollout_svg
from harness.lifecycle import Lifecycle, Rollout, Step
from harness.pictures import Mark
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
    stop_duration: float = 0.0  # SIGTERM to exit of an old task (the app's own drain); 0: at once
    stop_timeout: float = 30.0  # ECS sends SIGKILL this long after SIGTERM (a forced stop)
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
            stop_timeout=s.stop_timeout,
        )
        if served_path is not None:
            values.update(alb_path_ok=s.alb.path == served_path, container_path_ok=s.container.path == served_path)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]  # fields of several types; the dataclass checks names


@dataclass
class Task:
    """A new task: the state of its checks, and its lifecycle (what the picture draws)."""

    id: int
    ready_at: float  # the app answers from here on
    running_at: float
    life: Lifecycle
    container: str = "UNKNOWN"  # UNKNOWN -> HEALTHY | UNHEALTHY
    alb: str = "initial"  # initial -> healthy | unhealthy
    c_fail: int = 0
    c_passed_once: bool = False
    a_pass: int = 0
    a_fail: int = 0
    alive: bool = True

    @property
    def started(self) -> float:
        return self.life.started

    @property
    def healthy_at(self) -> float | None:
        return self.life.at(Step.IN_SERVICE)


@dataclass
class Result:
    outcome: str  # completed | rolled_back | failed | stuck
    time: float  # virtual seconds to steady state (or to the verdict)
    trace: list[tuple[float, str]] = field(default_factory=list)  # what happened, for a person
    replaced: int = 0
    threshold: int = 0
    tasks: list[Task] = field(default_factory=list)
    old: list[Lifecycle] = field(default_factory=list)  # the running version's tasks (blue/green: blue)
    grace: float = 0.0
    rollout: Rollout = field(default_factory=Rollout)  # every task's lifecycle, the listener's moves

    def describe(self, limit: int = 30) -> str:
        lines = [f"{t:8.1f}s  {what}" for t, what in self.trace[:limit]]
        if len(self.trace) > limit:
            lines.append(f"          ... {len(self.trace) - limit} more events")
        breaker = f", circuit breaker threshold {self.threshold}" if self.threshold else ""
        lines.append(f"outcome: {self.outcome} after {self.time:.1f}s ({self.replaced} tasks replaced{breaker})")
        return "\n".join(lines)


class Simulation:
    group = ""  # the new tasks' group in a blue/green deployment ("green")

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
        self.old = [Lifecycle(f"old {i}", cfg.grace, steps={Step.IN_SERVICE: 0.0}) for i in range(1, cfg.desired + 1)]
        self.failures = 0
        self.replaced = 0
        self.trace: list[tuple[float, str]] = []
        self.result: Result | None = None
        self.rollout = Rollout()
        self.threshold = breaker_threshold(cfg.desired, cfg.breaker_minimum)

    # -- plumbing ------------------------------------------------------------------
    def at(self, t: float, kind: str, task: int = 0) -> None:
        # at equal times the checks come first: a check landing exactly at the end of the grace
        # period still counts
        heapq.heappush(self.events, (t, 1 if kind == "grace_over" else 0, next(self.seq), kind, task))

    def log(self, what: str) -> None:
        self.trace.append((round(self.now, 3), what))

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
            self.result = Result("stuck", self.cfg.horizon, self.trace, self.replaced, self.threshold)
        self.result.tasks, self.result.old = list(self.tasks.values()), self.old
        self.result.grace = self.cfg.grace
        self.rollout.tasks = {life.name: life for life in self.old} | {t.life.name: t.life for t in self.tasks.values()}
        self.result.rollout = self.rollout
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
        life = Lifecycle(f"new {tid}", self.cfg.grace, self.now, group=self.group)
        life.mark(Step.STARTED, self.now)
        life.mark(Step.RUNNING, running_at)
        task = Task(tid, running_at + self.boot(self.rng), running_at, life)
        self.tasks[tid] = task
        self.log(f"task {tid} launched (app answers at {task.ready_at - self.now:.1f}s)")
        self.at(running_at + self.cfg.container_interval, "container_check", tid)
        self.at(running_at + self.alb_phase(self.rng), "alb_check", tid)
        self.at(self.now + self.cfg.grace, "grace_over", tid)

    def stop_old(self) -> None:
        self.old_running -= 1
        self.old_draining += 1
        old = next(o for o in self.old if Step.DRAINING not in o.steps)
        old.mark(Step.DRAINING, self.now)
        self.log(f"old task draining ({self.cfg.deregistration_delay:.0f}s deregistration delay)")
        self.at(self.now + self.cfg.deregistration_delay, "old_sigterm", self.old.index(old))

    # -- events ------------------------------------------------------------------------
    def on_old_sigterm(self, index: int) -> None:
        """The deregistration delay is over: SIGTERM; the task stops after its own drain, or is
        killed when the stop timeout ends first."""
        old = self.old[index]
        old.mark(Step.STOPPING, self.now)
        if self.cfg.stop_duration <= 0:
            self.on_old_stopped(index)
            return
        if self.cfg.stop_duration >= self.cfg.stop_timeout:
            old.mark(Step.KILLED, self.now + self.cfg.stop_timeout)
            self.log(f"old task still running at its stop timeout ({self.cfg.stop_timeout:g}s): SIGKILL")
        self.at(self.now + min(self.cfg.stop_duration, self.cfg.stop_timeout), "old_stopped", index)

    def on_old_stopped(self, index: int) -> None:
        self.old[index].mark(Step.STOPPED, self.now)
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
                task.life.mark(Step.CONTAINER_HEALTHY, self.now)
                self.log(f"task {tid} container HEALTHY")
                self.maybe_healthy(task)
        elif task.c_passed_once or self.now - task.running_at > self.cfg.container_start:
            task.c_fail += 1
            if task.c_fail >= self.cfg.container_retries and task.container != "UNHEALTHY":
                task.container = "UNHEALTHY"
                task.life.mark(Step.UNHEALTHY, self.now)
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
                task.life.mark(Step.TARGET_HEALTHY, self.now)
                self.log(f"task {tid} target healthy")
                self.maybe_healthy(task)
        else:
            task.a_pass, task.a_fail = 0, task.a_fail + 1
            if task.a_fail >= self.cfg.unhealthy_threshold and task.alb != "unhealthy":
                task.alb = "unhealthy"
                task.life.mark(Step.UNHEALTHY, self.now)
                self.log(f"task {tid} target unhealthy")
                self.maybe_replace(task)
        self.at(self.now + self.cfg.alb_interval, "alb_check", tid)

    def on_grace_over(self, tid: int) -> None:
        task = self.tasks[tid]
        if task.alive and task.healthy_at is None:
            self.maybe_replace(task)

    def maybe_healthy(self, task: Task) -> None:
        if task.healthy_at is None and task.alb == "healthy" and task.container == "HEALTHY":
            task.life.mark(Step.IN_SERVICE, self.now)
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

    def replace_if_unhealthy(self, task: Task) -> bool:
        """ECS stops a task that a check judged unhealthy once its grace period is over."""
        unhealthy = task.alb == "unhealthy" or task.container == "UNHEALTHY"
        if not task.alive or not unhealthy or self.now < task.started + self.cfg.grace:
            return False
        task.alive = False
        task.life.mark(Step.REPLACED, self.now)
        self.replaced += 1
        return True

    def maybe_replace(self, task: Task) -> None:
        if not self.replace_if_unhealthy(task):
            return
        self.failures += 1
        self.log(f"task {task.id} stopped as unhealthy (failure {self.failures} of {self.threshold})")
        if self.cfg.circuit_breaker and self.failures >= self.threshold:
            outcome = "rolled_back" if self.cfg.rollback else "failed"
            self.log(f"circuit breaker: deployment FAILED{', rolling back' if self.cfg.rollback else ''}")
            self.result = Result(outcome, self.now, self.trace, self.replaced, self.threshold)
            return
        self.fill()

    def check_done(self) -> None:
        healthy_new = len([t for t in self.new_alive() if t.healthy_at is not None])
        if healthy_new >= self.cfg.desired and self.old_running == 0 and self.old_draining == 0:
            self.log("deployment COMPLETED")
            self.result = Result("completed", self.now, self.trace, self.replaced, self.threshold)


def simulate(
    cfg: SimConfig,
    boot: float | Callable[[random.Random], float],
    seed: int = 0,
    alb_phase: Callable[[random.Random], float] | None = None,
) -> Result:
    """Simulate one deployment; ``boot`` is seconds from RUNNING to the app answering, or a sampler;
    ``alb_phase``: seconds from RUNNING to a target's first check (default: one interval)."""
    return Simulation(cfg, sampler(boot), seed, alb_phase).run()


def sampler(boot: float | Callable[[random.Random], float]) -> Callable[[random.Random], float]:
    """Boot times: a fixed number of seconds, or a sampler as given."""
    return boot if callable(boot) else (lambda rng: boot)


def measured_boot(samples: list[float], factor: float) -> Callable[[random.Random], float]:
    """Boot times drawn from measured samples (seconds), scaled for Fargate."""
    return lambda rng: rng.choice(samples) * factor


def simulation_svg(result: Result, title: str) -> str:
    """The simulated deployment as a Gantt picture, its verdict as a line at its end."""
    end = result.time
    if result.outcome in ("rolled_back", "failed"):
        said = "circuit breaker: rolled back" if result.outcome == "rolled_back" else "circuit breaker: failed"
        verdict = Mark("circuit-breaker", end, f"{said} ({result.replaced} replaced)", ok=False)
    elif result.outcome == "completed":
        verdict = Mark("completed", end, f"completed at {end:.0f} s")
    else:
        verdict = Mark("stuck", end, "stuck (no verdict)", ok=False)
    return rollout_svg(result.rollout, title, [verdict], end=end)
