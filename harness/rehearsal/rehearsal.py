"""Rehearse the planned tasks on Docker as ECS would run them.

    python -m harness rehearse --env staging [--service api|mlflow] [--json]

The plan is applied to a moto server (so every task definition is the JSON ECS would get, with
real secret ARNs), then each service's tasks run on Docker, as many as its desired count (``tasks``
caps it), all started together as ECS starts a new service's tasks; each task: its containers in ``dependsOn`` order
(dbinit must exit 0 first), with the task definition's environment, its secrets read from moto's
Secrets Manager, its command, its health check (not the Dockerfile's: ECS ignores that one), its
``stopTimeout``; a Postgres container stands in for the database under the address the plan
gives it, and MLflow answers under its Cloud Map name. A poller per target group does what the
ALB does (path, matcher, interval, timeout, thresholds). Each task gets a typed lifecycle (started,
container HEALTHY, target healthy, in service) judged against its grace period.

Then the api's tasks are replaced under client traffic as the plan deploys them: rolling (new
tasks within the plan's maximum percent, an old one deregistered as each new one comes into
service within the minimum healthy percent, drained for the deregistration delay, then SIGTERM;
failed new tasks replaced until the circuit breaker rolls back; ``harness.rehearsal.rolling``) or, for a CODE_DEPLOY
service (``--strategy blue_green``), as CodeDeploy does: the replacement (green) task beside the
original (blue) one, registered in the second target group with its own poller; traffic moves on
the listener by the deployment group's configuration (all at once, linear or canary) only once
green is in service; blue is kept for the termination wait, then deregistered and stopped. A green
that never comes into service moves no traffic and is removed (CodeDeploy's rollback). No client
request may fail either way.
Exit code: 0 every task in service within its grace period; 1 a verdict failed; 2 it could not run.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, urlsplit

from harness.certificates import Authority
from harness.errors import ConfigurationError, DependencyMissing, ServiceFailed
from harness.lifecycle import Rollout, Step
from harness.paths import environment_file, project
from harness.plan.boot import inputs
from harness.plan.codedeploy import traffic_steps
from harness.plan.timing import ServiceTiming, TimingModel, planned
from harness.ports import free_port
from harness.rehearsal.balancer import Balancer, Listener
from harness.rehearsal.blue_green import BlueGreen, blue_green
from harness.rehearsal.moto import MotoServer
from harness.rehearsal.platform import Platform
from harness.rehearsal.rolling import replace
from harness.rehearsal.tasks import Launcher, RunningTask, task_key
from harness.session import Session, session_labels
from harness.stack.api import ApiConfig
from harness.stack.proxy import FaultProxy
from harness.stack.runtime.docker import DockerService
from harness.stack.stack import record_timings
from harness.wait import wait_until


class StandIn(DockerService):
    """A container the rehearsal made (docker-py's own, not a testcontainers one), as a fault's
    target: paused, killed, restarted as the stack's services are (``harness.faults.kinds``)."""

    @property
    def raw(self):
        return self.container


@dataclass
class Fleet:
    """The rehearsed fleet as a watcher reaches it (``Rehearsal.watch``): through the listener in
    front of the api's tasks, as the fault suite reaches a stack; with the stores to check after
    (``url``, ``dsn``) and the targets of a fault (``services``, ``proxies``)."""

    listener: str = ""  # the ALB listener in front of the api's tasks (once the replacement begins)
    mlflow: str = ""  # one MLflow task, host side (MLflow answers under /mlflow)
    database: StandIn | None = None  # the database stand-in
    api: ApiConfig | None = None  # the api's settings, as it reads its planned environment
    proxies: dict[str, FaultProxy] = field(default_factory=dict)  # link -> its fault proxy
    launcher: Launcher | None = None

    @property
    def services(self) -> dict[str, StandIn]:
        return {"postgres": self.database} if self.database is not None else {}

    def url(self, name: str) -> str:
        """The api (through the listener) or MLflow (one task), as the stack's ``url``."""
        return {"api": self.listener, "mlflow": f"{self.mlflow}/mlflow"}[name]

    def dsn(self, database: str) -> str:
        """``database`` on the stand-in, as its master user, over TLS (the certificate names the
        plan's address, not the loopback port: encrypted, not verified)."""
        assert self.database is not None, "the database stand-in is not up yet"
        return f"{self.database.url}/{database}?sslmode=require"


@dataclass
class Rehearsal:
    env: str = "staging"
    services: tuple[str, ...] = ("api", "mlflow")
    reports_dir: Path = Path("reports")
    source: Path = field(
        default_factory=lambda: project().terraform_dir
    )  # the Terraform to rehearse (a test may give an edited copy)
    var_file: Path | None = None  # default: the environment's tfvars
    out: TextIO = sys.stderr
    replacement: bool = True  # after the tasks are in service, replace the api's under client traffic
    platform: Platform | None = None  # an applied platform to reuse (else a moto server of its own)
    strategy: str | None = None  # rolling | blue_green; None: the plan's (CODE_DEPLOY -> blue_green)
    traffic: str | None = None  # blue/green: CodeDeploy's configuration; None: the plan's deployment group's
    termination_wait: float | None = None  # blue/green: seconds blue is kept after the shift; None: the plan's
    time_scale: float = 1.0  # blue/green: scales the traffic steps and the termination wait (not health timing)
    # the new revision's environment beyond the plan's (a deliberately broken revision): the rolling
    # deployment's new tasks, blue/green's green ones
    revision_env: dict[str, str] = field(default_factory=dict)
    start_delay: dict[str, float] = field(default_factory=dict)  # service -> seconds its boot is stretched by
    rollout: Rollout = field(default_factory=Rollout)  # what happened: every task's lifecycle
    replacement_summary: dict = field(default_factory=dict)
    session_id: str = ""  # what everything it started is labelled with
    tasks: int | None = None  # at most this many tasks per service (a small machine); None: the plan's counts
    model: TimingModel | None = None  # the plan's timing model, once ``run`` planned it
    # told of each moment of the deployment (``MOMENTS``) with the fleet: how a fault is injected
    # in the middle of one (harness.faults.rollout)
    watch: Callable[[str, Fleet], None] | None = None
    # the api's tasks reach MLflow through a fault proxy (``Fleet.proxies["api->mlflow"]``) on the
    # network's gateway, under MLflow's Cloud Map name and port, so a watcher can slow MLflow down
    mlflow_proxy: bool = False
    launched: list[RunningTask] = field(default_factory=list)  # every task started, with its target's checks

    def __post_init__(self) -> None:
        """Refuse a wrong blue/green setting before anything starts, naming it."""
        checks = (
            ("strategy", self.strategy in (None, "rolling", "blue_green"), "rolling or blue_green"),
            ("time_scale", self.time_scale > 0, "a number above 0 (0.02: a canary's 5 minutes as 6 s)"),
            ("termination_wait", self.termination_wait is None or self.termination_wait >= 0, "seconds, 0 or more"),
            ("tasks", self.tasks is None or self.tasks >= 1, "a count of 1 or more, or None for the plan's"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigurationError(f"the rehearsal's {name}: {expected}", repr(getattr(self, name)))
        if self.traffic is not None:
            traffic_steps(self.traffic, "the rehearsal's traffic")

    @property
    def ok(self) -> bool:
        return all(life.ok for life in self.rollout.tasks.values())

    def run(self) -> Rollout:
        from harness.stack.images import ensure_images

        var_file = self.var_file or environment_file(self.env)
        with contextlib.ExitStack() as cleanup:  # each cleanup registered right after its creation
            session = Session()
            cleanup.callback(session.close)
            self.session_id = session.id
            client = _docker()
            cleanup.callback(client.close)
            self._say(f"planning {var_file.name} (the timings) and applying it to a moto server (the task definitions)")
            model = planned(
                var_file,
                inputs(self.reports_dir / "timings.json", self.reports_dir / "images.json"),
                source=self.source,
            )
            self.model = model
            how = self._how(model.services["api"]) if "api" in self.services else None
            tags = ensure_images(client)[0]
            platform = self.platform or cleanup.enter_context(Platform(session))
            platform.apply(var_file, self.source)
            moto = platform.moto
            secrets, namespace = moto.client("secretsmanager"), moto.client("servicediscovery")
            namespace = namespace.list_namespaces()["Namespaces"][0]["Name"]
            net = client.networks.create(f"harness-{session.id}-rehearsal", labels=session.labels())
            cleanup.callback(_remove, net)
            authority = Authority()  # the database stand-in's certificate; the tasks verify it
            bundle = authority.write(session.mkdtemp("tls"))
            fleet = Fleet()
            hosts = {}
            if self.mlflow_proxy and "api" in self.services:
                api = moto.client("ecs").describe_task_definition(taskDefinition=platform.task_definitions()["api"])
                proxy, name = self._mlflow_proxy(net, api["taskDefinition"]["containerDefinitions"])
                cleanup.callback(proxy.close)
                fleet.proxies["api->mlflow"], hosts = proxy, {"api": {name: proxy.listen_host}}
            launcher = Launcher(
                client,
                secrets,
                net,
                tags,
                namespace,
                self._say,
                rollout=self.rollout,
                start_delay=self.start_delay,
                bundle=bundle,
                extra_hosts=hosts,
            )
            self.launched = launcher.tasks
            if self.watch is not None:
                watch = self.watch
                launcher.on_moment = lambda moment: watch(moment, fleet)
            cleanup.callback(launcher.cleanup)  # the containers, before their network
            cleanup.callback(launcher.moment, "closing")  # before the containers: a watcher's fault is undone
            fleet.database = self._database(client, moto, net, tags, launcher.created, authority, launcher.ports)
            fleet.launcher = launcher
            self._tasks(launcher, moto, platform.task_definitions(), model, how, fleet)
        ready = {
            key: seconds
            for key, life in self.rollout.tasks.items()
            if key in self.services and (seconds := life.after_start(Step.CONTAINER_HEALTHY)) is not None
        }
        if ready:  # task start to the health path answering, under the plan's own settings
            record_timings(self.reports_dir / "timings.json", "rehearsal", ready)
        return self.rollout

    def _how(self, svc: ServiceTiming) -> BlueGreen | None:
        """How the api's task is replaced: None for rolling, else blue/green's settings (the plan's
        unless given), refused before anything starts when CodeDeploy has no such configuration."""
        if (self.strategy or svc.strategy) == "rolling":
            return None
        traffic = self.traffic or svc.traffic
        traffic_steps(traffic, "the deployment group's traffic configuration")
        wait = svc.termination_wait if self.termination_wait is None else self.termination_wait
        return BlueGreen(traffic, wait, self.time_scale)

    def _mlflow_proxy(self, net, containers: list[dict]) -> tuple[FaultProxy, str]:
        """A fault proxy on the network's gateway under the port of the api's MLflow address; the
        api's containers resolve MLflow's name to it (its upstream is set once MLflow runs)."""
        env = {e["name"]: e["value"] for c in containers if c["name"] == "api" for e in c.get("environment", [])}
        address = urlsplit(env.get("API_MLFLOW_URL", ""))
        if not address.hostname or not address.port:
            raise ConfigurationError("the api's API_MLFLOW_URL with a host and a port", repr(address.geturl()), "")
        net.reload()
        gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
        proxy = FaultProxy(("127.0.0.1", 9), name="api->mlflow", listen_host=gateway, port=address.port)
        try:
            proxy.start()
        except OSError as exc:
            raise ServiceFailed(f"a fault proxy on {gateway}:{address.port} (MLflow's port)", str(exc), "") from None
        self._say(f"the api's tasks reach {address.hostname} through a fault proxy on {gateway}:{address.port}")
        return proxy, address.hostname

    def _say(self, text: str) -> None:
        print(f"rehearse: {text}", file=self.out, flush=True)

    def _database(
        self, client, moto: MotoServer, net, tags: dict, created: list, authority: Authority, ports: list[int]
    ) -> StandIn:
        """Postgres under the address the plan gives the database, with the master credentials
        that moto's Secrets Manager holds for it, serving TLS only under a certificate for that
        address (as RDS with rds.force_ssl); published on a loopback port for the harness's own
        reads (``Fleet.dsn``)."""
        db = moto.client("rds").describe_db_instances()["DBInstances"][0]
        master = json.loads(
            moto.client("secretsmanager").get_secret_value(SecretId=db["MasterUserSecret"]["SecretArn"])["SecretString"]
        )
        env = {
            "POSTGRES_USER": master["username"],
            "POSTGRES_PASSWORD": master["password"],
            "POSTGRES_DBS": "rehearsal",
        }
        cert, key = authority.issue((db["Endpoint"]["Address"],))
        env |= {"POSTGRES_TLS_CERT": cert.decode(), "POSTGRES_TLS_KEY": key.decode()}
        port = free_port()
        ports.append(port)
        c = client.containers.run(
            tags["postgres"],
            detach=True,
            name=f"{net.name}-database",
            environment=env,
            labels=session_labels(net.attrs["Labels"]),
            network=net.name,
            ports={"5432/tcp": ("127.0.0.1", port)},
        )
        created.append(c)
        client.networks.get(net.id).disconnect(c)
        client.networks.get(net.id).connect(c, aliases=[db["Endpoint"]["Address"]])
        self._say(f"database stand-in answers as {db['Endpoint']['Address']}")

        def health() -> str | None:
            c.reload()
            if c.attrs["State"]["Status"] == "exited":
                raise ServiceFailed(
                    "the database stand-in running",
                    f"exited {c.attrs['State']['ExitCode']}",
                    c.logs(tail=10).decode(errors="replace"),
                )
            return (c.attrs["State"].get("Health") or {}).get("Status")

        wait_until(
            health, until=lambda s: s == "healthy", timeout=60, interval=0.5, what="the database stand-in to be healthy"
        )
        url = f"postgresql://{quote(master['username'])}:{quote(master['password'])}@127.0.0.1:{port}"
        return StandIn("postgres", c, port, url, 5432)

    def count(self, svc: ServiceTiming) -> int:
        """How many tasks of ``svc`` run: its desired count, cut to ``tasks`` (and said so)."""
        if self.tasks is not None and self.tasks < svc.desired_count:
            self._say(f"{svc.name}: {self.tasks} of the plan's {svc.desired_count} tasks (--tasks {self.tasks})")
            return self.tasks
        return svc.desired_count

    def _tasks(
        self,
        launcher: Launcher,
        moto: MotoServer,
        revisions: dict[str, str],
        model: TimingModel,
        how: BlueGreen | None,
        fleet: Fleet,
    ) -> None:
        """Every service's tasks at its desired count, started together as ECS starts a new
        service's tasks; then the api's replaced (rolling or blue/green) under client traffic,
        behind a listener a watcher's clients reach the fleet by."""
        ecs = moto.client("ecs")
        definitions = {}
        with contextlib.ExitStack() as stack:
            wanted = []
            for service in self.services:
                task = ecs.describe_task_definition(taskDefinition=revisions[service])["taskDefinition"]
                definitions[service] = task["containerDefinitions"]
                svc = model.services[service]
                wanted += [(svc, definitions[service], task_key(service, i)) for i in range(self.count(svc))]
            running = launcher.start_together(stack, wanted)
            mlflow = [r for r in running if r.service == "mlflow" and r.main is not None]
            if mlflow:
                fleet.mlflow = mlflow[0].url
                if "api->mlflow" in fleet.proxies:  # Cloud Map would answer with every task; the proxy has one
                    fleet.proxies["api->mlflow"].upstream = ("127.0.0.1", int(urlsplit(mlflow[0].url).port or 0))
            launcher.await_in_service(running)
            api = [r for r in running if r.service == "api"]
            if not (self.replacement and api and all(r.life.ok for r in running)):
                return
            svc = model.services["api"]
            fleet.api = model.api_settings()
            balancer = Balancer()
            for t in api:
                balancer.register(t.key, t.url, t.target)
            fleet.listener = stack.enter_context(Listener(balancer)).url  # the ALB's default idle timeout, 60 s
            launcher.moment("replacing")
            if how is None:
                self.replacement_summary = replace(
                    launcher, stack, svc, api, definitions["api"], self.revision_env, balancer
                )
            else:
                self.replacement_summary = blue_green(
                    launcher, stack, svc, api, definitions["api"], how, self.revision_env, balancer
                )
            launcher.moment("replaced")


def _docker():  # -> docker.DockerClient
    """A client of the Docker engine, or the harness's error saying none answers."""
    import docker

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise DependencyMissing("a Docker engine for the rehearsal", str(exc), "start dockerd") from None


def _remove(network) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        network.remove()
