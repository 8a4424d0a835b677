"""The stack's commands: ``up``, ``down``; and the files the harness keeps: ``timeline`` (a kept
health series drawn again), ``schema`` (the JSON Schemas of the files a user writes)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from harness.cli.options import STACK_SETTINGS, number, settings_options, stack_settings
from harness.process import terminate_as_interrupt
from harness.session import Session, live_up_sessions, reap, reap_session, stop_up_sessions, valid_id
from harness.stack.images import SERVICES

DETACHED_LOG = "HARNESS_UP_LOG"  # the log of the `up` that `up --detach` starts in the background


def cmd_up(args: argparse.Namespace) -> int:
    from harness.budgets import Budgets
    from harness.progress import Progress
    from harness.stack.runtime import make_runtime
    from harness.stack.stack import Stack, record_timings

    if args.detach:
        return _detach(args)
    settings, runtime_name = stack_settings(args)
    terminate_as_interrupt()
    # a background job of a script starts with SIGINT ignored; Ctrl-C's signal must still stop `up`
    signal.signal(signal.SIGINT, signal.default_int_handler)
    reap()
    session = Session(kind="up")
    log = os.environ.get(DETACHED_LOG)
    ready = False
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
            # for `status` and `logs` (URLs masked: the registry is readable by every user)
            services = [{**d, "logs": stack.services[d["name"]].log_ref} for d in stack.describe()]
            session.note(services=services, runtime=runtime_name, ready=time.time(), log=log)
            print("ready", flush=True)
            ready = True
            threading.Event().wait()  # until Ctrl-C or SIGTERM (`harness down` sends it)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr, flush=True)
        return 130  # interrupted, as every command says it (after the stack is down: finally)
    finally:
        session.close()
        if log and ready:  # a detached `up` that came up owns its log; before that, `up --detach` reads it
            Path(log).unlink(missing_ok=True)
    return 0


def _detach(args: argparse.Namespace) -> int:
    """``up --detach``: start `up` in the background, in a session of its own (the terminal's
    Ctrl-C does not reach it; `harness down` stops it), its output in a log readable by this user
    alone (it holds the Postgres URL with its password); print what it prints up to ``ready``, and
    return. If it exits first: its log's end, and its exit code. Interrupted or out of time: it is
    stopped, and said so."""
    import subprocess
    import tempfile

    from harness.errors import WaitTimeout
    from harness.settings import OPTIONS
    from harness.wait import wait_until

    forwarded = [
        a
        for o in OPTIONS
        if o.name in STACK_SETTINGS and getattr(args, o.name) is not None
        for a in (o.flag, str(getattr(args, o.name)))
    ]
    fd, name = tempfile.mkstemp(prefix="harness-up-", suffix=".log")  # mode 0600
    log = Path(name)
    with os.fdopen(fd, "wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "harness", "up", *forwarded],
            env={**os.environ, DETACHED_LOG: str(log)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(f"up --detach: starting the stack in the background (pid {child.pid}, log {log})", file=sys.stderr)

    def lines() -> list[str]:
        try:
            return log.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def state() -> str | int:
        if "ready" in lines():
            return "ready"
        code = child.poll()
        return code if code is not None else "starting"

    try:
        now = wait_until(
            state,
            until=lambda s: s != "starting",
            timeout=900,
            interval=0.2,
            what=f"the background `up` (pid {child.pid}) to print ready",
        )
    except (KeyboardInterrupt, WaitTimeout) as exc:
        os.killpg(child.pid, signal.SIGTERM)  # its own teardown stops what it started
        print(
            f"up --detach: {'interrupted' if isinstance(exc, KeyboardInterrupt) else exc}; stopping it", file=sys.stderr
        )
        child.wait(timeout=120)
        log.unlink(missing_ok=True)
        return 130 if isinstance(exc, KeyboardInterrupt) else 2
    if now != "ready":
        print("\n".join(lines()[-40:]), file=sys.stderr)
        print(f"up --detach: the stack did not come up (exit {now})", file=sys.stderr)
        log.unlink(missing_ok=True)
        return int(now) or 2
    for line in lines():
        if line.startswith("{") or line == "ready":
            print(line, flush=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The stacks `up` keeps running (exit 1 when there is none)."""
    stacks = [
        {
            "session": e["session_id"],
            "pid": e.get("owner_pid"),
            "runtime": e.get("info", {}).get("runtime"),
            "state": "ready" if e.get("info", {}).get("ready") else "starting",
            "services": [
                {k: s.get(k) for k in ("name", "url", "ready_s")} for s in e.get("info", {}).get("services", [])
            ],
            "log": e.get("info", {}).get("log"),
        }
        for e in live_up_sessions()
    ]
    if args.json:
        print(json.dumps({"stacks": stacks}, indent=2))
    elif not stacks:
        print("no stack is up (python -m harness up [--detach] starts one)")
    for st in stacks if not args.json else ():
        print(f"{st['session']}  {st['state']}  {st['runtime'] or '?'}  pid {st['pid']}")
        for svc in st["services"]:
            print(f"  {svc['name']:<9} {svc['url']}  ready in {svc['ready_s']} s")
    return 0 if stacks else 1


def cmd_logs(args: argparse.Namespace) -> int:
    """The last lines of each service's log of a stack `up` keeps running."""
    from harness.errors import ConfigurationError

    live = live_up_sessions()
    chosen = [e for e in live if args.session in (None, e["session_id"])]
    if not chosen:
        raise ConfigurationError(
            f"a running `harness up`{' with session ' + args.session if args.session else ''}",
            "none" if not live else ", ".join(e["session_id"] for e in live),
            "start one with python -m harness up --detach; harness status lists them",
        )
    if len(chosen) > 1:
        raise ConfigurationError(
            "--session naming one stack",
            f"{len(chosen)} stacks are up: " + ", ".join(e["session_id"] for e in chosen),
            "harness status lists them",
        )
    services = chosen[0].get("info", {}).get("services", [])
    for svc in services:
        if args.service in (None, svc["name"]):
            print(f"==> {svc['name']} <==")
            print(_log_tail(svc["logs"], args.tail))
    return 0


def _log_tail(ref: str, tail: int) -> str:
    if ref.startswith("docker:"):
        import docker

        try:
            return (
                docker.from_env(timeout=10)
                .containers.get(ref.removeprefix("docker:"))
                .logs(tail=tail)
                .decode(errors="replace")
            )
        except Exception as exc:  # noqa: BLE001 - a removed container, an engine gone
            return f"(no logs: {exc})"
    try:
        return "\n".join(Path(ref).read_text(errors="replace").splitlines()[-tail:])
    except OSError as exc:
        return f"(no logs: {exc})"


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
    "profile": ("harness.load.profile", "the PROFILE dict of a load profile (<loadtests_dir>/profiles/*.py)"),
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
    up.add_argument(
        "--detach",
        action="store_true",
        help="start it in the background and return once it is ready (harness status, logs and down then)",
    )
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="the stacks `up` keeps running, with their services (exit 1: none)")
    status.add_argument("--json", action="store_true", help="one JSON document: {stacks: [...]}")
    status.set_defaults(func=cmd_status)
    logs = sub.add_parser("logs", help="the last lines of each service's log of a stack `up` keeps running")
    logs.add_argument("--session", type=session_id, help="which stack (default: the only one up)")
    logs.add_argument("--service", choices=SERVICES, help="one service (default: each)")
    logs.add_argument(
        "--tail", type=number(int, 1, 100_000, what="lines"), default=50, help="lines per service (default 50)"
    )
    logs.set_defaults(func=cmd_logs)
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
    schema.add_argument("name", choices=sorted(SCHEMAS), help="which file's schema")
    schema.set_defaults(func=cmd_schema)
