"""A fault in the middle of a rehearsed deployment: the scenarios of ``scenarios/rollouts/``.

    result = under_fault(scenario, names_for, platform=applied)
    failed = [str(v) for v in result.verdicts if not v.ok]

The plan is rehearsed on Docker (``harness.rehearsal``); once every task is in service, the fault
suite's sampler and writer reach the api through the rehearsal's listener (the ALB in front of
every api task, old and new), and the scenario's fault (the database stand-in paused, the api's
link to MLflow slowed) is injected when the deployment reaches the scenario's moment (``at``: a
new task started, a new task in service, green in service, traffic shifted), held for its
duration on a thread of its own while the deployment goes on, then removed. After the
deployment, with every container still up, the failed writes are sent again with their keys and
both stores are read.

Judged by the fault suite's judge (``harness.faults.judge``: what /health answered during the
fault, recovery, nothing acknowledged lost), and by what only a deployment can show:
- ``outcome``: the deployment ended as the scenario expects (completed, or rolled back);
- ``no target left service``: no target of an old or new task turned unhealthy in its target group
  before the deployment itself deregistered it (a shared outage drains nobody);
- ``every task``: every task's lifecycle is clean (in service within its grace period, stopped
  gracefully);
- ``client requests``: the rehearsal's own client saw no failure outside the fault (the
  fault's window, plus the recovery budget, is the judge's).
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from harness.errors import ConfigurationError, HarnessError
from harness.faults.exercise import Observation, hold, observe, recover, settle_writes
from harness.faults.judge import Verdict, judge
from harness.faults.sampler import Sampler
from harness.faults.scenarios import Scenario
from harness.faults.writer import Writer
from harness.lifecycle import Step
from harness.rehearsal.platform import Platform
from harness.rehearsal.rehearsal import Fleet, Rehearsal
from harness.rehearsal.tasks import Launcher
from harness.stack.api import ApiConfig
from harness.stack.toxics import Toxic

Names = Callable[[ApiConfig], dict[str, float]]  # the api's settings -> the names its budgets use


@dataclass
class Result:
    scenario: Scenario
    rehearsal: Rehearsal
    observation: Observation | None = None  # None when the deployment never reached the replacement
    verdicts: list[Verdict] = field(default_factory=list)
    at: float | None = None  # when the deployment reached the scenario's moment, on the rollout's clock
    window: tuple[float, float] | None = None  # the fault in effect, on the rollout's clock

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and all(v.ok for v in self.verdicts)


@dataclass
class _Watch:
    """Follows the deployment's moments (called on its thread): sampler and writer from
    "replacing", the fault from the scenario's moment, the stores read at "replaced"."""

    scenario: Scenario
    names_for: Names
    es: contextlib.ExitStack
    sampler: Sampler | None = None
    writer: Writer | None = None
    names: dict[str, float] = field(default_factory=dict)
    thread: threading.Thread | None = None
    held: tuple[float, float, Toxic | None, float] | None = None
    error: BaseException | None = None
    missing: list[str] = field(default_factory=list)
    at: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # set when the rehearsal ends early
    began: float = 0.0  # the rollout clock's origin (time.monotonic())

    def __call__(self, moment: str, fleet: Fleet) -> None:
        assert self.scenario.rollout is not None
        if moment == "replacing":
            if fleet.api is None:
                raise ConfigurationError("an api configuration the api accepts", "the plan's refused", "plan rules")
            self.names = self.names_for(fleet.api)
            self.sampler, self.writer = observe(self.es, fleet, self.scenario)
        elif moment == self.scenario.rollout["at"] and self.thread is None and self.sampler is not None:
            assert fleet.launcher is not None
            self.at, self.began = fleet.launcher.now(), fleet.launcher.began
            fleet.launcher.say(f"{self.scenario.name}: {moment}: {self.scenario.kind} {self.scenario.target}")
            self.thread = threading.Thread(target=self._hold, args=(fleet, fleet.launcher), name="rollout fault")
            self.thread.start()
        elif moment == "replaced" and self.sampler is not None:
            self._after(fleet)
        elif moment == "closing" and self.thread is not None:  # the fault out before the containers go
            self.stop.set()
            self.thread.join(30)

    def recover_budget(self) -> float:
        return self.scenario.budget("recover_within", self.names) or 10.0

    def _hold(self, fleet: Fleet, launcher: Launcher) -> None:
        assert self.sampler is not None
        excused = [time.monotonic(), math.inf]  # the client's answers within it are the judge's
        launcher.excused.append(excused)
        try:
            self.held = hold(fleet, self.scenario, self.sampler, self.stop)
        except BaseException as exc:  # noqa: BLE001 - given to the deployment's thread at "replaced"
            self.error = exc
        finally:
            excused[1] = time.monotonic() + self.recover_budget()

    def _after(self, fleet: Fleet) -> None:
        """The deployment is over: the fault is out, the api recovered (bounded), the writer and
        sampler stopped, the failed writes sent again and the stores read."""
        assert self.sampler is not None and self.scenario.rollout is not None
        if self.thread is None:
            raise ConfigurationError(
                f"{self.scenario.path.name}: rollout.at: a moment the deployment reaches",
                f"{self.scenario.rollout['at']!r}, never reached",
                "a rolling deployment has no traffic shift, blue/green no new task started",
            )
        self.thread.join(self.scenario.duration + 60)
        if self.thread.is_alive():
            raise HarnessError(f"the {self.scenario.name} fault removed", "still in place 60 s after its duration")
        if self.error is not None:
            raise self.error
        assert self.held is not None
        settle = self.recover_budget() + 5.0
        recover(self.sampler, self.writer, self.scenario, self.held[1], settle)
        self.sampler.stop()
        if self.writer is not None:
            self.writer.__exit__(None, None, None)
        self.missing = settle_writes(fleet, self.writer, settle)


def under_fault(
    scenario: Scenario,
    names_for: Names,
    *,
    platform: Platform | None = None,
    var_file: Path | None = None,
    reports_dir: Path = Path("reports"),
    out: TextIO = sys.stderr,
) -> Result:
    """Rehearse the scenario's deployment (the plan of ``rollout.env``, or ``var_file``) with its
    fault injected at its moment; judge it."""
    spec = scenario.rollout
    if spec is None:
        raise ConfigurationError(f"{scenario.path.name}: a rollout section", "none", "scenarios/rollouts/*.yaml")
    with contextlib.ExitStack() as es:
        watch = _Watch(scenario, names_for, es)
        rehearsal = Rehearsal(
            spec.get("env", "staging"),
            ("mlflow", "api"),
            reports_dir,
            out=out,
            platform=platform,
            var_file=var_file,
            strategy=spec["strategy"],
            traffic=spec.get("traffic"),
            time_scale=spec.get("time_scale", 1.0),
            tasks=spec.get("tasks"),
            watch=watch,
            mlflow_proxy=scenario.target == "api->mlflow",
        )
        rehearsal.run()
    result = Result(scenario, rehearsal, at=watch.at)
    if watch.sampler is None or watch.held is None:
        result.verdicts = [Verdict("replacement", False, None, None, _unreached(rehearsal))]
        return result
    start, end, toxic, applying = watch.held
    shift = watch.sampler.started - watch.began  # the sampler's clock to the rollout's
    result.window = (round(start + shift, 1), round(end + shift, 1))
    result.observation = Observation(
        scenario,
        start,
        end,
        list(watch.sampler.samples),
        watch.writer,
        watch.missing,
        applied=toxic.applied if toxic is not None else None,
        sampler=watch.sampler,
        applying=applying,
    )
    result.verdicts = judge(result.observation, watch.names) + deployment_verdicts(rehearsal, spec["outcome"])
    return result


def _unreached(rehearsal: Rehearsal) -> str:
    failed = [life.describe() for life in rehearsal.rollout.tasks.values() if not life.ok]
    return "the deployment never began: " + ("; ".join(failed) or "no api task in service")


def _new(key: str) -> bool:
    return key.startswith(("api (new revision)", "api (green)"))


def outcome(summary: dict) -> str | None:
    """How the deployment ended, in one word for both strategies."""
    if summary.get("strategy") == "blue_green":
        return "rolled_back" if summary.get("rolled_back") else "completed"
    return summary.get("outcome")


def deployment_verdicts(rehearsal: Rehearsal, expected: str) -> list[Verdict]:
    """What only a deployment shows: its outcome, no target out of service before the deployment
    took it out, every task's lifecycle, the client's requests outside the fault."""
    s, rollout = rehearsal.replacement_summary, rehearsal.rollout
    ended = outcome(s)
    out = [Verdict("outcome", ended == expected, None, None, f"the deployment {ended}, expected {expected}")]
    dropped = []
    for key, life in rollout.tasks.items():
        poller = next((t.poller for t in rehearsal.launched if t.key == key and t.poller is not None), None)
        if poller is None:
            continue
        # the deployment's own deregistration (draining) or stop comes first: after it, failing is right
        out_at = [life.steps[s] for s in (Step.DRAINING, Step.STOPPING) if s in life.steps]
        taken_out = min(out_at, default=math.inf)
        early = [
            f"{key}: its target unhealthy at {life.started + t:.1f}s (its last check: {poller.last})"
            for t in poller.unhealthy_at
            if life.started + t < taken_out
        ]
        replaced = life.steps.get(Step.REPLACED)
        if life.in_service is not None and replaced is not None and replaced < taken_out:
            early.append(f"{key}: replaced while in service at {replaced:.1f}s ({life.failure})")
        dropped += early[:1]
    out.append(
        Verdict(
            "no target left service",
            not dropped,
            len(dropped),
            0,
            "; ".join(dropped) or f"the targets of all {len(rollout.tasks)} tasks stayed in service until deregistered",
        )
    )
    # a rollback is expected to leave the new revision's tasks failed: the old ones must be clean
    bad = [life for life in rollout.tasks.values() if not life.ok and (expected == "completed" or not _new(life.name))]
    out.append(
        Verdict(
            "every task",
            not bad,
            len(bad),
            0,
            "; ".join(f"{life.name}: {life.failure}" for life in bad[:3]) or f"{len(rollout.tasks)} tasks, all clean",
        )
    )
    out.append(
        Verdict(
            "client requests",
            s.get("failed") == 0,
            s.get("failed"),
            0,
            f"{s.get('requests')} requests through the deployment, {s.get('failed')} failed outside the fault, "
            f"{s.get('during_faults')} answered otherwise than 404 during it",
        )
    )
    return out
