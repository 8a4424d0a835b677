"""The api: readiness and liveness, a small runs API over MLflow and Postgres, JSON logs.

``create_app`` is the composition root: it builds the parts (stores, bulkheads, health, the runs
service, metrics), keeps them on ``app.state`` for the routes' dependencies, includes the routers
and installs the error handlers, the request middleware and the lifespan. It holds no logic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from services.api import errors
from services.api.bulkhead import Bulkhead, Overloaded
from services.api.checks import Check, LoopMonitor, Throttled, descriptors_problem
from services.api.config import Settings
from services.api.health import HealthService
from services.api.metrics import Metrics
from services.api.mlflow_client import MlflowClient
from services.api.routers import health as health_routes
from services.api.routers import metrics as metrics_routes
from services.api.routers import runs as runs_routes
from services.api.runs import RunsFailure, RunsService
from services.api.schemas import openapi_of
from services.api.store import Store
from services.common.middleware import RequestObserver
from services.common.redact import dsn_secrets


def create_app(settings: Settings, *, store: Store | None = None, mlflow: MlflowClient | None = None) -> FastAPI:
    store = store or Store(
        settings.database_url, timeout=settings.db_timeout, max_connections=settings.db_max_connections + 1
    )  # one more for the health check
    mlflow = mlflow or MlflowClient(
        settings.mlflow_url,
        timeout=settings.mlflow_timeout,
        retries=settings.mlflow_retries,
        backoff=settings.mlflow_backoff,
        settle_time=settings.mlflow_settle_time,
    )
    metrics = Metrics()
    runs = RunsService(
        store,
        mlflow,
        db_slots=Bulkhead(
            "postgres", settings.db_max_connections, settings.queue_wait, metrics.in_flight_changed, metrics.shed
        ),
        mlflow_slots=Bulkhead(
            "mlflow", settings.mlflow_concurrency, settings.queue_wait, metrics.in_flight_changed, metrics.shed
        ),
        request_timeout=settings.request_timeout,
        lease=settings.claim_lease,
    )
    loop = LoopMonitor(settings.loop_stall_limit)
    health = HealthService(
        checks=(
            Check("postgres", "datastore", store.ping, settings.db_timeout, settings.is_required("postgres")),
            Check("mlflow", "component", mlflow.ping, settings.mlflow_budget, settings.is_required("mlflow")),
        ),
        ttl=settings.health_cache_ttl,
        max_stale=settings.health_max_stale,
        secrets=dsn_secrets(settings.database_url),
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
    app.state.runs = runs
    app.state.store = store
    app.state.mlflow = mlflow
    for routes in (health_routes, metrics_routes, runs_routes):  # the OpenAPI document lists paths in this order
        app.include_router(routes.router)
    app.add_middleware(
        RequestObserver,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        observe=metrics.observe,
    )
    # the decorator form: Starlette types add_exception_handler for handlers of Exception only
    app.exception_handler(RequestValidationError)(errors.invalid)
    app.exception_handler(HTTPException)(errors.http_error)
    app.exception_handler(RunsFailure)(errors.runs_failure)
    app.exception_handler(Overloaded)(errors.shed)
    app.openapi = openapi_of(app)  # type: ignore[method-assign]  # FastAPI's documented way to extend it
    return app
