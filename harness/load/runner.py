"""``python -m harness load``: run one load profile with Locust and publish what it measured.

    python -m harness load --profile smoke                       # brings the stack up itself
    python -m harness load --profile steady --target-url URL     # a deployed api
    python -m harness load --profile smoke --workers 2           # one master, two workers

Locust runs headless as a subprocess (it monkey-patches gevent into whatever imports it), with
``harness_locust/locustfile.py`` and the profile's shape file. A load test writes
``reports/load/<profile>-<UTC timestamp>/``: Locust's ``report.html``, ``stats_*.csv`` and
``stats.json``, the gate's ``summary.json`` (figures, SLO verdicts) and ``summary.md``, and the
Locust logs; then appends to ``reports/load/history.jsonl`` and rewrites ``reports/load/index.html``.
Exit code: 0 every SLO met, 1 an SLO broke, 2 the load test itself failed.

This module wires the parts: the options (``config``), the target and the load balancer's check,
the Locust processes (``locust_process``), what is sampled meanwhile (``live``), the summary
(``results``) and the reports (``report``). The deployment wings are imported only here, inside
``load_balancer``: nothing Locust imports reaches them."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from harness import slo
from harness.budgets import Budgets
from harness.errors import ConfigurationError, HarnessError
from harness.load import profile as profiles
from harness.load import report as loadreport
from harness.load.config import LoadBalancerCheck, LoadTest
from harness.load.live import MetricsRecorder, dependency_checks
from harness.load.locust_process import STARTUP, drive
from harness.load.results import API_METRICS, LoadResult, RunFacts, new_report_dir, summarise
from harness.paths import project
from harness.session import Session


@dataclass(frozen=True)
class Target:
    """The api a load test runs against: its URL, the runtime that started it ("target": given),
    and its /health cache TTL when the harness started it (None: unknown)."""

    url: str
    runtime: str
    health_cache_ttl: float | None


def load_balancer(test: LoadTest) -> LoadBalancerCheck:
    """The api target group's health-check timeout and matcher: given, else from the Terraform plan
    of ``test.env``, else (unless ``lb_from_plan``) the SLO file's fallback (and "200"), saying which."""
    if test.lb_timeout is not None:
        return LoadBalancerCheck(test.lb_timeout, test.lb_matcher or "200", test.lb_source)
    from harness.paths import environment_file
    from harness.plan.boot import inputs
    from harness.plan.timing import planned

    var_file = environment_file(test.env)
    try:
        boot = inputs(test.reports_dir / "timings.json", test.reports_dir / "images.json")
        api = planned(var_file, boot).services["api"]
        return LoadBalancerCheck(
            float(api.alb.timeout), test.lb_matcher or api.alb.matcher, f"terraform plan of {var_file.name}"
        )
    except (HarnessError, OSError, subprocess.SubprocessError) as exc:
        first = " ".join(line.strip() for line in str(exc).splitlines()[:3] if line.strip())[:200]
        if test.lb_from_plan:
            raise ConfigurationError(
                f"the api's ALB health check from the Terraform plan of {var_file.name} (--lb-from-plan)",
                first,
                "install terraform (and its AWS provider, or let it reach the registry), or pass "
                "--lb-timeout and --lb-matcher instead",
            ) from exc
        fallback = slo.load(test.slo_file).names.get("alb_timeout", 5.0)
        return LoadBalancerCheck(fallback, test.lb_matcher or "200", f"{test.slo_file.name} names (no plan: {first})")


def _commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=project().root, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextlib.contextmanager
def _target(test: LoadTest, session: Session) -> Iterator[Target]:
    """The given target, or a stack started for this load test."""
    if test.target_url:
        yield Target(test.target_url, "target", None)
        return
    from harness.progress import Progress
    from harness.stack.api import api_config
    from harness.stack.config import StackConfig
    from harness.stack.runtime import make_runtime, resolve_runtime
    from harness.stack.stack import Stack, record_timings

    name, why = resolve_runtime(test.runtime)
    print(f"load: starting the stack on {name} ({why})", file=test.out, flush=True)
    config = StackConfig(mlflow_workers=test.mlflow_workers)
    with Stack(make_runtime(name, session), config, Budgets(test.timeout_multiplier), progress=Progress()) as stack:
        record_timings(test.reports_dir / "timings.json", name, stack.ready_s)
        yield Target(stack.url("api"), name, api_config(stack.environment("api")).health_cache_ttl)


def execute(test: LoadTest) -> LoadResult:
    data = test.validate()
    lb = load_balancer(test)
    print(f"load: profile {test.profile}: {data['description']}", file=test.out)
    print(
        f"load: load balancer check timeout {lb.timeout:g} s, matcher {lb.matcher} (from {lb.source})",
        file=test.out,
        flush=True,
    )
    root = (test.reports_dir / "load").resolve()
    report_dir = new_report_dir(root, test)
    session = Session()
    try:
        with _target(test, session) as target:
            before, t0 = dependency_checks(target.url), time.monotonic()
            bound = profiles.duration(data, test.time_scale) + STARTUP
            print(
                f"load: running Locust against {target.url} for up to {profiles.duration(data, test.time_scale):.0f} s"
                f"{f' with {test.workers} workers' if test.workers else ''}; reports in {report_dir}",
                file=test.out,
                flush=True,
            )
            sampling = (
                MetricsRecorder(target.url, report_dir / API_METRICS, max_seconds=bound)
                if data.get("find_knee")
                else contextlib.nullcontext()
            )
            with sampling:
                code = drive(test, session, report_dir, target.url, lb, bound)
            after, seconds = dependency_checks(target.url), time.monotonic() - t0
    finally:
        session.close()
    facts = RunFacts(target.runtime, _commit(), before, after, seconds, target.health_cache_ttl)
    summary = summarise(report_dir, data, test, lb, code, facts)
    published = loadreport.publish(root, summary, report_dir)
    return LoadResult(summary["exit_code"], report_dir, summary, published.line, published.previous)
