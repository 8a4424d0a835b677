"""The stack's commands: ``up``, ``down``; and the files the harness keeps: ``timeline`` (a kept
health series drawn again), ``schema`` (the JSON Schemas of the files a user writes)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from harness.cli.options import STACK_SETTINGS, settings_options, stack_settings
from harness.process import terminate_as_interrupt
from harness.session import Session, reap, reap_session, stop_up_sessions, valid_id


def cmd_up(args: argparse.Namespace) -> int:
    from harness.budgets import Budgets
    from harness.progress import Progress
    from harness.stack.runtime import make_runtime
    from harness.stack.stack import Stack, record_timings

    settings, runtime_name = stack_settings(args)
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
            threading.Event().wait()  # until Ctrl-C or SIGTERM (`harness down` sends it)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr, flush=True)
        return 130  # interrupted, as every command says it (after the stack is down: finally)
    finally:
        session.close()
    return 0


def session_id(raw: str) -> str:
    if not valid_id(raw):
        raise argparse.ArgumentTypeError(f"expected a session id as `up` prints it (h and 8 hex digits), got {raw!r}")
    return raw


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


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start the stack, print one JSON line per service, then 'ready'; Ctrl-C stops")
    settings_options(up, STACK_SETTINGS)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser(
        "down",
        help="stop what `up` started (SIGTERM, its teardown runs) and remove what crashed "
        "runs left behind (processes, dirs, containers)",
    )
    down.add_argument("--all", action="store_true", help="also test runs whose owner is still alive (kills them)")
    down.add_argument("--session", type=session_id, help="only this session (the id `up` printed: h and 8 hex digits)")
    down.set_defaults(func=cmd_down)
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
