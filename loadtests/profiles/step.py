"""Step: add clients in steps to find where latency bends; each step holds 30 s."""

from loadtests.shape import StagedShape

PROFILE = {
    "description": "5, 10, 20, 30, 40 api clients, 30 s each; 3 poller nodes every 1 s",
    "stages": [
        {"until": 30, "clients": 5, "spawn_rate": 5},
        {"until": 60, "clients": 10, "spawn_rate": 5},
        {"until": 90, "clients": 20, "spawn_rate": 5},
        {"until": 120, "clients": 30, "spawn_rate": 5},
        {"until": 150, "clients": 40, "spawn_rate": 5},
    ],
    "poller": {"nodes": 3, "interval": 1.0},
    "client_wait": [0.1, 0.5],
    "max_requests": 200_000,
}


class Step(StagedShape):
    profile = PROFILE
