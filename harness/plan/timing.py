"""The timing model: every health-check timing of the deployment and every container the plan
would run, in one typed object, read from the saved plan's JSON (the task definitions, the root
output ``containers``, every planned resource), the Dockerfiles' HEALTHCHECKs, the compose file,
and each service's boot time (its declared budget against the estimate from this machine's
measurements, ``harness.plan.boot``). The rules over it are in ``harness.plan.rules``.

Some values exist only after apply (a database's address, a secret's ARN): the plan shows them as
unknown, and a container's environment is judged with well-formed stand-ins for them and for its
secrets' values; a variable the plan does not give at all never gets a stand-in."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import paths, slo
from harness.errors import ConfigurationError
from harness.paths import project
from harness.plan.boot import BootEstimate, BootInputs
from harness.plan.dockerfile import HealthCheck, service_healthcheck
from harness.stack.api import ApiConfig, api_config
from harness.stack.mlflow import mlflow_config

SERVICES = ("api", "mlflow")
CIRCUIT_BREAKER_MIN = 3  # current AWS docs; older docs say 10 (docs/timings.md); the simulator takes it as a parameter


def breaker_threshold(desired: int, minimum: int = CIRCUIT_BREAKER_MIN) -> int:
    """ECS's rolling-update circuit breaker: the failed tasks that fail a deployment."""
    return min(200, max(minimum, math.ceil(0.5 * desired)))


AWS_RANGES = {
    "container.interval": (5, 300),
    "container.timeout": (2, 60),
    "container.retries": (1, 10),
    "container.start_period": (0, 300),
    "alb.interval": (5, 300),
    "alb.timeout": (2, 120),
    "alb.healthy_threshold": (2, 10),
    "alb.unhealthy_threshold": (2, 10),
    "deregistration_delay": (0, 3600),
    "stop_timeout": (2, 120),
}


@dataclass(frozen=True)
class Check:
    interval: float
    timeout: float
    retries: int
    start_period: float
    path: str


@dataclass(frozen=True)
class Alb:
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int
    matcher: str
    path: str


# Stand-ins for values the plan cannot know: secrets' values, and what AWS assigns at apply.
UNKNOWN_HOST = "assigned-at-apply.invalid"


def stand_in(variable: str, kind: str) -> str:
    """A well-formed value for ``variable``: a lower-case identifier for a user, else a token."""
    if variable.endswith("_USER"):
        return variable.lower()
    if variable.endswith("_HOST"):
        return UNKNOWN_HOST
    return f"stand-in-{kind}-{variable.lower().replace('_', '-')}"


@dataclass(frozen=True)
class Container:
    """One container of a planned task: what it is given, with the plan's unknowns marked."""

    name: str
    essential: bool
    command: tuple[str, ...]
    environment: dict[str, str | None]  # None: known only after apply
    secrets: dict[str, str | None]  # variable -> valueFrom (None: the ARN is known only after apply)
    depends_on: tuple[tuple[str, str], ...]
    image: str | None = None  # None: known only after apply

    def checked_environment(self) -> dict[str, str]:
        """What the container would see, with stand-ins where the plan cannot know the value."""
        env = {k: v if v is not None else stand_in(k, "unknown") for k, v in self.environment.items()}
        return {**env, **{k: stand_in(k, "secret") for k in self.secrets}}


def _containers(after: list, unknown: list) -> list[Container]:
    out = []
    for i, c in enumerate(after or []):
        unk = unknown[i] if i < len(unknown or []) and isinstance(unknown[i], dict) else {}
        env_unknown = unk.get("environment") or []
        sec_unknown = unk.get("secrets") or []
        environment = {
            e["name"]: (None if j < len(env_unknown) and (env_unknown[j] or {}).get("value") else e.get("value"))
            for j, e in enumerate(c.get("environment") or [])
        }
        secrets = {
            s["name"]: (
                None if j < len(sec_unknown) and (sec_unknown[j] or {}).get("valueFrom") else s.get("valueFrom")
            )
            for j, s in enumerate(c.get("secrets") or [])
        }
        out.append(
            Container(
                c["name"],
                bool(c.get("essential", True)),
                tuple(c.get("command") or ()),
                environment,
                secrets,
                tuple((d["containerName"], d["condition"]) for d in c.get("dependsOn") or []),
                None if unk.get("image") else c.get("image"),
            )
        )
    return out


@dataclass(frozen=True)
class ServiceTiming:
    name: str
    container: Check
    alb: Alb
    grace_period: float
    deregistration_delay: float
    stop_timeout: float
    circuit_breaker: bool
    rollback: bool
    deployment_controller: str
    min_healthy_percent: int
    max_percent: int
    desired_count: int
    cpu: int
    memory: int
    containers: tuple[Container, ...]  # the service's container first, then the ones it depends on
    boot_budget: float  # declared: task start to the health path answering (tfvars)
    estimate: BootEstimate  # from this machine's measurements and the image size
    boot: float  # what the rules use: max(boot_budget, estimate)
    # blue/green (deployment controller CODE_DEPLOY): the deployment group's traffic shifting and
    # the minutes the blue task set is kept after the shift (CodeDeploy's defaults otherwise)
    traffic: str = "CodeDeployDefault.ECSAllAtOnce"
    termination_wait: float = 300.0
    rollback_alarms: tuple[str, ...] = ()  # alarms that stop and roll back a blue/green deployment
    # CodeDeploy's test traffic route: the new tasks take test traffic on the ALB's test listener
    # before any production traffic moves (the plan's blue_green.test_port; on by default)
    test_listener: bool = True

    @property
    def strategy(self) -> str:
        """How the plan deploys the service: ``blue_green`` by CodeDeploy, else ECS's ``rolling``."""
        return "blue_green" if self.deployment_controller == "CODE_DEPLOY" else "rolling"

    @property
    def environment(self) -> dict[str, str]:
        """The service container's environment as it would see it (stand-ins for the unknown)."""
        return self.containers[0].checked_environment()

    @property
    def boot_from(self) -> str:
        return "the estimate" if self.estimate.total > self.boot_budget else "the declared budget"


@dataclass
class TimingModel:
    source: str
    services: dict[str, ServiceTiming]
    log_retention: dict[str, int | None]
    dockerfile: dict[str, HealthCheck]
    compose_checks: dict[str, dict]
    slo_file: Path = field(default_factory=slo.slo_file)
    resources: list[dict] = field(default_factory=list)  # every planned resource: address, type, values, unknown
    variables: dict = field(default_factory=dict)  # the plan's input variables
    outputs: dict = field(default_factory=dict)  # the plan's root outputs, as far as known

    def of_type(self, kind: str) -> list[dict]:
        return [r for r in self.resources if r["type"] == kind]

    def api_settings(self) -> ApiConfig | None:
        """The api's own reading of its planned environment; None when it refuses it (the rule
        containers-pass-their-config-check says why, and the rules that need the settings wait)."""
        try:
            return api_config(self.services["api"].environment, f"{self.source}: api environment")
        except ConfigurationError:
            return None

    def mlflow_settings(self) -> dict | None:
        """MLflow's own reading of its planned environment; None when it refuses it."""
        try:
            return mlflow_config(self.services["mlflow"].environment, f"{self.source}: mlflow environment")
        except ConfigurationError:
            return None


def plan_resources(module: dict) -> list[dict]:
    out = list(module.get("resources", []))
    for child in module.get("child_modules", []):
        out += plan_resources(child)
    return out


def references(plan: dict) -> dict[str, dict[str, list[str]]]:
    """Per resource of the configuration (its address with module instance keys and indexes
    removed: ``module.observability.aws_sns_topic.alarms``), each argument's references as
    addresses in that module (``module.observability.aws_kms_key.alarms``): what the plan's
    values leave unknown, such as which key encrypts a topic, the configuration still says."""
    out: dict[str, dict[str, list[str]]] = {}

    def walk(module: dict, prefix: str) -> None:
        for res in module.get("resources", []):
            out[prefix + res["address"]] = {
                arg: [prefix + ref for ref in (expr or {}).get("references", [])]
                for arg, expr in (res.get("expressions") or {}).items()
                if isinstance(expr, dict)
            }
        for name, output in (module.get("outputs") or {}).items():  # a module's output: what it refers to
            out[f"{prefix}output.{name}"] = {
                "value": [prefix + ref for ref in (output.get("expression") or {}).get("references", [])]
            }
        for name, call in (module.get("module_calls") or {}).items():
            walk(call.get("module") or {}, f"{prefix}module.{name}.")

    walk((plan.get("configuration") or {}).get("root_module") or {}, "")
    # a reference to a child module's output (module.alb.listener_arn) also names what that output refers to
    for args in out.values():
        for arg, refs in args.items():
            outputs = {re.sub(r"^((?:module\.[^.]+\.)+)([^.]+)$", r"\1output.\2", ref) for ref in refs}
            args[arg] = refs + [d for o in sorted(outputs - set(refs)) for d in out.get(o, {}).get("value", [])]
    return out


def config_address(address: str) -> str:
    """``module.service["api"].aws_lb_listener_rule.this["prod"]`` -> ``module.service.aws_lb_listener_rule.this``."""
    return re.sub(r"\[[^\]]*\]", "", address)


def _service_of(address: str) -> str | None:
    for name in SERVICES:
        if f'module.service["{name}"]' in address:
            return name
    return None


def from_plan(plan: dict, source: str, boot: BootInputs, compose_file: Path | None = None) -> TimingModel:
    found: dict[str, dict] = {name: {} for name in SERVICES}
    retention: dict[str, int | None] = {}
    for res in plan_resources(plan.get("planned_values", {}).get("root_module", {})):
        svc, values, kind = _service_of(res["address"]), res.get("values", {}), res["type"]
        if kind == "aws_cloudwatch_log_group":
            retention[values.get("name") or res["address"]] = values.get("retention_in_days") or None
        if svc is None:
            continue
        if kind == "aws_lb_target_group" and res.get("index", 0) == 0:
            found[svc]["tg"] = values
        elif kind == "aws_ecs_service":
            found[svc]["service"] = values
        elif kind == "aws_ecs_task_definition":
            found[svc]["task"] = values
        elif kind == "aws_codedeploy_deployment_group":
            found[svc]["codedeploy"] = values
    variables = {k: v.get("value") for k, v in (plan.get("variables") or {}).items()}
    declared = variables.get("services") or {}
    planned_containers = (plan.get("output_changes") or {}).get("containers") or {}
    outputs = {k: v.get("after") for k, v in (plan.get("output_changes") or {}).items()}
    unknown_after = {c["address"]: c["change"].get("after_unknown") or {} for c in plan.get("resource_changes", [])}
    refs = references(plan)
    services = {}
    for name in SERVICES:
        budget = float(declared.get(name, {}).get("boot_budget") or 0)
        estimate = boot.estimate(name, int(found[name]["task"]["cpu"]))
        tg, svc, task = found[name]["tg"], found[name]["service"], found[name]["task"]
        if "container_definitions" in task:  # known at plan: read the task definition itself
            definitions, unknown = json.loads(task["container_definitions"]), list[str]()
        else:  # some value is assigned at apply: the root output carries the rest
            definitions = (planned_containers.get("after") or {}).get(name) or []
            unknown = (planned_containers.get("after_unknown") or {}).get(name) or []
        containers = sorted(_containers(definitions, unknown), key=lambda c: c.name != name)
        if not containers or containers[0].name != name:
            raise ConfigurationError(
                f"{source}: a container named {name} in the task definition of {name}",
                f"{[c.name for c in containers]}",
                "the root output 'containers' must list each task's container definitions",
            )
        container = next(c for c in definitions if c["name"] == name)
        hc = container["healthCheck"]
        cmd = " ".join(hc["command"])
        path = "/" + cmd.split("http://", 1)[1].split("/", 1)[1].split()[0] if "http://" in cmd else ""
        h = tg["health_check"][0]
        cb = (svc.get("deployment_circuit_breaker") or [{}])[0]
        group = found[name].get("codedeploy") or {}
        blue_green = (group.get("blue_green_deployment_config") or [{}])[0]
        terminate = (blue_green.get("terminate_blue_instances_on_deployment_success") or [{}])[0]
        pair = ((group.get("load_balancer_info") or [{}])[0].get("target_group_pair_info") or [{}])[0]
        services[name] = ServiceTiming(
            name=name,
            container=Check(
                hc.get("interval", 30), hc.get("timeout", 5), hc.get("retries", 3), hc.get("startPeriod", 0), path
            ),
            alb=Alb(
                h["interval"], h["timeout"], h["healthy_threshold"], h["unhealthy_threshold"], h["matcher"], h["path"]
            ),
            grace_period=svc.get("health_check_grace_period_seconds") or 0,
            deregistration_delay=float(tg.get("deregistration_delay", "300")),
            stop_timeout=container.get("stopTimeout", 30),
            circuit_breaker=bool(cb.get("enable")),
            rollback=bool(cb.get("rollback")),
            deployment_controller=(svc.get("deployment_controller") or [{"type": "ECS"}])[0]["type"],
            min_healthy_percent=svc.get("deployment_minimum_healthy_percent", 100),
            max_percent=svc.get("deployment_maximum_percent", 200),
            desired_count=svc.get("desired_count", 1),
            cpu=int(task["cpu"]),
            memory=int(task["memory"]),
            containers=tuple(containers),
            boot_budget=budget,
            estimate=estimate,
            boot=max(budget, estimate.total),
            traffic=group.get("deployment_config_name") or "CodeDeployDefault.ECSAllAtOnce",
            termination_wait=60.0 * float(terminate.get("termination_wait_time_in_minutes", 5)),
            test_listener=bool(pair.get("test_traffic_route")) if group else True,
            rollback_alarms=tuple(
                name
                for cfg in (group.get("alarm_configuration") or [])
                if cfg.get("enabled")
                for name in (cfg.get("alarms") or [])
            ),
        )
    compose_file = compose_file or project().compose_file
    compose = yaml.safe_load(compose_file.read_text()) if compose_file.exists() else {"services": {}}
    return TimingModel(
        source,
        services,
        retention,
        {n: service_healthcheck(n) for n in SERVICES},
        {n: (s or {}).get("healthcheck", {}) for n, s in compose.get("services", {}).items()},
        resources=[
            {
                "address": r["address"],
                "type": r["type"],
                "values": r.get("values", {}),
                "unknown": unknown_after.get(r["address"], {}),
                "refs": refs.get(config_address(r["address"]), {}),
            }
            for r in plan_resources(plan.get("planned_values", {}).get("root_module", {}))
        ],
        variables=variables,
        outputs=outputs,
    )


def planned(var_file: Path, boot: BootInputs, source: Path | None = None) -> TimingModel:
    """Plan ``var_file`` offline in a temp copy of terraform/ (or ``source``) and build the model (about 10 s)."""
    from harness.plan.terraform import Terraform
    from harness.session import Session

    session = Session()
    try:
        tf = Terraform(session.mkdtemp("terraform"), **({"source": source} if source else {}))
        # named as the project has it, from whatever folder the command runs in
        return from_plan(tf.plan(str(var_file), offline=True), paths.shown(var_file.resolve()), boot)
    finally:
        session.close()
