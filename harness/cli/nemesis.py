"""``nemesis``: the seeded nemesis against a stack of its own, with fault proxies; the command a
failing seed prints to replay it.

    python -m harness nemesis --seed 17                  # one seed, 20 s of faults
    python -m harness nemesis --seed 1 --seeds 50        # seeds 1..50 on one stack
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import STACK_SETTINGS, number, settings_options, stack_settings
from harness.session import Session, reap

if TYPE_CHECKING:  # the run's module starts threads and imports httpx: loaded when a command runs
    from harness.nemesis.run import Run
    from harness.stack.stack import Stack


def replay_command(seed: int, duration: float, runtime: str) -> str:
    return f"python -m harness nemesis --seed {seed} --duration {duration:g} --runtime {runtime}"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def keep(run: Run, out: Path) -> tuple[Path, Path]:
    """The run's history and verdict as JSON, and its timeline picture, under ``out``."""
    from harness.nemesis.picture import timeline

    out.mkdir(parents=True, exist_ok=True)
    seed = run.schedule.seed
    history, picture = out / f"seed-{seed}.json", out / f"seed-{seed}.svg"
    history.write_text(json.dumps(run.as_json(), indent=1))
    picture.write_text(timeline(run))
    return history, picture


def keep_logs(stack: Stack, out: Path, seed: int) -> list[str]:
    """Each service's log as the failing seed left it (``seed-N-<service>.log``): the stack goes
    on to the next seed and is removed at the end, its logs with it."""
    kept = []
    for name in stack.services:
        path = out / f"seed-{seed}-{name}.log"
        path.write_text(stack.logs(name, tail=5000))
        kept.append(str(path))
    return kept


def cmd_nemesis(args: argparse.Namespace) -> int:
    from harness.budgets import Budgets
    from harness.nemesis.run import run
    from harness.nemesis.schedule import draw, keep_regression
    from harness.stack.config import StackConfig
    from harness.stack.runtime import make_runtime
    from harness.stack.stack import Stack

    settings, runtime_name = stack_settings(args)
    reap()
    session = Session(kind="nemesis")
    failed: list[dict] = []
    out = settings.reports_path / "nemesis"
    try:
        config = StackConfig(mlflow_workers=settings.mlflow_workers, proxies=True)
        with Stack(make_runtime(runtime_name, session), config, Budgets(settings.timeout_multiplier)) as stack:
            for seed in range(args.seed, args.seed + args.seeds):
                result = run(stack, draw(seed, args.duration), progress=say)
                history, picture = keep(result, out)
                line = {"seed": seed, "ok": result.ok, "attempts": len(result.attempts), "history": str(history)}
                if not result.ok:
                    replay = replay_command(seed, args.duration, runtime_name)
                    line |= {"violations": result.violations, "replay": replay, "logs": keep_logs(stack, out, seed)}
                    if args.keep_failing:
                        kept = keep_regression(Path(args.keep_failing), seed, args.duration, result.violations, replay)
                        line["kept"] = str(kept)
                    failed.append(line)
                print(json.dumps(line), flush=True)
    finally:
        session.close()
    print(json.dumps({"seeds": args.seeds, "failed": [f["seed"] for f in failed]}), flush=True)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    nem = sub.add_parser(
        "nemesis",
        help="concurrent keyed writes under a seeded fault schedule, then a check of both stores; "
        "exit 1 on any violation (its replay command is printed)",
    )
    nem.add_argument("--seed", type=number(int, 0), default=1, help="the first seed (default 1)")
    nem.add_argument("--seeds", type=number(int, 1, 10000), default=1, help="how many seeds from --seed (default 1)")
    nem.add_argument(
        "--duration", type=number(float, 1, 600), default=20.0, help="seconds of faults per seed (default 20)"
    )
    nem.add_argument(
        "--keep-failing",
        metavar="FOLDER",
        help="write each failing seed as FOLDER/seed-N.yaml, a regression file CI replays "
        "(commit it into scenarios/nemesis/)",
    )
    settings_options(nem, STACK_SETTINGS)
    nem.set_defaults(func=cmd_nemesis)
