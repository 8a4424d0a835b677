"""The simulation's commands: ``simulate`` (a deployment in virtual time with the planned timings)
and ``outage`` (a shared dependency outage against the running fleet, two health designs)."""

from __future__ import annotations

import argparse
import json
import sys

from harness.cli.options import COUNT, POSITIVE, SECONDS, SOME, plan_options, planned_model, strategy_options


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a deployment of one service (rolling or blue/green) with the planned timings."""
    from harness.lifecycle import Milestone
    from harness.plan.dockerfile import service_healthcheck
    from harness.simulation.blue_green import simulate_blue_green
    from harness.simulation.simulator import SimConfig, simulate

    model = planned_model(args)
    svc = model.services[args.service]
    cfg = SimConfig.from_timing(
        svc,
        service_healthcheck(args.service).path,
        conservative=args.conservative,
        dependencies_ok=not args.broken_dependency,
        **({"desired": args.desired} if args.desired else {}),
    )
    strategy = args.strategy or svc.strategy
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
                    "test_traffic_t": result.rollout.milestones.get(Milestone.TEST_TRAFFIC),
                    "traffic_shifts": [{"t": s.at, "green_percent": s.percent} for s in result.rollout.shifts],
                    "tasks": {name: life.as_dict() for name, life in result.rollout.tasks.items()},
                    "trace": [{"t": t, "event": what} for t, what in result.trace],
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

        from harness.simulation.simulator import simulation_svg

        broken = ", broken dependency" if args.broken_dependency else ""
        plan = Path(args.var_file).name if args.var_file else args.env
        title = (
            f"{args.service} ({plan}{broken}, {strategy.replace('_', '/')}): {result.outcome} after {result.time:.0f} s"
        )
        Path(args.svg).write_text(simulation_svg(result, title))
        print(f"deployment picture: {args.svg}", file=sys.stderr if args.json else sys.stdout)
    return 0 if result.outcome == "completed" else 1


def cmd_outage(args: argparse.Namespace) -> int:
    """Compare the incident's health design with the fleet-safe one for a shared dependency outage."""
    import math

    from harness.simulation.outage import OutageConfig, compare

    model = planned_model(args)
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
    rows = [r.row() for r in compare(cfg, args.start, args.minutes)]
    if args.json:
        fleet = {k: getattr(cfg, k) for k in ("desired", "alb_interval", "healthy_threshold", "unhealthy_threshold")}
        doc = {
            "plan": str(model.source),
            "api": {**fleet, "grace_s": cfg.grace, "boot_s": cfg.boot, "startup_timeout_s": cfg.startup_timeout},
            "outage": {"dependency": args.dependency, "start_s": args.start, "minutes": args.minutes},
            "designs": rows,
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"api of {model.source}: {cfg.desired} tasks, ALB every {cfg.alb_interval}s (H {cfg.healthy_threshold}, "
        f"U {cfg.unhealthy_threshold}), grace {cfg.grace}s, boot {cfg.boot}s; {args.dependency} down for "
        f"{args.minutes:g} min from t = {args.start}s"
    )
    print(f"{'design':12} {'tasks replaced':>15} {'min with no healthy target':>27} {'full service after':>19}")
    for row in rows:
        after = "never" if row["full_service_after_s"] is None else f"{row['full_service_after_s']} s"
        print(f"{row['design']:12} {row['tasks_replaced']:>15} {row['minutes_no_healthy_target']:>27} {after:>19}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser(
        "simulate", help="simulate a deployment (rolling, or CodeDeploy blue/green) with the planned timings"
    )
    strategy_options(sim)
    sim.add_argument(
        "--alarm-after",
        type=SECONDS,
        metavar="SECONDS",
        help="blue/green: a rollback alarm fires this long after traffic reached green (a version that fails "
        "in production); within the termination wait it rolls back",
    )
    sim.add_argument(
        "--validation",
        type=SECONDS,
        default=0.0,
        metavar="SECONDS",
        help="blue/green: how long the AfterAllowTestTraffic hooks validate green on the test listener "
        "before production traffic moves (default 0: no hooks)",
    )
    sim.add_argument("--service", default="mlflow", choices=["api", "mlflow"], help="the service deployed")
    sim.add_argument("--desired", type=COUNT, help="override the desired count")
    sim.add_argument("--conservative", action="store_true", help="first healthy verdict after H ALB checks")
    sim.add_argument("--events", type=COUNT, default=40, help="lines of the trace to print")
    sim.add_argument("--svg", metavar="FILE", help="also draw the deployment as a Gantt picture (SVG) into FILE")
    sim.add_argument("--json", action="store_true", help="the outcome, every task's lifecycle and the trace as JSON")
    sim.add_argument(
        "--broken-dependency",
        action="store_true",
        help="the new tasks' dependency configuration is wrong: their checks never pass",
    )
    plan_options(sim)
    sim.set_defaults(func=cmd_simulate)
    out = sub.add_parser(
        "outage",
        help="a shared dependency outage against the running api fleet: the incident's "
        "health design beside the fleet-safe one",
    )
    out.add_argument("--minutes", type=POSITIVE, default=10.0, help="how long the dependency is down")
    out.add_argument(
        "--dependency",
        default="mlflow",
        choices=["mlflow", "postgres"],
        help="postgres: new tasks wait for it at start and exit after --startup-timeout",
    )
    out.add_argument("--start", type=SOME, default=5, help="virtual second the outage starts")
    out.add_argument("--startup-timeout", type=COUNT, default=60, help="the api's API_STARTUP_TIMEOUT")
    out.add_argument(
        "--retire",
        type=SOME,
        action="append",
        default=[],
        help="a virtual second at which one healthy task is replaced anyway (churn); repeatable",
    )
    out.add_argument("--desired", type=COUNT, help="override the desired count")
    out.add_argument("--json", action="store_true", help="the fleet, the outage and each design's figures as JSON")
    plan_options(out)
    out.set_defaults(func=cmd_outage)
