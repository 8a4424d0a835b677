"""Benchmark: MLflow's capacity per uvicorn worker, for sizing its tasks: the api's write sequence
(experiment by name, create a run, log its params and metrics, finish it) straight against MLflow,
with N concurrent clients, for 1 and 2 workers in the same run, and the server's resident memory.

    .venv/bin/python bench/mlflow_capacity.py [--workers 1 2] [--concurrency 4 8 16] [--seconds 10]

Starts Postgres and MLflow on the local runtime per worker count (job execution off, as the
platform runs it). A "write" is the four calls POST /runs makes. Memory: the MLflow process tree's
resident set after the load. Not a test: figures depend on the machine; docs/measured.md records them."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closed_loop import closed_loop, percentile_ms  # noqa: E402

from harness.session import Session  # noqa: E402
from harness.stack.config import StackConfig  # noqa: E402
from harness.stack.runtime.local import LocalRuntime  # noqa: E402
from harness.stack.stack import Stack  # noqa: E402

API = "/api/2.0/mlflow"


async def write(client: httpx.AsyncClient, experiment: str) -> None:
    r = await client.get(f"{API}/experiments/get-by-name", params={"experiment_name": experiment})
    exp_id = r.json()["experiment"]["experiment_id"]
    run = (
        await client.post(f"{API}/runs/create", json={"experiment_id": exp_id, "start_time": int(time.time() * 1000)})
    ).json()
    rid = run["run"]["info"]["run_id"]
    (
        await client.post(
            f"{API}/runs/log-batch",
            json={
                "run_id": rid,
                "params": [{"key": "k", "value": "v"}],
                "metrics": [{"key": "m", "value": 1.0, "step": 0, "timestamp": int(time.time() * 1000)}],
            },
        )
    ).raise_for_status()
    (await client.post(f"{API}/runs/update", json={"run_id": rid, "status": "FINISHED"})).raise_for_status()


async def drive(base: str, concurrency: int, seconds: float) -> tuple[float, float, int]:
    experiment = f"capacity-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        (await client.post(f"{API}/experiments/create", json={"name": experiment})).raise_for_status()
        latencies, errors = await closed_loop(
            lambda: write(client, experiment), concurrency, seconds, (httpx.HTTPError, KeyError, ValueError)
        )
    return len(latencies) / seconds, percentile_ms(latencies, 0.95), errors


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    rows = []
    for workers in args.workers:
        session = Session()
        try:
            with Stack(LocalRuntime(session), StackConfig(mlflow_workers=workers)) as stack:
                base = stack.url("mlflow")
                pid = int(stack.services["mlflow"].ident)
                for n in args.concurrency:
                    wps, p95, errors = asyncio.run(drive(base, n, args.seconds))
                    rows.append((workers, n, wps, p95, errors, rss_mb(pid)))
        finally:
            session.close()
    print(
        f"\n{time.strftime('%Y-%m-%d')}: MLflow (job execution off) on the local runtime, the api's write "
        f"sequence (4 calls), {args.seconds:.0f} s per row, client and server on the same machine "
        f"({os.cpu_count()} cores)\n"
    )
    print("| workers | concurrent writers | writes/s | p95 ms | errors | MLflow RSS MB |")
    print("|---|---|---|---|---|---|")
    for workers, n, wps, p95, errors, rss in rows:
        print(f"| {workers} | {n} | {wps:.1f} | {p95:.0f} | {errors} | {rss:.0f} |")
    best = {w: max(r[2] for r in rows if r[0] == w) for w in args.workers}
    print("\nbest writes/s per worker count: " + ", ".join(f"{w}: {v:.1f}" for w, v in best.items()))


if __name__ == "__main__":
    main()
