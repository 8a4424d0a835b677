"""The plan's commands: ``timings`` (plan an environment offline, every rule with its verdict)."""

from __future__ import annotations

import argparse
import json

from harness.cli.options import plan_options, planned_model


def cmd_timings(args: argparse.Namespace) -> int:
    """Plan an environment offline and print every timing rule with pass or fail."""
    from harness.plan.rules import check

    model = planned_model(args)
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


def register(sub: argparse._SubParsersAction) -> None:
    timings = sub.add_parser("timings", help="plan terraform/ offline and check every timing rule")
    plan_options(timings)
    timings.add_argument("--json", action="store_true", help="the model and every rule's verdict as JSON")
    timings.set_defaults(func=cmd_timings)
