"""Drive services/docker-compose.yml: ``docker compose`` v2 where installed, else Debian's
``docker-compose`` 1.29 (no ``--wait``: the harness waits on the containers' health itself)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import yaml

from harness.errors import ConfigurationError, DependencyMissing, HarnessError, ServiceFailed
from harness.paths import project, shown
from harness.ports import free_port, release
from harness.stack.stack import SPECS
from harness.wait import wait_until

PROJECT_PREFIX = "harness-"
HEALTHY, COMPLETED = "service_healthy", "service_completed_successfully"


def depends_on_problems(
    services: Mapping[str, object],
    edges: Mapping[str, Sequence[str]],
    one_shot: Collection[str] = (),
    source: str = "the compose file",
) -> list[str]:
    """Each dependency edge the harness knows (``edges``: service -> the services it depends on, the
    specs' ``depends_on``) in the compose file's ``services`` with the condition that makes compose
    wait as the harness does: ``service_healthy`` (the dependency passed its HEALTHCHECK), or
    ``service_completed_successfully`` for a one-shot service in ``one_shot`` (none today). Compose's
    list form and a missing condition both mean ``service_started``: the dependent starts while its
    dependency still boots, and the stack comes up on Docker only by luck."""
    out = []
    for name, deps in edges.items():
        service = services.get(name)
        declared = service.get("depends_on") if isinstance(service, dict) else None
        if isinstance(declared, list):  # the short form: started, not healthy
            declared = {dep: {} for dep in declared}
        declared = declared or {}
        for dep in deps:
            want = COMPLETED if dep in one_shot else HEALTHY
            field = f"{source}: services.{name}.depends_on.{dep}"
            if dep not in declared:
                out.append(f"{field}: missing; expected {{condition: {want}}} ({name} needs {dep} to start)")
                continue
            seen = (declared[dep] or {}).get("condition", "service_started")
            if seen != want:
                out.append(
                    f"{field}.condition = {seen!r}: expected {want} (compose would start {name} before {dep} "
                    f"{'passed its health check' if want == HEALTHY else 'ran to completion'})"
                )
    return out


def check_compose_file(path: Path | None = None) -> None:
    """The compose file waits on each dependency as the harness does (``depends_on_problems`` over
    every service spec), else a ConfigurationError naming each service and field."""
    path = path or project().compose_file
    services = (yaml.safe_load(path.read_text()) or {}).get("services") or {}
    problems = depends_on_problems(services, {n: s.depends_on for n, s in SPECS.items()}, source=shown(path))
    if problems:
        raise ConfigurationError(
            f"each dependency of the service specs in {shown(path)} with the condition compose waits on",
            "\n".join(problems),
            f"depends_on: {{<dependency>: {{condition: {HEALTHY}}}}}: the Dockerfiles' HEALTHCHECKs make it mean ready",
        )


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
            [*self.cmd, "-p", self.project, "-f", str(project().compose_file), *args],
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
        check_compose_file()
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
