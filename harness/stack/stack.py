"""A stack: postgres, then mlflow, then api, each awaited on its real readiness, torn down in
reverse. Records each service's time to ready."""

from __future__ import annotations

import fcntl
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.budgets import Budgets
from harness.stack.api import API
from harness.stack.config import StackConfig
from harness.stack.mlflow import MLFLOW
from harness.stack.pgwire import proxy_tls
from harness.stack.postgres import NAMES, POSTGRES
from harness.stack.proxy import FaultProxy
from harness.stack.runtime.base import Runtime, Service
from harness.stack.spec import Address, Links, ServiceSpec
from harness.stack.toxics import Refuse
from harness.wait import wait_until

SPECS: dict[str, ServiceSpec] = {s.name: s for s in (POSTGRES, MLFLOW, API)}
ORDER = tuple(SPECS)  # dependency order: each service's depends_on comes before it
Progress = Callable[[str, float, float], None]


def link_name(service: str, dependency: str) -> str:
    return f"{service}->{dependency}"


@dataclass
class Stack:
    runtime: Runtime
    config: StackConfig = field(default_factory=StackConfig)
    budgets: Budgets = field(default_factory=Budgets)
    progress: Progress | None = None
    services: dict[str, Service] = field(default_factory=dict)
    ready_s: dict[str, float] = field(default_factory=dict)
    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    _starting: bool = field(default=False, init=False)

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, late_postgres: float = 0.0) -> None:
        """Start in dependency order. ``late_postgres`` > 0 (needs proxies) starts MLflow and the
        api while Postgres is still unreachable to them for that many seconds: a startup race."""
        if late_postgres:
            return self._start_racing(late_postgres)
        self._starting = True
        started = time.monotonic()
        for name in ORDER:
            t0 = time.monotonic()
            self._launch(name, {dep: self._link(link_name(name, dep), dep) for dep in SPECS[name].depends_on})
            self._await(name)
            self.ready_s[name] = round(time.monotonic() - t0, 2)
        self.ready_s["stack"] = round(time.monotonic() - started, 2)
        self._starting = False

    def _start_racing(self, late: float) -> None:
        self._starting = True
        self._launch("postgres", {})
        self._await("postgres")
        cut = [link_name(name, "postgres") for name in ("mlflow", "api")]
        for link in cut:
            self._link(link, "postgres")
            self.proxies[link].add(Refuse())
        for name in ("mlflow", "api"):
            self._launch(name, {dep: self._link(link_name(name, dep), dep) for dep in SPECS[name].depends_on})
        t0 = time.monotonic()

        def both_alive() -> float:
            self._alive("mlflow")
            self._alive("api")
            return time.monotonic() - t0

        wait_until(
            both_alive,
            until=lambda t: t >= late,
            timeout=late + 5,
            interval=0.2,
            what=f"mlflow and api to keep running while Postgres is unreachable for {late}s",
        )
        for link in cut:
            self.proxies[link].remove("refuse")
        lifted = time.monotonic()
        for name in ("mlflow", "api"):
            self._await(name)
            self.ready_s[f"{name}_after_postgres"] = round(time.monotonic() - lifted, 2)
        self._starting = False

    def _launch(self, name: str, links: Links) -> Service:
        svc = self.runtime.start(SPECS[name], self.config, links)
        self.services[name] = svc  # registered before any wait: close() stops it if the wait fails
        return svc

    def _await(self, name: str) -> None:
        """Ready by its real readiness, healthy by its container check; then its dependants may start."""
        self.wait_ready(name)
        self.wait_healthy(name, getattr(self.budgets, SPECS[name].budget))
        SPECS[name].prepare(self.url(name), self.config)

    def _proxy(self, link: str, target: str) -> FaultProxy:
        """A fault proxy on ``link``; in front of Postgres, a trusted party to its TLS, so that the
        toxics see the protocol while the services still verify (``harness.stack.pgwire``)."""
        host = self.runtime.proxy_host()
        tls = proxy_tls(self.config.authority, (*NAMES, host), "127.0.0.1") if target == POSTGRES.name else None
        return FaultProxy(("127.0.0.1", self.services[target].host_port), name=link, listen_host=host, tls=tls).start()

    def _link(self, link: str, target: str) -> Address:
        """The address a service uses for ``target``: direct, or a fault proxy when enabled."""
        if not self.config.proxies:
            return self.runtime.address(self.services[target])
        if link not in self.proxies:
            self.proxies[link] = self._proxy(link, target)
        return (self.runtime.proxy_host(), self.proxies[link].port)

    def start_extra(
        self, name: str, config: StackConfig | None = None, *, healthcheck: dict | None = None, instance: str
    ) -> Service:
        """One more ``name`` beside the stack's, wired to the same dependencies; the caller closes it."""
        links = {dep: self._link(link_name(name, dep), dep) for dep in SPECS[name].depends_on}
        return self.runtime.start(SPECS[name], config or self.config, links, healthcheck=healthcheck, instance=instance)

    def replace_api(self, config: StackConfig) -> Service:
        """Restart the api with another configuration (same links), and wait until it reports pass
        or warn. Used by scenarios that need, say, MLflow optional."""
        self.services.pop("api").close(self.budgets.stop)
        self.config = config
        svc = self._launch("api", {dep: self._link(link_name("api", dep), dep) for dep in API.depends_on})
        self.wait_ready("api", until=lambda h: h["status"] in ("pass", "warn"))
        self.wait_healthy("api", self.budgets.api_ready)
        return svc

    def close(self) -> None:
        for name in reversed(ORDER):
            svc = self.services.pop(name, None)
            if svc is not None:
                svc.close(self.budgets.stop)
        for proxy in self.proxies.values():
            proxy.close()
        self.proxies.clear()
        self.runtime.close()

    # -- readiness ---------------------------------------------------------------
    def _alive(self, name: str) -> None:
        self.services[name].ensure_running(allow_unhealthy=not self._starting)

    def wait_ready(self, name: str, timeout: float | None = None, until: Callable | None = None) -> object:
        """Poll the service's own readiness (its spec says what that is) until it holds."""
        readiness = SPECS[name].readiness(self.url(name))

        def probe() -> object:
            self._alive(name)
            return readiness.probe()

        return wait_until(
            probe,
            until=until or readiness.until,
            interval=readiness.interval,
            timeout=timeout or getattr(self.budgets, SPECS[name].budget),
            what=readiness.what,
            progress=self.progress,
        )

    def wait_healthy(self, name: str, timeout: float) -> str | None:
        """Where the runtime has container health checks, also wait for ``healthy``."""
        svc = self.services[name]
        if svc.health() is None:
            return None

        def probe() -> str | None:
            self._alive(name)
            return svc.health()

        return wait_until(
            probe,
            until=lambda h: h == "healthy",
            timeout=timeout,
            interval=0.25,
            what=f"{name} container HEALTHCHECK to report healthy",
            progress=self.progress,
        )

    # -- access ----------------------------------------------------------------
    def url(self, name: str) -> str:
        return self.services[name].url

    def dsn(self, database: str) -> str:
        """A host-side DSN of ``database`` on the stack's Postgres."""
        return f"{self.url('postgres')}/{database}"

    def environment(self, name: str) -> dict[str, str]:
        """The settings ``name`` runs with (its spec's, wired to this stack's dependencies)."""
        links = {dep: self._link(link_name(name, dep), dep) for dep in SPECS[name].depends_on}
        return SPECS[name].environment(self.config, links)

    def logs(self, name: str, tail: int = 200) -> str:
        return self.services[name].logs(tail)

    def describe(self, reveal: bool = False) -> list[dict]:
        """One entry per service; URLs with their password masked unless ``reveal`` (the user's own
        stack, printed by `up`: its generated password is what they connect with)."""
        return [
            {
                **self.services[n].describe(),
                "url": self.services[n].url if reveal else masked(self.services[n].url),
                "runtime": self.runtime.name,
                "ready_s": self.ready_s.get(n),
            }
            for n in ORDER
            if n in self.services
        ]


def masked(url: str) -> str:
    """``scheme://user:***@host``: a URL's password never reaches output."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", url)


def record_timings(path: Path, runtime: str, ready_s: dict[str, float]) -> None:
    """Merge this stack's times to ready into ``timings.json``, keyed by runtime, and draw the trend
    (``timings.svg`` beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers write at the same time
        _merge_timings(path, runtime, ready_s)
        path.with_suffix(".svg").write_text(timings_svg(json.loads(path.read_text())))


def timings_svg(data: dict) -> str:
    """Seconds to ready per service over its last measurements, a line per runtime, the harness's
    readiness budget as the limit (measurements recorded before dates were kept are left out)."""
    from datetime import datetime

    from harness.budgets import BASE
    from harness.pictures import Panel, charts

    services = sorted({name for entry in data.values() for name in entry})
    panels = []
    for name in services:
        lines = {}
        for runtime, entry in sorted(data.items()):
            m = entry.get(name) or {}
            at, samples = m.get("sampled_at", []), m.get("samples", [])
            dated = list(zip(at, samples[len(samples) - len(at) :], strict=True))
            if dated:
                lines[runtime] = [(datetime.fromisoformat(at.replace("Z", "+00:00")), s) for at, s in dated]
        if lines:
            panels.append(Panel(name, lines, limit=BASE.get(f"{name}_ready"), unit="s", limit_label="budget"))
    return charts(panels, title="seconds from start to ready, per run", xlabel="measured at (UTC)")


def _merge_timings(path: Path, runtime: str, ready_s: dict[str, float]) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    entry = data.setdefault(runtime, {})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for name, seconds in ready_s.items():
        prev = entry.get(name, {})
        samples = (prev.get("samples", []) + [seconds])[-20:]
        # when each of the newest samples was measured (kept since 2026-11-29; older samples have none)
        dates = (prev.get("sampled_at", []) + [now])[-20:]
        entry[name] = {
            "ready_s": seconds,
            "max_s": max(samples),
            "samples": samples,
            "sampled_at": dates,
            "measured_at": now,
        }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)
