"""uvicorn with a drain phase: on SIGTERM report fail at once, keep serving, then shut down."""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn

from services.api.health import HealthService
from services.common import jsonlog

logger = logging.getLogger("api.server")


class DrainingServer(uvicorn.Server):
    """First SIGTERM/SIGINT: /health answers fail for ``drain_seconds`` while requests are still
    served (the load balancer takes the target out), then uvicorn's graceful shutdown finishes
    in-flight requests within ``timeout_graceful_shutdown``. A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, health: HealthService, drain_seconds: float) -> None:
        super().__init__(config)
        self.health = health
        self.drain_seconds = drain_seconds
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is not None:
            self.should_exit = True
            self.force_exit = sig == signal.SIGINT
            return
        self.health.draining = True
        self.drain_deadline = time.monotonic() + self.drain_seconds
        jsonlog.log(
            logger,
            "draining",
            signal=signal.Signals(sig).name,
            drain_s=self.drain_seconds,
            grace_s=self.config.timeout_graceful_shutdown,
        )

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)
