"""In-memory stand-ins for the api's dependencies: the Store's contract kept in a dict, and enough
of MLflow's REST API (an httpx MockTransport handler) for the runs endpoints."""

import asyncio
import dataclasses
import json
import re
import time
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

    # the real Store's contract (begin, claim, held_for, release, complete, get), kept in memory;
    # the real one is tested against Postgres in suites/integration/test_writes.py and test_claims.py
    lose_complete_answer = False  # the update commits, its answer is lost
    holders: dict = {}  # row id -> (owner, lease end on the monotonic clock)
    STRANGER = uuid.UUID(int=0)

    @property
    def claimed(self) -> set:
        """Rows whose lease still runs."""
        return {rid for rid, (_, until) in self.holders.items() if until > time.monotonic()}

    @claimed.setter
    def claimed(self, ids) -> None:
        """As if another request held each of ``ids`` for an hour."""
        self.holders = {rid: (self.STRANGER, time.monotonic() + 3600) for rid in ids}

    def expire(self) -> None:
        """As if every lease had run out."""
        self.holders = {rid: (owner, 0.0) for rid, (owner, _) in self.holders.items()}

    async def begin(self, row, lease, owner):
        if self.down:
            raise StoreUnavailable("insert failed: OperationalError")
        held = next(
            (r for r in self.rows.values() if row.idempotency_key and r.idempotency_key == row.idempotency_key), None
        )
        if held is not None:
            return held, False
        self.rows[row.id] = row
        self.holders = {**self.holders, row.id: (owner, time.monotonic() + lease)}
        return row, True

    async def claim(self, run_id, lease, owner):
        if run_id in self.claimed or not self.rows[run_id].pending:
            return False
        self.holders = {**self.holders, run_id: (owner, time.monotonic() + lease)}
        return True

    async def held_for(self, run_id):
        _, until = self.holders.get(run_id, (None, 0.0))
        return max(0.0, until - time.monotonic())

    async def release(self, run_id, owner):
        if self.holders.get(run_id, (None,))[0] == owner and self.rows[run_id].pending:
            self.holders = {k: v for k, v in self.holders.items() if k != run_id}

    async def complete(self, run_id, experiment_id, mlflow_run_id, owner):
        if self.down:
            raise StoreUnavailable("update failed: OperationalError")
        if self.holders.get(run_id, (None,))[0] != owner or not self.rows[run_id].pending:
            return None
        row = dataclasses.replace(
            self.rows[run_id], state="complete", experiment_id=experiment_id, mlflow_run_id=mlflow_run_id
        )
        self.rows[run_id] = row
        self.holders = {k: v for k, v in self.holders.items() if k != run_id}
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
        self.late_create: float | None = None  # the next create takes effect this late, its caller never answered
        self.hide_from_search: set[str] = set()  # runs a search does not see yet
        self._holds: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}

    def hold(self, suffix: str) -> tuple[asyncio.Event, asyncio.Event]:
        """The next call whose path ends with ``suffix`` waits: the first event is set when it
        arrives, the second lets it go on."""
        self._holds[suffix] = (asyncio.Event(), asyncio.Event())
        return self._holds[suffix]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/mlflow")
        for suffix in [s for s in self._holds if path.endswith(s)]:
            arrived, go_on = self._holds.pop(suffix)
            arrived.set()
            await go_on.wait()
        if path.endswith("/runs/create") and self.late_create is not None and self.status == 200:
            delay, self.late_create = self.late_create, None
            asyncio.get_running_loop().call_later(delay, self._answer, request)
            await asyncio.Event().wait()  # the caller's timeout ends the wait; the create goes on
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
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
                r
                for r in self.runs.values()
                if r["tags"].get(key) == value and r["info"]["run_id"] not in {*self.deleted, *self.hide_from_search}
            ]
            return httpx.Response(200, json={"runs": found[: body.get("max_results", 1000)]} if found else {})
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
            self.runs[body["run_id"]]["info"]["lifecycle_stage"] = "deleted"
            return httpx.Response(200, json={})
        if path.endswith("/runs/get"):
            return httpx.Response(200, json={"run": self.runs[request.url.params["run_id"]]})
        return httpx.Response(404, json={"error_code": "ENDPOINT_NOT_FOUND"})
