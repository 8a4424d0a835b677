"""A task definition's containers run on Docker as ECS runs them, and each task judged as ECS and
the ALB judge it: its containers in ``dependsOn`` order (an ``essential: false`` one such as dbinit
must exit 0 first), the task definition's environment, its secrets read from moto's Secrets
Manager, its command, its health check (not the Dockerfile's: ECS ignores that one) and its
``stopTimeout``; a poller per target does what the ALB does. What happens is recorded as the
task's typed lifecycle (``harness.lifecycle``) on the rollout's clock."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.lifecycle import ContainerExit, Lifecycle, Rollout, Step
from harness.plan.timing import ServiceTiming
from harness.ports import free_port, release
from harness.process import delayed
from harness.rehearsal.balancer import TargetPoller
from harness.rehearsal.definitions import engine_healthcheck, secret_value
from harness.session import session_labels
from harness.stack.runtime.docker import trusted_paths
from harness.wait import wait_until

if TYPE_CHECKING:
    from docker.models.containers import Container

POLL_LIMIT = 3600.0  # seconds a target is checked at most (its poller also stops with the rehearsal)
# the moments of a deployment a watcher is told of (``Launcher.moment``), in the order they come
MOMENTS = (
    "replacing",  # every task in service; the replacement begins (the listener routes to the old tasks)
    "new task started",  # rolling: new tasks' containers started (their dbinit done)
    "new task in service",  # rolling: a new task came into service (an old one is deregistered next)
    "green in service",  # blue/green: every green task in service, before any traffic moves
    "traffic shifted",  # blue/green: the listener moved a traffic step to green
    "replaced",  # the replacement is over (every container still up, for a check of the stores)
    "closing",  # the rehearsal ends, normally or not, before its containers go: undo what was injected
)


class Abandoned(Exception):
    """The rehearsal stopped (Ctrl-C, a timeout, another task's error) while a task still waited."""


def _tail(container: Container, lines: int = 15) -> str:
    return container.logs(tail=lines).decode(errors="replace")


@dataclass
class RunningTask:
    key: str  # "api", "mlflow", "api (new revision)", "api (green)"
    service: str
    life: Lifecycle
    t0: float  # time.monotonic() at its start
    url: str = ""
    main: Container | None = None  # the service's container
    poller: TargetPoller | None = None

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


def _quietly_stopped(container: Container, timeout: int) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        container.stop(timeout=timeout)


def task_key(base: str, index: int) -> str:
    """The name of a service's ``index``-th task (from 0) in a set named ``base``: ``api``,
    ``api #2``; ``api (new revision)``, ``api (new revision) #2``."""
    return base if index == 0 else f"{base} #{index + 1}"


def _suffix(key: str, service: str) -> str:
    """What a task's containers add to their names: nothing for the service's first task."""
    return "" if key == service else "-" + re.sub(r"[^a-z0-9]+", "-", key.removeprefix(service).lower()).strip("-")


@dataclass
class Launcher:
    """Starts tasks on one Docker network and keeps what it started for the cleanup; every time it
    records is seconds since the rollout's first task started."""

    client: Any  # docker.DockerClient
    secrets: Any  # moto's Secrets Manager client
    net: Any  # the rehearsal's network
    tags: dict[str, str]  # service -> image tag
    namespace: str  # the Cloud Map namespace the services answer under
    say: Callable[[str], None]
    created: list = field(default_factory=list)  # its containers, in creation order
    rollout: Rollout = field(default_factory=Rollout)
    stop_timeouts: dict[str, int] = field(default_factory=dict)  # container name -> its stopTimeout
    ports: list[int] = field(default_factory=list)
    start_delay: dict[str, float] = field(default_factory=dict)  # service -> seconds its boot is stretched by
    began: float = 0.0  # time.monotonic() when the first task started
    # the database stand-in's CA on the host: mounted where a container's *_SSLROOTCERT expects
    # Amazon RDS's bundle, so the task's own TLS settings verify the stand-in as they would RDS
    bundle: str = ""
    extra_hosts: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> host name -> address
    # what happened so far, for whoever watches the rehearsal (a fault injected at a moment of the
    # deployment: harness.faults.rollout): called with one of MOMENTS, on the deployment's thread
    on_moment: Callable[[str], None] = lambda moment: None
    # [start, end] on time.monotonic() of faults injected on purpose (end: inf while one lasts): the
    # client's answers within them are judged by the fault's judge, not counted as failed requests
    excused: list[list[float]] = field(default_factory=list)
    tasks: list[RunningTask] = field(default_factory=list)  # every task started, in order

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # tasks start and stop side by side, as ECS runs them
        self._creating = threading.Lock()
        self.abandoned = threading.Event()  # set when the rehearsal stops early: every wait ends

    def now(self) -> float:
        return round(time.monotonic() - self.began, 1)

    def moment(self, name: str) -> None:
        """Tell the watcher that the deployment reached ``name`` (one of MOMENTS)."""
        assert name in MOMENTS, name
        self.on_moment(name)

    def start_together(
        self,
        stack: contextlib.ExitStack,
        tasks: list[tuple[ServiceTiming, list[dict], str]],
        env_extra: dict | None = None,
        group: str = "",
    ) -> list[RunningTask]:
        """Several tasks at once, as ECS starts a service's tasks: each ``(service, its container
        definitions, key)`` on a thread of its own (each waits for its own dbinit)."""
        self.began = self.began or time.monotonic()
        pool = ThreadPoolExecutor(max_workers=max(1, len(tasks)), thread_name_prefix="task")
        try:
            futures = [pool.submit(self.start, stack, svc, defs, key, env_extra, group) for svc, defs, key in tasks]
            started = [f.result() for f in futures]
        except BaseException:  # Ctrl-C, a timeout, a failed start: the other threads give up their waits
            self.abandoned.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        for _, _, key in tasks:  # the rollout lists them in the order asked, whichever thread came first
            self.rollout.tasks[key] = self.rollout.tasks.pop(key)
        return started

    def stop_together(self, tasks: list[RunningTask], svc: ServiceTiming) -> None:
        """SIGTERM to every one of ``tasks`` at once, each then judged as ``stop`` does."""
        with ThreadPoolExecutor(max_workers=max(1, len(tasks)), thread_name_prefix="stop") as pool:
            for f in [pool.submit(self.stop, t, svc) for t in tasks]:
                f.result()

    def start(
        self,
        stack: contextlib.ExitStack,
        svc: ServiceTiming,
        containers: list[dict],
        key: str,
        env_extra: dict | None = None,
        group: str = "",
    ) -> RunningTask:
        """One task of ``svc`` from its container definitions, with its target poller."""
        t0 = time.monotonic()
        self.began = self.began or t0
        life = self.rollout.tasks[key] = Lifecycle(key, svc.grace_period, self.now(), group=group)
        life.mark(Step.STARTED, life.started)
        running = RunningTask(key, svc.name, life, t0)
        self.tasks.append(running)
        self._run(containers, running, env_extra or {})
        if running.main is not None:
            # checked as long as the task may run: a rehearsal is over well within the hour
            poller = TargetPoller(running.url, svc.alb, t0, POLL_LIMIT)
            with self._lock:  # an ExitStack is not for threads
                if self.abandoned.is_set():  # the stack may already be unwinding: no poller it would not stop
                    raise Abandoned(f"the rehearsal stopped before {key}'s target was checked")
                running.poller = stack.enter_context(poller)
        return running

    def _run(self, containers: list[dict], running: RunningTask, env_extra: dict) -> None:
        """The task's containers in dependsOn order (an essential=false one must exit 0 first)."""
        service, net = running.service, self.net
        label = {**session_labels(net.attrs["Labels"]), "harness.service": service}
        suffix = _suffix(running.key, service)
        for d in sorted(containers, key=lambda c: c["name"] == service):
            env = {e["name"]: e["value"] for e in d.get("environment", [])} | env_extra
            env |= {s["name"]: secret_value(self.secrets, s["valueFrom"]) for s in d.get("secrets", [])}
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
                command = delayed(command or self.client.images.get(self.tags[service]).attrs["Config"]["Cmd"], delay)
            if command:
                kwargs["command"] = command
            if d.get("healthCheck"):
                kwargs["healthcheck"] = engine_healthcheck(d["healthCheck"])
            if d["name"] == service and service in self.extra_hosts:
                kwargs["extra_hosts"] = self.extra_hosts[service]
            if self.bundle:
                kwargs["volumes"] = [f"{self.bundle}:{path}:ro" for path in trusted_paths(env)]
            self.stop_timeouts[name] = int(d.get("stopTimeout", 30))
            main = d["name"] == service
            if main:
                port = free_port()
                self.ports.append(port)
                running.url = f"http://127.0.0.1:{port}"
                kwargs["ports"] = {f"{d['portMappings'][0]['containerPort']}/tcp": ("127.0.0.1", port)}
            with self._creating:  # cleanup takes it too: nothing is created behind its back
                if self.abandoned.is_set():
                    raise Abandoned(f"the rehearsal stopped before {name} was created")
                container = self.client.containers.create(self.tags[service], **kwargs)
                self.created.append(container)
            if main:
                self.client.networks.get(net.id).disconnect(container)
                self.client.networks.get(net.id).connect(container, aliases=[service, f"{service}.{self.namespace}"])
            container.start()
            if main:
                running.main = container
            elif not d.get("essential", True):
                code = self._exit_code(container, 120)
                running.life.exits.append(ContainerExit(d["name"], code, self.now()))
                if code != 0:
                    running.life.failure = (
                        f"{d['name']} exited {code}; {service} never started (dependsOn "
                        f"SUCCESS). Its log ends with:\n{_tail(container)}"
                    )
                    running.life.mark(Step.REPLACED, self.now())
                    return
        running.life.mark(Step.RUNNING, self.now())
        self.say(f"{running.key}: task started; its target is polled as the ALB does")

    def _exit_code(self, container: Container, timeout: float) -> int:
        def state() -> dict:
            if self.abandoned.is_set():
                raise Abandoned(f"the rehearsal stopped while {container.name} ran")
            container.reload()
            return container.attrs["State"]

        return wait_until(
            state,
            until=lambda s: s["Status"] == "exited",
            timeout=timeout,
            interval=0.5,
            what=f"{container.name} to finish",
            fatal=(Abandoned,),
        )["ExitCode"]

    def await_in_service(self, tasks: list[RunningTask]) -> None:
        tasks = [r for r in tasks if r.main is not None]
        deadline = max((r.life.grace for r in tasks), default=0) + 5
        wait_until(
            lambda: all([self.judge(r) for r in tasks]),
            timeout=deadline,
            interval=1.0,
            what="every task in service or past its grace period",
        )

    def judge(self, r: RunningTask) -> bool:
        """Whether ``r`` is decided (in service, or failed); records what it saw."""
        life = r.life
        if life.failure or life.in_service is not None:
            return True
        r.started.reload()
        state = r.started.attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        now = self.now()
        if state["Status"] == "exited":
            self._exited(r, state, now, "")
            return True
        if health == "healthy":
            life.mark(Step.CONTAINER_HEALTHY, now)
        if health == "unhealthy":
            life.mark(Step.UNHEALTHY, now)
            log = ((state.get("Health") or {}).get("Log") or [{}])[-1].get("Output", "")[:300]
            life.failure = (
                f"container UNHEALTHY after {now - life.started:.1f}s (ECS would replace it); health log: {log}"
            )
            life.mark(Step.REPLACED, now)
            return True
        if r.target.first_pass is not None and life.answered is None:
            life.answered = round(life.started + r.target.first_pass, 1)
        if r.target.healthy_at is not None:
            life.mark(Step.TARGET_HEALTHY, round(life.started + r.target.healthy_at, 1))
        container, target = life.at(Step.CONTAINER_HEALTHY), life.at(Step.TARGET_HEALTHY)
        if container is not None and target is not None:
            life.mark(Step.IN_SERVICE, max(container, target))
            self.say(f"{r.key}: in service after {life.in_service:.1f}s")
            return True
        if now - life.started > life.grace:
            life.failure = (
                f"not in service when the grace period ({life.grace:g}s) ended: container "
                f"{health}, target last answered {r.target.last}"
            )
            life.mark(Step.REPLACED, now)
            return True
        return False

    def _exited(self, r: RunningTask, state: dict, now: float, when: str) -> None:
        """``r``'s main container exited: recorded, with its log's tail, and the task replaced."""
        r.life.exits.append(ContainerExit(r.service, state["ExitCode"], now))
        r.life.failure = f"{r.service} exited {state['ExitCode']}{when}; its log ends with:\n{_tail(r.started)}"
        r.life.mark(Step.REPLACED, now)

    def still_serving(self, r: RunningTask) -> None:
        """A task in service that exited or turned UNHEALTHY since: failed (ECS replaces it)."""
        life = r.life
        if life.failure or life.in_service is None:
            return
        r.started.reload()
        state = r.started.attrs["State"]
        now = self.now()
        if state["Status"] == "exited":
            self._exited(r, state, now, " while in service")
        elif (state.get("Health") or {}).get("Status") == "unhealthy":
            life.failure = "container UNHEALTHY while in service (ECS would replace it)"
        elif r.target.unhealthy_at:
            life.failure = (
                f"target UNHEALTHY in its target group {life.started + r.target.unhealthy_at[0]:.1f}s into the "
                f"rollout, while in service (the load balancer stopped routing to it; ECS would replace it); "
                f"its last check: {r.target.last}"
            )
        if life.failure:
            life.mark(Step.UNHEALTHY, now)
            life.mark(Step.REPLACED, now)

    def stop(self, task: RunningTask, svc: ServiceTiming) -> None:
        """SIGTERM, then SIGKILL after stopTimeout (as ECS stops a task); a task still running when
        the stop timeout ended is marked KILLED (a forced stop: what it was finishing is lost), and
        a stop that was not graceful fails the task."""
        life = task.life
        life.mark(Step.STOPPING, self.now())
        task.started.stop(timeout=int(svc.stop_timeout))
        task.started.reload()
        state = task.started.attrs["State"]
        # SIGKILL shows as exit 137 (128 + 9); a task that exited by itself at the last moment is not killed
        code, killed = state["ExitCode"], bool(state.get("OOMKilled")) or state["ExitCode"] == 137
        now = self.now()
        took = now - life.steps[Step.STOPPING]
        if killed:
            life.mark(Step.KILLED, round(life.steps[Step.STOPPING] + svc.stop_timeout, 1))
        life.mark(Step.STOPPED, now)
        life.exits.append(ContainerExit(task.service, code, now))
        if code != 0 or Step.KILLED in life.steps:
            life.failure = life.failure or (
                f"stopped with exit {code} {took:.1f}s after SIGTERM (stopTimeout {svc.stop_timeout:g}s): "
                + ("SIGKILL, a forced stop" if Step.KILLED in life.steps else "not a graceful stop")
            )

    def discard(self, task: RunningTask) -> None:
        """A task ECS stops as unhealthy (its record says why): SIGTERM, SIGKILL after its stop
        timeout, on a thread of its own so that the deployment goes on meanwhile."""
        container = task.started
        timeout = self.stop_timeouts.get(container.name or "", 10)
        threading.Thread(
            target=_quietly_stopped, args=(container, timeout), name=f"discard {task.key}", daemon=True
        ).start()

    def until(self, at: float, what: str) -> None:
        """Wait until ``at`` seconds on the rollout's clock (a planned wait, not a state)."""
        wait_until(self.now, until=lambda s: s >= at, timeout=max(0.0, at - self.now()) + 5, interval=0.2, what=what)

    def cleanup(self) -> None:
        """Every container it started, stopped as ECS stops one (SIGTERM, SIGKILL after its
        stopTimeout) and removed; then its ports."""
        import docker.errors

        with self._creating:
            self.abandoned.set()  # a task still starting on a thread creates nothing more
        try:
            for container in reversed(self.created):
                with contextlib.suppress(docker.errors.APIError):
                    container.stop(timeout=self.stop_timeouts.get(container.name or "", 10))
                    container.remove(force=True, v=True)
        finally:
            for port in self.ports:
                release(port)
