"""A small MLflow REST client with explicit timeouts and a bounded retry.

MLflow's own Python client retries 503s for about four minutes by default; the api
must answer its callers within seconds, so it talks to the REST API itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

from services.api.checks import CheckFailed
from services.common import jsonlog

T = TypeVar("T")
# MLflow starts no call past this (services/mlflow/deadline.py): the api's attempt has given up by then
DEADLINE_HEADER = "X-Request-Deadline"
# MLflow commits nothing of the call past this: the attempt's end plus MLflow's settle time, which the
# claim lease covers
COMMIT_HEADER = "X-Commit-Deadline"
EXPERIMENTS_KEPT = 1024
# the request's own deadline (Unix seconds), set by the runs service: no call is announced to
# MLflow as good for longer than the request that makes it
request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)
TRANSIENT_4XX = {408, 429}  # a timeout or a rate limit (a gateway's): try again, not a refusal
MESSAGE_LIMIT = 200  # characters of MLflow's own message an answer may carry
# what a message quoting the database looks like (SQLAlchemy's "[SQL: ...]", a driver's name, a statement)
_QUOTES_DATABASE = re.compile(r"(?i:\[SQL|\[parameters|psycopg|sqlalchemy)|\b(?:SELECT|INSERT|UPDATE|DELETE)\b")


class MlflowUnavailable(Exception):
    """MLflow could not complete the call (unreachable, timing out, or answering 5xx)."""


class _Transient(MlflowUnavailable):
    """Unavailable in a way a retry may cure (no answer, a 5xx answer)."""


class MlflowNotSent(_Transient):
    """No connection to MLflow was made: the call cannot have taken effect."""


class MlflowRejected(Exception):
    """MLflow answered a definite 4xx: retrying will not help."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"MLflow answered {status} {error_code}: {safe_message(message)}")
        self.status = status
        self.error_code = error_code


class MlflowClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retries: int,
        backoff: float,
        settle_time: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.settle_time = settle_time  # seconds MLflow may commit a call's writes after the attempt ends
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)
        self._experiments: dict[str, str] = {}  # name -> id, as MLflow answered (an id never changes)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _attempts(
        self, attempt: Callable[[], Awaitable[T]], retry_on: tuple[type[Exception], ...], attempts: int
    ) -> T:
        """The one retry loop: ``attempt`` up to ``attempts`` times, the backoff doubling between them;
        an error of another type than ``retry_on`` ends it at once."""
        error: Exception | None = None
        for i in range(attempts):
            if i:
                await asyncio.sleep(self.backoff * 2 ** (i - 1))
            try:
                return await attempt()
            except retry_on as exc:
                error = exc
        assert error is not None
        raise error

    async def _once(self, method: str, path: str, **kw: object) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout):
                # (the caller's keywords are httpx's own: json=, params=)
                ends = min(time.time() + self.timeout, request_deadline.get() or float("inf"))
                headers = {**_traced(), DEADLINE_HEADER: f"{ends:.3f}"}
                if self.settle_time is not None:
                    headers[COMMIT_HEADER] = f"{ends + self.settle_time:.3f}"
                return await self._http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
        except httpx.ConnectError as exc:
            raise MlflowNotSent(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _Transient(f"{method} {path}: no answer within {self.timeout:.2f}s") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def _call_once(self, method: str, path: str, **kw: object) -> dict[str, Any]:
        response = await self._once(method, path, **kw)
        if response.status_code >= 500 or response.status_code in TRANSIENT_4XX:  # failed, not a refusal
            raise _Transient(f"{method} {path}: HTTP {response.status_code} {_error_code(response)}")
        if response.status_code >= 400:
            body = _json(response)
            body = body if isinstance(body, dict) else {}
            if body.get("error_code") == "BAD_REQUEST" and _QUOTES_DATABASE.search(str(body.get("message", ""))):
                # MLflow's session maker answers any database error that is not "operational"
                # BAD_REQUEST with the error's text (mlflow/store/db/utils.py): its database failed,
                # nothing was refused, and the call may or may not have taken effect
                raise _Transient(f"{method} {path}: HTTP 400 BAD_REQUEST from MLflow's database")
            raise MlflowRejected(
                response.status_code, str(body.get("error_code", "")), str(body.get("message", response.text[:200]))
            )
        body = _json(response)
        if not isinstance(body, dict):
            raise MlflowUnavailable(f"{method} {path}: expected a JSON object, got {response.text[:80]!r}")
        return body

    async def call(self, method: str, path: str, *, retry: bool = True, **kw: object) -> dict[str, Any]:
        """One REST call; retries unavailability up to ``retries`` times with doubling backoff."""
        return await self._attempts(
            lambda: self._call_once(method, path, **kw), (_Transient,), self.retries + 1 if retry else 1
        )

    # -- health ----------------------------------------------------------------
    async def ping(self) -> None:
        """/health is shallow (it stays 200 when MLflow's database is gone), so also search."""
        await self._attempts(self._ping_once, (CheckFailed, httpx.HTTPError), self.retries + 1)

    async def _ping_once(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                r = await self._http.get("/health", headers=_traced())
                if r.status_code != 200:
                    raise CheckFailed(f"GET /health answered HTTP {r.status_code}")
                r = await self._http.get(
                    "/api/2.0/mlflow/experiments/search", params={"max_results": 1}, headers=_traced()
                )
        except TimeoutError:
            raise CheckFailed(f"no answer within {self.timeout:.2f}s") from None
        if r.status_code != 200:
            raise CheckFailed(f"experiments search answered HTTP {r.status_code} {_error_code(r)}")
        if not isinstance(_json(r), dict):
            raise CheckFailed(f"experiments search answered non-JSON {r.text[:60]!r}")

    # -- tracking ----------------------------------------------------------------
    async def experiment_id(self, name: str) -> str:
        """The experiment's id: asked of MLflow once per name (at most ``EXPERIMENTS_KEPT`` names
        kept), the experiment created when absent (safe against a concurrent create)."""
        known = self._experiments.get(name)
        if known is None:
            known = await self._experiment_id(name)
            if len(self._experiments) >= EXPERIMENTS_KEPT:
                self._experiments.pop(next(iter(self._experiments)))
            self._experiments[name] = known
        return known

    def forget_experiment(self, name: str) -> None:
        """MLflow no longer knows the id kept for ``name`` (the experiment was deleted)."""
        self._experiments.pop(name, None)

    async def _experiment_id(self, name: str) -> str:
        try:
            body = await self.call("GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
            return str(body["experiment"]["experiment_id"])
        except MlflowRejected as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            body = await self.call("POST", "/api/2.0/mlflow/experiments/create", json={"name": name}, retry=False)
            return str(body["experiment_id"])
        except MlflowRejected as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        body = await self.call("GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
        return str(body["experiment"]["experiment_id"])

    async def create_run(
        self, experiment_id: str, run_name: str, timestamp_ms: int, tags: Mapping[str, str] | None = None
    ) -> str:
        """Create a run; never retried (a lost answer would make two). Any failure but a refusal
        (``MlflowRejected``) or ``MlflowNotSent`` leaves it unknown whether MLflow made the run:
        ``tags`` let ``find_runs`` find it again."""
        body = await self.call(
            "POST",
            "/api/2.0/mlflow/runs/create",
            retry=False,
            json={
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": timestamp_ms,
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
            },
        )
        return str(body["run"]["info"]["run_id"])

    async def log_and_finish(
        self, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float], timestamp_ms: int
    ) -> None:
        """Log a run's params and metrics (when it has any), then finish it."""
        if params or metrics:
            await self.call(
                "POST",
                "/api/2.0/mlflow/runs/log-batch",
                json={
                    "run_id": run_id,
                    "params": [{"key": k, "value": v} for k, v in params.items()],
                    "metrics": [
                        {"key": k, "value": v, "timestamp": timestamp_ms, "step": 0} for k, v in metrics.items()
                    ],
                },
            )
        await self.call(
            "POST",
            "/api/2.0/mlflow/runs/update",
            json={"run_id": run_id, "status": "FINISHED", "end_time": timestamp_ms},
        )

    async def find_runs(self, experiment_id: str, tag: str, value: str, limit: int = 10) -> list[dict[str, Any]]:
        """The experiment's active runs whose tag ``tag`` is ``value``, oldest first."""
        body = await self.call(
            "POST",
            "/api/2.0/mlflow/runs/search",
            json={
                "experiment_ids": [experiment_id],
                "filter": f"tags.{tag} = '{value}'",
                "run_view_type": "ACTIVE_ONLY",
                "order_by": ["attributes.start_time ASC"],
                "max_results": limit,
            },
        )
        runs: list[dict[str, Any]] = body.get("runs", [])
        return runs

    async def delete_run(self, run_id: str) -> None:
        """Mark a run deleted (MLflow keeps it, out of active searches)."""
        await self.call("POST", "/api/2.0/mlflow/runs/delete", json={"run_id": run_id})

    async def finish_run(
        self, run: dict[str, Any], params: Mapping[str, str], metrics: Mapping[str, float], timestamp_ms: int
    ) -> str:
        """Complete a run ``create_run`` began (its answer was lost, or the api stopped half way):
        log what it does not hold yet, then finish it. Returns its id."""
        run_id = str(run["info"]["run_id"])
        if run["info"].get("status") != "FINISHED":
            data = run.get("data", {})
            have_params = {p["key"] for p in data.get("params", [])}
            have_metrics = {m["key"] for m in data.get("metrics", [])}
            await self.log_and_finish(
                run_id,
                {k: v for k, v in params.items() if k not in have_params},
                {k: v for k, v in metrics.items() if k not in have_metrics},
                timestamp_ms,
            )
        return run_id

    async def get_run(self, run_id: str) -> dict[str, Any]:
        body = await self.call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
        run: dict[str, Any] = body["run"]
        return run


def safe_message(message: str) -> str:
    """MLflow's message as an answer may carry it: its first line, at most ``MESSAGE_LIMIT``
    characters, and withheld whole when it quotes the database (MLflow passes SQLAlchemy's errors
    through, statement and parameters included)."""
    if _QUOTES_DATABASE.search(message):
        return "(MLflow's message withheld: it quotes the database; MLflow's log has it)"
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "..."


def _traced() -> dict[str, str]:
    """The current request's id as X-Request-ID, so MLflow's log line of this call carries it (a
    health evaluation carries the id of the request that started it)."""
    rid = jsonlog.request_id.get()
    return {"X-Request-ID": rid} if rid else {}


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _error_code(response: httpx.Response) -> str:
    body = _json(response)
    return str(body.get("error_code", "")) if isinstance(body, dict) else ""
