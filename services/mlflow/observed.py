"""MLflow's ASGI app as ``services.mlflow.serve`` runs it: every request gets an X-Request-ID (the
caller's, such as the api's, or a new one) and one JSON line with its path, status and latency,
the same line the api writes; MLflow's and uvicorn's own loggers write JSON lines too, with the
backend store's password redacted. A call past its caller's ``X-Request-Deadline`` is refused
before its handler starts (``services.mlflow.deadline``)."""

from __future__ import annotations

import logging
import os

from services.common import jsonlog
from services.common.middleware import RequestObserver
from services.common.redact import dsn_secrets
from services.mlflow import deadline

jsonlog.configure(
    "mlflow",
    os.environ.get("MLFLOW_LOG_LEVEL", "INFO"),
    dsn_secrets(os.environ.get("MLFLOW_BACKEND_STORE_URI", "")),
)
logging.captureWarnings(True)  # a warning at import (a deprecation) is a JSON line too

from mlflow.server import app as flask_app  # noqa: E402 - after the log is set up: its import warns
from mlflow.server.fastapi_app import app as mlflow_app  # noqa: E402

deadline.install(flask_app)
# no body limit or read deadline here: MLflow takes artifact uploads of any size and paces them
app = RequestObserver(mlflow_app, max_body_bytes=None, body_timeout=None, logger_name="mlflow")
