"""Named timeouts, in one place, scaled by one multiplier (``--timeout-multiplier``)."""

from __future__ import annotations

from dataclasses import dataclass

# Seconds on a 2-core machine; see README "Timings" for the measured values they cover.
BASE = {
    "postgres_ready": 30.0,   # initdb + start: ~1-3 s measured
    "mlflow_ready": 90.0,     # the container start period; measured 4-19 s locally
    "api_ready": 30.0,        # ~1 s once Postgres answers
    "stop": 20.0,             # SIGTERM to gone, per service (api drain + grace included)
    "http": 5.0,              # one HTTP call made by the harness
    "detect": 3.0,            # a fault shows in /health, beyond the api's own check budget
}


@dataclass(frozen=True)
class Budgets:
    multiplier: float = 1.0

    def __getattr__(self, name: str) -> float:
        try:
            return BASE[name] * self.multiplier
        except KeyError:
            raise AttributeError(f"no budget named {name!r}; known: {sorted(BASE)}") from None

    def scaled(self, seconds: float) -> float:
        return seconds * self.multiplier
