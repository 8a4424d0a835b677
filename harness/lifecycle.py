"""A task's lifecycle in a deployment, as typed values: the simulator fills it in virtual time, the
rehearsal on the wall clock, and the Gantt drawing reads it. Nothing here is parsed back from text;
text is made only for a person (``describe``).

Every time is seconds on the deployment's own axis (0: the deployment began); a task's ``started``
is on that axis too, so its grace period ends at ``started + grace``."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class Step(enum.Enum):
    """What happens to a task, in the order it can happen (each at most once)."""

    STARTED = "task started"  # ECS placed it: provisioning, image pull, dependsOn containers
    RUNNING = "running"  # its essential container started: the start period begins
    CONTAINER_HEALTHY = "container healthy"
    TARGET_HEALTHY = "target healthy"
    IN_SERVICE = "in service"  # both checks pass: the load balancer routes to it
    UNHEALTHY = "unhealthy"  # a container UNHEALTHY or target unhealthy verdict
    DRAINING = "draining"  # deregistered: in-flight requests finish for the deregistration delay
    STOPPING = "SIGTERM"  # stop requested; SIGKILL follows after the stop timeout
    KILLED = "SIGKILL"  # still running when the stop timeout ended: forced to stop, in-flight work lost
    STOPPED = "stopped"
    REPLACED = "replaced"  # never in service: stopped as unhealthy and replaced


class Milestone(enum.Enum):
    """What happens to a deployment as a whole (blue/green's listener and its verdicts)."""

    GREEN_IN_SERVICE = "every green task in service"
    TEST_TRAFFIC = "test listener routes to green"
    VALIDATED = "green validated on the test listener"
    VALIDATION_FAILED = "green failed its validation on the test listener"
    ROLLED_BACK = "rolled back: no production traffic on green"
    TERMINATION_WAIT_OVER = "termination wait over"


@dataclass(frozen=True)
class ContainerExit:
    container: str
    code: int
    at: float


@dataclass(frozen=True)
class Shift:
    """The listener's production weights moved: ``percent`` of the traffic on green."""

    at: float
    percent: int


@dataclass
class Lifecycle:
    name: str  # "api", "api (green)", "new 3", "old 1"
    grace: float  # ECS ignores failing health checks this long after ``started``
    started: float = 0.0
    steps: dict[Step, float] = field(default_factory=dict)
    exits: list[ContainerExit] = field(default_factory=list)
    group: str = ""  # blue/green: "blue" (the original task set) or "green" (the replacement)
    failure: str = ""  # why the task failed, for a person
    answered: float | None = None  # the rehearsal: its target group's first passing check

    def at(self, step: Step) -> float | None:
        return self.steps.get(step)

    def mark(self, step: Step, at: float) -> None:
        """``step`` happened at ``at`` (the first time counts)."""
        self.steps.setdefault(step, at)

    def after_start(self, step: Step) -> float | None:
        """Seconds from the task's start to ``step``."""
        t = self.steps.get(step)
        return None if t is None else round(t - self.started, 3)

    def exit_of(self, container: str) -> ContainerExit | None:
        return next((e for e in self.exits if e.container == container), None)

    @property
    def in_service(self) -> float | None:
        """Seconds from the task's start to service (the judged figure)."""
        return self.after_start(Step.IN_SERVICE)

    @property
    def grace_end(self) -> float:
        return self.started + self.grace

    @property
    def ok(self) -> bool:
        return not self.failure and self.in_service is not None and self.in_service <= self.grace

    def verdict(self) -> str:
        if self.failure:
            return f"FAIL: {self.failure}"
        if self.in_service is None:
            return f"FAIL: never in service within the grace period {self.grace:g}s"
        word = "pass" if self.ok else "FAIL"
        return f"{word}: in service after {self.in_service:.1f}s, grace period {self.grace:g}s"

    def describe(self) -> str:
        """For a person: the verdict, then what happened, in seconds on the deployment's axis."""
        said = [(t, step.value) for step, t in self.steps.items()]
        said += [(e.at, f"{e.container} exited {e.code}") for e in self.exits]
        lines = [f"{self.name} (started at {self.started:.1f}s): {self.verdict()}"]
        lines += [f"  {t:7.1f}s  {what}" for t, what in sorted(said, key=lambda s: s[0])]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "verdict": self.verdict(),
            "grace": self.grace,
            "started": self.started,
            "group": self.group,
            "steps": {step.value: t for step, t in self.steps.items()},
            "exits": [{"container": e.container, "code": e.code, "at": e.at} for e in self.exits],
        }


@dataclass
class Rollout:
    """A deployment's tasks on one axis, the listener's moves and the deployment's milestones."""

    tasks: dict[str, Lifecycle] = field(default_factory=dict)
    shifts: list[Shift] = field(default_factory=list)
    milestones: dict[Milestone, float] = field(default_factory=dict)

    def reached(self, milestone: Milestone, at: float) -> None:
        self.milestones.setdefault(milestone, at)

    @property
    def end(self) -> float:
        """The last thing that happened."""
        times = [t for life in self.tasks.values() for t in life.steps.values()]
        times += [s.at for s in self.shifts] + list(self.milestones.values())
        return max(times, default=0.0)

    def describe(self) -> str:
        lines = [life.describe() for life in self.tasks.values()]
        said = [(t, m.value) for m, t in self.milestones.items()]  # first at equal times: the cause
        said += [(m.at, f"listener: {m.percent} % of production traffic to green") for m in self.shifts]
        if said:
            lines.append("deployment (seconds on the same axis):")
            lines += [f"  {t:7.1f}s  {what}" for t, what in sorted(said, key=lambda s: s[0])]
        return "\n".join(lines)


# what the simulator and the rehearsal are compared on: new tasks come in (or are replaced), old
# ones leave; the steps between (checks passing) differ in kind between the two and are left out
NEW_STEPS = (Step.STARTED, Step.IN_SERVICE, Step.REPLACED)
OLD_STEPS = (Step.DRAINING, Step.STOPPING, Step.KILLED, Step.STOPPED)


@dataclass(frozen=True)
class Event:
    at: float  # seconds since the deployment began
    kind: str  # "new in service", "old SIGTERM", "traffic 100%"


def timeline(rollout: Rollout, role: Callable[[str], str | None], since: float = 0.0) -> list[Event]:
    """What a deployment did, in time order, from ``since`` on (and counted from it): each task's
    comings and goings under its ``role`` ("old" or "new"; None leaves a task out), the listener's
    moves."""
    out = []
    for name, life in rollout.tasks.items():
        kind = role(name)
        steps = NEW_STEPS if kind == "new" else OLD_STEPS if kind == "old" else ()
        out += [Event(round(t - since, 1), f"{kind} {s.value}") for s, t in life.steps.items() if s in steps]
    out += [Event(round(s.at - since, 1), f"traffic {s.percent}%") for s in rollout.shifts]
    return sorted((e for e in out if e.at >= 0), key=lambda e: (e.at, e.kind))


def disagreements(a: list[Event], b: list[Event], tolerance: float, names: tuple[str, str] = ("a", "b")) -> list[str]:
    """Where two timelines of one deployment disagree: a kind of event one has more often than the
    other, or the k-th event of a kind more than ``tolerance`` seconds apart. Kinds are compared
    one by one, so two events of different kinds may swap places when they are at most twice the
    tolerance apart. Empty when they agree."""
    out = []
    for kind in sorted({e.kind for e in a + b}):
        ta, tb = [e.at for e in a if e.kind == kind], [e.at for e in b if e.kind == kind]
        if len(ta) != len(tb):
            out.append(f"{kind}: {len(ta)} in {names[0]}, {len(tb)} in {names[1]}")
            continue
        out += [
            f"{kind} #{k + 1}: at {x:.1f}s in {names[0]}, {y:.1f}s in {names[1]} (more than {tolerance:g}s apart)"
            for k, (x, y) in enumerate(zip(ta, tb, strict=True))
            if abs(x - y) > tolerance
        ]
    return out
