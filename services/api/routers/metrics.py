"""Prometheus' scrape target."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from services.api.dependencies import MetricsDep

router = APIRouter()


class MetricsResponse(PlainTextResponse):
    """The Prometheus text exposition format."""


@router.get(
    "/metrics",
    summary="Prometheus metrics: health checks per dependency, request latency",
    response_class=MetricsResponse,
    responses={200: {"description": "the Prometheus text exposition format"}},
)
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
