"""A shared dependency outage against a running fleet, in virtual time: what the load balancer and
ECS do to the api's tasks under two health designs.

- ``incident``: /health fails whenever a dependency fails (the design the platform had).
- ``fleet-safe``: /health fails until the task's dependencies answered once (so a new task cannot
  enter service into an outage), then reports a dependency failure as ``warn`` (HTTP 200).

The model, in whole seconds (ticks of one second; give integer timings for exact figures):
- every task's target is checked every ``alb_interval`` s from its registration (when the task
  reaches RUNNING, ``provisioning`` s after launch); the first passing check makes a new target
  healthy (optimistic: AWS documents both this and H checks), ``healthy_threshold`` passes make an
  unhealthy one healthy again, ``unhealthy_threshold`` consecutive failures make it unhealthy;
- ECS replaces a task whose target is unhealthy once its grace period (from launch) is over; the
  replacement launches at once (ECS's restart throttling for repeatedly failing tasks is not
  modelled: replacements here are as fast as ECS can be, so the counts are a lower bound of harm);
- the api answers HTTP ``boot`` s after RUNNING; during a database outage it does not answer at all
  (it waits for Postgres before serving) and exits ``startup_timeout`` s after RUNNING if the
  outage still lasts; ECS then launches a replacement;
- when every target is unhealthy the ALB fails open (routes to all of them anyway): those minutes
  are counted, not served.
Within one tick: outage state, task lifecycle, the ALB checks due, then ECS's replacements.

    result = outage(OutageConfig(desired=2, ...), design="incident", start=5, minutes=10)
    result.replaced, result.no_healthy_s, result.full_service_s
"""

from __future__ import annotations

from dataclasses import dataclass, field

DESIGNS = ("incident", "fleet-safe")


@dataclass(frozen=True)
class OutageConfig:
    desired: int
    alb_interval: int
    healthy_threshold: int
    unhealthy_threshold: int
    grace: int
    provisioning: int
    boot: int
    startup_timeout: int = 60
    database: bool = False  # the failing dependency is Postgres (the api waits for it at start)
    retire: tuple[int, ...] = ()  # seconds at which one healthy task is replaced anyway (host churn)
    horizon: int = 7200  # virtual seconds after the outage ends before giving up


@dataclass
class _Task:
    id: int
    launched: int
    target: str = "none"  # none (not registered) -> initial -> healthy | unhealthy
    passes: int = 0
    fails: int = 0
    entered: bool = False  # fleet-safe: a dependency answered once since the app began serving
    gone: bool = False


@dataclass
class OutageResult:
    design: str
    minutes: float
    replaced: int = 0  # tasks ECS stopped because their target was unhealthy
    exited: int = 0  # tasks that gave up waiting for the database at start
    no_healthy_s: int = 0  # seconds with no healthy target (the ALB fails open)
    full_service_s: int | None = None  # after the outage ended, until every desired task is healthy
    events: list[str] = field(default_factory=list)

    def row(self) -> dict:
        return {
            "design": self.design,
            "outage_min": self.minutes,
            "tasks_replaced": self.replaced + self.exited,
            "minutes_no_healthy_target": round(self.no_healthy_s / 60, 2),
            "full_service_after_s": self.full_service_s,
        }


def outage(cfg: OutageConfig, design: str, start: int, minutes: float) -> OutageResult:
    if design not in DESIGNS:
        raise ValueError(f"design: expected one of {', '.join(DESIGNS)}, got {design!r}")
    end = start + round(minutes * 60)
    result = OutageResult(design, minutes)
    ids = iter(range(1, 10**9))
    # the fleet before the outage: in service long since, checks in phase with t = 0
    tasks = [_Task(next(ids), -(10**6), "healthy", entered=True) for _ in range(cfg.desired)]
    for t in range(0, end + cfg.horizon):
        down = start <= t < end
        for task in [x for x in tasks if not x.gone]:
            running = task.launched + cfg.provisioning
            if t >= running and task.target == "none":
                task.target = "initial"  # registered (a task launched by ECS in an earlier tick)
            serving = t >= running + cfg.boot and not (cfg.database and down and not task.entered)
            if cfg.database and down and not task.entered and t >= running + cfg.startup_timeout:
                task.gone = True
                result.exited += 1
                result.events.append(f"{t:>5}s task {task.id} gave up waiting for the database; relaunched")
                tasks.append(_Task(next(ids), t))
                continue
            if serving and not down:
                task.entered = True
            if task.target == "none" or t <= running or (t - running) % cfg.alb_interval:
                continue
            if design == "incident":
                ok = serving and not down
            else:
                ok = serving and task.entered
            _check(task, ok, cfg, t, result)
        retiring = t in cfg.retire
        for task in [x for x in tasks if not x.gone]:
            retire = retiring and task.target == "healthy"
            retiring = retiring and not retire  # one task per churn event
            if (task.target == "unhealthy" and t >= task.launched + cfg.grace) or retire:
                task.gone = True
                result.replaced += 0 if retire else 1
                result.events.append(
                    f"{t:>5}s task {task.id} "
                    + ("retired (churn)" if retire else "replaced: target unhealthy, grace over")
                )
                tasks.append(_Task(next(ids), t))
        healthy = sum(1 for x in tasks if not x.gone and x.target == "healthy")
        if t >= start and healthy == 0:
            result.no_healthy_s += 1
        if t >= end and healthy >= cfg.desired and result.full_service_s is None:
            result.full_service_s = t - end
            break
    return result


def _check(task: _Task, ok: bool, cfg: OutageConfig, t: int, result: OutageResult) -> None:
    if ok:
        task.passes, task.fails = task.passes + 1, 0
        if task.target == "initial" or (task.target == "unhealthy" and task.passes >= cfg.healthy_threshold):
            task.target = "healthy"
            result.events.append(f"{t:>5}s task {task.id} healthy")
    else:
        task.fails, task.passes = task.fails + 1, 0
        if task.target != "unhealthy" and task.fails >= cfg.unhealthy_threshold:
            task.target = "unhealthy"
            result.events.append(f"{t:>5}s task {task.id} unhealthy")


def compare(cfg: OutageConfig, start: int, minutes: float) -> list[OutageResult]:
    return [outage(cfg, design, start, minutes) for design in DESIGNS]
