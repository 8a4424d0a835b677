"""The api's Prometheus metrics: dependency checks, bounded work and shed requests, request latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.api.checks import CheckResult


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "api_health_checks", "dependency checks run by /health", ["component", "status"], registry=self.registry
        )
        self.evaluations = Counter(
            "api_health_evaluations", "evaluations of the dependency checks", registry=self.registry
        )
        self.dependency_up = Gauge(
            "api_dependency_up", "1 when the dependency's last check passed", ["component"], registry=self.registry
        )
        self.latency = Histogram("api_request_seconds", "request latency", ["route", "status"], registry=self.registry)
        self._latency_by: dict[tuple[str, int], Histogram] = {}
        self.in_flight = Gauge(
            "api_in_flight", "requests at work on a dependency", ["dependency"], registry=self.registry
        )
        self.sheds = Counter(
            "api_shed",
            "requests shed: no free slot on the dependency within the queue wait",
            ["dependency"],
            registry=self.registry,
        )

    def in_flight_changed(self, dependency: str, n: int) -> None:
        self.in_flight.labels(dependency).set(n)

    def shed(self, dependency: str) -> None:
        self.sheds.labels(dependency).inc()

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One request's latency. The labelled child is looked up once per (route, status): routes
        are templates (or "unmatched"), so the map stays small."""
        child = self._latency_by.get((route, status))
        if child is None:
            child = self._latency_by[(route, status)] = self.latency.labels(route, str(status))
        child.observe(seconds)

    def record(self, results: tuple[CheckResult, ...]) -> None:
        self.evaluations.inc()
        for r in results:
            self.dependency_up.labels(r.component).set(1 if r.status.value == "pass" else 0)

    def check(self, result: CheckResult) -> None:
        """One dependency check that ran (an evaluation may run a fast check again while a slow one runs)."""
        self.checks.labels(result.component, result.status.value).inc()
