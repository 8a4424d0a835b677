"""Liveness, the load balancer's readiness and monitoring's deep check (application/health+json)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from services.api.dependencies import HealthDep
from services.api.health import HEALTH_MEDIA_TYPE, HealthReport
from services.api.schemas import health_answer
from services.common import jsonlog

NO_STORE = {"Cache-Control": "no-store"}
router = APIRouter()


class HealthResponse(Response):
    media_type = HEALTH_MEDIA_TYPE


def answer(report: HealthReport) -> Response:
    jsonlog.add_fields(report.log_fields())
    return Response(report.body(), status_code=report.http_status, media_type=HEALTH_MEDIA_TYPE, headers=NO_STORE)


@router.get(
    "/health/live",
    summary="Liveness: the process serves; touches no dependency",
    response_class=HealthResponse,
    responses={200: health_answer("the process serves")},
)
async def live() -> Response:
    return JSONResponse({"status": "pass", "serviceId": "api"}, media_type=HEALTH_MEDIA_TYPE)


@router.get(
    "/health",
    summary="The load balancer's check (application/health+json): 200 pass/warn, 503 fail",
    description="Fails (503) until every required dependency has answered once, while draining, "
    "and on task-local trouble (stalled event loop, file descriptors exhausted). Once "
    "in service a failing dependency is `warn` (200): an outage shared by every task "
    "must not drain the fleet. The body names the failing dependency.",
    response_class=HealthResponse,
    responses={
        200: health_answer("in service: every required dependency passes (pass) or one is failing (warn)"),
        503: health_answer("not in service yet, draining, or the task itself is in trouble"),
    },
)
async def ready(health: HealthDep) -> Response:
    return answer(await health.report())


@router.get(
    "/health/deep",
    summary="Monitoring's check: 503 when a required dependency fails",
    response_class=HealthResponse,
    responses={
        200: health_answer("every required dependency passes"),
        503: health_answer("a required dependency failed, or the task is not serving"),
    },
)
async def deep(health: HealthDep) -> Response:
    return answer(await health.report(deep=True))
