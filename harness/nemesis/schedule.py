"""A seeded fault schedule, in the manner of Jepsen's nemesis: drawn from the fault kinds table
(``harness.faults.kinds``), on Postgres and MLflow and on the api's links to them, overlapping
across targets, for a bounded time. The same seed draws the same schedule.

    >>> schedule = draw(7, duration=20.0)
    >>> [op.describe() for op in schedule.ops][:2]   # doctest: +SKIP
    ['0.9-4.1 s pause postgres', '1.3-2.8 s reset api->mlflow']

One fault at a time per slot: a service (kill, pause, restart) or a link (a toxic on its proxy).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.faults.kinds import KINDS


@dataclass(frozen=True)
class Move:
    """One fault the nemesis may make: a kind of the table on a target, with its parameters."""

    name: str
    kind: str
    target: str
    params: dict = field(default_factory=dict)

    @property
    def slot(self) -> str:
        """What it holds while it runs: the service, or the link's proxy."""
        return self.target


# what the nemesis draws from; each names how it makes a write's outcome ambiguous
MOVES: tuple[Move, ...] = (
    Move("kill postgres", "kill", "postgres"),
    Move("pause postgres", "pause", "postgres"),
    Move("restart postgres", "restart", "postgres"),
    Move("kill mlflow", "kill", "mlflow"),
    Move("pause mlflow", "pause", "mlflow"),
    Move("restart mlflow", "restart", "mlflow"),
    Move("postgres slow", "latency", "api->postgres", {"ms": 1500}),
    Move("reset api->postgres", "reset", "api->postgres"),
    Move("cut the answer after the commit", "cut_after", "api->postgres", {"match": "UPDATE 1\0", "limit": 3}),
    Move("mlflow slower than the api's timeout", "latency", "api->mlflow", {"ms": 1500}),
    Move("reset api->mlflow", "reset", "api->mlflow"),
    Move("cut mlflow's answer after the create", "cut_after", "api->mlflow", {"match": '"run_uuid"', "limit": 3}),
    # MLflow's own statements late: a create it began in time commits after the api gave up on it
    Move("mlflow's database slow", "latency", "mlflow->postgres", {"ms": 1500}),
    Move("mlflow's create held before its database", "hold", "mlflow->postgres", {"match": "INSERT INTO runs"}),
)
assert all(m.kind in KINDS for m in MOVES)


@dataclass(frozen=True)
class Op:
    """A move held from ``start`` to ``end`` (seconds from the schedule's start)."""

    start: float
    end: float
    move: Move

    def describe(self) -> str:
        return f"{self.start:.1f}-{self.end:.1f} s {self.move.name}"


@dataclass(frozen=True)
class Schedule:
    seed: int
    duration: float
    ops: tuple[Op, ...]

    def as_json(self) -> dict:
        return {
            "seed": self.seed,
            "duration": self.duration,
            "ops": [{"start": o.start, "end": o.end, **asdict(o.move)} for o in self.ops],
        }


def draw(
    seed: int,
    duration: float,
    moves: tuple[Move, ...] = MOVES,
    hold: tuple[float, float] = (0.5, 4.0),
    gap: tuple[float, float] = (2.0, 9.0),
) -> Schedule:
    """The seed's schedule: per slot, faults one after another with a gap before each, each
    held for ``hold`` seconds (uniform), all of it within ``duration``; slots overlap freely."""
    if duration <= 0:
        raise ValueError(f"duration: expected seconds > 0, got {duration}")
    rng = random.Random(seed)
    ops: list[Op] = []
    for slot in sorted({m.slot for m in moves}):
        choices = [m for m in moves if m.slot == slot]
        t = rng.uniform(*gap)
        while t < duration:
            move = rng.choice(choices)
            end = min(duration, t + rng.uniform(*hold))
            ops.append(Op(round(t, 2), round(end, 2), move))
            t = end + rng.uniform(*gap)
    return Schedule(seed, duration, tuple(sorted(ops, key=lambda o: (o.start, o.move.slot))))


@dataclass(frozen=True)
class Regression:
    """A seed that once found a violation, kept as a file so every CI run replays it
    (scenarios/nemesis/seed-<N>.yaml, written by ``nemesis --keep-failing``)."""

    seed: int
    duration: float
    source: str


def load_regressions(folder: Path) -> list[Regression]:
    """Every kept seed in ``folder``; a file with a wrong field is refused naming it."""
    import yaml

    from harness.errors import ConfigurationError

    kept = []
    for path in sorted(folder.glob("seed-*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        seed, duration = data.get("seed"), data.get("duration")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigurationError(f"{path}: seed", repr(seed), "a whole number, 0 or more")
        if not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration <= 0:
            raise ConfigurationError(f"{path}: duration", repr(duration), "seconds of faults, above 0")
        kept.append(Regression(seed, float(duration), str(path)))
    return kept


def keep_regression(folder: Path, seed: int, duration: float, violations: list[str], replay: str) -> Path:
    """A failing seed as a regression file (the nightly run uploads it for a person to commit)."""
    import datetime

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"seed-{seed}.yaml"
    record = {
        "seed": seed,
        "duration": duration,
        "found": datetime.date.today().isoformat(),
        "replay": replay,
        "violations": violations[:20],
    }
    path.write_text(yaml.safe_dump(record, sort_keys=False, width=120))
    return path
