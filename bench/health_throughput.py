"""Benchmark: /health next to /health/live on the same api, and Postgres probes per second.

    .venv/bin/python bench/health_throughput.py [--concurrency 50] [--seconds 10]

Starts a local stack (postgres, mlflow, api), drives each endpoint with N concurrent
keep-alive clients for a fixed time (bounded), reads the api's probe counter from /metrics,
and prints a table. Not a test: figures depend on the machine; the README records them."""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.runs import Run  # noqa: E402
from harness.runtime.local import LocalRuntime  # noqa: E402
from harness.stack import Stack  # noqa: E402


async def drive(url: str, concurrency: int, seconds: float) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await client.get(url)
                    if r.status_code >= 500:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, errors


def drive_wrk(url: str, concurrency: int, seconds: float) -> tuple[int, float, float, int]:
    """(requests, p50 ms, p99 ms, errors) from wrk --latency."""
    out = subprocess.run(["wrk", "-t2", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return total, ms("50"), ms("99"), errors


def probes(api: str) -> float:
    text = httpx.get(f"{api}/metrics").text
    return sum(float(v) for v in re.findall(r'api_health_probes_total\{component="postgres",[^}]*\} ([0-9.e+]+)', text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    run = Run()
    try:
        with Stack(LocalRuntime(run)) as stack:
            api = stack.url("api")
            ttl = float(dict(stack.config.api_env)["API_HEALTH_CACHE_TTL"])
            rows = []
            client = "wrk -t2" if shutil.which("wrk") else "Python httpx client"
            for path in ("/health/live", "/health"):
                before = probes(api)
                if shutil.which("wrk"):
                    n, p50, p99, errors = drive_wrk(api + path, args.concurrency, args.seconds)
                else:
                    n, lat, errors = asyncio.run(drive(api + path, args.concurrency, args.seconds))
                    lat.sort()
                    p50, p99 = statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
                probe_count = probes(api) - before
                rows.append((path, n / args.seconds, p50, p99, errors, probe_count / args.seconds))
            print(f"\nconcurrency {args.concurrency}, {args.seconds:.0f} s per endpoint, health cache TTL {ttl} s, "
                  f"one uvicorn worker, {client} on the same 2-core machine\n")
            print("| endpoint | req/s | p50 ms | p99 ms | errors | Postgres probes/s |")
            print("|---|---|---|---|---|---|")
            for path, rps, p50, p99, errors, pps in rows:
                print(f"| `{path}` | {rps:.0f} | {p50:.1f} | {p99:.1f} | {errors} | {pps:.2f} |")
    finally:
        run.close()


if __name__ == "__main__":
    main()
