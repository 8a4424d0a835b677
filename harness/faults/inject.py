"""The fault API over both runtimes, a bounded background writer, and the scenario runner.

    with fault(stack, "pause", "postgres"):                  # SIGSTOP / docker pause
    with fault(stack, "latency", "api->postgres", ms=3000):  # a toxic on the link's proxy
        ...                                                  # always removed at the end of the block
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import psycopg

from harness.errors import ConfigurationError
from harness.faults.sampler import Prober
from harness.faults.scenarios import Scenario
from harness.stack.proxy import Bandwidth, Blackhole, Latency, Refuse, ResetPeer, Respond, SlowClose, Toxic
from harness.stack.stack import Stack
from harness.wait import wait_until


def _toxic(kind: str, params: dict) -> Toxic:
    limit = params.get("limit")
    if kind == "latency":
        return Latency(ms=params.get("ms", 1000), jitter_ms=params.get("jitter_ms", 0),
                       direction=params.get("direction", "downstream"), limit=limit)
    if kind == "bandwidth":
        return Bandwidth(kbps=params.get("kbps", 8), direction=params.get("direction", "downstream"), limit=limit)
    if kind == "blackhole":
        return Blackhole(limit=limit)
    if kind == "reset":
        return ResetPeer(after_ms=params.get("after_ms", 0), limit=limit)
    if kind == "slow_close":
        return SlowClose(ms=params.get("ms", 2000), limit=limit)
    if kind == "refuse":
        return Refuse()
    if kind == "respond":
        status = int(params.get("status", 503))
        body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected by the harness"}'
        head = (f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        return Respond(payload=head + body, limit=limit)
    raise ConfigurationError("a fault kind", repr(kind), "see harness/scenarios.py")


@contextlib.contextmanager
def fault(stack: Stack, kind: str, target: str, grace: float = 10.0, **params: object) -> Iterator[Toxic | None]:
    """Inject a fault for the duration of the block; the service or link is restored on exit.
    Yields the toxic for link faults (its ``applied`` count shows the fault took effect)."""
    if "->" in target:
        proxy = stack.proxies.get(target)
        if proxy is None:
            raise ConfigurationError(f"a fault proxy on {target}", "none (the stack runs without proxies)",
                                     "start the stack with StackConfig(proxies=True)")
        with proxy.toxic(_toxic(kind, params)) as toxic:
            yield toxic
        return
    svc = stack.services[target]
    if kind == "pause":
        svc.pause()
        try:
            yield
        finally:
            svc.resume()
    elif kind in ("kill", "stop"):
        svc.kill() if kind == "kill" else svc.stop(grace)
        try:
            yield
        finally:
            svc.start()
    elif kind == "restart":
        svc.restart(grace)
        yield
    else:
        raise ConfigurationError(f"a process fault for {target} (kill, pause, stop, restart)", repr(kind), "")


@dataclass
class WriteResult:
    t: float
    status: int | None
    run_id: str | None = None
    detail: str | None = None
    error: str | None = None


@dataclass
class Writer:
    """Writes through POST /runs until stopped; bounded in requests and time."""

    api_url: str
    interval: float = 0.05
    max_requests: int = 5000
    max_duration: float = 300.0
    results: list[WriteResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self.experiment = f"nodataloss-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Writer:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() - self.started > self.max_duration:
                    return
                t = time.monotonic() - self.started
                try:
                    r = client.post(f"{self.api_url}/runs", json={
                        "experiment": self.experiment, "name": f"w{i}", "params": {"i": str(i)},
                        "metrics": {"i": float(i)}})
                    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                    self.results.append(WriteResult(t, r.status_code, body.get("id"), body.get("detail")))
                except (httpx.HTTPError, ValueError) as exc:
                    self.results.append(WriteResult(t, None, error=type(exc).__name__))
                self._stop.wait(self.interval)

    @property
    def acknowledged(self) -> list[WriteResult]:
        return [r for r in self.results if r.status is not None and 200 <= r.status < 300]

    @property
    def clear_failures(self) -> list[WriteResult]:
        return [r for r in self.results if r.status == 503 and r.detail]

    @property
    def unclear_failures(self) -> list[WriteResult]:
        ok = {id(r) for r in self.acknowledged + self.clear_failures}
        return [r for r in self.results if id(r) not in ok]


def missing_writes(stack: Stack, writes: list[WriteResult]) -> list[str]:
    """Acknowledged writes absent from Postgres or MLflow (checked directly, not through the api)."""
    missing = []
    ids = [w.run_id for w in writes]
    with psycopg.connect(stack.dsn("api")) as conn:
        rows = dict(conn.execute("SELECT id::text, mlflow_run_id FROM api_runs WHERE id = ANY(%s::uuid[])",
                                 (ids,)).fetchall())
    with httpx.Client(timeout=10) as client:
        for rid in ids:
            if rid not in rows:
                missing.append(f"{rid}: no row in Postgres")
                continue
            r = client.get(f"{stack.url('mlflow')}/api/2.0/mlflow/runs/get", params={"run_id": rows[rid]})
            if r.status_code != 200 or r.json()["run"]["info"].get("lifecycle_stage") != "active":
                missing.append(f"{rid}: MLflow run {rows[rid]} answered {r.status_code}")
    return missing


@dataclass
class Outcome:
    scenario: Scenario
    fault_start: float
    fault_end: float
    prober: Prober
    writer: Writer | None = None
    applied: int | None = None  # link faults: how often the toxic took effect

    def series(self, endpoint: str):
        """Samples of ``endpoint`` as the scenario names it (MLflow's paths included)."""
        mlflow = endpoint.startswith("/mlflow/")
        return [s for s in self.prober.samples
                if s.endpoint == endpoint or (mlflow and s.endpoint.endswith(endpoint))]


def run(stack: Stack, scenario: Scenario, settle: float) -> Outcome:
    """Probe, inject the fault for its duration, remove it, wait for recovery, return the series."""
    mlflow_root = stack.url("mlflow").removesuffix("/mlflow")
    # endpoints under /mlflow/ are MLflow's own, probed directly; the rest are the api's
    endpoints = tuple(mlflow_root + e if e.startswith("/mlflow/") else e for e in scenario.endpoints)
    with contextlib.ExitStack() as es:
        prober = es.enter_context(Prober(stack.url("api"), endpoints, interval=scenario.interval,
                                         timeout=30, max_duration=300))
        writer = None
        if scenario.writer is not None:
            writer = es.enter_context(Writer(stack.url("api"), scenario.writer.get("interval", 0.05),
                                             scenario.writer.get("max_requests", 5000)))
        wait_until(lambda: prober.first(scenario.endpoints[0], 0, 200), timeout=10,
                   what="a healthy first sample before the fault")
        start = prober.now()
        with fault(stack, scenario.kind, scenario.target, **scenario.params) as toxic:
            wait_until(prober.now, until=lambda t: t >= start + scenario.duration, timeout=scenario.duration + 5,
                       interval=0.05, what=f"the {scenario.duration}s fault window")
        end = prober.now()
        # recovery: the api reports pass again (bounded), then a short settle for the series
        wait_until(lambda: [s for s in prober.series("/health") if s.t >= end and s.status == 200
                            and s.health == "pass"], timeout=settle, interval=0.1,
                   what=f"/health to report pass after the {scenario.name} fault ended")
        if writer is not None:
            written = len(writer.results)
            wait_until(lambda: len(writer.results), until=lambda n: n >= written + 3, timeout=10,
                       what="a few writes after recovery")
    return Outcome(scenario, start, end, prober, writer, applied=toxic.applied if toxic is not None else None)
