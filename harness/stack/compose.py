"""Drive services/docker-compose.yml: ``docker compose`` v2 where installed, else Debian's
``docker-compose`` 1.29 (no ``--wait``: the harness waits on the containers' health itself)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from harness.errors import DependencyMissing, HarnessError, ServiceFailed
from harness.paths import COMPOSE_FILE
from harness.ports import free_port, release
from harness.wait import wait_until

PROJECT_PREFIX = "harness-"


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    raise DependencyMissing(
        "docker compose v2 or docker-compose",
        "neither installed",
        "apt-get install docker-compose (1.29) or the compose v2 plugin",
    )


class ComposeStack:
    """``with ComposeStack(run_id, images) as c:`` brings the compose file up and always takes it
    down with ``down -v``. The project is named ``harness-<run id>`` so the reaper finds it."""

    def __init__(self, run_id: str, images: dict[str, str], env: dict[str, str] | None = None) -> None:
        self.project = f"{PROJECT_PREFIX}{run_id}"
        self.cmd = compose_command()
        self.ports = {name: free_port() for name in ("postgres", "mlflow", "api")}
        self.env = {
            **os.environ,
            **(env or {}),
            **{f"{n.upper()}_IMAGE": tag for n, tag in images.items()},
            **{f"{n.upper()}_HOST_PORT": str(p) for n, p in self.ports.items()},
        }

    def _run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*self.cmd, "-p", self.project, "-f", str(COMPOSE_FILE), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise HarnessError(
                f"`{' '.join(self.cmd)} {' '.join(args)}` to succeed",
                f"exit {result.returncode}: {result.stderr.strip()[-800:]}",
                "run it by hand with the same -p and -f to see the whole output",
            )
        return result

    def up(self) -> None:
        self._run("up", "-d", "--no-build")

    def container_ids(self) -> dict[str, str]:
        out = self._run("ps", "-q").stdout.split()
        ids = {}
        for cid in out:
            info = json.loads(
                subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout
            )[0]
            ids[info["Config"]["Labels"]["com.docker.compose.service"]] = cid
        return ids

    def health(self) -> dict[str, str]:
        states = {}
        for name, cid in self.container_ids().items():
            state = json.loads(
                subprocess.run(
                    ["docker", "inspect", "-f", "{{json .State}}", cid], capture_output=True, text=True, check=True
                ).stdout
            )
            health = (state.get("Health") or {}).get("Status", state.get("Status"))
            if state.get("Status") == "exited" or health == "unhealthy":
                raise ServiceFailed(
                    f"compose service {name} healthy", f"{state.get('Status')} / {health}", f"docker logs {cid}"
                )
            states[name] = health
        return states

    def wait_healthy(self, timeout: float) -> dict[str, str]:
        return wait_until(
            self.health,
            until=lambda h: len(h) == 3 and set(h.values()) == {"healthy"},
            timeout=timeout,
            interval=0.5,
            what=f"compose project {self.project} to be healthy",
        )

    def down(self) -> None:
        try:
            self._run("down", "-v", "--remove-orphans", timeout=120)
        finally:
            for p in self.ports.values():
                release(p)

    def __enter__(self) -> ComposeStack:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
