"""Steady: enough clients to keep one api worker busy for two minutes, pollers every 0.25 s."""

from harness_locust.shape import StagedShape

PROFILE = {
    "description": "ramp to 16 api clients in 8 s, hold to 120 s; 4 poller nodes every 0.25 s",
    "stages": [
        {"until": 8, "clients": 16, "spawn_rate": 2},
        {"until": 120, "clients": 16, "spawn_rate": 2},
    ],
    "poller": {"nodes": 4, "interval": 0.25},
    "client_wait": [0.0, 0.05],
    "max_requests": 100_000,
}


class Steady(StagedShape):
    profile = PROFILE
