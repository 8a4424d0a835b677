"""``python -m harness`` (or ``harness``): the stack by hand, the deployment checks and the load runs.

    up         start the stack on a runtime, print one JSON line per service, then "ready"; Ctrl-C stops
    down       stop what `up` started and remove what crashed runs left behind (JSON report)
    timings    plan terraform/ offline and check every timing rule
    simulate   simulate an ECS rolling deployment with the planned timings (--svg: a Gantt picture)
    outage     a shared dependency outage against the running fleet: the incident's design beside ours
    rehearse   run the planned tasks on Docker as ECS would and judge each against its grace period
    timeline   draw a health timeline again from a series a test kept
    load       run a Locust load profile with the SLO gate; load-worker: a worker on another machine

Exit codes, every command: 0 all checks passed; 1 a check failed (a timing rule, an SLO, a
simulated or rehearsed deployment); 2 the command could not run (bad input, a missing tool);
130 interrupted. ``--json`` prints the result as one JSON document on stdout where offered."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from harness import __version__
from harness.budgets import Budgets
from harness.errors import ConfigurationError, HarnessError
from harness.process import terminate_as_interrupt
from harness.progress import Progress
from harness.session import Session, reap, reap_session, stop_up_sessions
from harness.settings import OPTIONS, ini_values, resolve
from harness.stack.runtime import make_runtime, resolve_runtime
from harness.stack.stack import Stack, record_timings


def cmd_up(args: argparse.Namespace) -> int:
    settings = resolve(
        {"runtime": args.runtime, "timeout_multiplier": args.timeout_multiplier, "mlflow_workers": args.mlflow_workers},
        os.environ,
        ini_values(),
    )
    runtime_name, why = resolve_runtime(settings.runtime)
    print(f"runtime: {runtime_name} ({why})", file=sys.stderr, flush=True)
    terminate_as_interrupt()
    # a background job of a script starts with SIGINT ignored; Ctrl-C's signal must still stop `up`
    signal.signal(signal.SIGINT, signal.default_int_handler)
    reap()
    session = Session(kind="up")
    try:
        from harness.stack.config import StackConfig

        stack = Stack(
            make_runtime(runtime_name, session),
            StackConfig(mlflow_workers=settings.mlflow_workers),
            Budgets(settings.timeout_multiplier),
            progress=Progress(),
        )
        with stack:
            print(
                json.dumps({"session": session.id, "stop": f"python -m harness down --session {session.id}"}),
                flush=True,
            )
            for entry in stack.describe(reveal=True):  # the user's own stack: its DSN must connect
                print(json.dumps(entry), flush=True)
            record_timings(settings.reports_path / "timings.json", runtime_name, stack.ready_s)
            print("ready", flush=True)
            threading.Event().wait()  # until Ctrl-C or SIGTERM
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr, flush=True)
    finally:
        session.close()
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    client = None
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine: nothing of docker to reap
        client = None
    only = {args.session} if args.session else None
    stopped = stop_up_sessions(only=only)
    if only:
        report = reap_session(args.session)
    else:
        report = reap(force=args.all, docker_client=client)
    print(json.dumps({"stopped": stopped, **report.as_json()}))
    return 0


def _model(args: argparse.Namespace):
    from pathlib import Path

    from harness.paths import TERRAFORM_DIR
    from harness.plan.boot import inputs
    from harness.plan.timing import planned

    var_file = Path(args.var_file) if args.var_file else TERRAFORM_DIR / "environments" / f"{args.env}.tfvars"
    if not var_file.is_file():
        raise ConfigurationError(
            "--var-file: an existing tfvars file", str(var_file), "give a path to a .tfvars file, or --env staging|prod"
        )
    return planned(var_file, inputs(Path(args.timings), Path(args.images), args.pull_rate, args.fargate_factor))


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a deployment of one service (rolling or blue/green) with the planned timings."""
    from harness.plan.dockerfile import service_healthcheck
    from harness.simulation.simulator import SimConfig, simulate, simulate_blue_green

    model = _model(args)
    svc = model.services[args.service]
    cfg = SimConfig.from_timing(
        svc,
        service_healthcheck(args.service).path,
        conservative=args.conservative,
        dependencies_ok=not args.broken_dependency,
        **({"desired": args.desired} if args.desired else {}),
    )
    strategy = args.strategy or ("blue_green" if svc.deployment_controller == "CODE_DEPLOY" else "rolling")
    if strategy == "blue_green":
        result = simulate_blue_green(
            cfg,
            boot=svc.boot,
            traffic=args.traffic or svc.traffic,
            termination_wait=svc.termination_wait if args.termination_wait is None else args.termination_wait,
            alarm_after=args.alarm_after,
            test_listener=svc.test_listener,
            validation=args.validation,
        )
    else:
        result = simulate(cfg, boot=svc.boot)
    if args.json:
        print(
            json.dumps(
                {
                    "service": args.service,
                    "strategy": strategy,
                    "source": str(model.source),
                    "boot_s": svc.boot,
                    "outcome": result.outcome,
                    "time_s": result.time,
                    "replaced": result.replaced,
                    "circuit_breaker_threshold": result.threshold,
                    "test_traffic_t": result.test_traffic_at,
                    "traffic_shifts": [{"t": t, "green_percent": p} for t, p in result.shifts],
                    "timeline": [{"t": t, "event": what} for t, what in result.timeline],
                },
                indent=2,
            )
        )
    else:
        print(
            f"{args.service} from {model.source}, boot {svc.boot:g}s from {svc.boot_from} "
            f"(budget {svc.boot_budget:g}s; estimate {svc.estimate.terms()})"
        )
        print(result.describe(args.events))
    if args.svg:
        from pathlib import Path

        from harness.gantt import simulation_svg

        broken = ", broken dependency" if args.broken_dependency else ""
        plan = Path(args.var_file).name if args.var_file else args.env
        title = (
            f"{args.service} ({plan}{broken}, {strategy.replace('_', '/')}): {result.outcome} after {result.time:.0f} s"
        )
        Path(args.svg).write_text(simulation_svg(result, title))
        print(f"timeline picture: {args.svg}", file=sys.stderr if args.json else sys.stdout)
    return 0 if result.outcome == "completed" else 1


def cmd_timeline(args: argparse.Namespace) -> int:
    """Draw a health timeline again from the series a test kept beside its picture."""
    from pathlib import Path

    from harness.faults.sampler import picture

    source = Path(args.series)
    try:
        record = json.loads(source.read_text())
        svg = picture(record, args.title or record.get("title", source.stem))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(
            f"timeline: {source} is not a kept health series ({type(exc).__name__}: {exc}); expected the "
            f".json a test wrote beside its picture under reports/",
            file=sys.stderr,
        )
        return 2
    out = Path(args.svg or source.with_suffix(".svg"))
    out.write_text(svg)
    print(f"timeline picture: {out} ({len(record['samples'])} samples)")
    return 0


SCHEMAS = {
    "scenario": ("harness.faults.scenarios", "a fault scenario file (scenarios/faults/*.yaml)"),
    "slo": ("harness.slo", "the SLO file (scenarios/slo.yaml)"),
    "profile": ("harness.load.profile", "the PROFILE dict of a load profile (loadtests/profiles/*.py)"),
}


def schema_document(name: str) -> dict:
    """The JSON Schema a file kind is validated with, as published for editors (docs/schemas/)."""
    import importlib

    module, what = SCHEMAS[name]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{name}: {what}",
        **{k: v for k, v in importlib.import_module(module).SCHEMA.items() if k != "$schema"},
    }


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of a file kind (the one the harness validates with)."""
    print(json.dumps(schema_document(args.name), indent=2))
    return 0


def cmd_outage(args: argparse.Namespace) -> int:
    """Compare the incident's health design with the fleet-safe one for a shared dependency outage."""
    import math

    from harness.simulation.outage import OutageConfig, compare

    model = _model(args)
    svc = model.services["api"]
    cfg = OutageConfig(
        desired=args.desired or svc.desired_count,
        alb_interval=round(svc.alb.interval),
        healthy_threshold=svc.alb.healthy_threshold,
        unhealthy_threshold=svc.alb.unhealthy_threshold,
        grace=round(svc.grace_period),
        provisioning=0,
        boot=math.ceil(svc.boot),
        startup_timeout=args.startup_timeout,
        database=args.dependency == "postgres",
        retire=tuple(args.retire),
    )
    print(
        f"api of {model.source}: {cfg.desired} tasks, ALB every {cfg.alb_interval}s (H {cfg.healthy_threshold}, "
        f"U {cfg.unhealthy_threshold}), grace {cfg.grace}s, boot {cfg.boot}s; {args.dependency} down for "
        f"{args.minutes:g} min from t = {args.start}s"
    )
    print(f"{'design':12} {'tasks replaced':>15} {'min with no healthy target':>27} {'full service after':>19}")
    for r in compare(cfg, args.start, args.minutes):
        row = r.row()
        after = "never" if row["full_service_after_s"] is None else f"{row['full_service_after_s']} s"
        print(f"{row['design']:12} {row['tasks_replaced']:>15} {row['minutes_no_healthy_target']:>27} {after:>19}")
    return 0


def cmd_timings(args: argparse.Namespace) -> int:
    """Plan an environment offline and print every timing rule with pass or fail."""
    from harness.plan.rules import check

    model = _model(args)
    results = check(model)
    failed = sum(len(v) for v in results.values())
    if args.json:
        print(
            json.dumps(
                {
                    "source": str(model.source),
                    "passed": not failed,
                    "services": {
                        s.name: {
                            "boot_s": s.boot,
                            "boot_from": s.boot_from,
                            "boot_budget_s": s.boot_budget,
                            "estimate": s.estimate.terms(),
                            "grace_s": s.grace_period,
                            "container": vars(s.container),
                            "alb": vars(s.alb),
                            "deregistration_delay_s": s.deregistration_delay,
                            "stop_timeout_s": s.stop_timeout,
                        }
                        for s in model.services.values()
                    },
                    "rules": [
                        {"rule": rule, "passed": not v, "violations": [str(x) for x in v]}
                        for rule, v in results.items()
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return 1 if failed else 0
    print(f"timings of {model.source}\n")
    print("boot (task start to the health path answering): the rules use max(declared budget, estimate)")
    for s in model.services.values():
        print(
            f"  {s.name:7} budget {s.boot_budget:g}s, estimate {s.estimate.terms()}; "
            f"rules use {s.boot:g}s ({s.boot_from})"
        )
    print()
    print(
        f"{'service':8} {'container I/T/R/S':18} {'ALB i/t/H/U':12} {'grace':>6} {'dereg':>6} {'stop':>5} "
        f"{'boot':>6}  health path"
    )
    for s in model.services.values():
        c, a = s.container, s.alb
        print(
            f"{s.name:8} {f'{c.interval}/{c.timeout}/{c.retries}/{c.start_period}':18} "
            f"{f'{a.interval}/{a.timeout}/{a.healthy_threshold}/{a.unhealthy_threshold}':12} {s.grace_period:>6} "
            f"{s.deregistration_delay:>6.0f} {s.stop_timeout:>5} {s.boot:>6}  {a.path}"
        )
    print()
    for rule, violations in results.items():
        print(f"{'FAIL' if violations else 'pass'}  {rule}")
        for v in violations:
            print(f"      {v}")
    return 1 if failed else 0


def cmd_rehearse(args: argparse.Namespace) -> int:
    """Run the planned tasks on Docker as ECS would, and judge each against its grace period."""
    from pathlib import Path

    from harness.rehearsal.rehearsal import main as rehearse

    terminate_as_interrupt()
    reap()
    services = (args.service,) if args.service else ("mlflow", "api")
    try:
        return rehearse(
            args.env,
            services,
            args.json,
            Path(args.reports_dir),
            replacement=not args.no_replacement,
            var_file=Path(args.var_file) if args.var_file else None,
            svg=Path(args.svg) if args.svg else None,
            strategy=args.strategy,
            traffic=args.traffic,
            termination_wait=args.termination_wait,
            time_scale=args.time_scale,
        )
    except KeyboardInterrupt:
        print("rehearse: interrupted; everything it started was removed", file=sys.stderr)
        return 130


def cmd_load(args: argparse.Namespace) -> int:
    """Run one load profile with Locust; reports under reports/load/."""
    from pathlib import Path

    from harness.load.runner import LoadTest, main

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
        return main(
            LoadTest(
                profile=args.profile,
                target_url=settings.target_url,
                workers=args.workers,
                time_scale=args.time_scale,
                slo_file=Path(args.slo),
                reports_dir=settings.reports_path,
                env=args.env,
                lb_timeout=args.lb_timeout,
                lb_matcher=args.lb_matcher,
                max_requests=args.max_requests,
                request_log=args.request_log,
                remote_workers=args.remote_workers,
                master_bind=args.master_bind or "",
                runtime=settings.runtime,
                mlflow_workers=settings.mlflow_workers,
                timeout_multiplier=settings.timeout_multiplier,
            )
        )
    except KeyboardInterrupt:
        print("load: interrupted; everything it started was stopped", file=sys.stderr)
        return 130


def cmd_load_worker(args: argparse.Namespace) -> int:
    from harness.load.runner import worker_main

    terminate_as_interrupt()
    try:
        return worker_main(args.profile, args.master)
    except KeyboardInterrupt:
        return 130


def _boot_options(parser: argparse.ArgumentParser) -> None:
    """What the boot estimate is made of (harness/plan/boot.py; docs/timings.md, "Boot budgets")."""
    from harness.plan.boot import DEFAULT_PULL_MB_S

    parser.add_argument("--timings", default="reports/timings.json", help="measured times to ready")
    parser.add_argument("--images", default="reports/images.json", help="the built images (their sizes)")
    parser.add_argument(
        "--pull-rate",
        type=float,
        default=DEFAULT_PULL_MB_S,
        help=f"image pull rate on Fargate, MB/s (default {DEFAULT_PULL_MB_S:g}: a stated assumption)",
    )
    parser.add_argument(
        "--fargate-factor",
        type=float,
        default=1.0,
        help="how much slower a Fargate vCPU starts the service than one core here (default 1)",
    )


def _strategy_options(parser: argparse.ArgumentParser) -> None:
    """How a deployment is made (simulate, rehearse); every default is the plan's."""
    from harness.plan.codedeploy import TRAFFIC

    parser.add_argument(
        "--strategy",
        choices=["rolling", "blue_green"],
        help="default: the plan's (deployment_strategy: ECS rolling or CodeDeploy blue/green)",
    )
    parser.add_argument(
        "--traffic",
        choices=sorted(TRAFFIC),
        help="blue/green: CodeDeploy's traffic shifting (default: the plan's deployment group's)",
    )
    parser.add_argument(
        "--termination-wait",
        type=float,
        help="blue/green: seconds the blue task set is kept after the shift (default: the plan's)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack, print one JSON line per service, then 'ready'; Ctrl-C stops")
    for opt in OPTIONS:
        if opt.name in ("runtime", "timeout_multiplier", "mlflow_workers"):
            up.add_argument(opt.flag, dest=opt.name, default=None, help=opt.help)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser(
        "down",
        help="stop what `up` started (SIGTERM, its teardown runs) and remove what crashed "
        "runs left behind (processes, dirs, containers)",
    )
    down.add_argument("--all", action="store_true", help="also test runs whose owner is still alive (kills them)")
    down.add_argument("--session", help="only this session (the id `up` printed)")
    down.set_defaults(func=cmd_down)
    timings = sub.add_parser("timings", help="plan terraform/ offline and check every timing rule")
    timings.add_argument("--env", default="staging", choices=["staging", "prod"])
    timings.add_argument("--var-file", help="a tfvars file instead of environments/<env>.tfvars")
    timings.add_argument("--json", action="store_true", help="the model and every rule's verdict as JSON")
    _boot_options(timings)
    timings.set_defaults(func=cmd_timings)
    sim = sub.add_parser(
        "simulate", help="simulate a deployment (rolling, or CodeDeploy blue/green) with the planned timings"
    )
    _strategy_options(sim)
    sim.add_argument(
        "--alarm-after",
        type=float,
        metavar="SECONDS",
        help="blue/green: a rollback alarm fires this long after traffic reached green (a version that fails "
        "in production); within the termination wait it rolls back",
    )
    sim.add_argument(
        "--validation",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="blue/green: how long the AfterAllowTestTraffic hooks validate green on the test listener "
        "before production traffic moves (default 0: no hooks)",
    )
    sim.add_argument("--service", default="mlflow", choices=["api", "mlflow"])
    sim.add_argument("--desired", type=int, help="override the desired count")
    sim.add_argument("--conservative", action="store_true", help="first healthy verdict after H ALB checks")
    sim.add_argument("--events", type=int, default=40, help="timeline lines to print")
    sim.add_argument("--svg", metavar="FILE", help="also draw the deployment as a Gantt picture (SVG) into FILE")
    sim.add_argument("--json", action="store_true", help="the outcome and the timeline as JSON")
    sim.add_argument(
        "--broken-dependency",
        action="store_true",
        help="the new tasks' dependency configuration is wrong: their checks never pass",
    )
    sim.add_argument("--env", default="staging", choices=["staging", "prod"])
    sim.add_argument("--var-file", help="a tfvars file instead of environments/<env>.tfvars")
    _boot_options(sim)
    sim.set_defaults(func=cmd_simulate)
    tl = sub.add_parser(
        "timeline",
        help="draw a health timeline (SVG) from the series a test kept "
        "(reports/timelines/*.json, reports/faults/*.json)",
    )
    tl.add_argument("series", help="the kept series (JSON)")
    tl.add_argument("--svg", metavar="FILE", help="where to draw it (default: beside the series)")
    tl.add_argument("--title", help="the picture's title (default: the test's)")
    tl.set_defaults(func=cmd_timeline)
    schema = sub.add_parser(
        "schema", help="print the JSON Schema of a scenario, SLO or load profile file (for editors)"
    )
    schema.add_argument("name", choices=sorted(SCHEMAS))
    schema.set_defaults(func=cmd_schema)
    out = sub.add_parser(
        "outage",
        help="a shared dependency outage against the running api fleet: the incident's "
        "health design beside the fleet-safe one",
    )
    out.add_argument("--minutes", type=float, default=10.0, help="how long the dependency is down")
    out.add_argument(
        "--dependency",
        default="mlflow",
        choices=["mlflow", "postgres"],
        help="postgres: new tasks wait for it at start and exit after --startup-timeout",
    )
    out.add_argument("--start", type=int, default=5, help="virtual second the outage starts")
    out.add_argument("--startup-timeout", type=int, default=60, help="the api's API_STARTUP_TIMEOUT")
    out.add_argument(
        "--retire",
        type=int,
        action="append",
        default=[],
        help="a virtual second at which one healthy task is replaced anyway (churn); repeatable",
    )
    out.add_argument("--desired", type=int, help="override the desired count")
    out.add_argument("--env", default="staging", choices=["staging", "prod"])
    out.add_argument("--var-file", help="a tfvars file instead of environments/<env>.tfvars")
    _boot_options(out)
    out.set_defaults(func=cmd_outage)
    rehearse = sub.add_parser(
        "rehearse", help="run the planned tasks on Docker as ECS would; judge each against its grace period"
    )
    rehearse.add_argument("--env", default="staging", choices=["staging", "prod"])
    rehearse.add_argument("--var-file", help="a tfvars file instead of environments/<env>.tfvars")
    rehearse.add_argument("--service", choices=["api", "mlflow"], help="only this service's task")
    rehearse.add_argument("--json", action="store_true", help="the timelines and verdicts as JSON")
    rehearse.add_argument(
        "--no-replacement",
        action="store_true",
        help="skip the rolling replacement of the api's task under client traffic",
    )
    _strategy_options(rehearse)
    rehearse.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="blue/green: scale the traffic steps and the termination wait (e.g. 0.1); health timing is never scaled",
    )
    rehearse.add_argument("--reports-dir", default="reports", help="where timings.json and images.json are")
    rehearse.add_argument("--svg", metavar="FILE", help="also draw the tasks' timelines as a Gantt picture (SVG)")
    rehearse.set_defaults(func=cmd_rehearse)
    load = sub.add_parser("load", help="run a Locust load profile with the SLO gate; reports under reports/load/")
    from harness.load.profile import names as profile_names
    from harness.slo import SLO_FILE

    load.add_argument("--profile", required=True, choices=profile_names(), help="loadtests/profiles/<name>.py")
    load.add_argument(
        "--workers",
        type=int,
        default=0,
        help="Locust distributed mode: one master and N local workers (0: one process)",
    )
    load.add_argument("--time-scale", type=float, default=1.0, help="multiply every stage's end (0.5: half as long)")
    load.add_argument("--slo", default=str(SLO_FILE), help="the SLO file the gate judges by")
    load.add_argument(
        "--env",
        default="staging",
        choices=["staging", "prod"],
        help="whose planned ALB health check (timeout, matcher) the poller and the SLOs use",
    )
    load.add_argument("--lb-timeout", type=float, help="the ALB health-check timeout, s (skips the Terraform plan)")
    load.add_argument("--lb-matcher", help="the ALB matcher, e.g. 200 or 200-299")
    load.add_argument("--max-requests", type=int, help="stop after this many requests (default: the profile's cap)")
    load.add_argument("--request-log", action="store_true", help="also write requests.jsonl, one line per request")
    load.add_argument(
        "--remote-workers",
        type=int,
        default=0,
        help="also wait for N workers on other machines (`python -m harness load-worker`)",
    )
    load.add_argument("--master-bind", help="HOST:PORT the Locust master listens on (default 127.0.0.1, a free port)")
    for opt in OPTIONS:
        if opt.name in ("runtime", "timeout_multiplier", "mlflow_workers", "target_url", "reports_dir"):
            load.add_argument(opt.flag, dest=opt.name, default=None, help=opt.help)
    load.set_defaults(func=cmd_load)
    worker = sub.add_parser("load-worker", help="a Locust worker for `load --remote-workers` on another machine")
    worker.add_argument("--profile", required=True, choices=profile_names())
    worker.add_argument("--master", required=True, help="HOST:PORT of the master (its --master-bind)")
    worker.set_defaults(func=cmd_load_worker)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:  # bad input or a missing tool: the command could not run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
