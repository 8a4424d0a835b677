"""The runtime interface: what every runtime (local processes, docker) gives a stack.

A ``Runtime`` runs a service from its spec (``harness.stack.spec``) and hands back a ``Service``
handle. A handle knows its base URL as seen from the host, its identity (pid or container id),
its logs and status, and the fault operations: kill, pause (freeze), resume, restart, stop with a
grace period.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from harness.stack.config import StackConfig
from harness.stack.spec import Address, Links, ServiceSpec


class Service(ABC):
    """A running service of the stack."""

    name: str
    url: str  # base URL from the host: http://127.0.0.1:P (api), .../mlflow, postgresql://...
    host_port: int  # where host-side clients (and the fault proxies) reach it on 127.0.0.1

    @property
    @abstractmethod
    def ident(self) -> str:
        """The pid or the container id."""

    @abstractmethod
    def logs(self, tail: int = 200) -> str: ...

    @abstractmethod
    def status(self) -> str:
        """running, paused, exited(code), or a container health status."""

    @abstractmethod
    def health(self) -> str | None:
        """The container HEALTHCHECK status (starting, healthy, unhealthy); None where there is none."""

    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def ensure_running(self, allow_unhealthy: bool = False) -> None:
        """Raise ServiceFailed (fatal to waits) when it exited, or turned unhealthy while starting."""

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

    @abstractmethod
    def close(self, grace: float) -> None:
        """Stop it for good and release what it held (ports, container)."""

    def restart(self, grace: float) -> None:
        self.stop(grace)
        self.start()

    def describe(self) -> dict:
        return {"name": self.name, "url": self.url, "id": self.ident}

    @property
    def log_ref(self) -> str:
        """Where its log is, for another process (``harness logs``): a file, or ``docker:<id>``."""
        raise NotImplementedError


class Runtime(ABC):
    name: str

    @abstractmethod
    def start(
        self,
        spec: ServiceSpec,
        config: StackConfig,
        links: Links,
        *,
        healthcheck: dict | None = None,
        instance: str = "",
    ) -> Service:
        """Run ``spec`` with ``links`` (the addresses it uses for its dependencies: direct, or fault
        proxies). ``healthcheck`` replaces the image's check (Engine API form; docker only);
        ``instance`` runs one more copy beside the stack's, not reachable by the service's name."""

    @abstractmethod
    def address(self, service: Service) -> Address:
        """How the other services reach ``service`` directly."""

    @abstractmethod
    def proxy_host(self) -> str:
        """The host address fault proxies listen on so that the services can reach them."""

    def close(self) -> None:
        """Release runtime-wide resources (networks); services are stopped by the stack."""
        return None
