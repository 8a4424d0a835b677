"""The nemesis' checker: after settle, both stores read directly (not through the api) against
the history of answers. A violation is any of:

- a key answered 2xx with two different run ids (acknowledged twice, differently), or naming an
  MLflow run that is not its row's;
- a write answered something a client cannot act on (not 200, 201, 409 or 503);
- a key not recorded after settle;
- a key without exactly one row, or its row not complete, or not the id the api answered;
- a row whose MLflow run is not the one active run tagged with it, finished, holding the key;
- an active MLflow run in the experiment tagged with no row, or a second one for a row;
- a row of the experiment left pending.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import psycopg

from harness.faults.writer import Stores, WriteResult, tagged_runs

EXPECTED = {200, 201, 409, 503}  # what a write may answer under faults; anything else is a violation


def check(
    stores: Stores,
    experiment: str,
    attempts: list[WriteResult],
    last: Mapping[str, WriteResult],
    unsettled: list[WriteResult],
) -> list[str]:
    problems: list[str] = []
    answered: dict[str, set[str]] = {}
    named: dict[str, set[str]] = {}  # the MLflow run ids the 2xx answers named, per key
    for a in attempts + [r.settled for r in last.values() if r.settled is not None]:
        if a.status is not None and a.status not in EXPECTED:
            problems.append(f"{a.key}: answered {a.status} ({a.detail}) at {a.t:.2f} s: a client cannot act on it")
        if a.acknowledged and a.run_id:
            answered.setdefault(a.key, set()).add(a.run_id)
            named.setdefault(a.key, set()).add(a.mlflow_run_id or "(none)")
    for key, ids in sorted(answered.items()):
        if len(ids) > 1:
            problems.append(f"{key}: acknowledged with {len(ids)} different ids {sorted(ids)}")
    problems += [f"{r.key}: not recorded after settle; its answers {r.answers[-3:]}" for r in unsettled]
    with psycopg.connect(stores.dsn("api")) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, id::text, state, mlflow_run_id FROM api_runs WHERE experiment = %s",
            (experiment,),
        ).fetchall()
    by_key: dict[str, list[tuple]] = {}
    for key, *rest in rows:
        by_key.setdefault(key, []).append(tuple(rest))
    with httpx.Client(timeout=10) as client:
        runs = tagged_runs(client, stores.url("mlflow"), experiment)
    for key in sorted(last):
        found = by_key.get(key, [])
        ids = answered.get(key, set())
        if not ids:
            continue  # never acknowledged: reported above as unsettled
        if len(found) != 1:
            problems.append(f"{key}: {len(found)} rows in Postgres, expected 1")
            continue
        rid, state, mlflow_run_id = found[0]
        if state != "complete" or ids != {rid}:
            problems.append(f"{key}: row {rid} ({state}); the api answered {sorted(ids)}")
            continue
        if named.get(key, set()) != {mlflow_run_id}:
            problems.append(f"{key}: answered MLflow runs {sorted(named.get(key, set()))}, the row has {mlflow_run_id}")
            continue
        mine = runs.get(rid, [])
        if len(mine) != 1 or mine[0]["info"]["run_id"] != mlflow_run_id:
            made = [r["info"]["run_id"] for r in mine]
            problems.append(f"{key}: active MLflow runs tagged {rid}: {made}, expected only {mlflow_run_id}")
            continue
        info, params = mine[0]["info"], {p["key"]: p["value"] for p in mine[0]["data"].get("params", [])}
        if info.get("status") != "FINISHED" or params.get("key") != key:
            problems.append(f"{key}: MLflow run {mlflow_run_id} is {info.get('status')} with params {params}")
    pending = sorted(key for key, found in by_key.items() for _, state, _ in found if state != "complete")
    if pending:
        problems.append(f"rows left pending after settle: {pending[:5]}{' ...' if len(pending) > 5 else ''}")
    extra = set(runs) - {rid for found in by_key.values() for rid, _, _ in found}
    if extra:
        problems.append(f"active MLflow runs tagged with no row: {sorted(extra)[:5]}")
    return problems
