"""Runtime selection: ``auto`` is docker when an engine answers, else local."""

from __future__ import annotations

from harness.errors import ConfigurationError, DependencyMissing
from harness.session import Session
from harness.stack.config import StackConfig
from harness.stack.runtime.base import Runtime, Service

__all__ = ["Runtime", "Service", "StackConfig", "docker_available", "resolve_runtime", "make_runtime"]


def docker_available() -> str | None:
    """None when an engine answers, else the reason it does not."""
    try:
        import docker
    except ImportError:
        return "the docker Python SDK is not installed"
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        return f"no Docker engine answers ({type(exc).__name__})"
    return None


def resolve_runtime(requested: str) -> tuple[str, str]:
    """(runtime name, why) for ``auto``, ``docker`` or ``local``."""
    if requested == "local":
        return "local", "requested"
    reason = docker_available()
    if requested == "docker":
        if reason:
            raise DependencyMissing(
                "a Docker engine for --runtime docker",
                reason,
                "start dockerd (see README, 'Runtimes') or use --runtime local",
            )
        return "docker", "requested"
    return ("local", f"auto: {reason}") if reason else ("docker", "auto: engine answers")


def make_runtime(name: str, session: Session) -> Runtime:
    if name == "local":
        from harness.stack.runtime.local import LocalRuntime

        return LocalRuntime(session)
    if name == "docker":
        from harness.stack.runtime.docker import DockerRuntime

        return DockerRuntime(session)
    raise ConfigurationError("runtime local or docker", repr(name), "use --runtime auto|docker|local")
