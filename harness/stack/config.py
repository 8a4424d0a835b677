"""What the stack's services are told: the same for every runtime."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field

from harness.certificates import Authority


@dataclass(frozen=True)
class StackConfig:
    password: str = field(default_factory=lambda: "pw-" + secrets.token_urlsafe(12))
    user: str = "app"
    databases: tuple[str, ...] = ("mlflow", "api")
    mlflow_workers: int = 1
    mlflow_env: tuple[tuple[str, str], ...] = ()
    proxies: bool = False  # put a FaultProxy on every link (api->postgres, api->mlflow, mlflow->postgres)
    # fault "slow start": the service's command begins only after this many seconds
    start_delay: tuple[tuple[str, float], ...] = ()
    # the harness's own settings for the api: short drain and cache so tests run quickly
    api_env: tuple[tuple[str, str], ...] = (
        ("API_DRAIN_SECONDS", "1"),
        ("API_SHUTDOWN_GRACE", "5"),
        ("API_HEALTH_CACHE_TTL", "1"),
    )

    # Postgres serves TLS with a certificate from this authority; the services verify it (verify-full)
    authority: Authority = field(default_factory=Authority, repr=False, compare=False)

    def with_api_env(self, **env: str) -> StackConfig:
        return dataclasses.replace(self, api_env=tuple((dict(self.api_env) | env).items()))

    def with_(self, **changes: object) -> StackConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]  # replace() checks the names

    def delay_of(self, service: str) -> float:
        return dict(self.start_delay).get(service, 0.0)

    def dsn(self, address: tuple[str, int], database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{address[0]}:{address[1]}/{database}"
