"""Soak: moderate load for 30 minutes, for leaks and slow drift. Opt-in: run it by name."""

from harness_locust.shape import StagedShape

PROFILE = {
    "description": "10 api clients and 3 poller nodes (1 s) for 30 minutes; finds leaks and drift",
    "stages": [
        {"until": 10, "clients": 10, "spawn_rate": 2},
        {"until": 1800, "clients": 10, "spawn_rate": 2},
    ],
    "poller": {"nodes": 3, "interval": 1.0},
    "client_wait": [0.2, 1.0],
    "max_requests": 2_000_000,
    "opt_in": True,
}


class Soak(StagedShape):
    profile = PROFILE
