"""``python -m harness``: up (start the stack until Ctrl-C), down (run the reaper)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from harness.budgets import Budgets
from harness.errors import HarnessError
from harness.progress import Progress
from harness.runs import Run, reap
from harness.runtime import make_runtime, resolve_runtime
from harness.settings import OPTIONS, resolve
from harness.stack import Stack, record_timings


def _terminate_as_interrupt() -> None:
    """SIGTERM behaves like Ctrl-C, so teardown runs either way."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def cmd_up(args: argparse.Namespace) -> int:
    settings = resolve({"runtime": args.runtime, "timeout_multiplier": args.timeout_multiplier,
                        "mlflow_workers": args.mlflow_workers}, os.environ, {})
    runtime_name, why = resolve_runtime(settings.runtime)
    print(f"runtime: {runtime_name} ({why})", file=sys.stderr, flush=True)
    _terminate_as_interrupt()
    reap()
    run = Run()
    try:
        from harness.runtime.base import StackConfig
        stack = Stack(make_runtime(runtime_name, run), StackConfig(mlflow_workers=settings.mlflow_workers),
                      Budgets(settings.timeout_multiplier), progress=Progress())
        with stack:
            for entry in stack.describe():
                print(json.dumps(entry), flush=True)
            record_timings(settings.reports_path / "timings.json", runtime_name, stack.ready_s)
            print("ready", flush=True)
            threading.Event().wait()  # until Ctrl-C or SIGTERM
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr, flush=True)
    finally:
        run.close()
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    client = None
    try:
        import docker
        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine: nothing of docker to reap
        client = None
    report = reap(force=args.all, docker_client=client)
    print(json.dumps(report.as_json()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack, print one JSON line per service, then 'ready'; Ctrl-C stops")
    for opt in OPTIONS:
        if opt.name in ("runtime", "timeout_multiplier", "mlflow_workers"):
            up.add_argument(opt.flag, dest=opt.name, default=None, help=opt.help)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="remove what crashed runs left behind (processes, dirs, containers)")
    down.add_argument("--all", action="store_true", help="also runs whose owner is still alive")
    down.set_defaults(func=cmd_down)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
