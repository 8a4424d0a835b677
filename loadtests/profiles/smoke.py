"""Smoke: a few clients and the load balancer's poller for 30 s; every endpoint answered, SLOs met."""

from harness_locust.shape import StagedShape

PROFILE = {
    "description": "4 api clients and 3 poller nodes for 30 s: proves the stack serves and the gate works",
    "stages": [
        {"until": 5, "clients": 4, "spawn_rate": 2},
        {"until": 30, "clients": 4, "spawn_rate": 2},
    ],
    "poller": {"nodes": 3, "interval": 1.0},
    "client_wait": [0.1, 0.5],
    "max_requests": 5_000,
}


class Smoke(StagedShape):
    profile = PROFILE
