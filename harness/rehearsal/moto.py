"""A moto server on loopback, as a child process the session owns (killed with it, reaped after a
crash): the stand-in for AWS where the real thing cannot exist."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx

from harness.errors import DependencyMissing
from harness.ports import free_port
from harness.process import ChildProcess
from harness.session import Session
from harness.wait import wait_until

REGION = "eu-west-1"


class MotoServer:
    """``with MotoServer(session, running_tasks=3) as moto:`` -> ``moto.url``, ``moto.client("ecs")``.

    MOTO_IAM_LOAD_MANAGED_POLICIES: AWS-managed policies (the task execution role's) exist.
    MOTO_ECS_SERVICE_RUNNING: services report that many running tasks, so rollouts complete."""

    def __init__(self, session: Session, running_tasks: int = 3, failed_tasks: int = 0, timeout: float = 30) -> None:
        binary = Path(sys.executable).with_name("moto_server")
        if not binary.exists() and not shutil.which("moto_server"):
            raise DependencyMissing("moto_server (moto[server])", "not installed", "pip install 'moto[server]'")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir = session.mkdtemp("moto")
        env = {
            "PATH": "/usr/bin:/bin",
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
            "MOTO_ECS_SERVICE_RUNNING": str(running_tasks),
            "MOTO_ECS_SERVICE_FAILED_TASKS": str(failed_tasks),
        }
        self.process = ChildProcess(
            "moto",
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            cwd=workdir,
            url=self.url,
            session=session,
            ports=(self.port,),
        )
        self.timeout = timeout

    def _answer(self) -> int:
        self.process.ensure_running()  # a server that exited will not answer
        return httpx.get(f"{self.url}/moto-api/", timeout=2).status_code

    def __enter__(self) -> MotoServer:
        self.process.start()
        try:
            wait_until(
                self._answer,
                until=lambda s: s == 200,
                timeout=self.timeout,
                what="moto server to answer",
            )
        except BaseException:
            self.process.close(5)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.close(5)

    def client(self, service: str):
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
