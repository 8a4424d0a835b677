"""Benchmark: how long the deployment simulator takes for 100 tasks (and 10, 400), so the
deployment suite can afford many scenarios.

    .venv/bin/python bench/simulator_speed.py [--repeat 20]

The configuration is the staging MLflow service's planned timings (interval 10/5/3/90, ALB 15/5/2/3,
grace 120) with boot times sampled from the measured 9.4-13.4 s x 3; outcome and virtual time are
printed beside the wall time so a change of behaviour shows too."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.simulation.simulator import SimConfig, measured_boot, simulate  # noqa: E402

STAGING_MLFLOW = dict(
    container_interval=10,
    container_timeout=5,
    container_retries=3,
    container_start=90,
    alb_interval=15,
    alb_timeout=5,
    healthy_threshold=2,
    unhealthy_threshold=3,
    grace=120,
    deregistration_delay=30,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    boot = measured_boot([9.4, 11.6, 13.4], 3.0)
    print(
        f"\n{time.strftime('%Y-%m-%d')}: {args.repeat} runs each, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores\n"
    )
    print("| tasks | median ms | min ms | outcome | virtual time s | events |")
    print("|---|---|---|---|---|---|")
    for desired in (10, 100, 400):
        cfg = SimConfig(desired=desired, **STAGING_MLFLOW)
        times = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            result = simulate(cfg, boot=boot, seed=i)
            times.append((time.perf_counter() - t0) * 1000)
        print(
            f"| {desired} | {statistics.median(times):.1f} | {min(times):.1f} | {result.outcome} | "
            f"{result.time:.0f} | {len(result.trace)} |"
        )


if __name__ == "__main__":
    main()
