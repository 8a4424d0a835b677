"""Step: add clients in steps up to the measured capacity (the breakpoint profile's knee was at 32
clients, capacity 24, on 2 cores); each step holds 30 s and every step must meet the SLOs."""

from harness_locust.shape import StagedShape

PROFILE = {
    "description": "4, 8, 12, 16, 20 api clients, 30 s each (within capacity); 3 poller nodes every 1 s",
    "stages": [
        {"until": 30, "clients": 4, "spawn_rate": 4},
        {"until": 60, "clients": 8, "spawn_rate": 4},
        {"until": 90, "clients": 12, "spawn_rate": 4},
        {"until": 120, "clients": 16, "spawn_rate": 4},
        {"until": 150, "clients": 20, "spawn_rate": 4},
    ],
    "poller": {"nodes": 3, "interval": 1.0},
    "client_wait": [0.1, 0.5],
    "max_requests": 200_000,
}


class Step(StagedShape):
    profile = PROFILE
