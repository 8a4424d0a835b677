"""What the harness knows of one service, in one place: its settings, its port, its image, how to
run it as a process, and when it is ready. One module per service (``postgres``, ``mlflow``,
``api``) holds one ``ServiceSpec``; runtimes only know how to run a process (``Launch``) or a
container (image, environment, port) from a spec. The compose file holds the same settings and
a test keeps the two in step."""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.paths import project
from harness.stack.config import StackConfig

Address = tuple[str, int]
Links = Mapping[str, Address]  # dependency name -> the address this service uses for it


@dataclass(frozen=True)
class Launch:
    """How to run a service as a local process (after any preparation the spec did itself)."""

    argv: list[str]
    env: dict[str, str]
    user: str | None = None  # run as this account (and let it own the working dir and log)
    stop_signal: int = signal.SIGTERM
    setup: tuple[list[str], ...] = ()  # commands run to completion first, same user and environment


@dataclass(frozen=True)
class Readiness:
    """What a wait for readiness polls (``probe``) and judges (``until``)."""

    probe: Any
    until: Any
    what: str
    interval: float = 0.1


class ServiceSpec(ABC):
    name: ClassVar[str]
    port: ClassVar[int]  # where it listens in its container (and in the compose file)
    path: ClassVar[str] = ""  # URL prefix of its HTTP base ("/mlflow")
    scheme: ClassVar[str] = "http"
    depends_on: ClassVar[tuple[str, ...]] = ()
    budget: ClassVar[str]  # the named budget (harness.budgets) its readiness gets

    @property
    def dockerfile(self) -> Path:
        return project().services_dir / self.name / "Dockerfile"

    @abstractmethod
    def environment(self, config: StackConfig, links: Links, reached_as: tuple[str, ...] = ()) -> dict[str, str]:
        """The service's own settings, the same on every runtime. ``reached_as``: extra host names
        the other services use for it (a Docker network's gateway, where fault proxies listen)."""

    @abstractmethod
    def local(self, config: StackConfig, links: Links, port: int, workdir: Path) -> Launch:
        """How to run it as a process on loopback ``port``, its files in ``workdir``."""

    def url(self, config: StackConfig, host: str, port: int) -> str:
        """Its base URL as a host-side client uses it."""
        return f"{self.scheme}://{host}:{port}{self.path}"

    @abstractmethod
    def readiness(self, url: str) -> Readiness:
        """Its real readiness: what to poll, and when it counts as ready."""

    def prepare(self, url: str, config: StackConfig) -> None:
        """After it is ready, before the services that depend on it start (default: nothing)."""
        return None
