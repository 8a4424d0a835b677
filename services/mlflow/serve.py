"""``mlflow server`` with its ASGI app wrapped by ``services.mlflow.observed`` (one JSON line per
request with its X-Request-ID; MLflow's own loggers in JSON too).

    python -m services.mlflow.serve --host 0.0.0.0 --port 5000 ...   # the options of `mlflow server`

``mlflow server`` prepares the backend store and its environment, then starts
``uvicorn mlflow.server.fastapi_app:app``; it has no option for middleware, and its plugin apps
(``--app-name``) come from installed entry points. So the one change is made where the uvicorn
command is built: the app named there becomes the observed one. MLflow is pinned (3.17.2); a
test starts the server this way and finds a request's id in its log, so an MLflow that builds
its command elsewhere fails that test rather than logging silently in the old format."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import mlflow.server as server

MLFLOW_APP = "mlflow.server.fastapi_app:app"
OBSERVED_APP = "services.mlflow.observed:app"
_build_uvicorn_command: Callable[..., list[str]] = server._build_uvicorn_command


def observed_command(*args: Any, **kwargs: Any) -> list[str]:
    """MLflow's uvicorn command with the observed app in place of its own."""
    command = _build_uvicorn_command(*args, **kwargs)
    if MLFLOW_APP not in command:
        raise RuntimeError(f"mlflow's uvicorn command no longer names {MLFLOW_APP}: {command}")
    return [OBSERVED_APP if part == MLFLOW_APP else part for part in command]


def main(argv: list[str]) -> None:
    import logging
    import os

    import click
    from mlflow.cli import cli

    from services.common import jsonlog
    from services.common.redact import dsn_secrets

    secrets = dsn_secrets(os.environ.get("MLFLOW_BACKEND_STORE_URI", ""))
    jsonlog.configure("mlflow", os.environ.get("MLFLOW_LOG_LEVEL", "INFO"), secrets)
    logging.captureWarnings(True)
    logger = logging.getLogger("mlflow.cli")
    # the CLI's notices ("Registry store URI not provided ...") as JSON lines like every other
    click.echo = lambda message=None, *args, **kwargs: jsonlog.log(logger, str(message))
    server._build_uvicorn_command = observed_command
    cli(["server", *argv], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
