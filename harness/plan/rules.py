"""The timing rules over the model (``harness.plan.timing``). Each rule has an id; a violation
names the file and field, the value, the rule and a value that would pass."""

from __future__ import annotations

import math

import yaml

from harness import slo
from harness.plan import capacity, deployable, exposure, policies, privilege, transit
from harness.plan.observability import time_to_alarm
from harness.plan.timing import AWS_RANGES, TimingModel
from harness.plan.violation import Violation, field_of


def r_ranges(m: TimingModel) -> list[Violation]:
    out = []
    names = {
        "container.interval": "container_interval",
        "container.timeout": "container_timeout",
        "container.retries": "container_retries",
        "container.start_period": "container_start",
        "alb.interval": "alb_interval",
        "alb.timeout": "alb_timeout",
        "alb.healthy_threshold": "healthy_threshold",
        "alb.unhealthy_threshold": "unhealthy_threshold",
        "deregistration_delay": "deregistration_delay",
        "stop_timeout": "stop_timeout",
    }
    for s in m.services.values():
        for key, (lo, hi) in AWS_RANGES.items():
            obj, _, attr = key.rpartition(".")
            value = getattr(getattr(s, obj) if obj else s, attr)
            if not lo <= value <= hi:
                out.append(
                    Violation(
                        "aws-ranges",
                        field_of(m, s.name, names[key]),
                        value,
                        f"{lo}-{hi} (AWS)",
                        min(max(value, lo), hi),
                    )
                )
    return out


def r_alb_timeout(m: TimingModel) -> list[Violation]:
    return [
        Violation(
            "alb-timeout-below-interval",
            field_of(m, s.name, "alb_timeout"),
            s.alb.timeout,
            f"below alb_interval {s.alb.interval} (AWS rejects it at apply; plan does not check)",
            s.alb.interval - 1,
        )
        for s in m.services.values()
        if s.alb.timeout >= s.alb.interval
    ]


def r_grace(m: TimingModel) -> list[Violation]:
    """G >= boot + H*i: ECS must not act on unhealthy signals before the ALB can call a booted task healthy."""
    out = []
    for s in m.services.values():
        need = s.boot + s.alb.healthy_threshold * s.alb.interval
        if s.grace_period < need:
            out.append(
                Violation(
                    "grace-covers-boot",
                    field_of(m, s.name, "grace_period"),
                    s.grace_period,
                    f">= boot {s.boot:g}s ({s.boot_from}) + healthy_threshold "
                    f"{s.alb.healthy_threshold} x alb_interval {s.alb.interval}s = {need:.0f}s",
                    math.ceil(need),
                )
            )
    return out


def r_container_start(m: TimingModel) -> list[Violation]:
    """The container check must not declare a normally booting container UNHEALTHY: S + R*I >= boot."""
    out = []
    for s in m.services.values():
        c = s.container
        if c.start_period + c.retries * c.interval < s.boot:
            out.append(
                Violation(
                    "container-check-tolerates-boot",
                    field_of(m, s.name, "container_start"),
                    c.start_period,
                    f"start_period + retries x interval >= boot {s.boot:g}s ({s.boot_from})",
                    math.ceil(s.boot),
                )
            )
    return out


def r_paths(m: TimingModel) -> list[Violation]:
    """ALB, task definition, Dockerfile and compose check the same path, per service."""
    out = []
    for s in m.services.values():
        docker_path = m.dockerfile[s.name].path
        for where, path in (
            (field_of(m, s.name, "health_path (ALB)"), s.alb.path),
            (field_of(m, s.name, "health_path (task definition)"), s.container.path),
        ):
            if path != docker_path:
                out.append(
                    Violation(
                        "same-health-path",
                        where,
                        path,
                        f"the path of {m.dockerfile[s.name].source}'s HEALTHCHECK",
                        docker_path,
                    )
                )
        compose = m.compose_checks.get(s.name) or {}
        test = " ".join(compose.get("test", [])) if isinstance(compose.get("test"), list) else compose.get("test", "")
        if test and docker_path not in test:
            out.append(
                Violation(
                    "same-health-path",
                    f"services/docker-compose.yml: services.{s.name}.healthcheck",
                    test,
                    "the Dockerfile's path",
                    docker_path,
                )
            )
    return out


def r_container_matches_dockerfile(m: TimingModel) -> list[Violation]:
    """ECS ignores the Dockerfile's HEALTHCHECK: the task definition must carry the same timings."""
    out = []
    for s in m.services.values():
        d = m.dockerfile[s.name]
        for attr, tf_name in (
            ("interval", "container_interval"),
            ("timeout", "container_timeout"),
            ("retries", "container_retries"),
            ("start_period", "container_start"),
        ):
            if getattr(s.container, attr) != getattr(d, attr):
                out.append(
                    Violation(
                        "container-check-matches-dockerfile",
                        field_of(m, s.name, tf_name),
                        getattr(s.container, attr),
                        f"equal to {d.source} HEALTHCHECK --{attr.replace('_', '-')}",
                        getattr(d, attr),
                    )
                )
    return out


def r_drain(m: TimingModel) -> list[Violation]:
    s = m.services["api"]
    cfg = m.api_settings()
    if cfg is None:
        return []
    out = []
    need_stop = cfg.drain_seconds + cfg.shutdown_grace
    if s.stop_timeout < need_stop:
        out.append(
            Violation(
                "stop-timeout-covers-drain",
                field_of(m, "api", "stop_timeout"),
                s.stop_timeout,
                f">= API_DRAIN_SECONDS {cfg.drain_seconds} + API_SHUTDOWN_GRACE {cfg.shutdown_grace}",
                math.ceil(need_stop),
            )
        )
    return out


def r_deregistration(m: TimingModel) -> list[Violation]:
    """The api's target drains at least as long as a request may take."""
    s = m.services["api"]
    cfg = m.api_settings()
    if cfg is None or s.deregistration_delay >= cfg.request_timeout:
        return []
    return [
        Violation(
            "deregistration-covers-requests",
            field_of(m, "api", "deregistration_delay"),
            s.deregistration_delay,
            f">= API_REQUEST_TIMEOUT {cfg.request_timeout}s so in-flight requests finish before the target is cut",
            math.ceil(cfg.request_timeout),
        )
    ]


def r_health_budget(m: TimingModel) -> list[Violation]:
    """The api's worst-case /health time must fit the ALB's and the container's check timeouts."""
    s = m.services["api"]
    cfg = m.api_settings()
    if cfg is None:
        return []
    budget = cfg.health_budget
    out = []
    for where, timeout in (("alb_timeout", s.alb.timeout), ("container_timeout", s.container.timeout)):
        if timeout <= budget:
            out.append(
                Violation(
                    "check-timeout-above-health-budget",
                    field_of(m, "api", where),
                    timeout,
                    f"above the api's worst-case /health time {budget:.1f}s",
                    math.ceil(budget + 1),
                )
            )
    return out


def r_circuit_breaker(m: TimingModel) -> list[Violation]:
    return [
        Violation(
            "circuit-breaker-with-rollback",
            field_of(m, s.name, "circuit_breaker / rollback"),
            (s.circuit_breaker, s.rollback),
            "both true for rolling deployments",
            (True, True),
        )
        for s in m.services.values()
        if s.deployment_controller == "ECS" and not (s.circuit_breaker and s.rollback)
    ]


def r_log_retention(m: TimingModel) -> list[Violation]:
    return [
        Violation(
            "log-retention-set",
            f"{m.source}: log_retention_days ({group})",
            days,
            "a retention in days (never kept forever)",
            30,
        )
        for group, days in m.log_retention.items()
        if not days
    ]


def r_slo_health(m: TimingModel) -> list[Violation]:
    """The load SLO for the load balancer's /health checks must hold a p99 below the planned ALB
    timeout, in every profile: a gate that accepts slower checks accepts targets taken out of service."""
    s = m.services["api"]
    data = yaml.safe_load(m.slo_file.read_text()) or {}
    out = []
    for profile in [None, *sorted(data.get("profiles") or {})]:
        objectives = slo.load(m.slo_file, profile=profile, names={"alb_timeout": s.alb.timeout}).objectives
        limit = objectives.get(slo.HEALTH_ENDPOINT, {}).get("p99_ms")
        if limit is None or limit >= s.alb.timeout * 1000:
            where = f"{m.slo_file.name}: {'profiles.' + profile + '.' if profile else 'objectives.'}"
            out.append(
                Violation(
                    "slo-health-p99-below-alb-timeout",
                    f"{where}{slo.HEALTH_ENDPOINT}.p99_ms",
                    limit,
                    f"below the api's planned ALB timeout {s.alb.timeout:g}s ({field_of(m, 'api', 'alb_timeout')})",
                    "alb_timeout_ms / 2",
                )
            )
    return out


def r_boot_budget(m: TimingModel) -> list[Violation]:
    """The declared boot budget is a promise the measurement must keep: a slow boot is a finding."""
    return [
        Violation(
            "boot-within-budget",
            field_of(m, s.name, "boot_budget"),
            s.boot_budget,
            f">= the estimated boot of {s.name}: {s.estimate.terms()}",
            math.ceil(s.estimate.total),
        )
        for s in m.services.values()
        if s.estimate.total > s.boot_budget
    ]


def r_rollback_window(m: TimingModel) -> list[Violation]:
    """Blue/green: an alarm that is to roll a deployment back must be one the plan makes and must be
    able to fire before the termination wait ends: after it the original tasks are gone and
    CodeDeploy has nothing to roll back to. Worst case, every new task failing its checks from the
    moment traffic moved (harness.plan.observability.time_to_alarm). And the deployment group must
    act on them: its automatic rollback on with DEPLOYMENT_STOP_ON_ALARM among the events, its alarm
    configuration on with the alarms listed (read from the planned group itself: with either off,
    an alarm that fires stops nothing, or stops the deployment without rolling it back)."""
    times = time_to_alarm({"planned_values": {"root_module": {"resources": m.resources}}}, m)
    source, event = "terraform/modules/ecs_service/codedeploy.tf", "DEPLOYMENT_STOP_ON_ALARM"

    def known(after_unknown: object) -> bool:  # the plan's after_unknown: true at each value known only at apply
        if isinstance(after_unknown, dict):
            return all(known(v) for v in after_unknown.values())
        if isinstance(after_unknown, list):
            return all(known(v) for v in after_unknown)
        return after_unknown is not True

    out = []
    for s in m.services.values():
        if s.deployment_controller != "CODE_DEPLOY":
            continue
        for group in m.of_type("aws_codedeploy_deployment_group"):
            if f'module.service["{s.name}"].' not in group["address"]:
                continue
            values, unknown = group["values"], group["unknown"]
            rollback = (values.get("auto_rollback_configuration") or [{}])[0]
            alarms = (values.get("alarm_configuration") or [{}])[0]
            enabled, events = bool(rollback.get("enabled")), sorted(rollback.get("events") or [])
            seen_rollback = {"enabled": enabled, "events": events}
            if known(unknown.get("auto_rollback_configuration")) and not (enabled and event in events):
                out.append(
                    Violation(
                        "rollback-alarms-fire-within-termination-wait",
                        f"{m.source}: {group['address']}.auto_rollback_configuration ({source})",
                        seen_rollback,
                        f"enabled, with {event} among the events: otherwise an alarm that fires stops the "
                        "deployment without rolling it back, and the failing version keeps serving",
                        {"enabled": True, "events": sorted({*events, "DEPLOYMENT_FAILURE", event})},
                    )
                )
            seen_alarms = {"enabled": bool(alarms.get("enabled")), "alarms": list(alarms.get("alarms") or [])}
            if known(unknown.get("alarm_configuration")) and not (seen_alarms["enabled"] and seen_alarms["alarms"]):
                out.append(
                    Violation(
                        "rollback-alarms-fire-within-termination-wait",
                        f"{m.source}: {group['address']}.alarm_configuration ({source})",
                        seen_alarms,
                        f"enabled, listing the service's alarms: otherwise no alarm stops the deployment "
                        f"({event} never happens) and nothing rolls it back",
                        {"enabled": True, "alarms": seen_alarms["alarms"] or ["<the service's alarms>"]},
                    )
                )
        for name in s.rollback_alarms:
            seconds = times.get(name)
            if seconds is None:
                out.append(
                    Violation(
                        "rollback-alarms-fire-within-termination-wait",
                        f"{m.source}: the deployment group of {s.name}: alarm_configuration.alarms",
                        name,
                        "an alarm the plan makes",
                        ", ".join(sorted(times)),
                    )
                )
            elif seconds > s.termination_wait:
                out.append(
                    Violation(
                        "rollback-alarms-fire-within-termination-wait",
                        f"{m.source}: blue_green.termination_wait_minutes ({s.name})",
                        int(s.termination_wait // 60) if s.termination_wait % 60 == 0 else s.termination_wait / 60,
                        f">= {name}'s worst-case time to alarm, {seconds:.0f}s: once the wait is over the "
                        "original tasks are gone and the alarm can no longer roll back",
                        math.ceil(seconds / 60) if math.isfinite(seconds) else "an alarm that can fire",
                    )
                )
    return out


RULES = {
    "boot-within-budget": r_boot_budget,
    "aws-ranges": r_ranges,
    "alb-timeout-below-interval": r_alb_timeout,
    "grace-covers-boot": r_grace,
    "container-check-tolerates-boot": r_container_start,
    "same-health-path": r_paths,
    "container-check-matches-dockerfile": r_container_matches_dockerfile,
    "stop-timeout-covers-drain": r_drain,
    "deregistration-covers-requests": r_deregistration,
    "check-timeout-above-health-budget": r_health_budget,
    "circuit-breaker-with-rollback": r_circuit_breaker,
    "log-retention-set": r_log_retention,
    "slo-health-p99-below-alb-timeout": r_slo_health,
    "rollback-alarms-fire-within-termination-wait": r_rollback_window,
}


RULES.update(deployable.RULES)
RULES.update(exposure.RULES)
RULES.update(policies.RULES)
RULES.update(privilege.RULES)
RULES.update(transit.RULES)
RULES.update(capacity.RULES)


def check(model: TimingModel) -> dict[str, list[Violation]]:
    return {rule_id: fn(model) for rule_id, fn in RULES.items()}
