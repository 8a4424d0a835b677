"""The rehearsal's command: ``rehearse`` (the plan's tasks on Docker as ECS would run them, judged
against their grace periods, then the api's task replaced under client traffic)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cli.options import COUNT, POSITIVE, env_option, existing_file, strategy_options


def cmd_rehearse(args: argparse.Namespace) -> int:
    """Run the planned tasks on Docker as ECS would, and judge each against its grace period."""
    from harness.errors import HarnessError
    from harness.process import terminate_as_interrupt
    from harness.rehearsal.rehearsal import Rehearsal
    from harness.session import reap

    rehearsal = Rehearsal(  # a wrong blue/green setting is refused here, before anything starts
        args.env,
        (args.service,) if args.service else ("mlflow", "api"),
        Path(args.reports_dir),
        var_file=Path(args.var_file) if args.var_file else None,
        replacement=not args.no_replacement,
        strategy=args.strategy,
        traffic=args.traffic,
        termination_wait=args.termination_wait,
        time_scale=args.time_scale,
        tasks=args.tasks,
    )
    terminate_as_interrupt()
    reap()
    try:
        rollout = rehearsal.run()
    except KeyboardInterrupt:
        print("rehearse: interrupted; everything it started was removed", file=sys.stderr)
        return 130
    except HarnessError as exc:
        print(f"rehearse: could not run: {exc}", file=sys.stderr)
        return 2
    if args.svg:
        from harness.gantt import rollout_svg

        Path(args.svg).write_text(rollout_svg(rollout, f"{args.env} plan rehearsed on Docker"))
        print(f"deployment picture: {args.svg}", file=sys.stderr if args.json else sys.stdout)
    summary = rehearsal.replacement_summary
    if args.json:
        document = {
            "tasks": {key: life.as_dict() for key, life in rollout.tasks.items()},
            "shifts": [{"t": s.at, "green_percent": s.percent} for s in rollout.shifts],
            "milestones": {m.value: t for m, t in rollout.milestones.items()},
            "replacement": summary,
        }
        print(json.dumps(document, indent=2))
    else:
        print(rollout.describe())
        if summary:
            how = f"blue/green ({summary['traffic']})" if summary["strategy"] == "blue_green" else "rolling replacement"
            print(
                f"{how} of the api's tasks: {summary['requests']} client requests, {summary['failed']} failed "
                f"(by target: {summary['by_target']})"
                + (f"; listener shifts (s, % green): {summary['shifts']}" if summary.get("shifts") else "")
                + ("; green never in service: no traffic moved, rolled back" if summary.get("rolled_back") else "")
                + (
                    f"; {summary['outcome']}"
                    + (f" ({summary['replaced']} new tasks replaced)" if summary["replaced"] else "")
                    if summary["strategy"] == "rolling"
                    else ""
                )
            )
    return 0 if rehearsal.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    rehearse = sub.add_parser(
        "rehearse", help="run the planned tasks on Docker as ECS would; judge each against its grace period"
    )
    env_option(rehearse)
    rehearse.add_argument(
        "--var-file", type=existing_file, help="a tfvars file instead of terraform/environments/<env>.tfvars"
    )
    rehearse.add_argument("--service", choices=["api", "mlflow"], help="only this service's tasks")
    rehearse.add_argument(
        "--tasks",
        type=COUNT,
        metavar="N",
        help="at most N tasks per service (default: each service's desired count in the plan); said when it cuts",
    )
    rehearse.add_argument("--json", action="store_true", help="every task's lifecycle and verdict as JSON")
    rehearse.add_argument(
        "--no-replacement",
        action="store_true",
        help="skip the replacement of the api's tasks under client traffic",
    )
    strategy_options(rehearse)
    rehearse.add_argument(
        "--time-scale",
        type=POSITIVE,
        default=1.0,
        help="blue/green: scale the traffic steps and the termination wait (e.g. 0.1); health timing is never scaled",
    )
    rehearse.add_argument("--reports-dir", default="reports", help="where timings.json and images.json are")
    rehearse.add_argument("--svg", metavar="FILE", help="also draw every task's lifecycle as a Gantt picture (SVG)")
    rehearse.set_defaults(func=cmd_rehearse)
