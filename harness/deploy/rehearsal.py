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
Exit code: 0 every task in service within its grace period; 1 a verdict failed; 2 it could not run.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from harness.deploy.boot import inputs
from harness.deploy.matcher import matches
from harness.deploy.moto import MotoServer
from harness.deploy.terraform import Terraform
from harness.deploy.timing import ServiceTiming, TimingModel, planned
from harness.errors import HarnessError, ServiceFailed, WaitTimeout
from harness.paths import TERRAFORM_DIR
from harness.ports import free_port, release
from harness.session import LABEL, Session
from harness.stack.stack import record_timings
from harness.wait import wait_until

NS = 1_000_000_000


@dataclass
class Timeline:
    service: str
    grace: float
    events: dict[str, float] = field(default_factory=dict)   # what happened, seconds after the task started
    failure: str = ""

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


class TargetPoller:
    """One target group's view of one target: checks on the planned interval with the planned
    timeout, healthy after H passing checks in a row (the conservative reading), bounded in time."""

    def __init__(self, url: str, svc: ServiceTiming, started: float, limit: float) -> None:
        self.url, self.alb, self.started, self.limit = url, svc.alb, started, limit
        self.healthy_at: float | None = None
        self.last = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"target poller {svc.name}", daemon=True)

    def __enter__(self) -> TargetPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.alb.timeout + 2)

    def _loop(self) -> None:
        streak = 0
        while not self._stop.is_set() and time.monotonic() - self.started < self.limit:
            try:
                r = httpx.get(self.url + self.alb.path, timeout=self.alb.timeout,
                              headers={"User-Agent": "ELB-HealthChecker/2.0", "Connection": "close"})
                passed, self.last = matches(r.status_code, self.alb.matcher), f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                passed, self.last = False, type(exc).__name__
            streak = streak + 1 if passed else 0
            if streak >= self.alb.healthy_threshold and self.healthy_at is None:
                self.healthy_at = round(time.monotonic() - self.started, 1)
            self._stop.wait(self.alb.interval)


def _secret_value(sm, value_from: str) -> str:
    parts = value_from.split(":")
    arn, key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
    raw = sm.get_secret_value(SecretId=arn)["SecretString"]
    return json.loads(raw)[key] if key else raw


def _healthcheck(hc: dict) -> dict:
    """A task definition's healthCheck in the Engine API's form (start period 0 must be 1 ms there)."""
    return {"test": hc["command"], "interval": int(hc.get("interval", 30) * NS),
            "timeout": int(hc.get("timeout", 5) * NS), "retries": int(hc.get("retries", 3)),
            "start_period": int(max(hc.get("startPeriod", 0), 0.001) * NS)}


@dataclass
class Rehearsal:
    env: str = "staging"
    services: tuple[str, ...] = ("api", "mlflow")
    reports_dir: Path = Path("reports")
    source: Path = TERRAFORM_DIR  # the Terraform to rehearse (a test may give an edited copy)
    out: TextIO = sys.stderr
    timelines: dict[str, Timeline] = field(default_factory=dict)
    _ports: list[int] = field(default_factory=list)
    _stop_timeout: dict[str, int] = field(default_factory=dict)  # container name -> the task definition's stopTimeout

    def run(self) -> dict[str, Timeline]:
        import docker

        from harness.stack.images import ensure_images

        var_file = TERRAFORM_DIR / "environments" / f"{self.env}.tfvars"
        session = Session()
        client = docker.from_env()
        created: list = []
        try:
            self._say(f"planning {var_file.name} (the timings) and applying it to a moto server (the task definitions)")
            model = planned(var_file, inputs(self.reports_dir / "timings.json", self.reports_dir / "images.json"),
                            source=self.source)
            tags = ensure_images(client)[0]
            with MotoServer(session, running_tasks=0) as moto:
                tf = Terraform(session.mkdtemp("tf-rehearsal"), source=self.source)
                tf.apply(str(var_file), aws_endpoint=moto.url, deletion_protection=False)
                net = client.networks.create(f"harness-{session.id}-rehearsal", labels={LABEL: session.id})
                created.append(net)
                self._database(client, moto, net, tags, created)
                self._tasks(client, moto, model, net, tags, created)
        finally:
            for obj in reversed(created):  # containers first (they hold the network), then the network
                with contextlib.suppress(docker.errors.APIError):
                    if isinstance(obj, docker.models.containers.Container):
                        obj.stop(timeout=self._stop_timeout.get(obj.name, 10))  # SIGTERM, SIGKILL after stopTimeout
                        obj.remove(force=True, v=True)
                    else:
                        obj.remove()
            for port in self._ports:
                release(port)
            client.close()
            session.close()
        ready = {s: t.events["container HEALTHY"] for s, t in self.timelines.items() if "container HEALTHY" in t.events}
        if ready:  # task start to the health path answering, under the plan's own settings
            record_timings(self.reports_dir / "timings.json", "rehearsal", ready)
        return self.timelines

    def _say(self, text: str) -> None:
        print(f"rehearse: {text}", file=self.out, flush=True)

    def _database(self, client, moto: MotoServer, net, tags: dict, created: list) -> None:
        """Postgres under the address the plan gives the database, with the master credentials
        that moto's Secrets Manager holds for it."""
        db = moto.client("rds").describe_db_instances()["DBInstances"][0]
        master = json.loads(moto.client("secretsmanager").get_secret_value(
            SecretId=db["MasterUserSecret"]["SecretArn"])["SecretString"])
        env = {"POSTGRES_USER": master["username"], "POSTGRES_PASSWORD": master["password"],
               "POSTGRES_DBS": "rehearsal"}
        c = client.containers.run(tags["postgres"], detach=True, name=f"{net.name}-database", environment=env,
                                  labels={LABEL: net.attrs["Labels"][LABEL]}, network=net.name)
        created.append(c)
        client.networks.get(net.id).disconnect(c)
        client.networks.get(net.id).connect(c, aliases=[db["Endpoint"]["Address"]])
        self._say(f"database stand-in answers as {db['Endpoint']['Address']}")
        def health() -> str | None:
            c.reload()
            if c.attrs["State"]["Status"] == "exited":
                raise ServiceFailed("the database stand-in running", f"exited {c.attrs['State']['ExitCode']}",
                                    c.logs(tail=10).decode(errors="replace"))
            return (c.attrs["State"].get("Health") or {}).get("Status")
        wait_until(health, until=lambda s: s == "healthy", timeout=60, interval=0.5,
                   what="the database stand-in to be healthy")

    def _tasks(self, client, moto: MotoServer, model: TimingModel, net, tags: dict, created: list) -> None:
        ecs, sm = moto.client("ecs"), moto.client("secretsmanager")
        namespace = moto.client("servicediscovery").list_namespaces()["Namespaces"][0]["Name"]
        families = {d.rsplit("/", 1)[1].split(":")[0]: d for d in ecs.list_task_definitions()["taskDefinitionArns"]}
        pollers, started = [], {}
        with contextlib.ExitStack() as stack:
            for service in self.services:
                svc = model.services[service]
                family = next(f for f in families if f.endswith(f"-{service}"))
                task = ecs.describe_task_definition(taskDefinition=families[family])["taskDefinition"]
                timeline = self.timelines[service] = Timeline(service, svc.grace_period)
                t0 = started[service] = time.monotonic()
                timeline.events["task started"] = 0.0
                port = self._run_task(client, sm, task, service, namespace, net, tags, created, timeline, t0)
                if port is None:
                    continue
                url = f"http://127.0.0.1:{port}"
                pollers.append((service, stack.enter_context(TargetPoller(url, svc, t0, svc.grace_period + 30))))
            deadline = max((model.services[s].grace_period for s in started), default=0) + 5
            wait_until(lambda: self._progress(created, pollers, started),
                       until=lambda done: done, timeout=deadline, interval=1.0,
                       what="every task in service or past its grace period")

    def _run_task(self, client, sm, task: dict, service: str, namespace: str, net, tags: dict, created: list,
                  timeline: Timeline, t0: float) -> int | None:
        """The task's containers in dependsOn order; the service container's host port."""
        label = {LABEL: net.attrs["Labels"][LABEL], "harness.service": service}
        definitions = sorted(task["containerDefinitions"], key=lambda c: c["name"] == service)
        port = None
        for d in definitions:
            env = {e["name"]: e["value"] for e in d.get("environment", [])}
            env |= {s["name"]: _secret_value(sm, s["valueFrom"]) for s in d.get("secrets", [])}
            kwargs: dict = {"environment": env, "labels": label, "network": net.name, "detach": True,
                            "name": f"{net.name}-{service}-{d['name']}", "stop_signal": "SIGTERM"}
            if d.get("command"):
                kwargs["command"] = d["command"]
            if d.get("healthCheck"):
                kwargs["healthcheck"] = _healthcheck(d["healthCheck"])
            self._stop_timeout[f"{net.name}-{service}-{d['name']}"] = int(d.get("stopTimeout", 30))
            if d["name"] == service:
                port = free_port()
                self._ports.append(port)
                kwargs["ports"] = {f"{d['portMappings'][0]['containerPort']}/tcp": ("127.0.0.1", port)}
            container = client.containers.create(tags[service], **kwargs)
            created.append(container)
            if d["name"] == service:
                client.networks.get(net.id).disconnect(container)
                client.networks.get(net.id).connect(container, aliases=[service, f"{service}.{namespace}"])
            container.start()
            if d["name"] != service and not d.get("essential", True):
                code = self._exit_code(container, 120)
                timeline.events[f"{d['name']} exited {code}"] = round(time.monotonic() - t0, 1)
                if code != 0:
                    timeline.failure = (f"{d['name']} exited {code}; {service} never started (dependsOn SUCCESS). "
                                        f"Its log ends with:\n{container.logs(tail=15).decode(errors='replace')}")
                    return None
        timeline.events[f"{service} started"] = round(time.monotonic() - t0, 1)
        self._say(f"{service}: task started; its target is polled as the ALB does")
        return port

    def _exit_code(self, container, timeout: float) -> int:
        def state() -> dict:
            container.reload()
            return container.attrs["State"]
        return wait_until(state, until=lambda s: s["Status"] == "exited", timeout=timeout, interval=0.5,
                          what=f"{container.name} to finish")["ExitCode"]

    def _progress(self, created: list, pollers: list, started: dict) -> bool:
        done = True
        for service, poller in pollers:
            timeline, t0 = self.timelines[service], started[service]
            if timeline.failure or timeline.in_service is not None:
                continue
            main = next(c for c in created if getattr(c, "name", "").endswith(f"-{service}-{service}"))
            main.reload()
            state = main.attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            now = round(time.monotonic() - t0, 1)
            if state["Status"] == "exited":
                timeline.failure = (f"{service} exited {state['ExitCode']}; its log ends with:\n"
                                    f"{main.logs(tail=15).decode(errors='replace')}")
                continue
            if health == "healthy":
                timeline.events.setdefault("container HEALTHY", now)
            if health == "unhealthy":
                timeline.failure = (f"container UNHEALTHY after {now:.1f}s (ECS would replace it); health log: "
                                    f"{(state.get('Health') or {}).get('Log', [{}])[-1].get('Output', '')[:300]}")
                continue
            if poller.healthy_at is not None:
                timeline.events.setdefault("target healthy", poller.healthy_at)
            if "container HEALTHY" in timeline.events and "target healthy" in timeline.events:
                timeline.events["in service"] = max(timeline.events["container HEALTHY"],
                                                    timeline.events["target healthy"])
                self._say(f"{service}: in service after {timeline.in_service:.1f}s")
                continue
            if now > timeline.grace:
                timeline.failure = (f"not in service when the grace period ({timeline.grace:g}s) ended: container "
                                    f"{health}, target last answered {poller.last}")
                continue
            done = False
        return done


def main(env: str, services: tuple[str, ...], as_json: bool, reports_dir: Path, out: TextIO = sys.stderr) -> int:
    rehearsal = Rehearsal(env, services, reports_dir, out)
    try:
        timelines = rehearsal.run()
    except (HarnessError, WaitTimeout, ServiceFailed) as exc:
        print(f"rehearse: could not run: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({s: {"ok": t.ok, "verdict": t.verdict(), "events": t.events, "grace": t.grace}
                          for s, t in timelines.items()}, indent=2))
    else:
        for t in timelines.values():
            print(t.describe())
    return 0 if all(t.ok for t in timelines.values()) else 1

