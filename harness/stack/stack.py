"""A stack: postgres, then mlflow, then api, each awaited on its real readiness, torn down in
reverse. Records each service's time to ready."""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.budgets import Budgets
from harness.stack.proxy import FaultProxy
from harness.stack.readiness import api_health, ensure_databases, mlflow_ready, postgres_ready
from harness.stack.runtime.base import Runtime, Service, StackConfig
from harness.wait import wait_until
from services.common.redact import redact

ORDER = ("postgres", "mlflow", "api")
Progress = Callable[[str, float, float], None]


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
        pg = self._up("postgres", lambda: self.runtime.start_postgres(self.config), self.wait_postgres,
                      self.budgets.postgres_ready)
        ensure_databases(self.dsn("postgres"), self.config.databases)
        mlflow_db = self._link("mlflow->postgres", pg)
        ml = self._up("mlflow", lambda: self.runtime.start_mlflow(self.config, mlflow_db), self.wait_mlflow,
                      self.budgets.mlflow_ready)
        api_db, api_mlflow = self._link("api->postgres", pg), self._link("api->mlflow", ml)
        self._up("api", lambda: self.runtime.start_api(self.config, api_db, api_mlflow), self.wait_api,
                 self.budgets.api_ready)
        self.ready_s["stack"] = round(time.monotonic() - started, 2)
        self._starting = False

    def _start_racing(self, late: float) -> None:
        from harness.stack.proxy import Refuse

        self._starting = True
        pg = self._up("postgres", lambda: self.runtime.start_postgres(self.config), self.wait_postgres,
                      self.budgets.postgres_ready)
        ensure_databases(self.dsn("postgres"), self.config.databases)
        mlflow_db, api_db = self._link("mlflow->postgres", pg), self._link("api->postgres", pg)
        for link in ("mlflow->postgres", "api->postgres"):
            self.proxies[link].add(Refuse())
        t0 = time.monotonic()
        self.services["mlflow"] = self.runtime.start_mlflow(self.config, mlflow_db)
        ml = self.services["mlflow"]
        api_mlflow = self._link("api->mlflow", ml)
        self.services["api"] = self.runtime.start_api(self.config, api_db, api_mlflow)

        def both_alive() -> float:
            self._alive("mlflow")
            self._alive("api")
            return time.monotonic() - t0
        wait_until(both_alive, until=lambda t: t >= late, timeout=late + 5, interval=0.2,
                   what=f"mlflow and api to keep running while Postgres is unreachable for {late}s")
        for link in ("mlflow->postgres", "api->postgres"):
            self.proxies[link].remove("refuse")
        lifted = time.monotonic()
        self.wait_mlflow()
        self.wait_healthy("mlflow", self.budgets.mlflow_ready)
        self.ready_s["mlflow_after_postgres"] = round(time.monotonic() - lifted, 2)
        self.wait_api()
        self.wait_healthy("api", self.budgets.api_ready)
        self.ready_s["api_after_postgres"] = round(time.monotonic() - lifted, 2)
        self._starting = False

    def _link(self, link: str, target: Service) -> tuple[str, int]:
        """The address a service uses for ``target``: direct, or a fault proxy when enabled."""
        if not self.config.proxies:
            return self.runtime.address(target)
        host = self.runtime.proxy_host()
        proxy = FaultProxy(("127.0.0.1", target.host_port), name=link, listen_host=host).start()
        self.proxies[link] = proxy
        return (host, proxy.port)

    def replace_api(self, config: StackConfig) -> Service:
        """Restart the api with another configuration (same links), and wait until it reports pass
        or warn. Used by scenarios that need, say, MLflow optional."""
        old = self.services.pop("api")
        getattr(old, "close", old.stop)(self.budgets.stop)
        self.config = config
        api_db = self._addr("api->postgres", "postgres")
        api_mlflow = self._addr("api->mlflow", "mlflow")
        svc = self.runtime.start_api(config, api_db, api_mlflow)
        self.services["api"] = svc
        wait_until(lambda: (self._alive("api"), api_health(self.url("api")))[1],
                   until=lambda h: h["status"] in ("pass", "warn"), timeout=self.budgets.api_ready,
                   what="the reconfigured api to report pass or warn")
        self.wait_healthy("api", self.budgets.api_ready)
        return svc

    def _addr(self, link: str, target: str) -> tuple[str, int]:
        proxy = self.proxies.get(link)
        if proxy is not None:
            return (self.runtime.proxy_host(), proxy.port)
        return self.runtime.address(self.services[target])

    def _up(self, name: str, launch: Callable[[], Service], wait: Callable[[], object], budget: float) -> Service:
        t0 = time.monotonic()
        svc = launch()
        self.services[name] = svc  # registered before waiting: close() stops it if the wait fails
        wait()
        self.wait_healthy(name, budget)
        self.ready_s[name] = round(time.monotonic() - t0, 2)
        return svc

    def wait_healthy(self, name: str, timeout: float) -> str | None:
        """Where the runtime has container health checks, also wait for ``healthy``."""
        svc = self.services[name]
        health = getattr(svc, "health", None)
        if health is None:
            return None

        def probe() -> str | None:
            self._alive(name)
            return health()
        return wait_until(probe, until=lambda h: h == "healthy", timeout=timeout, interval=0.25,
                          what=f"{name} container HEALTHCHECK to report healthy", progress=self.progress)

    def close(self) -> None:
        for name in reversed(ORDER):
            svc = self.services.pop(name, None)
            if svc is None:
                continue
            closer = getattr(svc, "close", None)
            if closer is not None:
                closer(self.budgets.stop)
            else:
                svc.stop(self.budgets.stop)
        for proxy in self.proxies.values():
            proxy.close()
        self.proxies.clear()
        self.runtime.close()

    # -- readiness ---------------------------------------------------------------
    def _alive(self, name: str) -> None:
        check = getattr(self.services[name], "ensure_running", None)
        if check is not None:
            check(allow_unhealthy=not self._starting)

    def wait_postgres(self) -> str:
        def probe() -> str:
            self._alive("postgres")
            return postgres_ready(self.dsn("postgres"))
        return wait_until(probe, timeout=self.budgets.postgres_ready, interval=0.1,
                          what="postgres to accept a query", progress=self.progress)

    def wait_mlflow(self, timeout: float | None = None) -> int:
        def probe() -> int:
            self._alive("mlflow")
            return mlflow_ready(self.url("mlflow"))
        return wait_until(probe, until=lambda s: s == 200, timeout=timeout or self.budgets.mlflow_ready,
                          interval=0.2, what="mlflow tracking API (experiments search) to answer 200",
                          progress=self.progress)

    def wait_api(self, timeout: float | None = None, status: str = "pass") -> dict:
        def probe() -> dict:
            self._alive("api")
            return api_health(self.url("api"))
        return wait_until(probe, until=lambda h: h["status"] == status, timeout=timeout or self.budgets.api_ready,
                          interval=0.1, what=f"api /health to report {status}", progress=self.progress)

    # -- access ----------------------------------------------------------------
    def url(self, name: str) -> str:
        return self.services[name].url

    def dsn(self, database: str) -> str:
        return self.runtime.dsn(self.services["postgres"], self.config, database)

    def logs(self, name: str, tail: int = 200) -> str:
        return self.services[name].logs(tail)

    def describe(self) -> list[dict]:
        return [{**self.services[n].describe(), "url": redact(self.services[n].url),
                 "runtime": self.runtime.name, "ready_s": self.ready_s.get(n)}
                for n in ORDER if n in self.services]


def record_timings(path: Path, runtime: str, ready_s: dict[str, float]) -> None:
    """Merge this run's times to ready into ``timings.json``, keyed by runtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers write at the same time
        _merge_timings(path, runtime, ready_s)


def _merge_timings(path: Path, runtime: str, ready_s: dict[str, float]) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    entry = data.setdefault(runtime, {})
    for name, seconds in ready_s.items():
        prev = entry.get(name, {})
        samples = (prev.get("samples", []) + [seconds])[-20:]
        entry[name] = {"ready_s": seconds, "max_s": max(samples), "samples": samples,
                       "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)
