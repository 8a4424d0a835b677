"""The run's options, bounds and verdict, as Locust event listeners.

- options: the SLO file, the profile name, the target group's timeout and matcher, a time scale,
  the request cap, where to write the summary and (for tests) a per-request log. Locust sends
  these from the master to its workers.
- bounds: the profile's shape ends the run in time; a checker on the master (or the only process)
  quits once the profile's request cap is reached.
- verdict: on ``quitting`` the master judges the merged stats against ``scenarios/slo.yaml``,
  prints each objective with pass or BREACH (and by how much), writes the summary JSON, and sets
  the process exit code: 0 all met, 1 an SLO broke, 2 the test itself failed (user code raised).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.errors import ConfigurationError
from harness.load.matcher import parse_matcher
from harness.slo import TOTAL, Figures, breaches, gate_lines, judge, load, verdicts_json

STATE: dict = {"stop_reason": "the profile's last stage ended", "workers": Counter(), "log": None}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("harness", "set by `python -m harness load`; sent to workers by the master")
    group.add_argument(
        "--slo-file",
        default="",
        help="the SLO YAML the gate judges by (default: the project's, [tool.harness] slo_file)",
    )
    group.add_argument("--profile-name", default="", help="the profile's name (selects its SLO overrides)")
    group.add_argument("--summary-file", default="", help="where the gate writes its JSON summary")
    group.add_argument("--lb-timeout", type=float, default=5.0, help="target group health-check timeout, s")
    group.add_argument("--lb-matcher", type=parse_matcher, default="200", help="target group matcher")
    group.add_argument("--lb-source", default="default", help="where the timeout and matcher came from")
    group.add_argument("--time-scale", type=float, default=1.0, help="multiply the profile's stage ends")
    group.add_argument("--max-requests", type=int, default=0, help="stop after this many (0: the profile's)")
    group.add_argument("--request-log", default="", help="append one JSON line per request here")


@events.init.add_listener
def _bounds(environment: Environment, **_: object) -> None:
    shape = environment.shape_class
    if shape is None or not getattr(shape, "profile", None):
        sys.stderr.write(
            "harness_locust: no profile shape given; "
            "pass -f harness_locust/locustfile.py,<loadtests_dir>/profiles/NAME.py\n"
        )
        sys.exit(2)
    for cls in environment.user_classes:
        if cls.__name__ == "HealthPoller":
            cls.fixed_count = shape.profile["poller"]["nodes"]
    options = environment.parsed_options
    if options and options.request_log:
        suffix = f".{id(environment.runner)}" if isinstance(environment.runner, WorkerRunner) else ""
        STATE["log"] = open(options.request_log + suffix, "a", buffering=1)  # noqa: SIM115 - closed on quitting
    if isinstance(environment.runner, MasterRunner):
        environment.events.worker_report.add_listener(_tally)
    if not isinstance(environment.runner, WorkerRunner):
        cap = (options.max_requests if options and options.max_requests else 0) or shape.profile["max_requests"]
        gevent.spawn(_cap, environment, cap)


def _tally(client_id: str, data: dict, **_: object) -> None:
    STATE["workers"][client_id] += data.get("stats_total", {}).get("num_requests", 0)


def _cap(environment: Environment, cap: int) -> None:
    while True:
        gevent.sleep(0.5)  # a greenlet's own pacing inside Locust, not a wait for a state
        if environment.runner is None:
            return
        if environment.stats.total.num_requests >= cap:
            STATE["stop_reason"] = f"the request cap ({cap}) was reached"
            environment.runner.quit()
            return


@events.request.add_listener
def _log(
    request_type: str,
    name: str,
    response_time: float,
    response=None,
    exception=None,
    start_time: float | None = None,
    **_: object,
) -> None:
    log = STATE["log"]
    if log is not None:
        status = getattr(response, "status_code", 0) or 0
        log.write(
            json.dumps(
                {
                    "t": start_time or time.time(),
                    "name": f"{request_type} {name}",
                    "status": status,
                    "ms": round(response_time or 0, 2),
                    "error": str(exception)[:200] if exception else None,
                }
            )
            + "\n"
        )


def figures(entry) -> Figures:
    return Figures(
        entry.num_requests,
        entry.num_failures,
        entry.get_response_time_percentile(0.5) or 0,
        entry.get_response_time_percentile(0.95) or 0,
        entry.get_response_time_percentile(0.99) or 0,
        entry.max_response_time or 0,
        round(entry.total_rps, 2),
    )


@events.quitting.add_listener
def _verdict(environment: Environment, **_: object) -> None:
    if STATE["log"] is not None:
        STATE["log"].close()
        STATE["log"] = None
    if isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    stats = environment.stats
    measured = {f"{e.method} {e.name}": figures(e) for e in stats.entries.values()}
    measured[TOTAL] = figures(stats.total)
    try:
        slo = load(
            Path(options.slo_file) if options.slo_file else None,
            profile=options.profile_name or None,
            names={"alb_timeout": options.lb_timeout},
            sources={"alb_timeout": options.lb_source},
        )
    except ConfigurationError as exc:
        sys.stderr.write(f"SLO gate: {exc}\n")
        environment.process_exit_code = 2
        return
    verdicts = judge(slo, measured)
    broken = breaches(verdicts)
    exceptions = [
        {"count": e["count"], "msg": e["msg"], "nodes": sorted(e["nodes"])}
        for e in environment.runner.exceptions.values()
    ]
    started = stats.total.start_time
    summary = {
        "profile": options.profile_name,
        "target": environment.host,
        "started": started,
        "duration_s": round((stats.total.last_request_timestamp or started) - started, 1),
        "stop_reason": STATE["stop_reason"],
        "time_scale": options.time_scale,
        "load_balancer": {"timeout_s": options.lb_timeout, "matcher": options.lb_matcher, "source": options.lb_source},
        "workers": dict(STATE["workers"]) if isinstance(environment.runner, MasterRunner) else None,
        "endpoints": {k: {**vars(f), "error_rate": round(f.error_rate, 5)} for k, f in measured.items()},
        "failures": sorted(
            (
                {"request": f"{e.method} {e.name}", "reason": str(e.error), "count": e.occurrences}
                for e in stats.errors.values()
            ),
            key=lambda x: -x["count"],
        )[:20],
        "exceptions": exceptions,
        "slo": slo.as_json(),
        "verdicts": verdicts_json(verdicts),
        "passed": not broken and not exceptions,
    }
    if options.summary_file:
        Path(options.summary_file).write_text(json.dumps(summary, indent=2, default=str))
    out = sys.stdout
    out.write(
        f"\nSLO gate ({slo.path.name}, profile {options.profile_name or '-'}; alb_timeout "
        f"{options.lb_timeout:g} s from {options.lb_source}):\n"
    )
    for line in gate_lines(summary["verdicts"], exceptions):
        out.write(line + "\n")
    out.write(f"SLO gate: {len(broken)} of {len(verdicts)} objectives broken; stopped because {STATE['stop_reason']}\n")
    out.flush()
    environment.process_exit_code = 1 if broken else 2 if exceptions else 0
