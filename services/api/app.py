"""The api: readiness and liveness, a small runs API over MLflow and Postgres, JSON logs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StringConstraints, WithJsonSchema, field_validator
from starlette.exceptions import HTTPException

from services.api.bulkhead import Bulkhead, Overloaded
from services.api.checks import Check, CheckResult, LoopMonitor, Throttled, descriptors_problem
from services.api.config import Settings
from services.api.health import HEALTH_MEDIA_TYPE, HealthReport, HealthService
from services.api.mlflow_client import MlflowClient, MlflowRejected, MlflowUnavailable
from services.api.store import PENDING, RunRow, Store, StoreUnavailable
from services.common import jsonlog
from services.common.middleware import RequestObserver, error_body
from services.common.redact import dsn_secrets

logger = logging.getLogger("api")
RUN_TAG = "api_run_id"  # the MLflow tag that names the api's row of a run
EXPERIMENT = r"^[A-Za-z0-9_.\-/ ]+$"
# A param or metric name as MLflow accepts it: letters, digits, "_", "-", ".", " " in "/"-separated
# parts; no empty part and no part "." or ".." (MLflow treats names as paths and rejects one that
# does not normalise to itself; parts starting with ".." are refused here, a little stricter).
_PART = r"(?:[A-Za-z0-9_ -]|\.[A-Za-z0-9_ -])[A-Za-z0-9_. -]*"
NAME = rf"^{_PART}(?:/{_PART})*$"
Experiment = Annotated[str, StringConstraints(min_length=1, max_length=250, pattern=EXPERIMENT)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=250, pattern=NAME)]
NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 250, "pattern": NAME}


def _keyed(values: dict[str, object], example: dict[str, object]) -> WithJsonSchema:
    """A map keyed by MLflow names, described as it is enforced (pydantic would describe the key
    pattern as patternProperties, which lets any other key through)."""
    return WithJsonSchema(
        {
            "type": "object",
            "maxProperties": 100,
            "propertyNames": NAME_SCHEMA,
            "additionalProperties": values,
            "examples": [example],
        }
    )


# Text Postgres can hold (MLflow keeps names and values there): no NUL character.
TEXT = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=TEXT)]


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently dropped

    experiment: Experiment = Field(description="MLflow experiment name; created when absent", examples=["churn"])
    name: Annotated[str, StringConstraints(min_length=1, max_length=250, pattern=TEXT)] | None = Field(
        None, description="the run's name (default: run-<8 hex>)", examples=["nightly"]
    )
    params: Annotated[
        dict[Name, Annotated[str, StringConstraints(max_length=6000, pattern=TEXT)]],
        _keyed({"type": "string", "maxLength": 6000, "pattern": TEXT}, {"model": "gbm", "data/version": "7"}),
    ] = Field(default_factory=dict, max_length=100)
    # strict: JSON true/false are not numbers (pydantic would take them as 1.0 and 0.0)
    metrics: Annotated[dict[Name, StrictFloat], _keyed({"type": "number"}, {"auc": 0.91})] = Field(
        default_factory=dict, max_length=100
    )

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not math.isfinite(x):
                raise ValueError(f"metric {k!r} must be a finite number")
        return v


class Problem(BaseModel):
    field: str = Field(description="where in the request, dotted (empty: the body itself)")
    problem: str


class Error(BaseModel):
    """Every error body the api answers, whatever the status."""

    error: str = Field(description="the kind, short and stable", examples=["dependency unavailable"])
    detail: str = Field(description="what happened, for a person", examples=["postgres: insert failed"])
    request_id: str = Field(description="the request's X-Request-ID, to find its log line")
    problems: list[Problem] | None = Field(None, description="422 only: every invalid field")


class CheckBody(BaseModel):
    componentType: str
    observedValue: float
    observedUnit: str
    status: Literal["pass", "warn", "fail"]
    time: str
    output: str | None = None


class Health(BaseModel):
    """The health+json body (draft-inadarei-api-health-check): the verdict, the task's phase and
    each dependency check."""

    status: Literal["pass", "warn", "fail"]
    serviceId: str
    version: str | None = None
    phase: Literal["starting", "serving", "draining"] | None = None
    stale: bool | None = None
    output: str | None = None
    checks: dict[str, list[CheckBody]] | None = None
    ageSeconds: float | None = None


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    headers = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
    return {"description": description, "model": Error, **({"headers": headers} if retry else {})}


def _health(description: str) -> dict[str, Any]:
    return {"description": description, "model": Health}


class HealthResponse(Response):
    media_type = HEALTH_MEDIA_TYPE


class MetricsResponse(PlainTextResponse):
    """The Prometheus text exposition format."""


REQUEST_ID_HEADER = {
    "description": "the request's id: the client's X-Request-ID (up to 128 characters) or a generated one",
    "schema": {"type": "string", "maxLength": 128},
}
UNAVAILABLE = _error("a dependency is unavailable or the api is shedding load (`overloaded`)", retry=True)
INVALID = _error("the request breaks the schema: `problems` names every field")


class RunOut(BaseModel):
    id: uuid.UUID
    experiment: str
    experiment_id: str
    mlflow_run_id: str
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    created_at: str | None = None
    mlflow_status: str | None = None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "api_health_checks", "dependency checks run by /health", ["component", "status"], registry=self.registry
        )
        self.evaluations = Counter(
            "api_health_evaluations", "evaluations of the dependency checks", registry=self.registry
        )
        self.dependency_up = Gauge(
            "api_dependency_up", "1 when the dependency's last check passed", ["component"], registry=self.registry
        )
        self.latency = Histogram("api_request_seconds", "request latency", ["route", "status"], registry=self.registry)
        self._latency_by: dict[tuple[str, int], Histogram] = {}
        self.in_flight = Gauge(
            "api_in_flight", "requests at work on a dependency", ["dependency"], registry=self.registry
        )
        self.sheds = Counter(
            "api_shed",
            "requests shed: no free slot on the dependency within the queue wait",
            ["dependency"],
            registry=self.registry,
        )

    def in_flight_changed(self, dependency: str, n: int) -> None:
        self.in_flight.labels(dependency).set(n)

    def shed(self, dependency: str) -> None:
        self.sheds.labels(dependency).inc()

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One request's latency. The labelled child is looked up once per (route, status): routes
        are templates (or "unmatched"), so the map stays small."""
        child = self._latency_by.get((route, status))
        if child is None:
            child = self._latency_by[(route, status)] = self.latency.labels(route, str(status))
        child.observe(seconds)

    def record(self, results: tuple[CheckResult, ...]) -> None:
        self.evaluations.inc()
        for r in results:
            self.dependency_up.labels(r.component).set(1 if r.status.value == "pass" else 0)

    def check(self, result: CheckResult) -> None:
        """One dependency check that ran (an evaluation may run a fast check again while a slow one runs)."""
        self.checks.labels(result.component, result.status.value).inc()


NO_STORE = {"Cache-Control": "no-store"}


def error(
    status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None, **extra: object
) -> JSONResponse:
    """An ``Error`` body with the request's id."""
    body = error_body(kind, detail, jsonlog.request_id.get(), **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def unavailable(reason: str, kind: str = "dependency unavailable") -> JSONResponse:
    return error(503, kind, reason, headers={"Retry-After": "1"})


def overloaded(exc: Overloaded) -> JSONResponse:
    return unavailable(str(exc), "overloaded")


def create_app(settings: Settings, *, store: Store | None = None, mlflow: MlflowClient | None = None) -> FastAPI:
    secrets = dsn_secrets(settings.database_url)
    store = store or Store(
        settings.database_url, timeout=settings.db_timeout, max_connections=settings.db_max_connections + 1
    )  # one more for the health check
    mlflow = mlflow or MlflowClient(
        settings.mlflow_url,
        timeout=settings.mlflow_timeout,
        retries=settings.mlflow_retries,
        backoff=settings.mlflow_backoff,
    )
    metrics = Metrics()
    db_slots = Bulkhead(
        "postgres", settings.db_max_connections, settings.queue_wait, metrics.in_flight_changed, metrics.shed
    )
    mlflow_slots = Bulkhead(
        "mlflow", settings.mlflow_concurrency, settings.queue_wait, metrics.in_flight_changed, metrics.shed
    )
    loop = LoopMonitor(settings.loop_stall_limit)
    health = HealthService(
        checks=(
            Check("postgres", "datastore", store.ping, settings.db_timeout, settings.is_required("postgres")),
            Check("mlflow", "component", mlflow.ping, settings.mlflow_budget, settings.is_required("mlflow")),
        ),
        ttl=settings.health_cache_ttl,
        max_stale=settings.health_max_stale,
        secrets=secrets,
        on_evaluation=metrics.record,
        on_check=metrics.check,
        local_checks=(loop.problem, Throttled(descriptors_problem)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        monitor = asyncio.ensure_future(loop.run())
        try:
            yield
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
            await health.aclose()
            await store.close()
            await mlflow.aclose()

    app = FastAPI(
        title="ML platform api",
        version="1.0.0",
        lifespan=lifespan,
        description="Readiness over Postgres and MLflow, and a small runs API through both.",
    )
    app.state.settings = settings
    app.state.health = health
    app.state.metrics = metrics
    app.state.store = store
    app.state.mlflow = mlflow
    app.add_middleware(
        RequestObserver,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        observe=metrics.observe,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]} for e in exc.errors()
        ]
        reason = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return error(422, "invalid request", reason, problems=problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's and FastAPI's own answers (unknown path, wrong method, a body that is not
        JSON, the body limits) in the api's error shape."""
        kinds = {400: "malformed request", 404: "not found", 405: "method not allowed", 413: "request body too large"}
        kind = kinds.get(exc.status_code, HTTPStatus(exc.status_code).phrase.lower())
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error(exc.status_code, kind, detail, headers=exc.headers)

    @app.get(
        "/health/live",
        summary="Liveness: the process serves; touches no dependency",
        response_class=HealthResponse,
        responses={200: _health("the process serves")},
    )
    async def live() -> Response:
        return JSONResponse({"status": "pass", "serviceId": "api"}, media_type=HEALTH_MEDIA_TYPE)

    def answer(report: HealthReport) -> Response:
        jsonlog.add_fields(report.log_fields())
        return Response(report.body(), status_code=report.http_status, media_type=HEALTH_MEDIA_TYPE, headers=NO_STORE)

    @app.get(
        "/health",
        summary="The load balancer's check (application/health+json): 200 pass/warn, 503 fail",
        description="Fails (503) until every required dependency has answered once, while draining, "
        "and on task-local trouble (stalled event loop, file descriptors exhausted). Once "
        "in service a failing dependency is `warn` (200): an outage shared by every task "
        "must not drain the fleet. The body names the failing dependency.",
        response_class=HealthResponse,
        responses={
            200: _health("in service: every required dependency passes (pass) or one is failing (warn)"),
            503: _health("not in service yet, draining, or the task itself is in trouble"),
        },
    )
    async def ready() -> Response:
        return answer(await health.report())

    @app.get(
        "/health/deep",
        summary="Monitoring's check: 503 when a required dependency fails",
        response_class=HealthResponse,
        responses={
            200: _health("every required dependency passes"),
            503: _health("a required dependency failed, or the task is not serving"),
        },
    )
    async def deep() -> Response:
        return answer(await health.report(deep=True))

    @app.get(
        "/metrics",
        summary="Prometheus metrics: health checks per dependency, request latency",
        response_class=MetricsResponse,
        responses={200: {"description": "the Prometheus text exposition format"}},
    )
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    lease = 3 * settings.request_timeout  # how long a request may hold a pending row

    def answer_run(row: RunRow, status: int = 200, mlflow_run: dict[str, Any] | None = None) -> JSONResponse:
        """The run as recorded (its params and metrics as MLflow holds them, when given its run)."""
        jsonlog.add_fields({"run_id": str(row.id), "mlflow_run_id": row.mlflow_run_id})
        data = (mlflow_run or {}).get("data", {})
        out = RunOut(
            id=row.id,
            experiment=row.experiment,
            experiment_id=row.experiment_id,
            mlflow_run_id=row.mlflow_run_id,
            name=row.run_name,
            params={p["key"]: p["value"] for p in data["params"]} if "params" in data else row.params,
            metrics={m["key"]: m["value"] for m in data["metrics"]} if "metrics" in data else row.metrics,
            created_at=row.created_at or None,
            mlflow_status=(mlflow_run or {}).get("info", {}).get("status", "FINISHED"),
        )
        return JSONResponse(out.model_dump(mode="json"), status_code=status)

    async def record(row: RunRow, resumed: bool) -> RunRow | JSONResponse:
        """The MLflow run for a claimed pending row (found by its tag when an earlier attempt may
        have made it), then the row completed; the caller holds an MLflow slot. Nothing is
        deleted on a failure: the row stays pending for a retry with its key, or a read, to finish."""
        try:
            async with asyncio.timeout(settings.request_timeout):
                exp_id = await mlflow.experiment_id(row.experiment)
                now_ms = int(time.time() * 1000)
                found = await mlflow.find_run(exp_id, RUN_TAG, str(row.id)) if resumed else None
                if found is None:
                    run_id = await mlflow.log_run(
                        exp_id, row.run_name, row.params, row.metrics, now_ms, tags={RUN_TAG: str(row.id)}
                    )
                else:
                    run_id = await mlflow.finish_run(found, row.params, row.metrics, now_ms)
        except (MlflowUnavailable, MlflowRejected, TimeoutError) as exc:
            await _release(store, row.id)
            if isinstance(exc, MlflowRejected):
                return error(502, "mlflow rejected the run", str(exc))
            return unavailable(f"mlflow: {exc or 'request deadline exceeded'}")
        try:
            async with asyncio.timeout(settings.request_timeout), db_slots.slot():
                return await store.complete(row.id, exp_id, run_id)
        except (StoreUnavailable, TimeoutError, Overloaded) as exc:
            # the update may have committed with its answer lost: the retry or a read will see
            if isinstance(exc, Overloaded):
                return overloaded(exc)
            return unavailable(f"postgres: {exc or 'request deadline exceeded'}")

    @app.post(
        "/runs",
        status_code=201,
        response_model=RunOut,
        summary="Log a run to MLflow and record it in Postgres; 2xx only when both hold it",
        description="Safe to retry with an `Idempotency-Key`: the same key and body answer the same "
        "run (201 when this request recorded it, 200 when an earlier one had), never a second one; "
        "the same key with another body answers 409. Without a key, a retry after a lost answer "
        "may record the run twice.",
        responses={
            200: {"description": "recorded by an earlier request with the same Idempotency-Key", "model": RunOut},
            201: {
                "description": "recorded in both stores",
                "links": {
                    "GetRunById": {
                        "operationId": "read_run",
                        "parameters": {"run_id": "$response.body#/id"},
                        "description": "the run just recorded, read back",
                    }
                },
            },
            400: _error("the body is not JSON"),
            408: _error("the body did not arrive within API_BODY_TIMEOUT seconds"),
            409: _error(
                "the Idempotency-Key was used with another body, or a request with it is still at work "
                "(Retry-After says when to retry)",
                retry=True,
            ),
            413: _error("the body is larger than API_MAX_BODY_BYTES (chunked bodies are counted too)"),
            422: INVALID,
            502: _error("MLflow refused the run (a value it does not accept)"),
            503: _error(
                "MLflow or Postgres unavailable, or the api is shedding load (`overloaded`); "
                "retry with the same Idempotency-Key: the run is then recorded once; Retry-After says when",
                retry=True,
            ),
        },
        operation_id="create_run",
    )
    async def create_run(
        body: RunIn,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=255,
                pattern=r"^[!-~]+$",
                description="makes retries safe: the same key and body record the run once",
                examples=["7f9c2b1e-retry-safe"],
            ),
        ] = None,
    ) -> Response:
        digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
        intent = RunRow(
            uuid.uuid4(),
            body.experiment,
            "",
            "",
            body.name or f"run-{uuid.uuid4().hex[:8]}",
            dict(body.params),
            dict(body.metrics),
            state=PENDING,
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        try:
            # the MLflow slot first: a write shed for want of one has recorded nothing anywhere
            async with mlflow_slots.slot():
                try:
                    async with asyncio.timeout(settings.request_timeout), db_slots.slot():
                        row, fresh = await store.begin(intent, lease)
                        if not fresh and row.request_hash != digest:
                            return error(
                                409, "idempotency key reused", "this Idempotency-Key was sent with another body"
                            )
                        if not fresh and not row.pending:
                            return answer_run(row, 200)
                        if not fresh and not await store.claim(row.id, lease):
                            return error(
                                409,
                                "in progress",
                                "a request with this Idempotency-Key is still at work",
                                headers={"Retry-After": "1"},
                            )
                except (StoreUnavailable, TimeoutError) as exc:
                    return unavailable(f"postgres: {exc or 'request deadline exceeded'}")
                done = await record(row, resumed=not fresh)
        except Overloaded as exc:
            return overloaded(exc)
        return done if isinstance(done, JSONResponse) else answer_run(done, 201)

    @app.get(
        "/runs/{run_id}",
        response_model=RunOut,
        summary="Read a run back from Postgres and MLflow",
        description="A run whose write was cut short (its answer lost) is finished here first.",
        responses={
            404: _error("no such run"),
            422: INVALID,
            502: _error("the run is missing in MLflow"),
            503: UNAVAILABLE,
        },
        operation_id="read_run",
    )
    async def read_run(run_id: uuid.UUID) -> Response:
        try:
            async with asyncio.timeout(settings.request_timeout), db_slots.slot():
                row = await store.get(run_id)
                if row is not None and row.pending and not await store.claim(row.id, lease):
                    return unavailable("the run is being written", kind="in progress")
        except Overloaded as exc:
            return overloaded(exc)
        except (StoreUnavailable, TimeoutError) as exc:
            return unavailable(f"postgres: {exc or 'request deadline exceeded'}")
        if row is None:
            return error(404, "not found", f"no run {run_id}")
        if row.pending:
            try:
                async with mlflow_slots.slot():
                    done = await record(row, resumed=True)
            except Overloaded as exc:
                await _release(store, row.id)
                return overloaded(exc)
            if isinstance(done, JSONResponse):
                return done
            row = done
        try:
            async with asyncio.timeout(settings.request_timeout), mlflow_slots.slot():
                run = await mlflow.get_run(row.mlflow_run_id)
        except Overloaded as exc:
            return overloaded(exc)
        except (MlflowUnavailable, TimeoutError) as exc:
            return unavailable(f"mlflow: {exc or 'request deadline exceeded'}")
        except MlflowRejected as exc:
            return error(502, "run missing in mlflow", str(exc))
        return answer_run(row, 200, run)

    def openapi() -> dict[str, Any]:
        """FastAPI's description, plus what it cannot know: every answer carries X-Request-ID."""
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for operations in spec["paths"].values():
                for operation in operations.values():
                    for response in operation["responses"].values():
                        response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_HEADER
                        for media in response.get("content", {}).values():
                            # a model's $ref next to the plain response class's default {"type": "string"}
                            if "$ref" in media.get("schema", {}):
                                media["schema"] = {"$ref": media["schema"]["$ref"]}
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
    return app


async def _release(store: Store, run_id: uuid.UUID) -> None:
    """Best effort: give a pending row back so a retry need not wait out the lease."""
    try:
        await store.release(run_id)
    except Exception as exc:  # noqa: BLE001 - the caller already answers the failure
        jsonlog.log(
            logger, "could not release a pending run", logging.WARNING, run_id=str(run_id), error=type(exc).__name__
        )
