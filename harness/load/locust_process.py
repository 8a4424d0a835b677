"""The Locust processes of a load test: their command lines (one process, or a master and its
workers), starting them, following the master to its end within a bound, and stopping everything
they left. Locust runs as a subprocess because it monkey-patches gevent into whatever imports it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from harness.errors import ConfigurationError, WaitTimeout
from harness.load import profile as profiles
from harness.load.config import Address, LoadBalancerCheck, LoadTest, parse_address
from harness.load.live import live_figures
from harness.load.locust_csv import HISTORY
from harness.paths import project
from harness.ports import free_port, release
from harness.process import ChildProcess, python_env
from harness.progress import step
from harness.session import Session
from harness.wait import wait_until

STARTUP = 60.0  # seconds for Locust (and its workers) to start and for the last reports to be written
STOP_GRACE = 20.0  # after SIGTERM, for Locust to write its reports
LOOPBACK = Address("127.0.0.1", 0)


def locust_package() -> Path:
    """The folder of ``harness_locust``, the Locust side shipped with the harness (its locustfile,
    users, shape and gate), found without importing it: what Locust loads patches gevent into the
    process that imports it."""
    spec = importlib.util.find_spec("harness_locust")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the package harness_locust importable beside the harness (it ships in the same wheel)",
            "not found",
            "reinstall the harness",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def locust_env(base: dict[str, str]) -> dict[str, str]:
    """``base`` with PYTHONPATH for Locust's processes: the project's own, after the folder that
    holds ``harness_locust`` (and ``harness``) when this interpreter does not already import from
    it (a checkout run without installing; an installed wheel's site-packages must not go ahead of
    the standard library)."""
    shipped = str(locust_package().parent)
    ours = [] if shipped in sys.path else [shipped]
    roots = dict.fromkeys([*ours, *base.get("PYTHONPATH", "").split(os.pathsep)])
    return {**base, "PYTHONPATH": os.pathsep.join(r for r in roots if r)}


def _locust(profile: str) -> list[str]:
    """Locust headless over the harness's locustfile and the project's profile (its shape file)."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        f"{locust_package() / 'locustfile.py'},{profiles.path_of(profile)}",
        "--headless",
        "--loglevel",
        "WARNING",
    ]


def worker_argv(profile: str, master: Address) -> list[str]:
    """One Locust worker of ``profile`` connected to a master: the same files, options come from the master."""
    return _locust(profile) + ["--worker", "--master-host", master.host, "--master-port", str(master.port)]


def locust_argv(
    test: LoadTest,
    report_dir: Path,
    host: str,
    lb: LoadBalancerCheck,
    role: str = "",
    master: Address = LOOPBACK,
) -> list[str]:
    """The command line of one Locust process of ``test``; ``role``: "" (alone), "master" or "worker"."""
    if role == "worker":
        reach = "127.0.0.1" if master.host in ("0.0.0.0", "") else master.host
        return worker_argv(test.profile, Address(reach, master.port))
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
        str(lb.timeout),
        "--lb-matcher",
        lb.matcher,
        "--lb-source",
        lb.source,
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
            master.host,
            "--master-bind-port",
            str(master.port),
            "--expect-workers",
            str(test.workers + test.remote_workers),
            "--expect-workers-max-wait",
            str(int(STARTUP)),
        ]
    return argv


def drive(test: LoadTest, session: Session, report_dir: Path, host: str, lb: LoadBalancerCheck, bound: float) -> int:
    """Start Locust (one process, or a master and its workers), wait for it within ``bound`` seconds,
    and stop everything it started, whatever happens."""
    env = locust_env(python_env(session.mkdtemp("locust")))
    distributed = bool(test.workers or test.remote_workers)
    port = free_port() if distributed and not test.master_bind else 0
    master = parse_address(test.master_bind, "--master-bind") if test.master_bind else Address("127.0.0.1", port)
    procs: list[ChildProcess] = []
    try:
        role = "master" if distributed else ""
        if test.remote_workers:
            print(
                f"load: waiting up to {STARTUP:.0f} s for {test.remote_workers} remote workers: on each machine run "
                f"`python -m harness load-worker --profile {test.profile} --master-host <this host> "
                f"--master-port {master.port}`",
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
        code = _follow(test, main, report_dir, bound)
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


def _follow(test: LoadTest, main: ChildProcess, report_dir: Path, bound: float) -> int:
    """The master's exit code, the live figures on the progress line meanwhile; 2 if it overran ``bound``."""
    planned = bound - STARTUP
    try:
        with step(f"load {test.profile}") as s:

            def show(what: str, elapsed: float, budget: float) -> None:
                s.update(f"of {planned:.0f}s: {live_figures(report_dir / HISTORY) or 'starting'}")

            exited = wait_until(
                main.exit_code,
                until=lambda c: c is not None,
                timeout=bound,
                interval=0.5,
                what=f"Locust to finish profile {test.profile}",
                progress=show,
            )
            assert exited is not None  # what ``until`` waited for
            return exited
    except WaitTimeout:
        print(f"load: Locust ran past {bound:.0f} s; stopping it (reports are still written)", file=test.out)
        main.stop(STOP_GRACE)
        return 2


def run_worker(profile: str, master: Address) -> int:
    """One Locust worker in the foreground, for a master on another machine; its exit code."""
    env = locust_env({**os.environ, "PYTHONPATH": project().pythonpath})
    return subprocess.run(worker_argv(profile, master), env=env, cwd=project().root).returncode
