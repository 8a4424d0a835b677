"""A bounded background writer through ``POST /runs``, and the check that nothing it was told was
written is missing from Postgres or MLflow."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import psycopg


class Stores(Protocol):
    """Where ``exactly_once`` reads what was written: a stack, or a rehearsed fleet."""

    def url(self, name: str) -> str: ...

    def dsn(self, database: str) -> str: ...


@dataclass
class WriteResult:
    t: float
    status: int | None
    run_id: str | None = None
    detail: str | None = None
    error: str | None = None
    key: str = ""  # the write's Idempotency-Key
    retries: int = 0  # how many times ``settle`` sent it again
    settled: WriteResult | None = None  # the last retry's answer
    answers: list[str] = field(default_factory=list)  # each retry's status and detail, in order
    retry_after: float | None = None  # the answer's Retry-After, seconds
    ended: float = 0.0  # when the answer (or the error) came, seconds on the same clock as ``t``
    client: int = 0  # which of several concurrent clients sent it (the nemesis)
    mlflow_run_id: str | None = None  # the MLflow run a 2xx answer named

    @property
    def acknowledged(self) -> bool:
        """The first attempt was answered 2xx."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def recorded_id(self) -> str | None:
        """The run's id, from the first attempt or from the retry that got a 2xx."""
        if self.acknowledged:
            return self.run_id
        if self.settled is not None and self.settled.acknowledged:
            return self.settled.run_id
        return None


@dataclass
class Writer:
    """Writes through POST /runs until stopped; bounded in requests and time. Every write carries
    an Idempotency-Key, so one that failed can be sent again (``settle``) and must then be
    recorded exactly once (``exactly_once``)."""

    api_url: str
    interval: float = 0.05
    max_requests: int = 5000
    max_duration: float = 300.0
    results: list[WriteResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self.experiment = f"nodataloss-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Writer:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def body(self, i: int) -> dict:
        return {"experiment": self.experiment, "name": f"w{i}", "params": {"i": str(i)}, "metrics": {"i": float(i)}}

    def _send(self, client: httpx.Client, i: int, key: str) -> WriteResult:
        return send_write(client, self.api_url, self.body(i), key, self.started)

    def _loop(self) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() - self.started > self.max_duration:
                    return
                self.results.append(self._send(client, i, f"{self.experiment}-{i}"))
                self._stop.wait(self.interval)

    def settle(self, timeout: float = 60.0, interval: float = 0.5, parallel: int = 8) -> list[WriteResult]:
        """Every write that was not acknowledged sent again until recorded (``settle``)."""
        again = lambda client, r: self._send(client, int(r.key.rsplit("-", 1)[1]), r.key)  # noqa: E731
        return settle(self.results, again, timeout, interval, parallel)

    @property
    def acknowledged(self) -> list[WriteResult]:
        return [r for r in self.results if r.acknowledged]

    @property
    def retried(self) -> list[WriteResult]:
        return [r for r in self.results if r.retries]

    @property
    def clear_failures(self) -> list[WriteResult]:
        """Failures that said what happened: a 503 with its reason, a 409 while a retry was at work."""
        return [r for r in self.results if r.status in (503, 409) and r.detail]

    @property
    def unclear_failures(self) -> list[WriteResult]:
        ok = {id(r) for r in self.acknowledged + self.clear_failures}
        return [r for r in self.results if id(r) not in ok]


def send_write(client: httpx.Client, api_url: str, body: dict, key: str, started: float) -> WriteResult:
    """One ``POST /runs`` with ``key``; its answer (or the transport error) as a ``WriteResult``
    stamped with seconds since ``started``."""
    t = time.monotonic() - started
    try:
        r = client.post(f"{api_url}/runs", json=body, headers={"Idempotency-Key": key})
        answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        after = r.headers.get("retry-after", "")
        return WriteResult(
            t,
            r.status_code,
            answer.get("id"),
            answer.get("detail"),
            key=key,
            retry_after=float(after) if after.isdigit() else None,
            ended=time.monotonic() - started,
            mlflow_run_id=answer.get("mlflow_run_id"),
        )
    except (httpx.HTTPError, ValueError) as exc:
        return WriteResult(t, None, error=type(exc).__name__, key=key, ended=time.monotonic() - started)


def settle(
    results: list[WriteResult],
    send: Callable[[httpx.Client, WriteResult], WriteResult],
    timeout: float = 60.0,
    interval: float = 0.5,
    parallel: int = 8,
    longest: float = 300.0,
) -> list[WriteResult]:
    """Send every write of ``results`` that was not acknowledged again, with its key, until each
    is recorded (or ``timeout`` passes): as clients that retry their 503s would, ``parallel`` at a
    time, each when its last answer's Retry-After says (``interval`` at least). A write told to
    come back later (a key held while an earlier create may still land) extends the time to that
    long and 5 s more, at most ``longest`` seconds in all. Every write due is sent in each round,
    so none waits for another's turn to end (a write per worker until recorded let those queued
    behind held keys run out of time unsent). Returns those still not recorded."""
    started = time.monotonic()
    failed = [r for r in list(results) if r.recorded_id is None]
    deadline = started + timeout
    due_at = {id(r): started for r in failed}
    extending = threading.Lock()

    def retry(result: WriteResult) -> None:
        nonlocal deadline
        result.settled = send(client, result)
        result.retries += 1
        result.answers.append(f"{result.settled.status or result.settled.error} {result.settled.detail or ''}")
        if result.recorded_id is not None:
            return
        told = result.settled.retry_after
        now = time.monotonic()
        due_at[id(result)] = now + max(interval, told or 0.0)
        if told is not None:
            with extending:
                deadline = min(max(deadline, now + told + 5.0), started + longest)

    limits = httpx.Limits(max_connections=parallel)
    with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(parallel) as pool:
        while True:
            now = time.monotonic()
            left = [r for r in failed if r.recorded_id is None]
            if not left or now >= deadline:
                break
            due = [r for r in left if due_at[id(r)] <= now]
            if due:
                list(pool.map(retry, due))
            else:  # the clients' pause until the next write is due, not a wait for a state
                time.sleep(min(min(due_at[id(r)] for r in left), deadline) - now)
    return [r for r in failed if r.recorded_id is None]


def exactly_once(stack: Stores, writer: Writer) -> list[str]:
    """Every write of ``writer`` recorded once, checked in the stores themselves, not through the
    api: one complete row per key, whose id the api answered, and one active, finished MLflow run
    tagged with that id, holding the write's param; nothing else in the writer's experiment."""
    problems = []
    keys = {r.key: r for r in writer.results}
    with psycopg.connect(stack.dsn("api")) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, id::text, state, mlflow_run_id FROM api_runs WHERE experiment = %s",
            (writer.experiment,),
        ).fetchall()
    by_key: dict[str, list[tuple]] = {}
    for key, *rest in rows:
        by_key.setdefault(key, []).append(tuple(rest))
    with httpx.Client(timeout=10) as client:
        runs = tagged_runs(client, stack.url("mlflow"), writer.experiment)
    for key, result in keys.items():
        found = by_key.get(key, [])
        if result.recorded_id is None:
            continue  # never recorded: ``settle`` said so; its row may stay pending
        if len(found) != 1:
            problems.append(f"{key}: {len(found)} rows in Postgres, expected 1")
            continue
        rid, state, mlflow_run_id = found[0]
        if rid != result.recorded_id or state != "complete":
            problems.append(f"{key}: row {rid} ({state}); the api answered {result.recorded_id}")
            continue
        mine = runs.get(rid, [])
        if len(mine) != 1 or mine[0]["info"]["run_id"] != mlflow_run_id:
            problems.append(f"{key}: {len(mine)} MLflow runs tagged {rid}, expected 1 ({mlflow_run_id})")
            continue
        info, params = mine[0]["info"], {p["key"]: p["value"] for p in mine[0]["data"].get("params", [])}
        if info.get("status") != "FINISHED" or params.get("i") != key.rsplit("-", 1)[1]:
            problems.append(f"{key}: MLflow run {mlflow_run_id} is {info.get('status')} with params {params}")
    extra = set(runs) - {found[0][0] for key, found in by_key.items() if found}
    if extra:
        problems.append(f"MLflow runs tagged with no row of the writer: {sorted(extra)[:5]}")
    return problems


def tagged_runs(client: httpx.Client, mlflow: str, experiment: str) -> dict[str, list[dict]]:
    """The experiment's active runs, by the api's row id tag (api_run_id)."""
    got = client.get(f"{mlflow}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment})
    if got.status_code == 404:
        return {}  # no experiment: no run was made in it
    got.raise_for_status()  # MLflow failing must not read as "no runs": the checks above it would pass
    experiment_id = got.json()["experiment"]["experiment_id"]
    out: dict[str, list[dict]] = {}
    token = None
    while True:
        query = {"experiment_ids": [experiment_id], "max_results": 1000, "run_view_type": "ACTIVE_ONLY"}
        r = client.post(f"{mlflow}/api/2.0/mlflow/runs/search", json=query | ({"page_token": token} if token else {}))
        r.raise_for_status()
        body = r.json()
        for run in body.get("runs", []):
            tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
            out.setdefault(tags.get("api_run_id", "(untagged)"), []).append(run)
        token = body.get("next_page_token")
        if not token:
            return out
