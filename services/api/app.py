"""The api: readiness and liveness, a small runs API over MLflow and Postgres, JSON logs."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field, StringConstraints, field_validator

from services.api.bulkhead import Bulkhead, Overloaded
from services.api.config import Settings
from services.api.health import (
    HEALTH_MEDIA_TYPE,
    Check,
    CheckResult,
    HealthReport,
    HealthService,
    LoopMonitor,
    Throttled,
    descriptors_problem,
)
from services.api.middleware import RequestObserver
from services.api.mlflow_client import MlflowClient, MlflowRejected, MlflowUnavailable
from services.api.store import RunRow, Store, StoreUnavailable
from services.common import jsonlog
from services.common.redact import dsn_secrets

logger = logging.getLogger("api")
Key = Annotated[str, StringConstraints(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.\-/ ]+$")]


class RunIn(BaseModel):
    experiment: Key = Field(description="MLflow experiment name; created when absent")
    name: Annotated[str, StringConstraints(min_length=1, max_length=250)] | None = None
    params: dict[Key, Annotated[str, StringConstraints(max_length=6000)]] = Field(default_factory=dict, max_length=100)
    metrics: dict[Key, float] = Field(default_factory=dict, max_length=100)

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not math.isfinite(x):
                raise ValueError(f"metric {k!r} must be a finite number")
        return v


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
            self.checks.labels(r.component, r.status.value).inc()
            self.dependency_up.labels(r.component).set(1 if r.status.value == "pass" else 0)


NO_STORE = {"Cache-Control": "no-store"}


def unavailable(reason: str, error: str = "dependency unavailable") -> JSONResponse:
    return JSONResponse({"error": error, "detail": reason}, status_code=503, headers={"Retry-After": "1"})


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
    app.add_middleware(RequestObserver, max_body_bytes=settings.max_body_bytes, observe=metrics.observe)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]} for e in exc.errors()
        ]
        reason = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return JSONResponse({"error": "invalid request", "detail": reason, "problems": problems}, status_code=422)

    @app.get("/health/live", summary="Liveness: the process serves; touches no dependency")
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
        responses={503: {"description": "not in service yet, draining, or the task itself is in trouble"}},
    )
    async def ready() -> Response:
        return answer(await health.report())

    @app.get(
        "/health/deep",
        summary="Monitoring's check: 503 when a required dependency fails",
        responses={503: {"description": "a required dependency failed, or the task is not serving"}},
    )
    async def deep() -> Response:
        return answer(await health.report(deep=True))

    @app.get("/metrics", summary="Prometheus metrics: health checks per dependency, request latency")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/runs",
        status_code=201,
        response_model=RunOut,
        summary="Log a run to MLflow and record it in Postgres; 2xx only when both hold it",
        responses={
            503: {
                "description": "MLflow or Postgres unavailable, or the api is shedding load "
                "(`overloaded`); nothing was recorded; Retry-After says when to retry"
            }
        },
    )
    async def create_run(body: RunIn) -> Response:
        run_name = body.name or f"run-{uuid.uuid4().hex[:8]}"
        try:
            async with asyncio.timeout(settings.request_timeout), mlflow_slots.slot():
                exp_id = await mlflow.experiment_id(body.experiment)
                run_id = await mlflow.log_run(exp_id, run_name, body.params, body.metrics, int(time.time() * 1000))
        except Overloaded as exc:
            return overloaded(exc)
        except (MlflowUnavailable, TimeoutError) as exc:
            return unavailable(f"mlflow: {exc or 'request deadline exceeded'}")
        except MlflowRejected as exc:
            return JSONResponse({"error": "mlflow rejected the run", "detail": str(exc)}, status_code=502)
        row = RunRow(uuid.uuid4(), body.experiment, exp_id, run_id, run_name, dict(body.params), dict(body.metrics), "")
        try:
            async with asyncio.timeout(settings.request_timeout), db_slots.slot():
                await store.insert(row)
        except (StoreUnavailable, TimeoutError, Overloaded) as exc:
            await _forget(mlflow, run_id)
            if isinstance(exc, Overloaded):
                return overloaded(exc)
            return unavailable(f"postgres: {exc or 'request deadline exceeded'}")
        jsonlog.add_fields({"run_id": str(row.id), "mlflow_run_id": run_id})
        out = RunOut(
            id=row.id,
            experiment=row.experiment,
            experiment_id=exp_id,
            mlflow_run_id=run_id,
            name=run_name,
            params=row.params,
            metrics=row.metrics,
            mlflow_status="FINISHED",
        )
        return JSONResponse(out.model_dump(mode="json"), status_code=201)

    @app.get(
        "/runs/{run_id}",
        response_model=RunOut,
        summary="Read a run back from Postgres and MLflow",
        responses={404: {"description": "no such run"}, 503: {"description": "a store is unavailable"}},
    )
    async def read_run(run_id: uuid.UUID) -> Response:
        try:
            async with asyncio.timeout(settings.request_timeout), db_slots.slot():
                row = await store.get(run_id)
        except Overloaded as exc:
            return overloaded(exc)
        except (StoreUnavailable, TimeoutError) as exc:
            return unavailable(f"postgres: {exc or 'request deadline exceeded'}")
        if row is None:
            return JSONResponse({"error": "not found", "detail": f"no run {run_id}"}, status_code=404)
        try:
            async with asyncio.timeout(settings.request_timeout), mlflow_slots.slot():
                run = await mlflow.get_run(row.mlflow_run_id)
        except Overloaded as exc:
            return overloaded(exc)
        except (MlflowUnavailable, TimeoutError) as exc:
            return unavailable(f"mlflow: {exc or 'request deadline exceeded'}")
        except MlflowRejected as exc:
            return JSONResponse({"error": "run missing in mlflow", "detail": str(exc)}, status_code=502)
        data = run.get("data", {})
        out = RunOut(
            id=row.id,
            experiment=row.experiment,
            experiment_id=row.experiment_id,
            mlflow_run_id=row.mlflow_run_id,
            name=row.run_name,
            created_at=row.created_at,
            params={p["key"]: p["value"] for p in data.get("params", [])},
            metrics={m["key"]: m["value"] for m in data.get("metrics", [])},
            mlflow_status=run.get("info", {}).get("status"),
        )
        return JSONResponse(out.model_dump(mode="json"))

    return app


async def _forget(mlflow: MlflowClient, run_id: str) -> None:
    """Best effort: a run whose Postgres row failed is deleted in MLflow so no one trusts it."""
    try:
        async with asyncio.timeout(mlflow.timeout * 2):
            await mlflow.delete_run(run_id)
    except Exception as exc:  # noqa: BLE001 - the caller already answers 503
        jsonlog.log(
            logger,
            "could not delete orphan mlflow run",
            logging.WARNING,
            mlflow_run_id=run_id,
            error=type(exc).__name__,
        )
