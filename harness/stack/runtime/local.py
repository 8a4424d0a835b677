"""The local runtime: each service as a child process on loopback (``harness.process.ChildProcess``:
its own process group, the session id, killed with the harness), from the spec's ``Launch``."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from harness.errors import ServiceFailed
from harness.ports import free_port, release
from harness.process import ChildProcess, delayed
from harness.session import Session
from harness.stack.config import StackConfig
from harness.stack.runtime.base import Runtime, Service
from harness.stack.spec import Address, Links, ServiceSpec


class LocalService(ChildProcess, Service):
    """A service of the stack as a child process. Processes have no container health check."""

    def health(self) -> str | None:
        return None


def _give(paths: list[Path], user: str) -> None:
    pw = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, pw.pw_uid, pw.pw_gid)


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, session: Session) -> None:
        self.session = session

    def start(
        self,
        spec: ServiceSpec,
        config: StackConfig,
        links: Links,
        *,
        healthcheck: dict | None = None,
        instance: str = "",
    ) -> LocalService:
        if healthcheck is not None:
            raise ServiceFailed(
                "a container to run a health check",
                "the local runtime runs processes",
                "use --runtime docker for container health checks",
            )
        workdir = self.session.mkdtemp(spec.name + (f"-{instance}" if instance else ""))
        port = free_port()
        try:
            launch = spec.local(config, links, port, workdir)
            svc = LocalService(
                spec.name,
                delayed(launch.argv, config.delay_of(spec.name)),
                env=launch.env,
                cwd=workdir,
                session=self.session,
                user=launch.user,
                stop_signal=launch.stop_signal,
                ports=(port,),
                url=spec.url(config, "127.0.0.1", port),
            )
            if launch.user:
                svc.log_path.touch()
                _give([workdir, *workdir.iterdir()], launch.user)
            for argv in launch.setup:
                self._setup(spec.name, argv, launch.env, workdir, launch.user)
        except BaseException:
            release(port)
            raise
        svc.start()
        return svc

    def _setup(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, user: str | None) -> None:
        result = subprocess.run(
            argv, env={**env, **self.session.env()}, cwd=cwd, user=user, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise ServiceFailed(
                f"{name}'s setup `{argv[0]} ...` to succeed",
                f"exit {result.returncode}: {result.stderr.strip()[-500:]}",
                "check that the working dir's filesystem lets the service's user write",
            )

    def address(self, service: Service) -> Address:
        return ("127.0.0.1", service.host_port)

    def proxy_host(self) -> str:
        return "127.0.0.1"
