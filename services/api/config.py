"""The api's configuration: environment variables prefixed ``API_``, read once."""

from __future__ import annotations

import os
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.common.dsn import DsnError, database_url
from services.common.redact import redact

Component = Literal["postgres", "mlflow"]
# Variables whose value must never be echoed back in an error.
_SECRET_FIELDS = {"database_url"}


class Settings(BaseSettings):
    """Every knob of the api. Defaults suit a container behind an ALB with a 5 s timeout."""

    model_config = SettingsConfigDict(env_prefix="API_", frozen=True, extra="ignore")

    database_url: str = Field(description="Postgres URL, postgresql://user:pass@host:port/db")
    mlflow_url: str = Field(description="MLflow base URL including its prefix, e.g. http://mlflow:5000/mlflow")
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    db_timeout: float = Field(1.0, gt=0, le=60, description="seconds for one Postgres health query")
    mlflow_timeout: float = Field(1.0, gt=0, le=60, description="seconds for one MLflow attempt")
    mlflow_retries: int = Field(2, ge=0, le=10, description="extra MLflow attempts after a failure")
    mlflow_backoff: float = Field(0.1, ge=0, le=10, description="first retry delay; doubles per retry")
    health_cache_ttl: float = Field(2.0, ge=0, le=60, description="seconds a health result is reused")
    health_max_stale: float = Field(
        10.0,
        ge=0,
        le=300,
        description=(
            "seconds an older health result is still served at once while one refresh runs; older "
            "than this, a caller waits for the refresh"
        ),
    )
    loop_stall_limit: float = Field(
        3.0,
        gt=0,
        le=60,
        description=("seconds the event loop may be blocked before /health fails (task-local trouble)"),
    )
    required: Annotated[tuple[Component, ...], NoDecode] = Field(
        ("postgres", "mlflow"), description="comma list: dependencies whose failure means fail; the rest warn"
    )
    request_timeout: float = Field(10.0, gt=0, le=120, description="deadline of one domain request")
    startup_timeout: float = Field(60.0, ge=0, le=600, description="how long startup waits for Postgres")
    drain_seconds: float = Field(5.0, ge=0, le=300, description="after SIGTERM: report fail, keep serving")
    shutdown_grace: float = Field(10.0, ge=0, le=300, description="after draining: finish in-flight requests")
    max_body_bytes: int = Field(
        65536,
        ge=1024,
        le=10 * 1024 * 1024,
        description="largest request body (413 beyond it), counted while reading: chunked bodies too",
    )
    body_timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        description="seconds a client may take to send its whole request body (408 beyond it)",
    )
    db_max_connections: int = Field(
        10,
        ge=1,
        le=100,
        description=(
            "requests at work on Postgres at once (one connection each, kept between requests;"
            " the health check has one more)"
        ),
    )
    mlflow_concurrency: int = Field(8, ge=1, le=200, description="requests at work on MLflow at once")
    queue_wait: float = Field(
        0.5,
        ge=0,
        le=30,
        description=("seconds a request waits for a free Postgres or MLflow slot before it is shed with 503"),
    )
    mlflow_settle_time: float = Field(
        10.0,
        ge=0,
        le=600,
        description=(
            "seconds after the api stops waiting for an MLflow call during which MLflow may still "
            "commit its writes (sent as X-Commit-Deadline; MLflow commits nothing later); the claim "
            "lease covers it"
        ),
    )
    claim_lease: float = Field(
        30.0,
        gt=0,
        le=3600,
        description=(
            "seconds a request holds a pending run's row; at least API_QUEUE_WAIT + API_REQUEST_TIMEOUT "
            "+ API_MLFLOW_SETTLE_TIME, so no retry searches MLflow while an earlier create may still land"
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql:// URL")
        if not parts.hostname:
            raise ValueError("expected a host in the URL")
        return v

    @field_validator("mlflow_url")
    @classmethod
    def _mlflow_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s):// URL with a host")
        if not parts.path or parts.path == "/" or parts.path.endswith("/"):
            raise ValueError("expected the MLflow prefix as the path without a trailing slash, e.g. /mlflow")
        return v

    @field_validator("required", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @model_validator(mode="after")
    def _budget_fits(self) -> Settings:
        if self.health_max_stale < self.health_cache_ttl:
            raise ValueError(
                f"API_HEALTH_MAX_STALE={self.health_max_stale} must be at least "
                f"API_HEALTH_CACHE_TTL={self.health_cache_ttl}"
            )
        if self.health_budget >= self.request_timeout:
            raise ValueError(
                f"health budget {self.health_budget:.2f}s (from API_MLFLOW_TIMEOUT, API_MLFLOW_RETRIES, "
                f"API_MLFLOW_BACKOFF, API_DB_TIMEOUT) must be below API_REQUEST_TIMEOUT={self.request_timeout}"
            )
        if self.claim_lease < self.longest_write:
            raise ValueError(
                f"API_CLAIM_LEASE={self.claim_lease:g} must be at least the longest write, "
                f"{self.longest_write:g}s (API_QUEUE_WAIT={self.queue_wait:g} + API_REQUEST_TIMEOUT="
                f"{self.request_timeout:g} + API_MLFLOW_SETTLE_TIME={self.mlflow_settle_time:g}): a shorter "
                "lease lets a retry search MLflow while an earlier create may still land, and make a second run"
            )
        return self

    @property
    def longest_write(self) -> float:
        """Seconds from a write's claim to the last moment MLflow may act on it: the slot wait, the
        request's deadline, MLflow's own time for a call the api stopped waiting for."""
        return self.queue_wait + self.request_timeout + self.mlflow_settle_time

    @property
    def mlflow_budget(self) -> float:
        """Worst-case seconds of the MLflow check: every attempt times out, every backoff waited."""
        backoffs: float = sum(self.mlflow_backoff * 2**i for i in range(self.mlflow_retries))
        return (self.mlflow_retries + 1) * self.mlflow_timeout + backoffs

    @property
    def health_budget(self) -> float:
        """Worst-case seconds of one uncached /health evaluation (checks run concurrently)."""
        return max(self.db_timeout, self.mlflow_budget)

    def is_required(self, component: str) -> bool:
        return component in self.required


class ConfigError(SystemExit):
    """Raised at startup with one readable message; exits with status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; on any problem raise ConfigError naming the variable. The
    database is ``API_DATABASE_URL``, or its pieces (``API_DATABASE_HOST``, ``_PORT``, ``_NAME``,
    ``_USER``, ``_PASSWORD``) when a secret store injects the password alone; ``API_DATABASE_SSLMODE``
    and ``API_DATABASE_SSLROOTCERT`` add TLS to either (``services.common.dsn``)."""
    try:
        if "database_url" not in overrides:
            url = database_url(os.environ, "API_DATABASE_", "API_DATABASE_URL")
            if url is not None:
                overrides["database_url"] = url
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic validates every value
    except DsnError as exc:
        raise ConfigError(f"invalid api configuration: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        var = f"API_{field.upper()}" if field else "configuration"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            hint = " (or its pieces: API_DATABASE_HOST, _NAME, _USER, _PASSWORD)" if field == "database_url" else ""
            lines.append(f"{var}: required but not set{hint}")
            continue
        shown = "" if field in _SECRET_FIELDS else f" (got {redact(repr(err.get('input')))[:80]})"
        lines.append(f"{var}: {msg}{shown}")
    return "invalid api configuration: " + "; ".join(lines)
