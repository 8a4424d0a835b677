"""The app's parts as route dependencies: ``create_app`` builds them once and keeps them on
``app.state``; a route names the part it needs (``health: HealthDep``) and FastAPI hands it over.
Async on purpose: a plain ``def`` dependency would run in the thread pool on every request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.api.health import HealthService
from services.api.metrics import Metrics
from services.api.runs import RunsService


async def health_service(request: Request) -> HealthService:
    health: HealthService = request.app.state.health
    return health


async def runs_service(request: Request) -> RunsService:
    runs: RunsService = request.app.state.runs
    return runs


async def app_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


HealthDep = Annotated[HealthService, Depends(health_service)]
RunsDep = Annotated[RunsService, Depends(runs_service)]
MetricsDep = Annotated[Metrics, Depends(app_metrics)]
