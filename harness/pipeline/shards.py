"""A stage split into pipeline jobs of about equal length, by the recorded durations.

Each job runs its share as a stage runs (``harness.pipeline.stages``): the parallel tests on
``workers`` pytest-xdist workers with ``--dist loadfile`` (a file's tests stay on one worker, so a
module fixture is built once), then the serial tests one after another. So a job's expected time is
the longest of its workers (files placed longest first on the least loaded worker, as xdist's
scheduling roughly does) plus the sum of its serial tests; and jobs are filled the same way, each
file (or serial test) going to the job it lengthens least. The plan is deterministic: every job of
a pipeline computes the same one from the same inputs, with nothing passed between them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from harness.pipeline.durations import estimate, file_of

# Files whose tests share one costly session fixture and so run on one worker, as one file would:
# the platform applied to moto (about 100 s of the AWS provider's waits each time a worker first
# needs it) serves the pull-request stage's rehearsal and the apply checks.
SHARED_SCOPES = {
    "suites/deployment/test_moto_apply.py": "the applied platform",
    "suites/deployment/test_rehearsal.py": "the applied platform",
}


def scope_of(nodeid: str) -> str:
    """What a test is placed with: its file's tests, or every test of the files sharing its scope."""
    return SHARED_SCOPES.get(file_of(nodeid), file_of(nodeid))


@dataclass(frozen=True)
class Item:
    """One test to place: its node id, its expected seconds and whether it runs alone (serial)."""

    nodeid: str
    seconds: float
    serial: bool = False


@dataclass(frozen=True)
class Unit:
    """What is placed as one piece: a file's parallel tests together, or one serial test."""

    name: str
    items: tuple[Item, ...]
    serial: bool

    @property
    def seconds(self) -> float:
        return sum(i.seconds for i in self.items)


@dataclass
class Job:
    """One pipeline job's share."""

    number: int  # 1-based, as the pipeline's matrix names it
    workers: int
    parallel: list[Unit] = field(default_factory=list)
    serial: list[Unit] = field(default_factory=list)

    @property
    def worker_loads(self) -> list[float]:
        return worker_loads([u.seconds for u in self.parallel], self.workers)

    @property
    def seconds(self) -> float:
        """Expected: the longest worker of the parallel phase, then every serial test."""
        return max(self.worker_loads, default=0.0) + sum(u.seconds for u in self.serial)

    @property
    def nodeids(self) -> list[str]:
        return [i.nodeid for u in (*self.parallel, *self.serial) for i in u.items]

    def with_unit(self, unit: Unit) -> float:
        """Expected seconds once ``unit`` is added."""
        if unit.serial:
            return self.seconds + unit.seconds
        loads = worker_loads([u.seconds for u in (*self.parallel, unit)], self.workers)
        return max(loads) + sum(u.seconds for u in self.serial)


def worker_loads(seconds: Iterable[float], workers: int) -> list[float]:
    """Each worker's total when pieces of ``seconds`` go, longest first, to the least loaded worker."""
    loads = [0.0] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return loads


def units(items: Iterable[Item]) -> list[Unit]:
    """Parallel tests grouped by scope (their file, or the files sharing a fixture: ``scope_of``,
    as the run's xdist scheduler groups them), each serial test on its own, longest first."""
    files: dict[str, list[Item]] = defaultdict(list)
    out: list[Unit] = []
    for item in items:
        if item.serial:
            out.append(Unit(item.nodeid, (item,), serial=True))
        else:
            files[scope_of(item.nodeid)].append(item)
    out += [Unit(name, tuple(group), serial=False) for name, group in files.items()]
    return sorted(out, key=lambda u: (-u.seconds, u.name))


def plan(items: Iterable[Item], jobs: int, workers: int = 2) -> list[Job]:
    """``items`` split into ``jobs`` jobs of about equal expected length (see the module's doc)."""
    if jobs < 1:
        raise ValueError(f"jobs: expected 1 or more, got {jobs}")
    out = [Job(n + 1, workers) for n in range(jobs)]
    for unit in units(items):
        best = min(out, key=lambda j: (j.with_unit(unit), j.number))
        (best.serial if unit.serial else best.parallel).append(unit)
    return out


def items_of(nodeids: Iterable[str], serial: set[str], seconds: Mapping[str, float]) -> list[Item]:
    """Collected node ids as items to place, each with its recorded (or estimated) seconds."""
    return [Item(n, estimate(n, seconds), n in serial) for n in nodeids]
