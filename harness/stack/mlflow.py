"""MLflow: the tracking server under ``/mlflow`` (``services/mlflow/entrypoint.py``), with its
backend store in Postgres. Ready means a tracking call answers, not only ``/mlflow/health``,
which stays 200 while MLflow's database is gone (docs/mlflow.md)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from harness.process import python_env
from harness.stack.black_box import check_config
from harness.stack.config import StackConfig
from harness.stack.postgres import client_tls, local_bundle
from harness.stack.spec import Launch, Links, Readiness, ServiceSpec

MODULE = "services.mlflow.entrypoint"
# the host names the api may use for MLflow: the service name, and loopback for host-side clients
ALLOWED_HOSTS = ("mlflow", "localhost", "127.0.0.1")


def ready(base_url: str, timeout: float = 5.0) -> int:
    """Readiness: /health, then a real tracking call (experiments search); the status seen."""
    health = httpx.get(f"{base_url}/health", timeout=timeout).status_code
    if health != 200:
        return health
    return httpx.get(
        f"{base_url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=timeout
    ).status_code


def mlflow_config(env: Mapping[str, str], where: str = "") -> dict:
    """MLflow's effective settings for ``env`` (its MLFLOW_* variables), from its entrypoint's
    ``--check-config``: workers, job execution, prefix, artifacts, allowed hosts, argv."""
    return check_config(MODULE, {k: v for k, v in env.items() if k.startswith("MLFLOW_")}, where)


class Mlflow(ServiceSpec):
    name = "mlflow"
    port = 5000
    path = "/mlflow"
    depends_on = ("postgres",)
    budget = "mlflow_ready"

    def environment(self, config: StackConfig, links: Links, reached_as: tuple[str, ...] = ()) -> dict[str, str]:
        hosts = ",".join(f"{h},{h}:*" for h in (*ALLOWED_HOSTS, *reached_as))
        return {
            "MLFLOW_BACKEND_STORE_URI": config.dsn(links["postgres"], "mlflow"),
            **client_tls("MLFLOW_DATABASE_"),
            "MLFLOW_ALLOWED_HOSTS": hosts,
            "MLFLOW_WORKERS": str(config.mlflow_workers),
            **dict(config.mlflow_env),
        }

    def local(self, config: StackConfig, links: Links, port: int, workdir: Path) -> Launch:
        env = {
            **python_env(workdir),
            **self.environment(config, links),
            **client_tls("MLFLOW_DATABASE_", local_bundle(config, workdir)),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(port),
            "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "artifacts"),
        }
        return Launch([sys.executable, "-m", MODULE], env)

    def readiness(self, url: str) -> Readiness:
        return Readiness(
            lambda: ready(url),
            lambda s: s == 200,
            "mlflow tracking API (experiments search) to answer 200",
            interval=0.2,
        )


MLFLOW = Mlflow()
