"""A background HTTP sampler: samples endpoints during a disruption; tests judge the series after.

Bounded: it stops by itself after ``max_duration`` seconds or ``max_samples`` samples, and it
always stops when its ``with`` block ends.

Every sampler started is listed in ``RECORDED`` (the test plugin empties it before each test), so
the report draws each one's health timeline, passed or failed, with the windows and marks the test
gave it (``sampler.windows``, ``sampler.marks``, ``sampler.max_latency``)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import httpx

from harness import healthjson
from harness.pictures import Mark, Window, health_timeline
from harness.rehearsal.balancer import TARGET_HEADER

RECORDED: list[Sampler] = []  # every sampler started since the list was last emptied


@dataclass(frozen=True)
class Sample:
    endpoint: str
    t: float  # seconds since the prober started
    status: int | None  # HTTP status, None when no answer
    latency: float  # seconds
    health: str | None = None
    error: str | None = None
    source: str = ""  # behind a rehearsed fleet's listener: the target that answered (else one api)

    def __str__(self) -> str:
        what = self.status if self.status is not None else f"no answer ({self.error})"
        by = f" from {self.source}" if self.source else ""
        return f"t={self.t:7.3f}s {self.endpoint} -> {what} {self.health or ''}{by} in {self.latency * 1000:.0f} ms"


class Sampler:
    def __init__(
        self,
        base_url: str,
        endpoints: tuple[str, ...] = ("/health",),
        *,
        interval: float = 0.1,
        timeout: float = 10.0,
        max_duration: float = 300.0,
        max_samples: int = 20000,
    ) -> None:
        self.base_url, self.endpoints, self.interval, self.timeout = base_url, endpoints, interval, timeout
        self.max_duration, self.max_samples = max_duration, max_samples
        self.samples: deque[Sample] = deque(maxlen=max_samples)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.windows: list[Window] = []  # drawn shaded on the timeline (the fault)
        self.marks: list[Mark] = []  # drawn as lines (detection, recovery and their budgets)
        self.max_latency: float | None = None
        self.name = ""  # the picture's file name, when the test names it

    def __enter__(self) -> Sampler:
        self.started = time.monotonic()
        RECORDED.append(self)
        for ep in self.endpoints:
            t = threading.Thread(target=self._loop, args=(ep,), name=f"sampler {ep}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 1)

    def now(self) -> float:
        return time.monotonic() - self.started

    def _loop(self, endpoint: str) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.is_set() and self.now() < self.max_duration:
                t0 = time.monotonic()
                try:
                    r = client.get(endpoint)
                    health = (healthjson.body(r) or {}).get("status")
                    took, source = time.monotonic() - t0, r.headers.get(TARGET_HEADER, "")
                    sample = Sample(endpoint, t0 - self.started, r.status_code, took, health, source=source)
                except httpx.HTTPError as exc:
                    sample = Sample(endpoint, t0 - self.started, None, time.monotonic() - t0, error=type(exc).__name__)
                self.samples.append(sample)
                if len(self.samples) >= self.max_samples:
                    return
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def picture(self, title: str) -> str:
        """The health timeline of everything sampled so far (SVG)."""
        return picture(self.record(), title)

    def record(self) -> dict:
        """The series with its windows and marks, as JSON data (kept beside the picture)."""
        return {
            "samples": [asdict(s) for s in list(self.samples)],
            "windows": [asdict(w) for w in self.windows],
            "marks": [asdict(m) for m in self.marks],
            "max_latency": self.max_latency,
        }

    # -- judging the recorded series -------------------------------------------
    def series(self, endpoint: str = "/health") -> list[Sample]:
        return [s for s in list(self.samples) if s.endpoint == endpoint]

    def first(self, endpoint: str, after: float, status: int) -> Sample | None:
        """The first sample sent at or after ``after`` that answered ``status``."""
        return next((s for s in self.series(endpoint) if s.t >= after and s.status == status), None)

    def slowest(self, endpoint: str, start: float = 0.0, end: float = float("inf")) -> Sample | None:
        window = [s for s in self.series(endpoint) if start <= s.t <= end]
        return max(window, key=lambda s: s.latency, default=None)


def picture(record: dict, title: str) -> str:
    """A health timeline drawn from a sampler's ``record()`` (also one read back from its file)."""
    return health_timeline(
        [Sample(**s) for s in record["samples"]],
        title=title,
        windows=[Window(**w) for w in record["windows"]],
        marks=[Mark(**m) for m in record["marks"]],
        max_latency=record["max_latency"],
    )
