"""Benchmark: time to ready of each service and of the whole stack, per runtime.

    .venv/bin/python bench/startup.py [--repeat 3] [--runtimes local,docker]

Each repetition starts a fresh stack (new data directory or containers) and stops it. A service's
time is from its start to its readiness check passing (docker: to the container's HEALTHCHECK
reporting healthy); the stack's is from the first start to the api reporting pass. Image builds
are excluded (they are cached by content; the first build's time is printed). Not a test."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.errors import DependencyMissing  # noqa: E402
from harness.session import Session  # noqa: E402
from harness.stack.runtime import docker_available, make_runtime  # noqa: E402
from harness.stack.stack import Stack  # noqa: E402

SERVICES = ("postgres", "mlflow", "api")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--runtimes", default="local,docker")
    args = ap.parse_args()
    rows, notes = [], []
    for name in args.runtimes.split(","):
        if name == "docker" and (why := docker_available()):
            notes.append(f"docker skipped: {why}")
            continue
        session = Session()
        try:
            samples: dict[str, list[float]] = {s: [] for s in (*SERVICES, "stack")}
            for i in range(args.repeat):
                runtime = make_runtime(name, session)  # one stack per runtime: closing it removes its network
                if i == 0 and getattr(runtime, "build_s", None):
                    notes.append(f"docker image builds (0: cached): {runtime.build_s}")
                t0 = time.monotonic()
                with Stack(runtime) as stack:
                    samples["stack"].append(time.monotonic() - t0)
                    for s in SERVICES:
                        samples[s].append(stack.ready_s[s])
            rows.append((name, samples))
        except DependencyMissing as exc:
            notes.append(f"{name} skipped: {exc}")
        finally:
            session.close()
    print(
        f"\n{time.strftime('%Y-%m-%d')}: seconds to ready, median (min-max) of {args.repeat} fresh starts, "
        f"{os.cpu_count()} cores\n"
    )
    print("| runtime | postgres | mlflow | api | whole stack |")
    print("|---|---|---|---|---|")
    for name, samples in rows:
        print(f"| {name} | " + " | ".join(spread(samples[s]) for s in (*SERVICES, "stack")) + " |")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
