"""The docker runtime: the real images on a network of their own per session.

testcontainers (Ryuk disabled: its image cannot be pulled here; the harness's reaper removes
what carries the session label) starts each container; the api and MLflow reach their
dependencies by service name, exactly as in services/docker-compose.yml. Host clients use
127.0.0.1 and ports fixed at creation, so a restarted container keeps its URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import time

from harness.errors import ServiceFailed
from harness.ports import free_port, release
from harness.process import delayed
from harness.session import Session
from harness.stack.config import StackConfig
from harness.stack.images import ensure_images
from harness.stack.runtime.base import Runtime, Service
from harness.stack.spec import Address, Links, ServiceSpec
from harness.wait import wait_until

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TC_HOST", "127.0.0.1")


def trusted_paths(env: dict[str, str]) -> list[str]:
    """Where a container's settings expect the CA bundle its database clients verify against."""
    return sorted({v for k, v in env.items() if k.endswith("_SSLROOTCERT") and v})


class DockerService(Service):
    def __init__(self, name: str, container, host_port: int, url: str, container_port: int) -> None:
        self.name, self.container, self.host_port, self.url = name, container, host_port, url
        self.container_port = container_port
        self.started_at = time.monotonic()
        self.healthy_after: float | None = None

    @property
    def raw(self):
        return self.container.get_wrapped_container()

    @property
    def ident(self) -> str:
        return self.raw.short_id

    def _state(self) -> dict:
        self.raw.reload()
        return self.raw.attrs.get("State", {})

    def health(self) -> str | None:
        """The HEALTHCHECK status: starting, healthy, unhealthy (None without a check)."""
        status = (self._state().get("Health") or {}).get("Status")
        if status == "healthy" and self.healthy_after is None:
            self.healthy_after = round(time.monotonic() - self.started_at, 2)
        return status

    def health_log(self, last: int = 3) -> str:
        entries = (self._state().get("Health") or {}).get("Log") or []
        return "\n".join(f"exit {e.get('ExitCode')}: {e.get('Output', '').strip()[:300]}" for e in entries[-last:])

    @property
    def log_ref(self) -> str:
        return f"docker:{self.raw.id}"

    def logs(self, tail: int = 200) -> str:
        try:
            return self.raw.logs(tail=tail).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001 - a removed container has no logs
            return f"(no logs: {exc})"

    def status(self) -> str:
        state = self._state()
        if state.get("Status") == "exited":
            return f"exited({state.get('ExitCode')})"
        health = (state.get("Health") or {}).get("Status")
        return f"{state.get('Status')}" + (f" ({health})" if health else "")

    def is_running(self) -> bool:
        return self._state().get("Status") in ("running", "paused")

    def ensure_running(self, allow_unhealthy: bool = False) -> None:
        """Fatal to waits: an exited container, or one unhealthy while starting, will not become
        ready by waiting. After a disruption ``unhealthy`` is expected until the next check passes."""
        state = self._state()
        health = (state.get("Health") or {}).get("Status")
        if state.get("Status") == "exited" or (health == "unhealthy" and not allow_unhealthy):
            raise ServiceFailed(
                f"{self.name} container running and healthy",
                f"status {state.get('Status')}, exit code {state.get('ExitCode')}, health {health}",
                f"health log:\n{self.health_log()}\ncontainer log ends with:\n{self.logs(30)}",
            )

    def exit_code(self) -> int | None:
        state = self._state()
        return state.get("ExitCode") if state.get("Status") in ("exited", "dead") else None

    def kill(self) -> None:
        if self._state().get("Status") == "paused":
            self.raw.unpause()
        self.raw.kill()
        self.raw.wait()

    def pause(self) -> None:
        """Freeze the container. The kernel's freezer may not converge while a process is in an
        uninterruptible wait (Postgres writing under load): runc then answers "unable to freeze"
        and leaves the container running, so the pause is tried again until it holds."""

        def paused() -> str:
            if self._state().get("Status") != "paused":
                self.raw.pause()
            return str(self._state().get("Status"))

        wait_until(paused, until=lambda s: s == "paused", timeout=15, interval=0.2, what=f"{self.name} paused")

    def resume(self) -> None:
        self.raw.unpause()

    def signal(self, signum: int) -> None:
        self.raw.kill(signal=signal.Signals(signum).name)

    def stop(self, grace: float) -> int | None:
        state = self._state()
        if state.get("Status") == "paused":
            self.raw.unpause()
        if state.get("Status") in ("running", "paused", "restarting"):
            self.raw.stop(timeout=max(1, int(grace)))
        return self._state().get("ExitCode")

    def start(self) -> None:
        self.raw.start()
        self.started_at = time.monotonic()
        self.healthy_after = None

    def restart(self, grace: float) -> None:
        self.stop(grace)
        self.start()

    def close(self, grace: float) -> None:
        try:
            self.stop(grace)
        finally:
            self.container.stop(force=True, delete_volume=True)
            release(self.host_port)


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, session: Session) -> None:
        import docker
        from testcontainers.core.network import Network

        self.session = session
        self.stack_id = secrets.token_hex(2)  # several stacks of one session may coexist
        self.client = docker.from_env()
        self.tags, self.build_s, self.base = ensure_images(self.client)
        self.network = Network(docker_network_kw={"labels": session.labels()}).create()
        self._gateway: str | None = None
        self._bundles: dict[str, str] = {}

    def start(
        self,
        spec: ServiceSpec,
        config: StackConfig,
        links: Links,
        *,
        healthcheck: dict | None = None,
        instance: str = "",
    ) -> DockerService:
        from testcontainers.core.container import DockerContainer

        # the api reaches a service by name, or through a fault proxy on the network's gateway
        env = spec.environment(config, links, reached_as=(self.proxy_host(),))
        port = free_port()
        kwargs: dict = {"labels": {**self.session.labels(), "harness.service": spec.name}}
        if healthcheck is not None:
            kwargs["healthcheck"] = healthcheck
        c = (
            DockerContainer(self.tags[spec.name])
            .with_name(f"harness-{self.session.id}-{self.stack_id}-{spec.name}{'-' + instance if instance else ''}")
            .with_envs(**env)
            .with_network(self.network)
            .with_network_aliases(*([] if instance else [spec.name]))
            .with_kwargs(**kwargs)
        )
        for path in trusted_paths(env):  # the stack's CA where the image keeps RDS's bundle
            c.with_volume_mapping(self.bundle(config), path, "ro")
        # loopback only, and a fixed host port so a restarted container keeps its URL
        # (the docker SDK takes an (address, port) pair; testcontainers' annotation knows only a port)
        c.ports[f"{spec.port}/tcp"] = ("127.0.0.1", port)  # type: ignore[assignment]
        delay = config.delay_of(spec.name)
        if delay:
            # fault "slow start": the image's own command, begun only after ``delay`` seconds
            c.with_command(delayed(self.client.images.get(self.tags[spec.name]).attrs["Config"]["Cmd"], delay))
        try:
            c.start()
        except Exception:
            release(port)
            # create succeeded but start failed: the container exists and nothing tracks it yet
            with contextlib.suppress(Exception):
                self.client.containers.get(str(c._name)).remove(force=True, v=True)
            raise
        return DockerService(spec.name, c, port, spec.url(config, "127.0.0.1", port), spec.port)

    def bundle(self, config: StackConfig) -> str:
        """The stack's CA as a file on the host, to mount into containers (one per authority)."""
        key = hashlib.sha256(config.authority.pem).hexdigest()  # not id(): a collected authority's id returns
        if key not in self._bundles:
            self._bundles[key] = config.authority.write(self.session.mkdtemp("tls"))
        return self._bundles[key]

    def address(self, service: Service) -> Address:
        assert isinstance(service, DockerService), service
        return (service.name, service.container_port)

    def proxy_host(self) -> str:
        """The per-session network's gateway: the host as the containers see it."""
        if self._gateway is None:
            net = self.client.networks.get(str(self.network.id))
            self._gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
        return self._gateway

    def close(self) -> None:
        try:
            self.network.remove()
        except Exception:  # noqa: BLE001 - already gone; the reaper removes what remains
            pass
        self.client.close()
