"""How long each test took: what a run measured (``reports/durations-<run>.json``, written by the
pytest plugin ``pytest_harness/durations.py``), and the durations recorded in the repository
(``.ci/durations.json``) that the shard planner reads.

A test's time is its setup, call and teardown together, as the worker that ran it measured them:
a session fixture's cost (an image build, a ``terraform apply``) lands on the first test of each
worker that needed it, which is where a shard would pay it too."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigurationError
from harness.paths import project


def recorded_file() -> Path:
    """The project's recorded durations (the shard planner's input): ``.ci/durations.json``."""
    return project().root / ".ci" / "durations.json"


def file_of(nodeid: str) -> str:
    """The test file a node id belongs to (``suites/x/test_y.py::test_z[a]`` -> ``suites/x/test_y.py``)."""
    return nodeid.split("::", 1)[0]


def suite_of(nodeid: str) -> str:
    """The suite a test counts under in the tables: ``suites/<suite>/`` by its folder, ``tests/`` as
    ``harness`` (the harness's own tests)."""
    parts = file_of(nodeid).split("/")
    if parts[0] == "suites" and len(parts) > 2:
        return parts[1]
    return "harness" if parts[0] == "tests" else parts[0]


@dataclass(frozen=True)
class Timed:
    """One test as a run measured it."""

    nodeid: str
    seconds: float  # setup + call + teardown
    call: float = 0.0
    outcome: str = "passed"


def run_file(tests: Iterable[Timed], wall: float, name: str) -> dict:
    """The JSON document one run writes (``reports/durations-<run>.json``)."""
    return {
        "run": name,
        "wall_s": round(wall, 1),
        "tests": {
            t.nodeid: {"seconds": round(t.seconds, 3), "call": round(t.call, 3), "outcome": t.outcome} for t in tests
        },
    }


def read_runs(paths: Iterable[Path]) -> dict[str, float]:
    """Node id -> seconds over the run files ``paths`` (a test measured twice keeps its last figure)."""
    seconds: dict[str, float] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_text())
            tests = doc["tests"]
            seconds.update({nodeid: float(t["seconds"]) for nodeid, t in tests.items()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"{path}: a durations file of a run ({{'tests': {{node id: ...}}}})", str(exc)
            ) from None
    return seconds


def read_recorded(path: Path | None = None) -> dict[str, float]:
    """The recorded durations (node id -> seconds); an empty mapping when none were recorded (or
    outside a project, when no ``path`` is given)."""
    if path is None:
        try:
            path = recorded_file()
        except ConfigurationError:
            return {}
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {str(k): float(v) for k, v in doc["tests"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"{path}: recorded durations ({{'tests': {{node id: seconds}}}})", str(exc)) from None


def recorded_document(seconds: Mapping[str, float], recorded: str, commit: str, note: str) -> dict:
    """What ``harness durations --record`` writes: every test's seconds, sorted, with where they came from."""
    return {
        "recorded": recorded,
        "commit": commit,
        "note": note,
        "tests": {k: round(v, 1) for k, v in sorted(seconds.items())},
    }


def estimate(nodeid: str, seconds: Mapping[str, float]) -> float:
    """A test's expected seconds: its recorded figure, else the median of its file's, else of all
    (a new test is planned like its neighbours until a run records it)."""
    if nodeid in seconds:
        return seconds[nodeid]
    same_file = [v for k, v in seconds.items() if file_of(k) == file_of(nodeid)]
    pool = same_file or list(seconds.values())
    return statistics.median(pool) if pool else 1.0


def by_suite(seconds: Mapping[str, float]) -> list[tuple[str, int, float]]:
    """(suite, tests, seconds) per suite, the longest first: the table in docs/measured.md."""
    count: dict[str, int] = defaultdict(int)
    total: dict[str, float] = defaultdict(float)
    for nodeid, s in seconds.items():
        count[suite_of(nodeid)] += 1
        total[suite_of(nodeid)] += s
    return sorted(((k, count[k], total[k]) for k in total), key=lambda row: (-row[2], row[0]))
