"""Spike: a sudden six-fold arrival of clients for 20 s, beyond capacity, then back. Judged on
graceful degradation: excess is shed fast (503, never a hang), /health holds, and within 10 s of
the spike's end the write path is back to its normal error rate."""

from harness_locust.shape import StagedShape

PROFILE = {
    "description": "10 api clients, a spike to 60 for 20 s at t=30 s, back to 10 until 80 s; 3 pollers every 1 s",
    "stages": [
        {"until": 30, "clients": 10, "spawn_rate": 10},
        {"until": 50, "clients": 60, "spawn_rate": 50},
        {"until": 80, "clients": 10, "spawn_rate": 50},
    ],
    "poller": {"nodes": 3, "interval": 1.0},
    "client_wait": [0.1, 0.5],
    "max_requests": 200_000,
    "recover_within": 10,
}


class Spike(StagedShape):
    profile = PROFILE
