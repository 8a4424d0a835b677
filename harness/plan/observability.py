"""The plan's metric filters and alarms, read from ``terraform show -json``; which metrics exist
(the filters' and AWS's own, with their dimensions); and how long an alarm takes to fire after
the first failing log line (docs/runbook.md states the figures).

How CloudWatch turns lines into an alarm, as the model takes it (CloudWatch User Guide: "Using
Amazon CloudWatch alarms", "Evaluating an alarm"; metric filters publish as events arrive):
datapoints aggregate per period aligned to the clock; an alarm is evaluated about once a minute
over its last ``evaluation_periods`` periods. A Sum >= T over period P fires once T failing
lines fell into one period: at worst the first T-1 of them just before a period boundary, so
2(T-1) failure intervals, plus up to one minute until the next evaluation."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigurationError
from harness.plan.timing import plan_resources

EVALUATION_INTERVAL = 60.0  # seconds between evaluations of an alarm
# AWS's own metrics the dashboard and alarms may name, with the dimensions each must carry
AWS_METRICS = {
    ("AWS/ApplicationELB", "HealthyHostCount"): ("LoadBalancer", "TargetGroup"),
    ("AWS/ApplicationELB", "UnHealthyHostCount"): ("LoadBalancer", "TargetGroup"),
    ("AWS/ApplicationELB", "TargetResponseTime"): ("LoadBalancer", "TargetGroup"),
    ("ECS/ContainerInsights", "RunningTaskCount"): ("ClusterName", "ServiceName"),
    ("ECS/ContainerInsights", "DeploymentCount"): ("ClusterName", "ServiceName"),
}


@dataclass(frozen=True)
class MetricFilter:
    name: str
    service: str  # whose log group it reads
    pattern: str
    namespace: str
    metric: str


@dataclass(frozen=True)
class Alarm:
    name: str
    namespace: str
    metric: str
    statistic: str
    period: int
    evaluation_periods: int
    threshold: float
    comparison: str
    dimensions: dict[str, str]

    def lines_to_fire(self) -> int:
        """Failing lines (each counting 1) one period must hold for a Sum alarm to fire."""
        if self.comparison == "GreaterThanOrEqualToThreshold":
            return max(1, math.ceil(self.threshold))
        if self.comparison == "GreaterThanThreshold":
            return math.floor(self.threshold) + 1
        raise ConfigurationError(
            f"alarm {self.name}: comparison_operator GreaterThanThreshold or GreaterThanOrEqualToThreshold "
            "(an alarm on a count of failures)",
            self.comparison,
        )

    def seconds_to_fire(self, failures_per_second: float) -> float:
        """Worst case from the first failing line to the alarm, failures arriving steadily at
        ``failures_per_second``; infinite when one period cannot hold enough of them."""
        needed = self.lines_to_fire()
        if failures_per_second * self.period < needed:
            return math.inf
        return 2 * (needed - 1) / failures_per_second + EVALUATION_INTERVAL


def _values(plan: dict, kind: str) -> list[dict]:
    root = (plan.get("planned_values") or plan.get("values") or {}).get("root_module", {})
    return [r.get("values", {}) for r in plan_resources(root) if r["type"] == kind]


def metric_filters(plan: dict) -> list[MetricFilter]:
    out = []
    for v in _values(plan, "aws_cloudwatch_log_metric_filter"):
        (t,) = v["metric_transformation"]
        out.append(
            MetricFilter(
                v["name"],
                v["log_group_name"].rsplit("/", 1)[-1].rsplit("-", 1)[-1],
                v["pattern"],
                t["namespace"],
                t["name"],
            )
        )
    return out


def alarms(plan: dict) -> list[Alarm]:
    return [
        Alarm(
            v["alarm_name"],
            v["namespace"],
            v["metric_name"],
            v.get("statistic") or "",
            int(v["period"]),
            int(v["evaluation_periods"]),
            float(v["threshold"]),
            v["comparison_operator"],
            dict(v.get("dimensions") or {}),
        )
        for v in _values(plan, "aws_cloudwatch_metric_alarm")
    ]


def unknown_metrics(
    named: list[tuple[str, str, dict[str, str]]], filters: list[MetricFilter], dimensions: dict[str, set[str]]
) -> list[str]:
    """Each (namespace, metric, dimensions) that no filter and no AWS namespace produces, or that
    carries a dimension value nothing has (``dimensions``: name -> the values that exist, e.g.
    TargetGroup -> the applied target groups' ARN suffixes)."""
    produced = {(f.namespace, f.metric) for f in filters}
    problems = []
    for namespace, metric, dims in named:
        if (namespace, metric) in produced:
            if dims:
                problems.append(f"{namespace} {metric}: a filter's metric has no dimensions, got {dims}")
            continue
        wanted = AWS_METRICS.get((namespace, metric))
        if wanted is None:
            problems.append(f"{namespace} {metric}: produced by no metric filter and no AWS namespace known here")
            continue
        if set(dims) != set(wanted):
            problems.append(f"{namespace} {metric}: dimensions {sorted(dims)}, expected {list(wanted)}")
            continue
        for name, value in dims.items():
            if value not in dimensions.get(name, set()):
                problems.append(f"{namespace} {metric}: {name}={value!r} names nothing that exists")
    return problems


def widget_metrics(dashboard: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of every metric line of every metric widget."""
    out = []
    for widget in dashboard.get("widgets", []):
        for line in widget.get("properties", {}).get("metrics", []):
            names = [x for x in line if isinstance(x, str)]
            namespace, metric, rest = names[0], names[1], names[2:]
            out.append((namespace, metric, dict(zip(rest[::2], rest[1::2], strict=True))))
    return out


ALB_NODES = 2  # the ALB has a node in each of the plan's two availability zones; each checks every target


def failing_lines_per_second(service: Any, tasks: int | None = None) -> float:
    """How fast a service's health-check failures reach its log while ``tasks`` of its tasks (all
    by default) fail every check: each task is checked by every ALB node each ALB interval and by
    its container check each interval."""
    failing = service.desired_count if tasks is None else tasks
    return failing * (ALB_NODES / service.alb.interval + 1 / service.container.interval)


def time_to_alarm(plan: dict, model: Any, tasks: int | None = None) -> dict[str, float]:
    """Alarm name -> worst-case seconds from the first failing check to ALARM, for the plan's own
    alarms, with ``tasks`` failing (all by default): log-metric alarms from their service's
    failing-line rate, unhealthy-host alarms from the target group's unhealthy threshold x
    interval, then their whole evaluation periods plus the period the count began in."""
    by_metric = {f.metric: f.service for f in metric_filters(plan)}
    out = {}
    for a in alarms(plan):
        if a.metric in by_metric:
            rate = failing_lines_per_second(model.services[by_metric[a.metric]], tasks)
            out[a.name] = a.seconds_to_fire(rate)
        elif a.metric == "UnHealthyHostCount":
            service = model.services[a.name.rsplit("-unhealthy-hosts", 1)[0].rsplit("-", 2)[-2]]
            out[a.name] = service.alb.unhealthy_threshold * service.alb.interval + (a.evaluation_periods + 1) * a.period
        elif a.metric == "RunningTaskCount":  # from the last task gone: its whole periods, and the one it went in
            out[a.name] = (a.evaluation_periods + 1) * a.period
    return out


def _suffix(arn: str) -> str:
    """An ELB ARN's suffix, as CloudWatch's dimensions name it: targetgroup/<name>/<id> for a target
    group, app/<name>/<id> for a load balancer (its ARN's loadbalancer/app/<name>/<id>)."""
    return arn.split(":", 5)[5].removeprefix("loadbalancer/")


@dataclass
class Applied:
    """The observability of an applied platform as AWS (moto) holds it."""

    filters: list[MetricFilter]
    named: list[tuple[str, str, dict[str, str]]]  # every widget's and alarm's (namespace, metric, dimensions)
    exists: dict[str, set[str]]  # dimension name -> the values that exist
    alarms: list[dict]  # describe_alarms' MetricAlarms

    def unknown(self) -> list[str]:
        return unknown_metrics(self.named, self.filters, self.exists)

    def dimension(self, name: str, of: str = "all") -> set[str]:
        """The values of dimension ``name`` named by the widgets, the alarms or both."""
        widgets = self.named[: len(self.named) - len(self.alarms)]
        lines = {"widgets": widgets, "alarms": self.named[len(widgets) :], "all": self.named}[of]
        return {dims[name] for _, _, dims in lines if name in dims}


def applied(clients: Callable[[str], Any], cluster: str, dashboard: str) -> Applied:
    """Read back the metric filters, the dashboard ``dashboard`` and the alarms, and what exists
    for their dimensions (target groups, load balancers, the cluster and its services)."""
    cw, elb, logs = clients("cloudwatch"), clients("elbv2"), clients("logs")
    filters = [
        MetricFilter(f["filterName"], f["logGroupName"], f["filterPattern"], t["metricNamespace"], t["metricName"])
        for f in logs.describe_metric_filters()["metricFilters"]
        for t in f["metricTransformations"]
    ]
    exists = {
        "TargetGroup": {_suffix(tg["TargetGroupArn"]) for tg in elb.describe_target_groups()["TargetGroups"]},
        "LoadBalancer": {_suffix(lb["LoadBalancerArn"]) for lb in elb.describe_load_balancers()["LoadBalancers"]},
        "ClusterName": {cluster},
        "ServiceName": {s.split("/")[-1] for s in clients("ecs").list_services(cluster=cluster)["serviceArns"]},
    }
    body = json.loads(cw.get_dashboard(DashboardName=dashboard)["DashboardBody"])
    alarms = cw.describe_alarms()["MetricAlarms"]
    named = widget_metrics(body) + [
        (a["Namespace"], a["MetricName"], {d["Name"]: d["Value"] for d in a.get("Dimensions", [])}) for a in alarms
    ]
    return Applied(filters, named, exists, alarms)
