"""Rehearse the planned tasks on Docker as ECS would run them.

    python -m harness rehearse --env staging [--service api|mlflow] [--json]

The plan is applied to a moto server (so every task definition is the JSON ECS would get, with
real secret ARNs), then each service's task runs on Docker: its containers in ``dependsOn`` order
(dbinit must exit 0 first), with the task definition's environment, its secrets read from moto's
Secrets Manager, its command, its health check (not the Dockerfile's: ECS ignores that one), its
``stopTimeout``; a Postgres container stands in for the database under the address the plan
gives it, and MLflow answers under its Cloud Map name. A poller per target group does what the
ALB does (path, matcher, interval, timeout, thresholds). Each task gets a timeline (started,
container HEALTHY, target healthy, in service) judged against its grace period.

Then the api's task is replaced under client traffic as the plan deploys it: rolling (the new task
in service, the old one drained for the deregistration delay, SIGTERM) or, for a CODE_DEPLOY
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
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from harness.errors import ConfigurationError, HarnessError, ServiceFailed, WaitTimeout
from harness.paths import TERRAFORM_DIR
from harness.plan.boot import inputs
from harness.plan.codedeploy import TRAFFIC
from harness.plan.terraform import Terraform
from harness.plan.timing import ServiceTiming, TimingModel, plan_resources, planned
from harness.ports import free_port, release
from harness.process import delayed
from harness.rehearsal.balancer import Balancer, Client, TargetPoller, validate
from harness.rehearsal.moto import MotoServer
from harness.session import LABEL, Session
from harness.stack.stack import record_timings
from harness.wait import wait_until

if TYPE_CHECKING:
    from docker.models.containers import Container

NS = 1_000_000_000


@dataclass
class Timeline:
    service: str
    grace: float
    events: dict[str, float] = field(default_factory=dict)  # what happened, seconds after the task started
    failure: str = ""
    offset: float = 0.0  # seconds from the rehearsal's first task start to this task's

    @property
    def in_service(self) -> float | None:
        return self.events.get("in service")

    @property
    def ok(self) -> bool:
        return not self.failure and self.in_service is not None and self.in_service <= self.grace

    def verdict(self) -> str:
        if self.failure:
            return f"FAIL: {self.failure}"
        if self.in_service is None:
            return f"FAIL: never in service within the grace period {self.grace:g}s"
        word = "pass" if self.ok else "FAIL"
        return f"{word}: in service after {self.in_service:.1f}s, grace period {self.grace:g}s"

    def describe(self) -> str:
        lines = [f"{self.service}: {self.verdict()}"]
        lines += [f"  {t:7.1f}s  {what}" for what, t in sorted(self.events.items(), key=lambda e: e[1])]
        return "\n".join(lines)


@dataclass
class RunningTask:
    key: str  # "api", "mlflow", "api (new revision)"
    service: str
    timeline: Timeline
    t0: float
    url: str = ""
    main: Container | None = None  # the service's container
    poller: TargetPoller | None = None

    def since(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    @property
    def started(self) -> Container:
        """The main container, for a task whose main container was started."""
        assert self.main is not None, f"{self.key}: its main container was never started"
        return self.main

    @property
    def target(self) -> TargetPoller:
        """The ALB-like poller, for a task whose main container was started."""
        assert self.poller is not None, f"{self.key}: no target poller (its main container was never started)"
        return self.poller


def _tail(container, lines: int = 15) -> str:
    return container.logs(tail=lines).decode(errors="replace")


def _secret_value(sm, value_from: str) -> str:
    parts = value_from.split(":")
    arn, key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
    raw = sm.get_secret_value(SecretId=arn)["SecretString"]
    return json.loads(raw)[key] if key else raw


def _healthcheck(hc: dict) -> dict:
    """A task definition's healthCheck in the Engine API's form (start period 0 must be 1 ms there)."""
    return {
        "test": hc["command"],
        "interval": int(hc.get("interval", 30) * NS),
        "timeout": int(hc.get("timeout", 5) * NS),
        "retries": int(hc.get("retries", 3)),
        "start_period": int(max(hc.get("startPeriod", 0), 0.001) * NS),
    }


def _digest(var_file: Path, source: Path) -> str:
    """What an apply depends on: the tfvars and every Terraform file of the source, by content."""
    h = hashlib.sha256(Path(var_file).read_bytes())
    for f in sorted(Path(source).rglob("*.tf")):
        if ".terraform" not in f.parts:
            h.update(str(f.relative_to(source)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


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

    def __enter__(self) -> Platform:
        self.moto.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.moto.__exit__(*exc)

    def apply(self, var_file: Path, source: Path = TERRAFORM_DIR, again: bool = False) -> None:
        """Move the platform to ``var_file`` on ``source`` (``again``: even if the state holds them)."""
        digest = _digest(var_file, source)
        if digest == self._applied and not again:
            return
        started = time.monotonic()
        self._applied = ""
        if self.tf is None:
            self.tf = Terraform(self.session.mkdtemp("tf-platform"), source=source)
        else:
            self.tf.use_source(source)
        self.tf.apply(str(var_file), aws_endpoint=self.moto.url, deletion_protection=False)
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


@dataclass
class Rehearsal:
    env: str = "staging"
    services: tuple[str, ...] = ("api", "mlflow")
    reports_dir: Path = Path("reports")
    source: Path = TERRAFORM_DIR  # the Terraform to rehearse (a test may give an edited copy)
    var_file: Path | None = None  # default: terraform/environments/<env>.tfvars
    out: TextIO = sys.stderr
    timelines: dict[str, Timeline] = field(default_factory=dict)
    _ports: list[int] = field(default_factory=list)
    _stop_timeout: dict[str, int] = field(default_factory=dict)  # container name -> the task definition's stopTimeout
    replacement: bool = True  # after the tasks are in service, replace the api's under client traffic
    replacement_summary: dict = field(default_factory=dict)
    _task_definitions: dict[str, list] = field(default_factory=dict)
    session_id: str = ""  # what everything it started is labelled with
    start_delay: dict[str, float] = field(default_factory=dict)  # service -> seconds its boot is stretched by
    _began: float = 0.0  # when the first task started (time.monotonic)
    platform: Platform | None = None  # an applied platform to reuse (else a moto server of its own)
    strategy: str | None = None  # rolling | blue_green; None: the plan's (CODE_DEPLOY -> blue_green)
    traffic: str | None = None  # blue/green: CodeDeploy's configuration; None: the plan's deployment group's
    termination_wait: float | None = None  # blue/green: seconds blue is kept after the shift; None: the plan's
    time_scale: float = 1.0  # blue/green: scales the traffic steps and the termination wait (not health timing)
    green_env: dict[str, str] = field(default_factory=dict)  # blue/green: extra environment of the green task

    def __post_init__(self) -> None:
        """Refuse a wrong blue/green setting before anything starts, naming it."""
        checks = (
            ("strategy", self.strategy in (None, "rolling", "blue_green"), "rolling or blue_green"),
            ("traffic", self.traffic is None or self.traffic in TRAFFIC, f"one of {', '.join(TRAFFIC)}"),
            ("time_scale", self.time_scale > 0, "a number above 0 (0.02: a canary's 5 minutes as 6 s)"),
            ("termination_wait", self.termination_wait is None or self.termination_wait >= 0, "seconds, 0 or more"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigurationError(f"the rehearsal's {name}: {expected}", repr(getattr(self, name)))

    def run(self) -> dict[str, Timeline]:
        import docker
        import docker.models.containers

        from harness.stack.images import ensure_images

        var_file = self.var_file or TERRAFORM_DIR / "environments" / f"{self.env}.tfvars"
        session = Session()
        self.session_id = session.id
        client = docker.from_env()
        created: list = []
        try:
            self._say(f"planning {var_file.name} (the timings) and applying it to a moto server (the task definitions)")
            model = planned(
                var_file,
                inputs(self.reports_dir / "timings.json", self.reports_dir / "images.json"),
                source=self.source,
            )
            tags = ensure_images(client)[0]
            with contextlib.ExitStack() as own:
                platform = self.platform or own.enter_context(Platform(session))
                platform.apply(var_file, self.source)
                moto = platform.moto
                net = client.networks.create(f"harness-{session.id}-rehearsal", labels={LABEL: session.id})
                created.append(net)
                self._database(client, moto, net, tags, created)
                self._tasks(client, moto, platform.task_definitions(), model, net, tags, created)
        finally:
            for obj in reversed(created):  # containers first (they hold the network), then the network
                with contextlib.suppress(docker.errors.APIError):
                    if isinstance(obj, docker.models.containers.Container):
                        # SIGTERM, then SIGKILL after the task definition's stopTimeout
                        obj.stop(timeout=self._stop_timeout.get(obj.name or "", 10))
                        obj.remove(force=True, v=True)
                    else:
                        obj.remove()
            for port in self._ports:
                release(port)
            client.close()
            session.close()
        ready = {
            s: t.events["container HEALTHY"]
            for s, t in self.timelines.items()
            if s in self.services and "container HEALTHY" in t.events
        }
        if ready:  # task start to the health path answering, under the plan's own settings
            record_timings(self.reports_dir / "timings.json", "rehearsal", ready)
        return self.timelines

    def _say(self, text: str) -> None:
        print(f"rehearse: {text}", file=self.out, flush=True)

    def _database(self, client, moto: MotoServer, net, tags: dict, created: list) -> None:
        """Postgres under the address the plan gives the database, with the master credentials
        that moto's Secrets Manager holds for it."""
        db = moto.client("rds").describe_db_instances()["DBInstances"][0]
        master = json.loads(
            moto.client("secretsmanager").get_secret_value(SecretId=db["MasterUserSecret"]["SecretArn"])["SecretString"]
        )
        env = {
            "POSTGRES_USER": master["username"],
            "POSTGRES_PASSWORD": master["password"],
            "POSTGRES_DBS": "rehearsal",
        }
        c = client.containers.run(
            tags["postgres"],
            detach=True,
            name=f"{net.name}-database",
            environment=env,
            labels={LABEL: net.attrs["Labels"][LABEL]},
            network=net.name,
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

    def _tasks(
        self, client, moto: MotoServer, revisions: dict[str, str], model: TimingModel, net, tags: dict, created: list
    ) -> None:
        ecs = moto.client("ecs")
        ctx = {
            "client": client,
            "sm": moto.client("secretsmanager"),
            "net": net,
            "tags": tags,
            "created": created,
            "namespace": moto.client("servicediscovery").list_namespaces()["Namespaces"][0]["Name"],
        }
        with contextlib.ExitStack() as stack:
            running = []
            for service in self.services:
                task = ecs.describe_task_definition(taskDefinition=revisions[service])["taskDefinition"]
                self._task_definitions[service] = task["containerDefinitions"]
                running.append(self._start_task(ctx, stack, model.services[service], task, service))
            self._await_in_service([r for r in running if r.main is not None])
            api = next((r for r in running if r.service == "api" and r.timeline.ok), None)
            if self.replacement and api is not None and all(r.timeline.ok for r in running):
                svc = model.services["api"]
                strategy = self.strategy or ("blue_green" if svc.deployment_controller == "CODE_DEPLOY" else "rolling")
                if strategy == "blue_green":
                    self._blue_green(ctx, stack, svc, api)
                else:
                    self._replace(ctx, stack, svc, api)

    def _start_task(
        self,
        ctx: dict,
        stack: contextlib.ExitStack,
        svc: ServiceTiming,
        task: dict,
        key: str,
        env_extra: dict | None = None,
    ) -> RunningTask:
        timeline = self.timelines[key] = Timeline(key, svc.grace_period)
        running = RunningTask(key, svc.name, timeline, time.monotonic())
        self._began = self._began or running.t0
        timeline.offset = round(running.t0 - self._began, 1)
        timeline.events["task started"] = 0.0
        self._run_task(ctx, task, running, env_extra or {})
        if running.main is not None:
            running.poller = stack.enter_context(TargetPoller(running.url, svc.alb, running.t0, svc.grace_period + 30))
        return running

    def _run_task(self, ctx: dict, task: dict, running: RunningTask, env_extra: dict) -> None:
        """The task's containers in dependsOn order (an essential=false one must exit 0 first)."""
        client, net, service = ctx["client"], ctx["net"], running.service
        label = {LABEL: net.attrs["Labels"][LABEL], "harness.service": service}
        suffix = "" if running.key == service else "-new"
        for d in sorted(task["containerDefinitions"], key=lambda c: c["name"] == service):
            env = {e["name"]: e["value"] for e in d.get("environment", [])} | env_extra
            env |= {s["name"]: _secret_value(ctx["sm"], s["valueFrom"]) for s in d.get("secrets", [])}
            name = f"{net.name}-{service}-{d['name']}{suffix}"
            kwargs: dict = {
                "environment": env,
                "labels": label,
                "network": net.name,
                "name": name,
                "stop_signal": "SIGTERM",
            }
            command = d.get("command")
            delay = self.start_delay.get(service, 0.0) if d["name"] == service else 0.0
            if delay:  # a slow boot, made on purpose: the image's own command begins only after ``delay``
                command = delayed(command or client.images.get(ctx["tags"][service]).attrs["Config"]["Cmd"], delay)
            if command:
                kwargs["command"] = command
            if d.get("healthCheck"):
                kwargs["healthcheck"] = _healthcheck(d["healthCheck"])
            self._stop_timeout[name] = int(d.get("stopTimeout", 30))
            main = d["name"] == service
            if main:
                port = free_port()
                self._ports.append(port)
                running.url = f"http://127.0.0.1:{port}"
                kwargs["ports"] = {f"{d['portMappings'][0]['containerPort']}/tcp": ("127.0.0.1", port)}
            container = client.containers.create(ctx["tags"][service], **kwargs)
            ctx["created"].append(container)
            if main:
                client.networks.get(net.id).disconnect(container)
                client.networks.get(net.id).connect(container, aliases=[service, f"{service}.{ctx['namespace']}"])
            container.start()
            if main:
                running.main = container
            elif not d.get("essential", True):
                code = self._exit_code(container, 120)
                running.timeline.events[f"{d['name']} exited {code}"] = running.since()
                if code != 0:
                    running.timeline.failure = (
                        f"{d['name']} exited {code}; {service} never started (dependsOn "
                        f"SUCCESS). Its log ends with:\n{_tail(container)}"
                    )
                    return
        running.timeline.events[f"{service} started"] = running.since()
        self._say(f"{running.key}: task started; its target is polled as the ALB does")

    def _exit_code(self, container, timeout: float) -> int:
        def state() -> dict:
            container.reload()
            return container.attrs["State"]

        return wait_until(
            state,
            until=lambda s: s["Status"] == "exited",
            timeout=timeout,
            interval=0.5,
            what=f"{container.name} to finish",
        )["ExitCode"]

    def _await_in_service(self, tasks: list[RunningTask]) -> None:
        deadline = max((r.timeline.grace for r in tasks), default=0) + 5
        wait_until(
            lambda: all([self._judge(r) for r in tasks]),
            timeout=deadline,
            interval=1.0,
            what="every task in service or past its grace period",
        )

    def _judge(self, r: RunningTask) -> bool:
        """Whether ``r`` is decided (in service, or failed); records what it saw."""
        timeline = r.timeline
        if timeline.failure or timeline.in_service is not None:
            return True
        r.started.reload()
        state = r.started.attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        now = r.since()
        if state["Status"] == "exited":
            timeline.events.setdefault(f"{r.service} exited {state['ExitCode']}", now)
            timeline.failure = f"{r.service} exited {state['ExitCode']}; its log ends with:\n{_tail(r.started)}"
            return True
        if health == "healthy":
            timeline.events.setdefault("container HEALTHY", now)
        if health == "unhealthy":
            timeline.events.setdefault("container UNHEALTHY", now)
            log = ((state.get("Health") or {}).get("Log") or [{}])[-1].get("Output", "")[:300]
            timeline.failure = f"container UNHEALTHY after {now:.1f}s (ECS would replace it); health log: {log}"
            return True
        if r.target.healthy_at is not None:
            timeline.events.setdefault("target healthy", r.target.healthy_at)
        if "container HEALTHY" in timeline.events and "target healthy" in timeline.events:
            timeline.events["in service"] = max(timeline.events["container HEALTHY"], timeline.events["target healthy"])
            self._say(f"{r.key}: in service after {timeline.in_service:.1f}s")
            return True
        if now > timeline.grace:
            timeline.events.setdefault("grace period over", now)
            timeline.failure = (
                f"not in service when the grace period ({timeline.grace:g}s) ended: container "
                f"{health}, target last answered {r.target.last}"
            )
            return True
        return False

    def _replace(self, ctx: dict, stack: contextlib.ExitStack, svc: ServiceTiming, old: RunningTask) -> None:
        """A rolling replacement of the api's task while a client sends requests through the
        balancer: the new revision comes into service, the old target drains for the deregistration
        delay, then gets SIGTERM and, after stopTimeout, SIGKILL. No request may fail."""
        balancer = Balancer()
        balancer.register(old.key, old.url, old.target)
        family_task = {"containerDefinitions": self._task_definitions[old.service]}
        self._say("api: rolling replacement: a new revision starts while a client sends requests")
        with Client(balancer, max_duration=svc.grace_period + svc.deregistration_delay + svc.stop_timeout + 60) as c:
            new = self._start_task(ctx, stack, svc, family_task, "api (new revision)", {"API_REVISION": "2"})
            if new.main is not None:
                balancer.register(new.key, new.url, new.target)
            self._await_in_service([new])
            if not new.timeline.ok:
                return
            events = old.timeline.events
            balancer.drain(old.key)
            events["draining"] = old.since()
            self._until(
                old,
                events["draining"] + svc.deregistration_delay,
                f"the old target to drain for its deregistration delay ({svc.deregistration_delay:g}s)",
            )
            self._stop(old, svc)
            wait_until(lambda: len(c.answers), until=lambda n: n >= 10, timeout=10, what="a few requests afterwards")
        failed = c.failed
        self.replacement_summary = {
            "requests": len(c.answers),
            "failed": len(failed),
            "by_target": {k: sum(a.target == k for a in c.answers) for k in (old.key, new.key)},
        }
        self._say(f"api: replacement: {len(c.answers)} client requests, {len(failed)} failed")
        if failed:
            old.timeline.failure = old.timeline.failure or (
                f"{len(failed)} of {len(c.answers)} client requests failed during the replacement: "
                + "; ".join(f"t={a.t}s {a.target} {a.status or a.error}" for a in failed[:5])
            )

    def _stop(self, task: RunningTask, svc: ServiceTiming) -> None:
        """SIGTERM, then SIGKILL after stopTimeout; a stop that was not graceful fails the task."""
        events = task.timeline.events
        events["SIGTERM"] = task.since()
        task.started.stop(timeout=int(svc.stop_timeout))
        task.started.reload()
        code = task.started.attrs["State"]["ExitCode"]
        events[f"stopped (exit {code})"] = task.since()
        took = events[f"stopped (exit {code})"] - events["SIGTERM"]
        if code != 0 or took >= svc.stop_timeout:
            task.timeline.failure = task.timeline.failure or (
                f"stopped with exit {code} {took:.1f}s after SIGTERM (stopTimeout {svc.stop_timeout:g}s): "
                "not a graceful stop"
            )

    def _until(self, task: RunningTask, at: float, what: str) -> None:
        """Wait until ``at`` seconds on ``task``'s clock (a planned wait, not a state)."""
        wait_until(
            task.since, until=lambda s: s >= at, timeout=max(0.0, at - task.since()) + 5, interval=0.2, what=what
        )

    def _blue_green(self, ctx: dict, stack: contextlib.ExitStack, svc: ServiceTiming, blue: RunningTask) -> None:
        """CodeDeploy's ECS blue/green of the api under client traffic: green beside blue in the
        second target group, traffic moved on the listener by the configuration's steps once green
        is in service, blue kept for the termination wait, then deregistered and stopped. With the
        plan's test listener, green is validated through it first (``balancer.validate``: /health
        pass and one write read back) before any production traffic moves. A green that never
        comes into service, or fails its validation, moves no traffic and is removed (the rollback)."""
        traffic = self.traffic or svc.traffic
        if traffic not in TRAFFIC:
            raise ConfigurationError(
                "the deployment group's traffic configuration", repr(traffic), f"one of {', '.join(TRAFFIC)}"
            )
        termination = svc.termination_wait if self.termination_wait is None else self.termination_wait
        steps = [(after * self.time_scale, percent) for after, percent in TRAFFIC[traffic]]
        balancer = Balancer()
        balancer.register(blue.key, blue.url, blue.target, group="blue")
        family_task = {"containerDefinitions": self._task_definitions[blue.service]}
        bev = blue.timeline.events
        shifts: list[tuple[float, int]] = []
        problem: str | None = None  # what failed the validation through the test listener
        self._say(f"api: blue/green ({traffic}): a green task starts beside blue while a client sends requests")
        limit = svc.grace_period + steps[-1][0] + termination * self.time_scale + svc.deregistration_delay + 120
        with Client(balancer, max_duration=limit) as c:
            green = self._start_task(
                ctx, stack, svc, family_task, "api (green)", {"API_REVISION": "2", **self.green_env}
            )
            if green.main is not None:
                balancer.register(green.key, green.url, green.target, group="green")
            self._await_in_service([green])
            gev = green.timeline.events
            if green.timeline.ok:
                bev["green in service"] = blue.since()
                if svc.test_listener:
                    self._say("api: the test listener routes to green: validating it before production traffic moves")
                    problem = validate(green.url)
                    bev["validated on the test listener" if problem is None else "validation failed"] = blue.since()
                    if problem is not None:
                        green.timeline.failure = f"validation through the test listener failed: {problem}"
            if not green.timeline.ok:
                why = "green never in service" if problem is None else "green failed its validation"
                bev[f"rollback: {why}, no traffic moved"] = blue.since()
                self._say(f"api: {why}{f' ({problem})' if problem else ''}: no traffic moved; green removed (rollback)")
                if green.main is not None:
                    balancer.drain(green.key)
                    green.started.reload()
                    if green.started.attrs["State"]["Status"] == "running":
                        self._stop(green, svc)
            else:
                ready = blue.since()
                for after, percent in steps:
                    self._until(blue, ready + after, f"the traffic step to {percent} % green")
                    balancer.shift({"blue": 100 - percent, "green": percent})
                    shifts.append((blue.since(), percent))
                    bev[f"traffic {percent} % green"] = gev[f"traffic {percent} % green"] = blue.since()
                    self._say(f"api: listener forwards {percent} % to green")
                done = blue.since()
                self._until(
                    blue, done + termination * self.time_scale, "the termination wait (blue kept for a rollback)"
                )
                bev["termination wait over"] = blue.since()
                balancer.drain(blue.key)  # the blue task set deleted: its target deregisters
                bev["draining"] = blue.since()
                self._until(blue, bev["draining"] + svc.deregistration_delay, "blue's deregistration delay")
                self._stop(blue, svc)
            wait_until(lambda: len(c.answers), until=lambda n: n >= 10, timeout=10, what="a few requests afterwards")
        failed = c.failed
        keys = (blue.key, green.key)
        after_last = [a for a in c.answers if shifts and a.t >= shifts[-1][0] + (blue.t0 - c.started) + 0.5]
        self.replacement_summary = {
            "strategy": "blue_green",
            "traffic": traffic,
            "termination_wait": termination * self.time_scale,
            "requests": len(c.answers),
            "failed": len(failed),
            "by_target": {k: sum(a.target == k for a in c.answers) for k in keys},
            "shifts": shifts,
            "on_blue_after_the_last_shift": sum(a.target == blue.key for a in after_last),
            "rolled_back": not green.timeline.ok,
            "validation": problem or ("passed" if "validated on the test listener" in bev else None),
        }
        self._say(f"api: blue/green: {len(c.answers)} client requests, {len(failed)} failed")
        if failed:
            blue.timeline.failure = blue.timeline.failure or (
                f"{len(failed)} of {len(c.answers)} client requests failed during the blue/green deployment: "
                + "; ".join(f"t={a.t}s {a.target} {a.status or a.error}" for a in failed[:5])
            )


def main(
    env: str,
    services: tuple[str, ...],
    as_json: bool,
    reports_dir: Path,
    replacement: bool = True,
    var_file: Path | None = None,
    out: TextIO = sys.stderr,
    svg: Path | None = None,
    strategy: str | None = None,
    traffic: str | None = None,
    termination_wait: float | None = None,
    time_scale: float = 1.0,
) -> int:
    rehearsal = Rehearsal(
        env,
        services,
        reports_dir,
        out=out,
        replacement=replacement,
        var_file=var_file,
        strategy=strategy,
        traffic=traffic,
        termination_wait=termination_wait,
        time_scale=time_scale,
    )
    try:
        timelines = rehearsal.run()
    except (HarnessError, WaitTimeout, ServiceFailed) as exc:
        print(f"rehearse: could not run: {exc}", file=sys.stderr)
        return 2
    if svg is not None:
        from harness.gantt import rehearsal_svg

        svg.write_text(rehearsal_svg(timelines, f"{env} plan rehearsed on Docker"))
        print(f"timeline picture: {svg}", file=out)
    if as_json:
        print(
            json.dumps(
                {
                    "tasks": {
                        s: {"ok": t.ok, "verdict": t.verdict(), "events": t.events, "grace": t.grace}
                        for s, t in timelines.items()
                    },
                    "replacement": rehearsal.replacement_summary,
                },
                indent=2,
            )
        )
    else:
        for t in timelines.values():
            print(t.describe())
        if rehearsal.replacement_summary:
            s = rehearsal.replacement_summary
            how = f"blue/green ({s['traffic']})" if s.get("strategy") == "blue_green" else "rolling replacement"
            print(
                f"{how} of the api's task: {s['requests']} client requests, {s['failed']} failed "
                f"(by target: {s['by_target']})"
                + (f"; listener shifts (s, % green): {s['shifts']}" if s.get("shifts") else "")
                + ("; green never in service: no traffic moved, rolled back" if s.get("rolled_back") else "")
            )
    return 0 if all(t.ok for t in timelines.values()) else 1
