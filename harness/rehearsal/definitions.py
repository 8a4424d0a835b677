"""An ECS task definition's pieces in the forms Docker and the rehearsal use: a secret's value as
ECS injects it, a container health check as the Engine API takes it."""

from __future__ import annotations

import json
from typing import Any

NS = 1_000_000_000


def secret_value(sm: Any, value_from: str) -> str:
    """An ECS secret's value: a whole secret, or one JSON key of it (``<arn>:key::``)."""
    parts = value_from.split(":")
    arn, key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
    raw = sm.get_secret_value(SecretId=arn)["SecretString"]
    return json.loads(raw)[key] if key else raw


def engine_healthcheck(hc: dict) -> dict:
    """A task definition's healthCheck in the Engine API's form (start period 0 must be 1 ms there)."""
    return {
        "test": hc["command"],
        "interval": int(hc.get("interval", 30) * NS),
        "timeout": int(hc.get("timeout", 5) * NS),
        "retries": int(hc.get("retries", 3)),
        "start_period": int(max(hc.get("startPeriod", 0), 0.001) * NS),
    }
