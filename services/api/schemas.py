"""What the api takes and answers, as its OpenAPI document describes it: the request and response
bodies, the documented error and health answers, and the document's one addition (every answer
carries X-Request-ID)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StringConstraints, WithJsonSchema, field_validator

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
    """One check as answered: no error text (the request's log line has it)."""

    componentType: str
    observedValue: float
    observedUnit: str
    status: Literal["pass", "warn", "fail"]
    time: str


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


def error_answer(description: str, retry: bool = False) -> dict[str, Any]:
    """An error answer as a route's ``responses`` lists it."""
    headers = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
    return {"description": description, "model": Error, **({"headers": headers} if retry else {})}


def health_answer(description: str) -> dict[str, Any]:
    """A health+json answer as a route's ``responses`` lists it."""
    return {"description": description, "model": Health}


REQUEST_ID_HEADER = {
    "description": "the request's id: the client's X-Request-ID (up to 128 characters) or a generated one",
    "schema": {"type": "string", "maxLength": 128},
}
UNAVAILABLE = error_answer("a dependency is unavailable or the api is shedding load (`overloaded`)", retry=True)
INVALID = error_answer("the request breaks the schema: `problems` names every field")


def openapi_of(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's description, plus what it cannot know: every answer carries
    X-Request-ID."""

    def openapi() -> dict[str, Any]:
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

    return openapi
