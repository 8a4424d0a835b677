"""Benchmark: what the exactly-once write path costs. ``POST /runs`` with an Idempotency-Key (the
api's intent row, its claim, MLflow's create, log-batch and update, the row completed) beside the
same create, log-batch and update sent to MLflow directly, on one stack, in the same run, with the
same number of concurrent writers; after a warm-up of each, the legs alternate (MLflow, api,
MLflow, api), so drift shows and averages out.

    .venv/bin/python bench/write_path.py [--concurrency 8] [--seconds 15] [--mlflow-workers 2]

Prints writes/s and p95 of each leg, and the api's throughput as a share of MLflow's (the means of
their legs). Not a test: figures depend on the machine; docs/measured.md records them."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closed_loop import closed_loop, percentile_ms  # noqa: E402

from harness.session import Session  # noqa: E402
from harness.stack.config import StackConfig  # noqa: E402
from harness.stack.runtime.local import LocalRuntime  # noqa: E402
from harness.stack.stack import Stack  # noqa: E402

API = "/api/2.0/mlflow"
PARAMS, METRICS = {"lr": "0.01", "epochs": "3"}, {"loss": 0.25}
ERRORS = (httpx.HTTPError, KeyError, ValueError)
LEGS = ("mlflow", "api", "mlflow", "api")  # alternating after a warm-up, so drift shows and averages out


async def mlflow_write(client: httpx.AsyncClient, exp_id: str) -> None:
    """The three MLflow calls of a write: create, log-batch, update."""
    now = int(time.time() * 1000)
    run = await client.post(f"{API}/runs/create", json={"experiment_id": exp_id, "start_time": now})
    rid = run.raise_for_status().json()["run"]["info"]["run_id"]
    batch = {
        "run_id": rid,
        "params": [{"key": k, "value": v} for k, v in PARAMS.items()],
        "metrics": [{"key": k, "value": v, "timestamp": now, "step": 0} for k, v in METRICS.items()],
    }
    (await client.post(f"{API}/runs/log-batch", json=batch)).raise_for_status()
    update = {"run_id": rid, "status": "FINISHED", "end_time": now}
    (await client.post(f"{API}/runs/update", json=update)).raise_for_status()


async def api_write(client: httpx.AsyncClient, experiment: str) -> None:
    body = {"experiment": experiment, "params": PARAMS, "metrics": METRICS}
    r = await client.post("/runs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    if r.status_code != 201:
        raise ValueError(f"POST /runs answered {r.status_code}: {r.text[:200]}")


async def leg(base: str, op: str, concurrency: int, seconds: float) -> dict:
    experiment = f"bench-{uuid.uuid4().hex[:8]}"
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        if op == "mlflow":
            made = await client.post(f"{API}/experiments/create", json={"name": experiment})
            exp_id = made.raise_for_status().json()["experiment_id"]
            latencies, errors = await closed_loop(lambda: mlflow_write(client, exp_id), concurrency, seconds, ERRORS)
        else:
            latencies, errors = await closed_loop(lambda: api_write(client, experiment), concurrency, seconds, ERRORS)
    return {
        "leg": op,
        "writes_per_s": round(len(latencies) / seconds, 1),
        "p95_ms": round(percentile_ms(latencies, 0.95)),
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--mlflow-workers", type=int, default=2)
    args = ap.parse_args()
    session = Session()
    try:
        with Stack(LocalRuntime(session), StackConfig(mlflow_workers=args.mlflow_workers)) as stack:
            urls = {"mlflow": stack.url("mlflow"), "api": stack.url("api")}
            for op in ("mlflow", "api"):  # warm both up: first requests pay for imports and caches
                asyncio.run(leg(urls[op], op, args.concurrency, 3.0))
            rows = [asyncio.run(leg(urls[op], op, args.concurrency, args.seconds)) for op in LEGS]
    finally:
        session.close()
    mean = {op: sum(r["writes_per_s"] for r in rows if r["leg"] == op) / LEGS.count(op) for op in set(LEGS)}
    share = mean["api"] / mean["mlflow"] if mean["mlflow"] else float("nan")
    print(
        f"\n{time.strftime('%Y-%m-%d')}: one write = MLflow's create + log-batch + update, direct or through "
        f"POST /runs with an Idempotency-Key; {args.concurrency} concurrent writers, {args.seconds:.0f} s per "
        f"leg, MLflow with {args.mlflow_workers} workers, local runtime, {os.cpu_count()} cores\n"
    )
    print("| leg | writes/s | p95 ms | errors |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['leg']} | {r['writes_per_s']} | {r['p95_ms']} | {r['errors']} |")
    print(f"\nthe api's throughput is {share:.2f} x MLflow's (the means of their legs)")
    print(json.dumps({"rows": rows, "share": round(share, 3)}))


if __name__ == "__main__":
    main()
