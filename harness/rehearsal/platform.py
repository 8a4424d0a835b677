"""The plan applied to one moto server and kept for several rehearsals and checks: the task
definitions ECS would get, with real secret ARNs, read back from the state."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from harness.paths import project
from harness.plan.plancache import digest_folder
from harness.plan.terraform import Terraform
from harness.plan.timing import plan_resources
from harness.rehearsal.certificate import import_certificate
from harness.rehearsal.moto import MotoServer
from harness.session import Session


def digest_of(var_file: Path, source: Path) -> str:
    """What an apply depends on: the tfvars and every file of the Terraform source, by content
    (the plan cache's digest of a configuration: ``harness.plan.plancache.digest_folder``)."""
    return hashlib.sha256(Path(var_file).read_bytes() + digest_folder(Path(source)).encode()).hexdigest()


class Platform:
    """The plan applied to one moto server, kept for several rehearsals: the first ``apply`` pays
    for every resource (about 100 s, mostly the AWS provider's fixed waits for the load balancer,
    the database and the bucket's lifecycle); each later one moves the same state to its own
    tfvars or edited Terraform, which changes only what differs (a few seconds). An apply of what
    the state already holds (the same tfvars and Terraform, by content) is skipped unless asked
    for: it would change only what moto cannot hold (e.g. a CodeDeploy group's alarms, which moto
    does not return and cannot update, so the provider retries for minutes).

    ``with Platform(session) as platform: Rehearsal(..., platform=platform).run()``"""

    def __init__(self, session: Session) -> None:
        self.session = session
        # services report running tasks, so the deploy driver's rollouts complete on it too
        self.moto = MotoServer(session, running_tasks=3)
        self.tf: Terraform | None = None
        self.applies: list[tuple[str, str, float]] = []  # (var file, source, seconds)
        self._applied = ""  # digest of the tfvars and Terraform the state holds
        self.certificate_arn: str | None = None

    def __enter__(self) -> Platform:
        self.moto.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.moto.__exit__(*exc)

    def apply(self, var_file: Path, source: Path | None = None, again: bool = False) -> None:
        """Move the platform to ``var_file`` on ``source`` (default: the project's Terraform;
        ``again``: even if the state holds them)."""
        source = source or project().terraform_dir
        digest = digest_of(var_file, source)
        if digest == self._applied and not again:
            return
        started = time.monotonic()
        self._applied = ""
        if self.tf is None:
            self.tf = Terraform(self.session.mkdtemp("tf-platform"), source=source)
        else:
            self.tf.use_source(source)
        if self.certificate_arn is None:  # the listeners' certificate must exist in (moto's) ACM
            self.certificate_arn = import_certificate(self.moto.client("acm"), "mlplatform.example.internal")
        self.tf.apply(
            str(var_file), aws_endpoint=self.moto.url, deletion_protection=False, certificate_arn=self.certificate_arn
        )
        self._applied = digest
        self.applies.append((str(var_file), str(source), time.monotonic() - started))

    @property
    def cluster(self) -> str:
        assert self.tf is not None, "nothing applied yet"
        return str(self.tf.output()["cluster_name"])

    def task_definitions(self) -> dict[str, str]:
        """Service -> the task definition revision the last apply registered. The services keep
        running the revision they were created with (Terraform ignores their task_definition:
        deployments change it), so a rehearsal reads the plan's revision from the state."""
        assert self.tf is not None, "nothing applied yet"
        state = json.loads(self.tf.run("show", "-json").stdout)
        return {
            res["values"]["family"].rsplit("-", 1)[-1]: res["values"]["arn"]
            for res in plan_resources(state["values"]["root_module"])
            if res["type"] == "aws_ecs_task_definition"
        }
