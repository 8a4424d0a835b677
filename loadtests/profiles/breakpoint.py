"""Breakpoint: ramp api clients in steps until the write path breaks its SLO; reports the knee
(clients and requests/s where p99 or errors cross) and which dependency saturated first."""

from harness_locust.shape import StagedShape

PROFILE = {
    "description": "4, 8, 12, 16, 24, 32, 48, 64 api clients, 20 s each; 2 poller nodes every 1 s; reports the knee",
    "stages": [
        {"until": 20, "clients": 4, "spawn_rate": 4},
        {"until": 40, "clients": 8, "spawn_rate": 4},
        {"until": 60, "clients": 12, "spawn_rate": 4},
        {"until": 80, "clients": 16, "spawn_rate": 4},
        {"until": 100, "clients": 24, "spawn_rate": 8},
        {"until": 120, "clients": 32, "spawn_rate": 8},
        {"until": 140, "clients": 48, "spawn_rate": 16},
        {"until": 160, "clients": 64, "spawn_rate": 16},
    ],
    "poller": {"nodes": 2, "interval": 1.0},
    "client_wait": [0.1, 0.5],
    "max_requests": 200_000,
    "find_knee": True,
}


class Breakpoint(StagedShape):
    profile = PROFILE
