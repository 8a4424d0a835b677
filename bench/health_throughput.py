"""Benchmark: /health and /health/live beside a bare FastAPI endpoint on the same server, and
Postgres checks per second under N concurrent /health callers.

    .venv/bin/python bench/health_throughput.py [--concurrency 50] [--seconds 10] [--rounds 3] [--threads 1]
                                                [--callers 1,10,50,200]

Starts a local stack (postgres, mlflow, api) and bench/bare_app.py (the same uvicorn settings as
the api), drives each endpoint with N concurrent keep-alive clients for a fixed time (bounded;
wrk when installed, else an httpx client), reads the api's probe counter from /metrics, and
prints two tables. Not a test: figures depend on the machine; docs/measured.md records them."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closed_loop import closed_loop, percentile_ms  # noqa: E402

from harness.load.live import dependency_checks  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.process import ChildProcess, python_env  # noqa: E402
from harness.session import Session  # noqa: E402
from harness.stack.runtime.local import LocalRuntime  # noqa: E402
from harness.stack.stack import Stack  # noqa: E402
from harness.wait import wait_until  # noqa: E402


async def drive(url: str, concurrency: int, seconds: float) -> tuple[int, float, float, int]:
    """(requests, p50 ms, p99 ms, errors) with an httpx client, where wrk is not installed."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def get() -> None:
            (await client.get(url)).raise_for_status()

        latencies, errors = await closed_loop(get, concurrency, seconds, (httpx.HTTPError,))
    return len(latencies) + errors, percentile_ms(latencies, 0.5), percentile_ms(latencies, 0.99), errors


THREADS = 1  # wrk threads: one leaves the other core to the single-threaded server (--threads)


def drive_wrk(url: str, concurrency: int, seconds: float) -> tuple[int, float, float, int]:
    """(requests, p50 ms, p99 ms, errors) from wrk --latency."""
    argv = ["wrk", f"-t{min(THREADS, concurrency)}", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return total, ms("50"), ms("99"), errors


def measure(url: str, concurrency: int, seconds: float) -> tuple[int, float, float, int]:
    """(requests, p50 ms, p99 ms, errors), with wrk when installed."""
    if shutil.which("wrk"):
        return drive_wrk(url, concurrency, seconds)
    return asyncio.run(drive(url, concurrency, seconds))


def bare_server(session: Session) -> tuple[ChildProcess, str]:
    port = free_port()
    proc = ChildProcess(
        "bare",
        [sys.executable, str(Path(__file__).with_name("bare_app.py")), str(port)],
        env=python_env(session.mkdtemp("bare-tmp")),
        cwd=session.mkdtemp("bare"),
        url=f"http://127.0.0.1:{port}",
        session=session,
        ports=(port,),
    )
    proc.start()
    wait_until(
        lambda: httpx.get(f"{proc.url}/bare", timeout=1).status_code,
        until=lambda c: c == 200,
        timeout=30,
        what="the bare FastAPI app to answer",
    )
    return proc, proc.url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per endpoint; the median is shown")
    ap.add_argument("--callers", default="1,10,50,200", help="concurrent /health callers, comma-separated")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (1: on 2 cores, a second wrk thread takes CPU from the one-worker server)",
    )
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    callers = [int(c) for c in args.callers.split(",")]
    session = Session()
    try:
        with Stack(LocalRuntime(session)) as stack:
            api = stack.url("api")
            ttl = float(dict(stack.config.api_env)["API_HEALTH_CACHE_TTL"])
            bare, bare_url = bare_server(session)
            client = "wrk" if shutil.which("wrk") else "a Python httpx client"
            endpoints = (
                ("bare FastAPI `/bare`", f"{bare_url}/bare"),
                ("api `/health/live`", f"{api}/health/live"),
                ("api `/health`", f"{api}/health"),
            )
            # rounds interleave the endpoints, so a slow spell of the machine hits each alike
            runs: dict[str, list[tuple[int, float, float, int]]] = {label: [] for label, _ in endpoints}
            for _ in range(args.rounds):
                for label, url in endpoints:
                    runs[label].append(measure(url, args.concurrency, args.seconds))
            rows = []
            for label, _ in endpoints:
                n, p50, p99, _e = sorted(runs[label])[len(runs[label]) // 2]  # the median round by requests
                rows.append((label, n / args.seconds, p50, p99, sum(r[3] for r in runs[label])))
            bare.close(5)
            check_rows = []
            for n_callers in callers:
                before = dependency_checks(api)
                n, p50, p99, errors = measure(f"{api}/health", n_callers, args.seconds)
                checks_per_s = (dependency_checks(api) - before) / args.seconds
                check_rows.append((n_callers, n / args.seconds, p99, errors, checks_per_s))
            print(
                f"\n{time.strftime('%Y-%m-%d')}: {args.concurrency} concurrent keep-alive clients, "
                f"{args.seconds:.0f} s per endpoint and round, median of {args.rounds} interleaved rounds, one "
                f"uvicorn worker each, {client} ({args.threads} thread) on the same machine "
                f"({os.cpu_count()} cores)\n"
            )
            print("| endpoint | req/s | ratio | p50 ms | p99 ms | errors |")
            print("|---|---|---|---|---|---|")
            reference = {0: None, 1: 0, 2: 1}  # /health/live against bare, /health against /health/live
            for i, (label, rps, p50, p99, errors) in enumerate(rows):
                ref = reference[i]
                ratio = "" if ref is None else f"{rps / rows[ref][1]:.2f} x {rows[ref][0].split()[-1]}"
                print(f"| {label} | {rps:.0f} | {ratio} | {p50:.1f} | {p99:.1f} | {errors} |")
            print(f"\nPostgres checks under concurrent /health callers (health cache TTL {ttl:g} s)\n")
            print("| callers | /health req/s | p99 ms | errors | Postgres checks/s |")
            print("|---|---|---|---|---|")
            for n_callers, rps, p99, errors, pps in check_rows:
                print(f"| {n_callers} | {rps:.0f} | {p99:.1f} | {errors} | {pps:.2f} |")
    finally:
        session.close()


if __name__ == "__main__":
    main()
