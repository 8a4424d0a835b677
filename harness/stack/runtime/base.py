"""The runtime interface: what every runtime (local processes, docker) gives a stack.

A ``Runtime`` starts services and hands back ``Service`` handles. A handle knows its base URL
as seen from the host, its identity (pid or container id), its logs and status, and the fault
operations: kill, pause (freeze), resume, restart, stop with a grace period.
"""

from __future__ import annotations

import dataclasses
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StackConfig:
    """What the services are told. The same for every runtime."""

    password: str = field(default_factory=lambda: "pw-" + secrets.token_urlsafe(12))
    user: str = "app"
    databases: tuple[str, ...] = ("mlflow", "api")
    mlflow_workers: int = 1
    mlflow_env: tuple[tuple[str, str], ...] = ()
    proxies: bool = False  # put a FaultProxy on every link (api->postgres, api->mlflow, mlflow->postgres)
    # fault "slow start": the service's command begins only after this many seconds
    start_delay: tuple[tuple[str, float], ...] = ()
    api_env: tuple[tuple[str, str], ...] = (
        ("API_DRAIN_SECONDS", "1"),
        ("API_SHUTDOWN_GRACE", "5"),
        ("API_HEALTH_CACHE_TTL", "1"),
    )

    def with_api_env(self, **env: str) -> StackConfig:
        return dataclasses.replace(self, api_env=tuple((dict(self.api_env) | env).items()))

    def with_mlflow_env(self, **env: str) -> StackConfig:
        return dataclasses.replace(self, mlflow_env=tuple((dict(self.mlflow_env) | env).items()))

    def delay_of(self, service: str) -> float:
        return dict(self.start_delay).get(service, 0.0)

    def dsn(self, address: tuple[str, int], database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{address[0]}:{address[1]}/{database}"


class Service(ABC):
    """A running service of the stack."""

    name: str
    url: str          # base URL from the host: http://127.0.0.1:P (api), .../mlflow, postgresql://...
    ident: str        # pid or container id
    host_port: int    # where host-side clients (and the fault proxies) reach it on 127.0.0.1

    @abstractmethod
    def logs(self, tail: int = 200) -> str: ...

    @abstractmethod
    def status(self) -> str:
        """running, paused, exited(code), or a container health status."""

    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def exit_code(self) -> int | None:
        """None while it runs (or was never started); the exit status once it ended."""

    @abstractmethod
    def kill(self) -> None: ...

    @abstractmethod
    def pause(self) -> None: ...

    @abstractmethod
    def resume(self) -> None: ...

    @abstractmethod
    def stop(self, grace: float) -> int | None:
        """Ask it to stop; force it after ``grace`` seconds. Returns the exit code if known."""

    @abstractmethod
    def start(self) -> None:
        """(Re)start after a stop or kill, with the same configuration, port and data."""

    @abstractmethod
    def signal(self, signum: int) -> None:
        """Deliver a signal to the service's main process (SIGTERM to test the drain)."""

    def restart(self, grace: float) -> None:
        self.stop(grace)
        self.start()

    def describe(self) -> dict:
        return {"name": self.name, "url": self.url, "id": self.ident}


class Runtime(ABC):
    name: str

    @abstractmethod
    def start_postgres(self, config: StackConfig) -> Service: ...

    @abstractmethod
    def start_mlflow(self, config: StackConfig, db: tuple[str, int]) -> Service:
        """``db``: the address MLflow uses for Postgres (direct, or a fault proxy)."""

    @abstractmethod
    def start_api(self, config: StackConfig, db: tuple[str, int], mlflow: tuple[str, int]) -> Service:
        """``db`` and ``mlflow``: the addresses the api uses (direct, or fault proxies)."""

    @abstractmethod
    def address(self, service: Service) -> tuple[str, int]:
        """How the other services reach ``service`` directly."""

    @abstractmethod
    def proxy_host(self) -> str:
        """The host address fault proxies listen on so that the services can reach them."""

    @abstractmethod
    def dsn(self, postgres: Service, config: StackConfig, database: str) -> str:
        """A host-side DSN for ``database``."""

    def close(self) -> None:
        """Release runtime-wide resources (networks); services are stopped by the stack."""
        return None
