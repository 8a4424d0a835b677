"""What a load test shows while it runs: the newest figures of Locust's per-second history (the
progress line), the api's ``/metrics`` sampled once a second (``api_metrics.jsonl``, for the knee),
and the Postgres checks its ``/health`` has run (before and after, for the health cache)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from harness.load import locust_csv, prometheus

HISTORY_TAIL = 8192  # bytes of Locust's history read for the live figures: its newest seconds


def live_figures(history: Path) -> str | None:
    """Users, requests/s, failures/s and p95 from the newest Aggregated row of Locust's per-second
    history (only the file's tail is read: a soak run's history grows for half an hour)."""
    try:
        table = locust_csv.rows(history, tail=HISTORY_TAIL)
    except OSError:
        return None
    for row in reversed(table):
        if row.get("Name") == "Aggregated" and row.get("Requests/s") not in (None, ""):
            p95 = row.get("95%") or "N/A"
            return (
                f"{row['User Count']} users, {float(row['Requests/s']):.1f} req/s, "
                f"{float(row['Failures/s']):.1f} failures/s, p95 {p95 if p95 == 'N/A' else p95 + ' ms'}"
            )
    return None


def postgres_checks(text: str) -> float | None:
    """Postgres checks counted in a ``/metrics`` text (``api_health_checks_total``, every status)."""
    try:
        found = prometheus.samples(text)
    except ValueError:
        return None
    return prometheus.total(found, "api_health_checks_total", component="postgres")


def dependency_checks(api: str) -> float | None:
    """Postgres checks the api's /health has run so far (its Prometheus counter); None if unreadable."""
    try:
        text = httpx.get(f"{api}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    return postgres_checks(text)


def bulkheads(text: str) -> dict:
    """One line of ``api_metrics.jsonl`` without its time: ``api_in_flight`` and ``api_shed_total``
    per dependency. ValueError if ``text`` is not Prometheus text."""
    found = prometheus.samples(text)
    return {
        "in_flight": prometheus.by_label(found, "api_in_flight", "dependency"),
        "shed": prometheus.by_label(found, "api_shed_total", "dependency"),
    }


class MetricsRecorder:
    """Samples the api's ``/metrics`` once a second into ``api_metrics.jsonl`` while a load test
    runs: ``api_in_flight`` and ``api_shed_total`` per dependency. Bounded by ``max_seconds``;
    stops when its ``with`` block ends. A target without those metrics leaves lines without them."""

    def __init__(self, base_url: str, path: Path, interval: float = 1.0, max_seconds: float = 3600.0) -> None:
        self.base_url, self.path, self.interval, self.max_seconds = base_url, path, interval, max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="api metrics", daemon=True)

    def __enter__(self) -> MetricsRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        started = time.monotonic()
        with httpx.Client(timeout=5) as client, self.path.open("a") as out:
            while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
                line: dict = {"t": round(time.monotonic() - started, 1), "in_flight": {}, "shed": {}}
                try:
                    line.update(bulkheads(client.get(f"{self.base_url}/metrics").text))
                except (httpx.HTTPError, ValueError) as exc:
                    line["error"] = type(exc).__name__
                out.write(json.dumps(line) + "\n")
                out.flush()
                self._stop.wait(self.interval)
