"""``python -m harness load``: run one load profile with Locust and publish what it measured.

    python -m harness load --profile smoke                       # brings the stack up itself
    python -m harness load --profile steady --target-url URL     # a deployed api
    python -m harness load --profile smoke --workers 2           # one master, two workers

Locust runs headless as a subprocess (it monkey-patches gevent into whatever imports it), with
``loadtests/locustfile.py`` and the profile's shape file. A load test writes
``reports/load/<profile>-<UTC timestamp>/``: Locust's ``report.html``, ``stats_*.csv`` and
``stats.json``, the gate's ``summary.json`` (figures, SLO verdicts) and ``summary.md``, and the
Locust logs; then appends to ``reports/load/history.jsonl`` and rewrites ``reports/load/index.html``.
Exit code: 0 every SLO met, 1 an SLO broke, 2 the load test itself failed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx

from harness import slo
from harness.budgets import Budgets
from harness.errors import ConfigurationError, HarnessError, WaitTimeout
from harness.load import locust_csv, prometheus
from harness.load import profile as profiles
from harness.load import report as loadreport
from harness.load.knee import ENDPOINT, MetricsRecorder, knee, recovery
from harness.load.matcher import parse_matcher
from harness.paths import LOADTESTS_DIR, REPO
from harness.ports import free_port, release
from harness.process import ChildProcess, python_env
from harness.progress import step
from harness.session import Session
from harness.wait import wait_until

LOCUSTFILE = LOADTESTS_DIR / "locustfile.py"
HISTORY_TAIL = 8192  # bytes of Locust's history read for the live figures: its newest seconds
STARTUP = 60.0  # seconds for Locust (and its workers) to start and for the last reports to be written
STOP_GRACE = 20.0  # after SIGTERM, for Locust to write its reports


@dataclass
class LoadTest:
    """What one load test needs. ``lb_timeout``/``lb_matcher`` None: read them from the Terraform plan."""

    profile: str
    target_url: str | None = None
    workers: int = 0
    time_scale: float = 1.0
    slo_file: Path = slo.SLO_FILE
    reports_dir: Path = Path("reports")
    env: str = "staging"
    lb_timeout: float | None = None
    lb_matcher: str | None = None
    lb_source: str = "the command line"
    max_requests: int | None = None
    request_log: bool = False
    remote_workers: int = 0  # workers on other machines: `python -m harness load-worker --master HOST:PORT`
    master_bind: str = ""  # HOST:PORT the master listens on (default 127.0.0.1 and a free port)
    report_dir: Path | None = None  # default: <reports_dir>/load/<profile>-<UTC timestamp>
    runtime: str = "auto"
    mlflow_workers: int = 1
    timeout_multiplier: float = 1.0
    out: TextIO = field(default=sys.stderr, repr=False)

    def validate(self) -> dict:
        """Check everything before anything starts; returns the profile's data."""
        data = profiles.read(self.profile)
        if not 0 <= self.workers <= 16:
            raise ConfigurationError("--workers between 0 (one process) and 16", repr(self.workers), "")
        if not 0 <= self.remote_workers <= 256:
            raise ConfigurationError("--remote-workers between 0 and 256", repr(self.remote_workers), "")
        if self.master_bind:
            parse_address(self.master_bind, "--master-bind")
        if not 0.01 <= self.time_scale <= 10:
            raise ConfigurationError(
                "--time-scale between 0.01 and 10",
                repr(self.time_scale),
                "it multiplies the end of every stage of the profile",
            )
        if self.lb_timeout is not None and not 2 <= self.lb_timeout <= 120:
            raise ConfigurationError("--lb-timeout between 2 and 120 s (AWS's range)", repr(self.lb_timeout), "")
        if self.lb_matcher is not None:
            try:
                parse_matcher(self.lb_matcher)
            except ValueError as exc:
                raise ConfigurationError("--lb-matcher", str(exc), "") from None
        if self.max_requests is not None and self.max_requests < 1:
            raise ConfigurationError("--max-requests of at least 1", repr(self.max_requests), "")
        # a wrong SLO file fails now, not after the load (alb_timeout: the plan's value comes later)
        slo.load(self.slo_file, profile=self.profile, names={"alb_timeout": self.lb_timeout or 5.0})
        return data


@dataclass
class LoadResult:
    exit_code: int
    report_dir: Path
    summary: dict = field(default_factory=dict)
    history_line: dict = field(default_factory=dict)
    previous: dict | None = None


def parse_address(raw: str, flag: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigurationError(f"{flag} as HOST:PORT", repr(raw), "e.g. 127.0.0.1:5557 or 0.0.0.0:5557")
    return host, int(port)


def load_balancer(test: LoadTest) -> tuple[float, str, str]:
    """The api target group's health-check timeout and matcher: given, else from the Terraform plan
    of ``test.env``, else the SLO file's fallback (and "200"), saying which."""
    if test.lb_timeout is not None:
        return test.lb_timeout, test.lb_matcher or "200", test.lb_source
    from harness.paths import TERRAFORM_DIR
    from harness.plan.boot import inputs
    from harness.plan.timing import planned

    var_file = TERRAFORM_DIR / "environments" / f"{test.env}.tfvars"
    try:
        boot = inputs(test.reports_dir / "timings.json", test.reports_dir / "images.json")
        api = planned(var_file, boot).services["api"]
        return float(api.alb.timeout), test.lb_matcher or api.alb.matcher, f"terraform plan of {var_file.name}"
    except (HarnessError, OSError, subprocess.SubprocessError) as exc:
        fallback = slo.load(test.slo_file).names.get("alb_timeout", 5.0)
        first = " ".join(line.strip() for line in str(exc).splitlines()[:3] if line.strip())[:200]
        return fallback, test.lb_matcher or "200", f"{test.slo_file.name} names (no plan: {first})"


def dependency_checks(api: str) -> float | None:
    """Postgres checks the api's /health has run so far (its Prometheus counter); None if unreadable."""
    try:
        text = httpx.get(f"{api}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    return postgres_checks(text)


def postgres_checks(text: str) -> float | None:
    """Postgres checks counted in a ``/metrics`` text (``api_health_checks_total``, every status)."""
    try:
        found = prometheus.samples(text)
    except ValueError:
        return None
    return prometheus.total(found, "api_health_checks_total", component="postgres")


def _commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextlib.contextmanager
def _target(test: LoadTest, session: Session) -> Iterator[tuple[str, str, float | None]]:
    """(api url, runtime name, health cache TTL): the given target, or a stack started for this load test."""
    if test.target_url:
        yield test.target_url, "target", None
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
        yield stack.url("api"), name, api_config(stack.environment("api")).health_cache_ttl


def _locust(profile: str) -> list[str]:
    """Locust headless over the locustfile and the profile's shape file."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        f"{LOCUSTFILE},{profiles.path_of(profile)}",
        "--headless",
        "--loglevel",
        "WARNING",
    ]


def worker_argv(profile: str, master: tuple[str, int]) -> list[str]:
    """One Locust worker of ``profile`` connected to a master: the same files, options come from the master."""
    return _locust(profile) + ["--worker", "--master-host", master[0], "--master-port", str(master[1])]


def locust_argv(
    test: LoadTest,
    report_dir: Path,
    host: str,
    lb: tuple[float, str, str],
    role: str = "",
    master: tuple[str, int] = ("127.0.0.1", 0),
) -> list[str]:
    if role == "worker":
        return worker_argv(test.profile, ("127.0.0.1" if master[0] in ("0.0.0.0", "") else master[0], master[1]))
    timeout, matcher, source = lb
    argv = _locust(test.profile) + [
        "--host",
        host,
        "--only-summary",
        "--html",
        str(report_dir / "report.html"),
        "--csv",
        str(report_dir / "stats"),
        "--csv-full-history",
        "--json-file",
        str(report_dir / "stats"),
        "--slo-file",
        str(test.slo_file),
        "--profile-name",
        test.profile,
        "--summary-file",
        str(report_dir / "summary.json"),
        "--lb-timeout",
        str(timeout),
        "--lb-matcher",
        matcher,
        "--lb-source",
        source,
        "--time-scale",
        str(test.time_scale),
    ]
    if test.max_requests:
        argv += ["--max-requests", str(test.max_requests)]
    if test.request_log:
        argv += ["--request-log", str(report_dir / "requests.jsonl")]
    if role == "master":
        argv += [
            "--master",
            "--master-bind-host",
            master[0],
            "--master-bind-port",
            str(master[1]),
            "--expect-workers",
            str(test.workers + test.remote_workers),
            "--expect-workers-max-wait",
            str(int(STARTUP)),
        ]
    return argv


def _drive(
    test: LoadTest, session: Session, report_dir: Path, host: str, lb: tuple[float, str, str], bound: float
) -> int:
    """Start Locust (one process, or a master and its workers), wait for it within ``bound`` seconds,
    and stop everything it started, whatever happens."""
    env = python_env(session.mkdtemp("locust"))
    distributed = bool(test.workers or test.remote_workers)
    port = free_port() if distributed and not test.master_bind else 0
    master = parse_address(test.master_bind, "--master-bind") if test.master_bind else ("127.0.0.1", port)
    procs: list[ChildProcess] = []
    try:
        role = "master" if distributed else ""
        if test.remote_workers:
            print(
                f"load: waiting up to {STARTUP:.0f} s for {test.remote_workers} remote workers: on each machine run "
                f"`python -m harness load-worker --profile {test.profile} --master <this host>:{master[1]}`",
                file=test.out,
                flush=True,
            )
        main = ChildProcess(
            f"locust-{role or 'standalone'}",
            locust_argv(test, report_dir, host, lb, role, master),
            env=env,
            cwd=report_dir,
            url=host,
            session=session,
        )
        procs.append(main)
        main.start()
        for i in range(test.workers):
            worker = ChildProcess(
                f"locust-worker-{i + 1}",
                locust_argv(test, report_dir, host, lb, "worker", master),
                env=env,
                cwd=report_dir,
                url=host,
                session=session,
            )
            procs.append(worker)
            worker.start()
        planned = bound - STARTUP
        try:
            with step(f"load {test.profile}") as s:

                def show(what: str, elapsed: float, budget: float) -> None:
                    s.update(f"of {planned:.0f}s: {live_figures(report_dir / locust_csv.HISTORY) or 'starting'}")

                exited = wait_until(
                    main.exit_code,
                    until=lambda c: c is not None,
                    timeout=bound,
                    interval=0.5,
                    what=f"Locust to finish profile {test.profile}",
                    progress=show,
                )
                assert exited is not None  # what ``until`` waited for
                code = exited
        except WaitTimeout:
            print(f"load: Locust ran past {bound:.0f} s; stopping it (reports are still written)", file=test.out)
            main.stop(STOP_GRACE)
            code = 2
        for worker in procs[1:]:  # workers quit when their master does; any left are stopped
            with contextlib.suppress(WaitTimeout):
                wait_until(
                    worker.exit_code,
                    until=lambda c: c is not None,
                    timeout=10,
                    interval=0.2,
                    what=f"{worker.name} to exit after its master",
                )
        return code
    finally:
        for p in procs:
            p.close(STOP_GRACE)
        if port:
            release(port)


def live_figures(history: Path) -> str | None:
    """Users, requests/s, failures/s and p95 from the newest Aggregated row of Locust's per-second
    history (only the file's tail is read: a soak run's history grows for half an hour)."""
    try:
        table = locust_csv.rows(history, tail=HISTORY_TAIL)
    except OSError:
        return None
    for row in reversed(table):
        if row.get("Name") == "Aggregated" and row.get("Requests/s") not in (None, ""):
            p95 = row.get("95%") or "N/A"
            return (
                f"{row['User Count']} users, {float(row['Requests/s']):.1f} req/s, "
                f"{float(row['Failures/s']):.1f} failures/s, p95 {p95 if p95 == 'N/A' else p95 + ' ms'}"
            )
    return None


def _new_report_dir(root: Path, test: LoadTest) -> Path:
    if test.report_dir is not None:
        report_dir = test.report_dir.resolve()
        if report_dir.exists() and any(report_dir.iterdir()):
            raise ConfigurationError(
                "report_dir to be new or empty", str(report_dir), "the reports of two load tests never mix"
            )
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        report_dir, suffix = root / f"{test.profile}-{stamp}", 1
        while report_dir.exists():
            suffix += 1
            report_dir = root / f"{test.profile}-{stamp}-{suffix}"
    report_dir.mkdir(parents=True, exist_ok=True)
    return report_dir


class RequestLog:
    """Reads ``requests.jsonl`` (``--request-log``) while Locust still writes it: one dict per request
    with t (start, epoch s), name ("GET /runs/{id}"), status (0: no answer), ms and error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict] = []
        self._offset = 0

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.rows
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                self.rows.append(json.loads(line))
        return self.rows

    def select(
        self,
        names: set[str] | str,
        after: float = 0.0,
        before: float = float("inf"),
        ok: bool | None = None,
        status: int | None = None,
    ) -> list[dict]:
        """Requests of ``names`` that started in [after, before], optionally only (not) failed or of a status."""
        wanted = {names} if isinstance(names, str) else names
        return [
            r
            for r in self.read()
            if r["name"] in wanted
            and after <= r["t"] <= before
            and (ok is None or (r["error"] is None) == ok)
            and (status is None or r["status"] == status)
        ]


def execute(test: LoadTest) -> LoadResult:
    data = test.validate()
    lb = load_balancer(test)
    print(f"load: profile {test.profile}: {data['description']}", file=test.out)
    print(f"load: load balancer check timeout {lb[0]:g} s, matcher {lb[1]} (from {lb[2]})", file=test.out, flush=True)
    root = (test.reports_dir / "load").resolve()
    report_dir = _new_report_dir(root, test)
    session = Session()
    try:
        with _target(test, session) as (host, runtime, ttl):
            before, t0 = dependency_checks(host), time.monotonic()
            bound = profiles.duration(data, test.time_scale) + STARTUP
            print(
                f"load: running Locust against {host} for up to {profiles.duration(data, test.time_scale):.0f} s"
                f"{f' with {test.workers} workers' if test.workers else ''}; reports in {report_dir}",
                file=test.out,
                flush=True,
            )
            if data.get("find_knee"):
                with MetricsRecorder(host, report_dir / "api_metrics.jsonl", max_seconds=bound):
                    code = _drive(test, session, report_dir, host, lb, bound)
            else:
                code = _drive(test, session, report_dir, host, lb, bound)
            after, seconds = dependency_checks(host), time.monotonic() - t0
    finally:
        session.close()
    summary_path = report_dir / "summary.json"
    if not summary_path.exists():
        log = "\n".join(
            (report_dir / f).read_text(errors="replace")[-3000:]
            for f in sorted(p.name for p in report_dir.glob("locust-*.log"))
        )
        raise HarnessError(f"Locust to write {summary_path}", f"exit code {code}, no summary", f"its log:\n{log}")
    summary = json.loads(summary_path.read_text())
    back = data.get("recover_within")
    if back is not None:
        limit = slo.load(test.slo_file, None, {"alb_timeout": lb[0]}).objectives.get(" ".join(ENDPOINT), {})
        verdict = recovery(data, report_dir / locust_csv.HISTORY, back, limit.get("error_rate", 0.01), test.time_scale)
        summary["verdicts"] = [*summary.get("verdicts", []), verdict]
        if not verdict["ok"] and code == 0:
            code = 1
    summary.update(
        {
            "started_iso": datetime.fromtimestamp(summary["started"], UTC).isoformat(timespec="seconds"),
            "runtime": runtime,
            "worker_count": test.workers,
            "commit": _commit(),
            "exit_code": code,
            "passed": code == 0 and summary.get("passed", False),
        }
    )
    if data.get("find_knee"):
        limits = slo.load(test.slo_file, test.profile, {"alb_timeout": lb[0]}).objectives.get(" ".join(ENDPOINT), {})
        summary["knee"] = knee(
            data, report_dir / locust_csv.HISTORY, limits, report_dir / "api_metrics.jsonl", test.time_scale
        )
    if before is not None and after is not None:
        summary["health_cache"] = {
            "checks": int(after - before),
            "seconds": round(seconds, 1),
            "per_second": round((after - before) / seconds, 2),
            "ttl": ttl,
        }
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    line, before_run = loadreport.publish(root, summary, report_dir)
    return LoadResult(code, report_dir, summary, line, before_run)


def worker_main(profile: str, master: str) -> int:
    """``python -m harness load-worker``: one Locust worker for a master on another machine; it gets
    every option from the master and exits when the master quits."""
    try:
        profiles.read(profile)
        address = parse_address(master, "--master")
    except (HarnessError, profiles.ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(worker_argv(profile, address), env=env, cwd=REPO).returncode


def main(test: LoadTest) -> int:
    try:
        outcome = execute(test)
    except (HarnessError, profiles.ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = outcome.summary
    print(f"load: SLO gate ({summary['slo']['file']}):", file=test.out)
    for line in slo.gate_lines(summary.get("verdicts", []), summary.get("exceptions", [])):
        print(line, file=test.out)
    cache = summary.get("health_cache")
    if cache:
        print(
            f"load: /health ran {cache['checks']} Postgres checks in {cache['seconds']} s "
            f"(cache TTL {cache['ttl'] if cache['ttl'] else 'unknown'} s)",
            file=test.out,
        )
    for text in loadreport.changes(outcome.history_line, outcome.previous):
        print(f"load: against the previous load test of this profile: {text}", file=test.out)
    root = outcome.report_dir.parent
    print(
        f"load: {'passed' if outcome.exit_code == 0 else 'FAILED'} (exit {outcome.exit_code}); "
        f"report {outcome.report_dir / 'report.html'}; summary {outcome.report_dir / 'summary.md'}; "
        f"index {root / loadreport.INDEX}",
        file=test.out,
        flush=True,
    )
    return outcome.exit_code
