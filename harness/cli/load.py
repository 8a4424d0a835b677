"""The load wing's commands: ``load`` (a Locust profile with the SLO gate) and ``load-worker`` (a
Locust worker on another machine)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from harness.cli.options import env_option, existing_file, number, settings_options
from harness.errors import ConfigurationError
from harness.process import terminate_as_interrupt
from harness.session import reap
from harness.settings import ini_values, resolve


def _matcher(raw: str) -> str:
    from harness.matcher import parse_matcher

    try:
        return parse_matcher(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


LOCUST_MASTER_PORT = 5557  # Locust's own default for --master-port and --master-bind-port


def _host(raw: str) -> str:
    """A host name or address (what Locust's --master-host and --master-bind-host take)."""
    if not raw or any(c.isspace() or c in "/:@" for c in raw):
        raise argparse.ArgumentTypeError(f"expected a host name or an IPv4 address, got {raw!r}")
    return raw


def _bind(args: argparse.Namespace) -> str:
    """The master's HOST:PORT from --master-bind-host/--master-bind-port ("": local, a free port)."""
    if args.master_bind_host is None and args.master_bind_port is None:
        return ""
    return f"{args.master_bind_host or '127.0.0.1'}:{args.master_bind_port or LOCUST_MASTER_PORT}"


def _bounded(name: str, kind: type = float):
    """The ``type=`` of a load test's number, with the bounds the load test itself checks."""
    from harness.load.config import BOUNDS

    low, high = BOUNDS[name]
    return number(kind, low, high)


def cmd_load(args: argparse.Namespace) -> int:
    """Run one load profile with Locust; reports under reports/load/."""
    from pathlib import Path

    from harness.load.config import LoadTest
    from harness.slo import slo_file

    settings = resolve(
        {
            "runtime": args.runtime,
            "timeout_multiplier": args.timeout_multiplier,
            "mlflow_workers": args.mlflow_workers,
            "target_url": args.target_url,
            "reports_dir": args.reports_dir,
        },
        os.environ,
        ini_values(),
    )
    terminate_as_interrupt()
    reap()
    try:
        return run_load(
            LoadTest(
                profile=args.profile,
                target_url=settings.target_url,
                workers=args.workers,
                time_scale=args.time_scale,
                slo_file=Path(args.slo) if args.slo else slo_file(),
                reports_dir=settings.reports_path,
                env=args.env,
                lb_timeout=args.lb_timeout,
                lb_matcher=args.lb_matcher,
                lb_from_plan=args.lb_from_plan,
                max_requests=args.max_requests,
                request_log=args.request_log,
                remote_workers=args.remote_workers,
                master_bind=_bind(args),
                runtime=settings.runtime,
                mlflow_workers=settings.mlflow_workers,
                timeout_multiplier=settings.timeout_multiplier,
            ),
            as_json=args.json,
        )
    except KeyboardInterrupt:
        print("load: interrupted; everything it started was stopped", file=sys.stderr)
        return 130


def run_load(test, as_json: bool = False) -> int:  # test: harness.load.config.LoadTest
    """One load test, its verdict printed: the SLO gate, the health cache, the change against the
    previous run of the profile and where the reports are (on ``test.out``; with ``as_json`` also one
    JSON document on stdout). Exit: the gate's, or 2 if it could not run."""
    from harness import slo
    from harness.errors import HarnessError
    from harness.load import report as loadreport
    from harness.load.profile import ProfileError
    from harness.load.runner import execute

    try:
        outcome = execute(test)
    except (HarnessError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary, out = outcome.summary, test.out
    print(f"load: SLO gate ({summary['slo']['file']}):", file=out)
    for line in slo.gate_lines(summary.get("verdicts", []), summary.get("exceptions", [])):
        print(line, file=out)
    cache = summary.get("health_cache")
    if cache:
        print(
            f"load: /health ran {cache['checks']} Postgres checks in {cache['seconds']} s "
            f"(cache TTL {cache['ttl'] if cache['ttl'] else 'unknown'} s)",
            file=out,
        )
    for text in loadreport.changes(outcome.history_line, outcome.previous):
        print(f"load: against the previous load test of this profile: {text}", file=out)
    print(
        f"load: {'passed' if outcome.exit_code == 0 else 'FAILED'} (exit {outcome.exit_code}); "
        f"report {outcome.report_dir / 'report.html'}; summary {outcome.report_dir / 'summary.md'}; "
        f"index {outcome.report_dir.parent / loadreport.INDEX}",
        file=out,
        flush=True,
    )
    if as_json:
        doc = {
            "passed": outcome.exit_code == 0,
            "exit_code": outcome.exit_code,
            "report": str(outcome.report_dir / "report.html"),
            "summary_md": str(outcome.report_dir / "summary.md"),
            "index": str(outcome.report_dir.parent / loadreport.INDEX),
            "changes": loadreport.changes(outcome.history_line, outcome.previous),
            "summary": summary,
        }
        print(json.dumps(doc, indent=2, default=str), flush=True)
    return outcome.exit_code


def cmd_load_worker(args: argparse.Namespace) -> int:
    """One Locust worker for a master on another machine; it gets every option from the master and
    exits when the master quits."""
    from harness.errors import HarnessError
    from harness.load import profile as profiles
    from harness.load.config import Address
    from harness.load.locust_process import run_worker

    try:
        profiles.read(args.profile)
        address = Address(args.master_host, args.master_port)
    except (HarnessError, profiles.ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    terminate_as_interrupt()
    try:
        return run_worker(args.profile, address)
    except KeyboardInterrupt:
        return 130


def register(sub: argparse._SubParsersAction) -> None:
    from harness.load.profile import names as profile_names

    load = sub.add_parser("load", help="run a Locust load profile with the SLO gate; reports under reports/load/")
    try:
        choices: list[str] | None = profile_names()
    except ConfigurationError:  # no project here: `harness load` says so when it runs
        choices = None
    load.add_argument("--profile", required=True, choices=choices, help="<loadtests_dir>/profiles/<name>.py")
    load.add_argument(
        "--workers",
        type=_bounded("workers", int),
        default=0,
        help="Locust distributed mode: one master and N local workers (0: one process)",
    )
    load.add_argument(
        "--time-scale", type=_bounded("time_scale"), default=1.0, help="multiply every stage's end (0.5: half as long)"
    )
    load.add_argument(
        "--slo",
        type=existing_file,
        default=None,
        help="the SLO file the gate judges by (default: [tool.harness] slo_file)",
    )
    env_option(load, "whose planned ALB health check (timeout, matcher) the poller and the SLOs use")
    load.add_argument(
        "--lb-timeout", type=_bounded("lb_timeout"), help="the ALB health-check timeout, s (skips the Terraform plan)"
    )
    load.add_argument("--lb-matcher", type=_matcher, help="the ALB matcher, e.g. 200 or 200-299")
    load.add_argument(
        "--lb-from-plan",
        action="store_true",
        help="the ALB check must come from the Terraform plan of --env: exit 2 when it cannot be planned "
        "(default: the SLO file's fallback then); the nightly run against staging uses it",
    )
    load.add_argument(
        "--max-requests",
        type=_bounded("max_requests", int),
        help="stop after this many requests (default: the profile's cap)",
    )
    load.add_argument("--request-log", action="store_true", help="also write requests.jsonl, one line per request")
    load.add_argument(
        "--json", action="store_true", help="also the verdict, the summary and the reports' paths as JSON on stdout"
    )
    load.add_argument(
        "--remote-workers",
        type=_bounded("remote_workers", int),
        default=0,
        help="also wait for N workers on other machines (`python -m harness load-worker`)",
    )
    load.add_argument(
        "--master-bind-host",
        type=_host,
        help="where the Locust master listens for workers, as Locust names it (default 127.0.0.1; 0.0.0.0 "
        "for workers on other machines)",
    )
    load.add_argument(
        "--master-bind-port",
        type=number(int, 1, 65535, what="a TCP port"),
        help=f"its port (default: a free one on 127.0.0.1, else Locust's {LOCUST_MASTER_PORT})",
    )
    settings_options(load, ("runtime", "timeout_multiplier", "mlflow_workers", "target_url", "reports_dir"))
    load.set_defaults(func=cmd_load)
    worker = sub.add_parser("load-worker", help="a Locust worker for `load --remote-workers` on another machine")
    worker.add_argument("--profile", required=True, choices=choices, help="the master's profile")
    worker.add_argument(
        "--master-host",
        required=True,
        type=_host,
        help="the master's host, as Locust names it (its --master-bind-host)",
    )
    worker.add_argument(
        "--master-port",
        type=number(int, 1, 65535, what="a TCP port"),
        default=LOCUST_MASTER_PORT,
        help=f"the master's port (its --master-bind-port; default Locust's {LOCUST_MASTER_PORT})",
    )
    worker.set_defaults(func=cmd_load_worker)
