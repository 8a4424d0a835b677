"""The rules that say whether the planned platform can start at all, beside the timing rules
(``harness.plan.rules``): each container's settings pass its own service's configuration check,
private tasks have a way out to the AWS services they use, the api reaches MLflow by an internal
name MLflow admits, MLflow's artifacts outlive a task, every alarm notifies someone, draining is
bounded, and the api's task is sized to what it was measured to need."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from harness.errors import ConfigurationError
from harness.plan.timing import Container, TimingModel
from harness.plan.violation import Violation, field_of
from harness.stack.black_box import check_config

# the module each container runs: the service's own image command, or the one it names
MODULES = {"api": "services.api", "mlflow": "services.mlflow.entrypoint"}
# what a Fargate task in a private subnet calls: the image (ECR's API and registry, S3 for the
# layers), the awslogs driver, and Secrets Manager when a container has secrets
NEEDED_ENDPOINTS = ("ecr.api", "ecr.dkr", "s3", "logs")
DEREGISTRATION_MAX = 120.0  # seconds: a drain longer than this makes every deployment wait minutes
API_RSS_MB = 72.0  # the api's resident memory after 200 writes, one uvicorn worker (docs/timings.md)


def module_of(service: str, container: Container) -> str:
    args = list(container.command)
    return args[args.index("-m") + 1] if "-m" in args else MODULES[service]


def r_config_check(m: TimingModel) -> list[Violation]:
    """Every container's planned settings and secrets pass its service's own configuration check,
    with stand-ins only for values the plan cannot know (secrets, addresses AWS assigns)."""
    out = []
    for s in m.services.values():
        for c in s.containers:
            module = module_of(s.name, c)
            try:
                check_config(module, c.checked_environment(), f"{m.source}: services.{s.name}, container {c.name}")
            except ConfigurationError as exc:
                out.append(
                    Violation(
                        "containers-pass-their-config-check",
                        f"{m.source}: services.{s.name}, container {c.name} (environment and secrets)",
                        exc.seen,
                        f"settings `python -m {module} --check-config` accepts",
                        "every variable the service requires, in environment or secrets",
                    )
                )
    return out


def _private_routes_to_nat(m: TimingModel) -> bool:
    tables = [r for r in m.of_type("aws_route_table") if ".private" in r["address"]]
    if not tables:
        return False
    for r in tables:
        routes = r["values"].get("route") or []
        unknown = r["unknown"].get("route") or []
        if not any(
            rt.get("cidr_block") == "0.0.0.0/0"
            and (rt.get("nat_gateway_id") or (i < len(unknown) and (unknown[i] or {}).get("nat_gateway_id")))
            for i, rt in enumerate(routes)
        ):
            return False
    return True


def r_private_egress(m: TimingModel) -> list[Violation]:
    """Tasks without a public IP reach ECR, S3, CloudWatch Logs and (when they have secrets)
    Secrets Manager: through a NAT gateway on every private route table, or through VPC endpoints."""
    private = [
        r
        for r in m.of_type("aws_ecs_service")
        if not any(n.get("assign_public_ip") for n in r["values"].get("network_configuration") or [])
    ]
    if not private or _private_routes_to_nat(m):
        return []
    need = list(NEEDED_ENDPOINTS)
    if any(c.secrets for s in m.services.values() for c in s.containers):
        need.append("secretsmanager")
    # com.amazonaws.<region>.ecr.api -> ecr.api
    have = {r["values"].get("service_name", "").split(".", 3)[-1] for r in m.of_type("aws_vpc_endpoint")}
    missing = [n for n in need if n not in have]
    if not missing:
        return []
    return [
        Violation(
            "private-tasks-have-egress",
            f"{m.source}: egress",
            m.variables.get("egress"),
            f"a NAT route from every private subnet, or VPC endpoints for {', '.join(need)} "
            f"(missing: {', '.join(missing)}); without them tasks cannot pull images, ship logs "
            "or read secrets",
            "nat, nat_per_az, or endpoints",
        )
    ]


def _admits(allowed: list[str], host: str, port: int) -> bool:
    return host in allowed and (f"{host}:*" in allowed or f"{host}:{port}" in allowed)


def r_mlflow_internal(m: TimingModel) -> list[Violation]:
    """The api calls MLflow by a name inside the VPC (not the public ALB), and MLflow admits it."""
    url = m.services["api"].environment.get("API_MLFLOW_URL", "")
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    namespaces = [r["values"].get("name") for r in m.of_type("aws_service_discovery_private_dns_namespace")]
    public = {m.variables.get("domain_name")} | {r["values"].get("dns_name") for r in m.of_type("aws_lb")}
    out = []
    where = f"{m.source}: services.{{}} environment {{}}"
    if host in public or not any(ns and host.endswith("." + ns) for ns in namespaces):
        known = ", ".join(filter(None, namespaces)) or "none"
        out.append(
            Violation(
                "api-reaches-mlflow-internally",
                where.format("api", "API_MLFLOW_URL"),
                url,
                f"a host in the VPC's private namespace ({known}), not the public name or the ALB",
                "http://mlflow.<namespace>:<port>/mlflow",
            )
        )
    cfg = m.mlflow_settings()
    allowed = cfg["allowed_hosts"] if cfg else []
    if host and cfg and not _admits(allowed, host, port):
        out.append(
            Violation(
                "api-reaches-mlflow-internally",
                where.format("mlflow", "MLFLOW_ALLOWED_HOSTS"),
                ",".join(allowed),
                f"admitting {host} and {host}:* (MLflow answers 403 to any other Host)",
                f"{host},{host}:*,...",
            )
        )
    return out


def r_artifacts_durable(m: TimingModel) -> list[Violation]:
    """MLflow's artifacts live in a bucket of the plan, not on the task's disk."""
    cfg = m.mlflow_settings()
    if cfg is None:
        return []
    destination = cfg["artifacts_destination"]
    buckets = {r["values"].get("bucket") for r in m.of_type("aws_s3_bucket")}
    parts = urlsplit(destination)
    if parts.scheme == "s3" and parts.netloc in buckets:
        return []
    known = ", ".join(sorted(filter(None, buckets))) or "none"
    return [
        Violation(
            "mlflow-artifacts-durable",
            f"{m.source}: services.mlflow environment MLFLOW_ARTIFACTS_DESTINATION",
            destination,
            f"s3://<a bucket of the plan: {known}>/... (the task's disk is lost at every deployment)",
            "s3://<bucket>/artifacts",
        )
    ]


def r_alarm_actions(m: TimingModel) -> list[Violation]:
    """Every alarm notifies someone: actions set (the topic's ARN is known only after apply), and
    the topic has a subscriber."""
    out = [
        Violation(
            "alarms-notify",
            f"{m.source}: {r['address']}.alarm_actions",
            r["values"].get("alarm_actions"),
            "at least one action (the platform's alarm topic)",
            "[<alarm topic ARN>]",
        )
        for r in m.of_type("aws_cloudwatch_metric_alarm")
        if not r["values"].get("alarm_actions") and not r["unknown"].get("alarm_actions")
    ]
    out += [
        Violation(
            "alarms-notify",
            f"{m.source}: {r['address']}.actions_enabled",
            False,
            "true: an alarm with its actions disabled changes state and notifies nobody",
            True,
        )
        for r in m.of_type("aws_cloudwatch_metric_alarm")
        if r["values"].get("actions_enabled") is False
    ]
    if m.of_type("aws_sns_topic") and not m.of_type("aws_sns_topic_subscription"):
        out.append(
            Violation(
                "alarms-notify",
                f"{m.source}: alarm_subscriptions",
                [],
                "at least one subscriber",
                '[{ protocol = "email", endpoint = "<on-call address>" }]',
            )
        )
    return out


def r_deregistration_bounded(m: TimingModel) -> list[Violation]:
    return [
        Violation(
            "deregistration-bounded",
            field_of(m, s.name, "deregistration_delay"),
            s.deregistration_delay,
            f"<= {DEREGISTRATION_MAX:g}s (AWS's default 300 s drains every replaced task for five minutes)",
            DEREGISTRATION_MAX,
        )
        for s in m.services.values()
        if s.deregistration_delay > DEREGISTRATION_MAX
    ]


def r_api_task_fits(m: TimingModel) -> list[Violation]:
    """The api's task memory covers its measured need with headroom, as MLflow's does."""
    s = m.services["api"]
    need = math.ceil(API_RSS_MB * 1.5)
    if s.memory >= need:
        return []
    return [
        Violation(
            "api-memory-fits",
            field_of(m, "api", "memory"),
            s.memory,
            f">= 1.5 x the api's measured {API_RSS_MB:g} MB",
            need,
        )
    ]


RULES = {
    "containers-pass-their-config-check": r_config_check,
    "private-tasks-have-egress": r_private_egress,
    "api-reaches-mlflow-internally": r_mlflow_internal,
    "mlflow-artifacts-durable": r_artifacts_durable,
    "alarms-notify": r_alarm_actions,
    "deregistration-bounded": r_deregistration_bounded,
    "api-memory-fits": r_api_task_fits,
}
