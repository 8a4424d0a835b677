"""``python -m harness`` (or ``harness``): the stack by hand, the deployment checks and the load runs.

    up         start the stack on a runtime, print one JSON line per service, then "ready"; Ctrl-C stops
    down       stop what `up` started and remove what crashed runs left behind (JSON report)
    timings    plan terraform/ offline and check every timing rule
    simulate   simulate an ECS rolling deployment with the planned timings (--svg: a Gantt picture)
    outage     a shared dependency outage against the running fleet: the incident's design beside ours
    rehearse   run the planned tasks on Docker as ECS would and judge each against its grace period
    timeline   draw a health timeline again from a series a test kept
    load       run a Locust load profile with the SLO gate; load-worker: a worker on another machine
    nemesis    keyed writes under a seeded fault schedule, then both stores checked (exactly once)
    stage      run a stage of the proof (pr, proof-extra, proof) or a pipeline job's share of it
    shards     plan a stage's pipeline jobs from the recorded durations (.ci/durations.json)
    durations  seconds per suite of a run; --record keeps them for the shard planner
    merge-reports  the pipeline jobs' reports in one junit.xml and index.html

Exit codes, every command: 0 all checks passed; 1 a check failed (a timing rule, an SLO, a
simulated or rehearsed deployment); 2 the command could not run (bad input, a missing tool);
130 interrupted. ``--json`` prints the result as one JSON document on stdout where offered."""

from __future__ import annotations

import argparse
import sys

from harness import __version__
from harness.cli import load, nemesis, pipeline, plan, rehearsal, simulation, stack
from harness.cli.stack import schema_document
from harness.errors import HarnessError

__all__ = ["main", "schema_document"]


def parser() -> argparse.ArgumentParser:
    """Every command, registered by its wing's module."""
    top = argparse.ArgumentParser(
        prog="python -m harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    for wing in (stack, plan, simulation, rehearsal, load, nemesis, pipeline):
        wing.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:  # what follows is another program's (``stage``: pytest's): argparse leaves it alone
        argv, rest = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    top = parser()
    args = top.parse_args(argv)
    if rest:
        if not hasattr(args, "pytest_args"):
            top.error(f"{args.command} takes no arguments after --: {' '.join(rest)}")
        args.pytest_args = rest
    try:
        return args.func(args)
    except HarnessError as exc:  # bad input or a missing tool: the command could not run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
