"""The api (``services/api``): FastAPI on uvicorn. Ready means ``/health`` reports ``pass``.

The harness reads the api's settings (timeouts, budgets, drain) only through the api's own
``python -m services.api --check-config``, never by importing its code."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness import healthjson
from harness.process import python_env
from harness.stack.black_box import check_config
from harness.stack.config import StackConfig
from harness.stack.postgres import client_tls, local_bundle
from harness.stack.spec import Launch, Links, Readiness, ServiceSpec

MODULE = "services.api"


def health(base_url: str, timeout: float = 5.0) -> dict:
    """``GET /health`` in short: {"http": status, "status": pass|warn|fail|None, "checks": {name: status}}."""
    return healthjson.summary(httpx.get(f"{base_url}/health", timeout=timeout))


@dataclass(frozen=True)
class ApiConfig:
    """The api's effective timing settings, as ``--check-config`` reports them (seconds)."""

    db_timeout: float
    mlflow_timeout: float
    mlflow_budget: float
    health_budget: float
    health_cache_ttl: float
    request_timeout: float
    drain_seconds: float
    shutdown_grace: float
    claim_lease: float


def api_config(env: Mapping[str, str], where: str = "") -> ApiConfig:
    """The api's settings for ``env`` (its API_* variables), asked of the api itself. Nothing is
    filled in: a variable ``env`` lacks is missing for the api too."""
    values = check_config(MODULE, {k: v for k, v in env.items() if k.startswith("API_")}, where)
    return ApiConfig(**{f: float(values[f]) for f in ApiConfig.__dataclass_fields__})


class Api(ServiceSpec):
    name = "api"
    port = 8000
    depends_on = ("postgres", "mlflow")
    budget = "api_ready"

    def environment(self, config: StackConfig, links: Links, reached_as: tuple[str, ...] = ()) -> dict[str, str]:
        host, port = links["mlflow"]
        return {
            "API_DATABASE_URL": config.dsn(links["postgres"], "api"),
            **client_tls("API_DATABASE_"),
            "API_MLFLOW_URL": f"http://{host}:{port}/mlflow",
            **dict(config.api_env),
        }

    def local(self, config: StackConfig, links: Links, port: int, workdir: Path) -> Launch:
        env = {
            **python_env(workdir),
            **self.environment(config, links),
            **client_tls("API_DATABASE_", local_bundle(config, workdir)),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
        }
        return Launch([sys.executable, "-m", MODULE], env)

    def readiness(self, url: str, status: str = "pass") -> Readiness:
        return Readiness(lambda: health(url), lambda h: h["status"] == status, f"api /health to report {status}")


API = Api()
