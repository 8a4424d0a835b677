"""A bounded background writer through ``POST /runs``, and the check that nothing it was told was
written is missing from Postgres or MLflow."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psycopg

from harness.stack.stack import Stack


@dataclass
class WriteResult:
    t: float
    status: int | None
    run_id: str | None = None
    detail: str | None = None
    error: str | None = None


@dataclass
class Writer:
    """Writes through POST /runs until stopped; bounded in requests and time."""

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

    def _loop(self) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() - self.started > self.max_duration:
                    return
                t = time.monotonic() - self.started
                try:
                    r = client.post(
                        f"{self.api_url}/runs",
                        json={
                            "experiment": self.experiment,
                            "name": f"w{i}",
                            "params": {"i": str(i)},
                            "metrics": {"i": float(i)},
                        },
                    )
                    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                    self.results.append(WriteResult(t, r.status_code, body.get("id"), body.get("detail")))
                except (httpx.HTTPError, ValueError) as exc:
                    self.results.append(WriteResult(t, None, error=type(exc).__name__))
                self._stop.wait(self.interval)

    @property
    def acknowledged(self) -> list[WriteResult]:
        return [r for r in self.results if r.status is not None and 200 <= r.status < 300]

    @property
    def clear_failures(self) -> list[WriteResult]:
        return [r for r in self.results if r.status == 503 and r.detail]

    @property
    def unclear_failures(self) -> list[WriteResult]:
        ok = {id(r) for r in self.acknowledged + self.clear_failures}
        return [r for r in self.results if id(r) not in ok]


def missing_writes(stack: Stack, writes: list[WriteResult]) -> list[str]:
    """Acknowledged writes absent from Postgres or MLflow (checked directly, not through the api)."""
    missing = []
    ids = [w.run_id for w in writes]
    with psycopg.connect(stack.dsn("api")) as conn:
        rows: dict[str, str] = dict(
            conn.execute("SELECT id::text, mlflow_run_id FROM api_runs WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()
        )
    with httpx.Client(timeout=10) as client:
        for rid in ids:
            if rid not in rows:
                missing.append(f"{rid}: no row in Postgres")
                continue
            r = client.get(f"{stack.url('mlflow')}/api/2.0/mlflow/runs/get", params={"run_id": rows[rid]})
            if r.status_code != 200 or r.json()["run"]["info"].get("lifecycle_stage") != "active":
                missing.append(f"{rid}: MLflow run {rows[rid]} answered {r.status_code}")
    return missing
