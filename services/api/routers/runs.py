"""The runs API over the runs service: a write safe to retry with a key, a read back. The service's
failures are answered by the handlers in ``errors.py``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse

from services.api.dependencies import RunsDep
from services.api.schemas import INVALID, UNAVAILABLE, RunIn, RunOut, error_answer

router = APIRouter()


@router.post(
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
        400: error_answer("the body is not JSON"),
        408: error_answer("the body did not arrive within API_BODY_TIMEOUT seconds"),
        409: error_answer(
            "the Idempotency-Key was used with another body, or a request with it is still at work "
            "(Retry-After says when to retry)",
            retry=True,
        ),
        413: error_answer("the body is larger than API_MAX_BODY_BYTES (chunked bodies are counted too)"),
        422: INVALID,
        502: error_answer(
            "MLflow refused the run: a 4xx for a value it does not accept (its message cut to 200 "
            "characters, withheld when it quotes the database); retrying will not help"
        ),
        503: error_answer(
            "MLflow or Postgres unavailable (MLflow's 5xx included), or the api is shedding load (`overloaded`); "
            "retry with the same Idempotency-Key: the run is then recorded once; Retry-After says when",
            retry=True,
        ),
    },
    operation_id="create_run",
)
async def create_run(
    body: RunIn,
    runs: RunsDep,
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
    run, recorded = await runs.write(body, idempotency_key)
    return JSONResponse(run.model_dump(mode="json"), status_code=201 if recorded else 200)


@router.get(
    "/runs/{run_id}",
    response_model=RunOut,
    summary="Read a run back from Postgres and MLflow",
    description="A run whose write was cut short (its answer lost) is finished here first.",
    responses={
        404: error_answer("no such run"),
        422: INVALID,
        502: error_answer("the run is missing in MLflow"),
        503: UNAVAILABLE,
    },
    operation_id="read_run",
)
async def read_run(run_id: uuid.UUID, runs: RunsDep) -> Response:
    return JSONResponse((await runs.read(run_id)).model_dump(mode="json"))
