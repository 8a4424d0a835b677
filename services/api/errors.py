"""Every error the api answers, in one shape (the OpenAPI ``Error`` schema): the helpers that make
one, and the exception handlers ``create_app`` installs (validation, Starlette's own answers, the
runs service's failures, shed requests)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.api.bulkhead import Overloaded
from services.api.runs import (
    BeingWritten,
    KeyInProgress,
    KeyReused,
    MlflowRefusedRun,
    RunMissingInMlflow,
    RunNotFound,
    RunsFailure,
    Unavailable,
)
from services.common import jsonlog
from services.common.middleware import error_body

RETRY = {"Retry-After": "1"}
# the runs service's failures as answered: status, kind, whether Retry-After is sent
RUNS_FAILURES: dict[type[RunsFailure], tuple[int, str, bool]] = {
    KeyReused: (409, "idempotency key reused", False),
    KeyInProgress: (409, "in progress", True),
    BeingWritten: (503, "in progress", True),
    RunNotFound: (404, "not found", False),
    MlflowRefusedRun: (502, "mlflow rejected the run", False),
    RunMissingInMlflow: (502, "run missing in mlflow", False),
    Unavailable: (503, "dependency unavailable", True),
}


def error(
    status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None, **extra: object
) -> JSONResponse:
    """An ``Error`` body with the request's id."""
    body = error_body(kind, detail, jsonlog.request_id.get(), **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def unavailable(reason: str, kind: str = "dependency unavailable") -> JSONResponse:
    return error(503, kind, reason, headers=RETRY)


def overloaded(exc: Overloaded) -> JSONResponse:
    return unavailable(str(exc), "overloaded")


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]} for e in exc.errors()]
    reason = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
    return error(422, "invalid request", reason, problems=problems)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's and FastAPI's own answers (unknown path, wrong method, a body that is not
    JSON, the body limits) in the api's error shape."""
    kinds = {400: "malformed request", 404: "not found", 405: "method not allowed", 413: "request body too large"}
    kind = kinds.get(exc.status_code, HTTPStatus(exc.status_code).phrase.lower())
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error(exc.status_code, kind, detail, headers=exc.headers)


async def runs_failure(request: Request, exc: RunsFailure) -> JSONResponse:
    """The failure's answer; Retry-After is the seconds the service said (a held key's lease left),
    rounded up, else 1."""
    status, kind, retry = RUNS_FAILURES[type(exc)]
    after = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if exc.retry_after else RETRY
    return error(status, kind, str(exc), headers=after if retry else None)


async def shed(request: Request, exc: Overloaded) -> JSONResponse:
    """No slot on a dependency came free within the queue wait."""
    return overloaded(exc)
