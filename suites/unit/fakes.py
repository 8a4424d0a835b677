"""In-memory stand-ins for the api's dependencies: the Store's contract kept in a dict, and enough
of MLflow's REST API (an httpx MockTransport handler) for the runs endpoints."""

import dataclasses
import json
import re
import uuid

import httpx

from services.api.store import StoreUnavailable

PASSWORD = "hunter22-secret"


class FakeStore:
    def __init__(self):
        self.rows = {}
        self.down = False
        self.pings = 0

    async def open(self): ...
    async def close(self): ...

    async def ping(self):
        self.pings += 1
        if self.down:
            raise ConnectionRefusedError(f"connection to postgresql://app:{PASSWORD}@db/api refused")

    # the real Store's contract (begin, claim, release, complete, get), kept in memory; the real
    # one is tested against Postgres in suites/integration/test_writes.py
    claimed: set = set()
    lose_complete_answer = False  # the update commits, its answer is lost

    async def begin(self, row, lease):
        if self.down:
            raise StoreUnavailable("insert failed: OperationalError")
        held = next(
            (r for r in self.rows.values() if row.idempotency_key and r.idempotency_key == row.idempotency_key), None
        )
        if held is not None:
            return held, False
        self.rows[row.id] = row
        self.claimed = self.claimed | {row.id}
        return row, True

    async def claim(self, run_id, lease):
        if run_id in self.claimed or not self.rows[run_id].pending:
            return False
        self.claimed = self.claimed | {run_id}
        return True

    async def release(self, run_id):
        self.claimed = self.claimed - {run_id}

    async def complete(self, run_id, experiment_id, mlflow_run_id):
        if self.down:
            raise StoreUnavailable("update failed: OperationalError")
        row = dataclasses.replace(
            self.rows[run_id], state="complete", experiment_id=experiment_id, mlflow_run_id=mlflow_run_id
        )
        self.rows[run_id] = row
        self.claimed = self.claimed - {run_id}
        if self.lose_complete_answer:
            self.lose_complete_answer = False
            raise StoreUnavailable("update failed: OperationalError")
        return row

    async def get(self, run_id):
        return self.rows.get(run_id)

    def complete_rows(self):
        return [r for r in self.rows.values() if not r.pending]


class FakeMlflow:
    """Enough of MLflow's REST API for the runs endpoints."""

    def __init__(self):
        self.runs = {}
        self.deleted = []
        self.status = 200
        self.lose_create_answer = False  # the run is created, the answer lost

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/mlflow")
        if self.status != 200:
            return httpx.Response(self.status, json={"error_code": "TEMPORARILY_UNAVAILABLE"})
        if path == "/health":
            return httpx.Response(200, text="OK")
        if path.endswith("/experiments/search"):
            return httpx.Response(200, json={"experiments": []})
        if path.endswith("/experiments/get-by-name"):
            return httpx.Response(200, json={"experiment": {"experiment_id": "1"}})
        body = json.loads(request.content or b"{}")
        if path.endswith("/runs/create"):
            rid = uuid.uuid4().hex
            tags = {t["key"]: t["value"] for t in body.get("tags", [])}
            self.runs[rid] = {
                "info": {"run_id": rid, "status": "RUNNING"},
                "data": {"params": [], "metrics": [], "tags": body.get("tags", [])},
                "tags": tags,
            }
            if self.lose_create_answer:
                self.lose_create_answer = False
                return httpx.Response(503, json={"error_code": "TEMPORARILY_UNAVAILABLE"})
            return httpx.Response(200, json={"run": self.runs[rid]})
        if path.endswith("/runs/search"):
            key, value = re.fullmatch(r"tags\.(\w+) = '([^']*)'", body["filter"]).groups()
            found = [
                r for r in self.runs.values() if r["tags"].get(key) == value and r["info"]["run_id"] not in self.deleted
            ]
            return httpx.Response(200, json={"runs": found[:1]} if found else {})
        if path.endswith("/runs/log-batch"):
            data = self.runs[body["run_id"]]["data"]
            data["params"] = data["params"] + body["params"]
            data["metrics"] = data["metrics"] + body["metrics"]
            return httpx.Response(200, json={})
        if path.endswith("/runs/update"):
            self.runs[body["run_id"]]["info"]["status"] = body["status"]
            return httpx.Response(200, json={})
        if path.endswith("/runs/delete"):
            self.deleted.append(body["run_id"])
            return httpx.Response(200, json={})
        if path.endswith("/runs/get"):
            return httpx.Response(200, json={"run": self.runs[request.url.params["run_id"]]})
        return httpx.Response(404, json={"error_code": "ENDPOINT_NOT_FOUND"})
