"""Entrypoint: validate configuration, wait for Postgres (bounded), migrate, serve."""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.api.app import create_app
from services.api.config import ConfigError, load_settings
from services.api.server import DrainingServer
from services.api.store import migrate
from services.common import jsonlog
from services.common.redact import dsn_password, safe_dsn
from services.common.startup import DependencyTimeout, retry_until_ready

logger = logging.getLogger("api.startup")


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    secrets = tuple(s for s in (dsn_password(settings.database_url),) if s)
    jsonlog.configure("api", settings.log_level, secrets)
    jsonlog.log(logger, "starting", database=safe_dsn(settings.database_url), mlflow=settings.mlflow_url,
                port=settings.port, health_budget_s=round(settings.health_budget, 2),
                required=list(settings.required))
    try:
        retry_until_ready(lambda: migrate(settings.database_url), what="postgres",
                          timeout=settings.startup_timeout,
                          log=lambda msg, f: jsonlog.log(logger, msg, **f))
    except DependencyTimeout as exc:
        jsonlog.log(logger, "giving up", logging.ERROR, error=str(exc))
        return 1
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=int(settings.shutdown_grace) or 1,
                            lifespan="on")
    server = DrainingServer(config, app.state.health, settings.drain_seconds)
    server.run()
    jsonlog.log(logger, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
