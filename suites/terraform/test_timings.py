"""The planned timings: valid for AWS, mutually consistent, and fitting the measured boot times.
Each rule is a test per environment; putting back any of the incident's values fails a named rule."""

import dataclasses
import functools
import subprocess

import pytest

from harness.paths import environment_file, environments, project, shown
from harness.plan.rules import RULES, check
from pytest_harness.terraform import QUICK, SLOW, TYPICAL

pytestmark = pytest.mark.terraform
ENVIRONMENTS = tuple(environments())  # every rule runs on every environment file present
STAGING = shown(environment_file("staging"))  # as the rules name it


def test_fmt_is_clean(terraform):
    result = subprocess.run(
        [terraform.binary, "fmt", "-check", "-recursive", "-diff", str(project().terraform_dir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_validate_is_clean(terraform):
    report = terraform.validate()
    assert report.get("valid") is True, report.get("diagnostics")


@pytest.mark.parametrize("boot", [QUICK, TYPICAL], ids=["quick-boots", "typical-boots"])
@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("rule", list(RULES))
def test_rule_holds(make_model, env, rule, boot):
    violations = RULES[rule](make_model(env, boot=boot))
    assert not violations, "\n".join(str(v) for v in violations)


def test_a_slow_boot_is_a_finding_not_a_pass(make_model):
    """MLflow taking a minute here: the budget rule names MLflow, its estimate and its budget, and the
    timing rules judge the plan against the estimate, not the smaller budget."""
    model = make_model("staging", boot=SLOW)
    mlflow = model.services["mlflow"]
    violations = check(model)["boot-within-budget"]
    assert [v.where for v in violations] == [f"{STAGING}: services.mlflow.boot_budget"]
    text = str(violations[0])
    assert f"services.mlflow.boot_budget = {mlflow.boot_budget!r}: expected >= the estimated boot of mlflow" in text
    assert f"= {mlflow.estimate.total:g}s" in text and mlflow.boot == mlflow.estimate.total > mlflow.boot_budget
    assert check(model)["grace-covers-boot"], "the plan is judged against the slower estimate"


def test_boot_is_the_declared_budget_unless_the_estimate_is_larger(make_model):
    quick, typical = make_model("staging", boot=QUICK), make_model("staging", boot=TYPICAL)
    for model in (quick, typical):
        for s in model.services.values():
            assert s.boot == max(s.boot_budget, s.estimate.total) and s.boot_budget in (30, 75)
    assert quick.services["mlflow"].boot == 75 and quick.services["mlflow"].boot_from == "the declared budget"


REVERTS = [
    pytest.param("mlflow", ((r"grace_period\s+= \d+", "grace_period = 60"),), "grace-covers-boot", id="grace-60s"),
    pytest.param(
        "mlflow",
        ((r'health_path\s+= "/mlflow/health"', 'health_path = "/"'),),
        "same-health-path",
        id="mlflow-check-on-root",
    ),
    pytest.param(
        "mlflow",
        ((r"container_start\s+= \d+", "container_start = 0"),),
        "container-check-tolerates-boot",
        id="start-period-below-boot",
    ),
    pytest.param(
        "mlflow",
        ((r"circuit_breaker\s+= true", "circuit_breaker = false"),),
        "circuit-breaker-with-rollback",
        id="circuit-breaker-off",
    ),
    pytest.param(
        "api",
        ((r"stop_timeout\s+= \d+", "stop_timeout = 10"),),
        "stop-timeout-covers-drain",
        id="stop-timeout-below-drain",
    ),
    pytest.param(
        "api",
        ((r"alb_timeout\s+= \d+", "alb_timeout = 3"),),
        "check-timeout-above-health-budget",
        id="alb-timeout-below-health-budget",
    ),
    pytest.param(
        "mlflow",
        ((r'MLFLOW_WORKERS\s+= "\d+"', 'MLFLOW_WORKERS = "4"'), (r'JOB_EXECUTION = "false"', 'JOB_EXECUTION = "true"')),
        "mlflow-memory-fits",
        id="default-mlflow-in-2gb",
    ),
]


@pytest.mark.parametrize("boot", [QUICK, TYPICAL, SLOW], ids=["quick-boots", "typical-boots", "slow-mlflow"])
@pytest.mark.parametrize("service,edits,rule", REVERTS)
def test_incident_value_fails_its_rule(make_model, service, edits, rule, boot):
    """Whatever a real machine could measure, the incident's values are caught."""
    model = make_model("staging", service, edits, boot=boot)
    violations = check(model)[rule]
    assert violations, f"{rule} did not catch {edits}"
    text = str(violations[0])
    assert f"{STAGING}: services." in text and "would pass:" in text


def test_alb_timeout_not_below_interval_is_rejected_by_plan_and_rule(make_model, terraform):
    from pytest_harness.terraform import edited

    var_file = edited(
        environment_file("staging"),
        "api",
        ((r"alb_timeout\s+= \d+", "alb_timeout = 15"),),
        terraform.workdir.parent,
    )
    error = terraform.plan_error(str(var_file), offline=True)
    assert error and "alb_timeout must be below alb_interval" in error
    model = make_model("staging")
    api = model.services["api"]
    bad = dataclasses.replace(
        model,
        services={
            **model.services,
            "api": dataclasses.replace(api, alb=dataclasses.replace(api.alb, timeout=api.alb.interval)),
        },
    )
    violations = RULES["alb-timeout-below-interval"](bad)
    assert violations and violations[0].passing == api.alb.interval - 1


def test_no_log_retention_is_rejected_by_plan_and_rule(make_model, terraform):
    error = terraform.plan_error(str(environment_file("staging")), offline=True, log_retention_days=0)
    assert error and "log_retention_days must be one of" in error
    model = make_model("staging")
    bad = dataclasses.replace(model, log_retention={g: None for g in model.log_retention})
    assert RULES["log-retention-set"](bad)


def test_model_reads_every_timing_from_the_plan(make_model):
    m = make_model("prod")
    mlflow = m.services["mlflow"]
    assert (mlflow.container.start_period, mlflow.grace_period, mlflow.alb.path) == (90, 120, "/mlflow/health")
    assert mlflow.deregistration_delay == 30.0 and isinstance(mlflow.deregistration_delay, float)
    assert set(m.log_retention.values()) == {90}
    assert m.dockerfile["mlflow"].start_period == 90


def test_blue_green_option_plans_codedeploy_with_two_target_groups_per_service(terraform):
    plan = terraform.plan(str(environment_file("prod")), offline=True, deployment_strategy="blue_green")
    types = [r["type"] for r in plan["resource_changes"]]
    assert types.count("aws_lb_target_group") == 4 and types.count("aws_codedeploy_deployment_group") == 2
    services = [r for r in plan["resource_changes"] if r["type"] == "aws_ecs_service"]
    assert {s["change"]["after"]["deployment_controller"][0]["type"] for s in services} == {"CODE_DEPLOY"}
    # the alarms watch both target groups of each service
    alarms = [
        r["address"]
        for r in plan["resource_changes"]
        if r["type"] == "aws_cloudwatch_metric_alarm" and ".unhealthy_hosts[" in r["address"]
    ]
    assert sorted(a.rsplit("[", 1)[1] for a in alarms) == ['"api-0"]', '"api-1"]', '"mlflow-0"]', '"mlflow-1"]']


def test_blue_green_plans_a_test_listener_that_codedeploy_routes_and_only_the_vpc_reaches(terraform):
    """CodeDeploy's test traffic route: a second ALB listener (blue_green.test_port) with each
    service's path rule, named in each deployment group, reachable from inside the VPC only; a
    rolling plan has none; the port is validated."""
    var_file = str(environment_file("prod"))
    plan = terraform.plan(var_file, offline=True, deployment_strategy="blue_green")
    after = {r["address"]: r["change"]["after"] for r in plan["resource_changes"]}
    (test,) = [a for k, a in after.items() if k.endswith('aws_lb_listener.this["test"]')]
    assert test["port"] == 8080
    rules = {k: a for k, a in after.items() if ".aws_lb_listener_rule." in k}
    for service in ("api", "mlflow"):
        prod, on_test = (
            rules[f'module.service["{service}"].aws_lb_listener_rule.this["prod"]'],
            rules[f'module.service["{service}"].aws_lb_listener_rule.this["test"]'],
        )
        assert (on_test["priority"], on_test["condition"]) == (prod["priority"], prod["condition"]), service
    groups = [a for k, a in after.items() if k.endswith("aws_codedeploy_deployment_group.this[0]")]
    routes = [g["load_balancer_info"][0]["target_group_pair_info"][0] for g in groups]
    assert len(routes) == 2 and all(len(r["test_traffic_route"]) == 1 for r in routes), routes
    (alb_sg,) = [a for k, a in after.items() if k == "module.network.aws_security_group.alb"]
    (rule,) = [i for i in alb_sg["ingress"] if i["from_port"] == 8080]
    assert rule["cidr_blocks"] == [plan["variables"]["vpc_cidr"]["value"]]
    from harness.plan.timing import from_plan, plan_resources

    assert all(s.test_listener for s in from_plan(plan, "prod.tfvars", TYPICAL).services.values())  # the simulator's
    for res in plan_resources(plan["planned_values"]["root_module"]):  # a group without the route reads as none
        if res["type"] == "aws_codedeploy_deployment_group":
            res["values"]["load_balancer_info"][0]["target_group_pair_info"][0]["test_traffic_route"] = []
    assert not any(s.test_listener for s in from_plan(plan, "prod.tfvars", TYPICAL).services.values())
    rolling = terraform.plan(var_file, offline=True)
    assert not [r for r in rolling["resource_changes"] if r["address"].endswith('aws_lb_listener.this["test"]')]
    error = terraform.plan_error(var_file, offline=True, deployment_strategy="blue_green", blue_green={"test_port": 80})
    assert error and "blue_green.test_port must be a port" in " ".join(error.split())


def test_blue_green_rolls_back_on_the_services_alarms_only_while_the_original_tasks_are_kept(terraform):
    """The plan's deployment groups take the traffic configuration and termination wait from
    blue_green, roll back on the service's own alarms (not the dependency alarm: a shared outage is
    no reason to roll back), and the rule fails a termination wait shorter than an alarm's worst-case
    time to fire (the unhealthy-host alarm: 3 x 15 s, then 2 periods of 60 s and the one it began in)."""
    from harness.plan.timing import from_plan

    var_file = str(environment_file("prod"))
    rule = RULES["rollback-alarms-fire-within-termination-wait"]
    model = from_plan(terraform.plan(var_file, offline=True, deployment_strategy="blue_green"), "prod.tfvars", TYPICAL)
    api = model.services["api"]
    assert (api.traffic, api.termination_wait) == ("CodeDeployDefault.ECSAllAtOnce", 300.0)
    assert set(api.rollback_alarms) == {
        "mlplatform-prod-api-health-check-failures",
        "mlplatform-prod-api-0-unhealthy-hosts",
        "mlplatform-prod-api-1-unhealthy-hosts",
    }
    assert rule(model) == []
    typo = dataclasses.replace(api, rollback_alarms=("mlplatform-prod-api-health-check-failure",))
    (missing,) = rule(dataclasses.replace(model, services={**model.services, "api": typo}))
    assert "an alarm the plan makes" in str(missing) and "api-health-check-failure'" in str(missing)
    canary = "CodeDeployDefault.ECSCanary10Percent5Minutes"
    short = from_plan(
        terraform.plan(
            var_file,
            offline=True,
            deployment_strategy="blue_green",
            blue_green={"traffic": canary, "termination_wait_minutes": 2},
        ),
        "prod.tfvars",
        TYPICAL,
    )
    assert (short.services["mlflow"].traffic, short.services["mlflow"].termination_wait) == (canary, 120.0)
    texts = [str(v) for v in rule(short)]
    assert len(texts) == 4 and all("blue_green.termination_wait_minutes" in t for t in texts), texts
    assert all("unhealthy-hosts's worst-case time to alarm, 225s" in t for t in texts), texts
    error = terraform.plan_error(var_file, offline=True, blue_green={"traffic": "AllAtOnce"})
    assert error and "blue_green.traffic must be one of" in " ".join(error.split())


def test_an_slo_that_accepts_health_checks_slower_than_the_alb_timeout_fails_its_rule(make_model, tmp_path):
    model = make_model("staging")
    timeout_ms = model.services["api"].alb.timeout * 1000
    slo_file = tmp_path / "slo.yaml"
    slo_file.write_text(
        f'objectives:\n  "GET /health [lb]": {{p99_ms: 500}}\n'
        f'profiles:\n  spike:\n    "GET /health [lb]": {{p99_ms: {timeout_ms:g}}}\n'
    )
    violations = RULES["slo-health-p99-below-alb-timeout"](dataclasses.replace(model, slo_file=slo_file))
    assert len(violations) == 1, [str(v) for v in violations]
    text = str(violations[0])
    assert "slo.yaml: profiles.spike.GET /health [lb].p99_ms" in text and "alb_timeout" in text


def test_the_runbook_states_each_alarms_time_to_fire_as_the_plans_give_it(make_plan, make_model):
    """docs/runbook.md's table is what the plans' alarms and check intervals give."""
    from harness.plan.observability import time_to_alarm

    runbook = (project().root / "docs" / "runbook.md").read_text()
    rows: dict[str, list[str]] = {}
    for env in ("staging", "prod"):
        plan, model = make_plan(env), make_model(env)
        every, one = time_to_alarm(plan, model), time_to_alarm(plan, model, tasks=1)
        for name in every:
            short = name.split(f"mlplatform-{env}-", 1)[1]
            rows.setdefault(short, []).extend([f"{every[name]:.0f} s", f"{one[name]:.0f} s"])
    for short, cells in rows.items():
        row = f"| `<name>-{short}` | " + " | ".join(cells) + " |"
        assert row in runbook, f"docs/runbook.md lacks, or has other figures than:\n{row}"


def test_a_task_check_other_than_the_dockerfiles_fails_naming_each_field(make_model):
    """ECS ignores the image's HEALTHCHECK: the task definition's check must carry the Dockerfile's
    own timings. Each of the four put back to another value is named with the value that passes."""
    edits = (
        (r"container_interval\s+= \d+", "container_interval = 20"),
        (r"container_timeout\s+= \d+", "container_timeout = 4"),
        (r"container_retries\s+= \d+", "container_retries = 5"),
        (r"container_start\s+= \d+", "container_start = 120"),
    )
    model = make_model("staging", "mlflow", edits)
    violations = check(model)["container-check-matches-dockerfile"]
    where = f"{STAGING}: services.mlflow."
    assert {v.where: (v.value, v.passing) for v in violations} == {
        where + "container_interval": (20, 10),
        where + "container_timeout": (4, 5),
        where + "container_retries": (5, 3),
        where + "container_start": (120, 90),
    }, [str(v) for v in violations]
    text = "\n".join(str(v) for v in violations)
    assert "expected equal to services/mlflow/Dockerfile HEALTHCHECK --interval" in text, text
    assert "expected equal to services/mlflow/Dockerfile HEALTHCHECK --start-period" in text, text


def test_a_deregistration_delay_shorter_than_the_request_timeout_fails(make_model):
    """The api's target is cut when its deregistration delay ends: a delay shorter than the api's
    request deadline (API_REQUEST_TIMEOUT, 10 s by default) cuts requests still at work."""
    model = make_model("staging", "api", ((r"deregistration_delay\s+= \d+", "deregistration_delay = 5"),))
    assert model.api_settings() is not None and model.api_settings().request_timeout == 10.0
    violations = check(model)["deregistration-covers-requests"]
    assert [(v.where, v.value, v.passing) for v in violations] == [
        (f"{STAGING}: services.api.deregistration_delay", 5.0, 10)
    ], [str(v) for v in violations]
    assert "expected >= API_REQUEST_TIMEOUT 10.0s" in str(violations[0])


BLUE_GREEN = {
    "variables.tf": ((r'(variable "deployment_strategy" \{[^}]*?default\s+=) "rolling"', r'\1 "blue_green"'),)
}
NO_ROLLBACK_ON_ALARMS = [
    pytest.param(
        (
            (
                r'events\s+= \["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"\]',
                'events = ["DEPLOYMENT_FAILURE"]',
            ),
        ),
        "auto_rollback_configuration",
        id="stop-on-alarm-not-an-event",
    ),
    pytest.param(
        ((r"(auto_rollback_configuration \{\n\s+enabled\s+=) true", r"\1 false"),),
        "auto_rollback_configuration",
        id="auto-rollback-disabled",
    ),
    pytest.param(
        ((r"(alarm_configuration \{\n\s+enabled\s+=) true", r"\1 false"),),
        "alarm_configuration",
        id="alarm-configuration-disabled",
    ),
]


@pytest.mark.parametrize("edits, field", NO_ROLLBACK_ON_ALARMS)
def test_a_deployment_group_that_does_not_roll_back_on_alarms_fails(make_edited_model, edits, field):
    """Blue/green: the alarms can roll a deployment back only when the deployment group's automatic
    rollback is on with DEPLOYMENT_STOP_ON_ALARM among its events and its alarm configuration is on
    with the alarms listed. Any of them put back off, and a failing version stays once the alarm
    fires: the rule names each service's deployment group and the field."""
    model = make_edited_model("prod", {**BLUE_GREEN, "modules/ecs_service/codedeploy.tf": edits})
    assert {s.deployment_controller for s in model.services.values()} == {"CODE_DEPLOY"}
    violations = check(model)["rollback-alarms-fire-within-termination-wait"]
    assert sorted(v.where for v in violations) == [
        f'{shown(environment_file("prod"))}: module.service["{svc}"].aws_codedeploy_deployment_group.this[0]'
        f".{field} (terraform/modules/ecs_service/codedeploy.tf)"
        for svc in ("api", "mlflow")
    ], [str(v) for v in violations]
    assert all("DEPLOYMENT_STOP_ON_ALARM" in v.expected for v in violations), [str(v) for v in violations]


def test_deployment_md_states_each_environments_strategy_with_the_simulators_figures(make_plan, make_model):
    """docs/deployment.md, "Which strategy each environment uses": for every environment file and
    service, the strategy the plan deploys with and the simulator's outcome for both strategies
    (blue/green with the plan's traffic, termination wait and test listener): a deployment that
    passes, one whose checks never pass, and, for blue/green, one whose unhealthy-host alarm fires at
    its worst case after the shift."""
    from harness.plan.dockerfile import service_healthcheck
    from harness.plan.observability import time_to_alarm
    from harness.simulation.blue_green import simulate_blue_green
    from harness.simulation.simulator import Result, SimConfig, simulate

    def said(r: Result) -> str:
        if r.outcome == "completed":
            return f"done at {r.time:.0f} s"
        if r.outcome == "rolled_back":
            return f"rolled back at {r.time:.0f} s"
        return f"no verdict by {r.time:.0f} s ({r.replaced} tasks replaced)"

    doc = (project().root / "docs" / "deployment.md").read_text()
    missing = []
    for env in ENVIRONMENTS:
        plan, model = make_plan(env), make_model(env)
        alarms = time_to_alarm(plan, model)
        for name, s in model.services.items():
            passes, never = (
                SimConfig.from_timing(s, service_healthcheck(name).path, dependencies_ok=ok) for ok in (True, False)
            )
            alarm = alarms[f"mlplatform-{env}-{name}-0-unhealthy-hosts"]
            blue_green = functools.partial(
                simulate_blue_green,
                boot=s.boot,
                traffic=s.traffic,
                termination_wait=s.termination_wait,
                test_listener=s.test_listener,
            )

            cells = [
                env,
                name,
                str(s.desired_count),
                s.strategy.replace("_", "/"),
                said(simulate(passes, boot=s.boot)),
                said(simulate(never, boot=s.boot)),
                said(blue_green(passes)),
                said(blue_green(never)),
                f"alarm at {alarm:.0f} s: {said(blue_green(passes, alarm_after=alarm))}",
            ]
            row = "| " + " | ".join(cells) + " |"
            if row not in doc:
                missing.append(row)
    assert not missing, "docs/deployment.md lacks, or has other figures than:\n" + "\n".join(missing)


def test_mlflow_cpu_is_sized_from_the_planned_write_rate(make_model):
    """MLflow takes about 22 writes/s per vCPU (docs/mlflow.md); the plan states the rate it is
    sized for, and a rate its tasks cannot take fails naming the CPU and the workers."""
    model = make_model("staging")
    assert model.variables["planned_writes_per_second"] == 5 and not RULES["mlflow-cpu-fits-planned-writes"](model)
    busy = dataclasses.replace(model, variables={**model.variables, "planned_writes_per_second": 40})
    found = {v.where.split(": ", 1)[1]: (v.value, v.passing) for v in RULES["mlflow-cpu-fits-planned-writes"](busy)}
    # 40 x 1.5 over 1 task at 22 per vCPU: 2.7 vCPU, so 4096 units and 3 workers
    assert found == {"services.mlflow.cpu": (1024, 4096), "services.mlflow.environment.MLFLOW_WORKERS": (2, 3)}, found
    unstated = dataclasses.replace(
        model, variables={k: v for k, v in model.variables.items() if k != "planned_writes_per_second"}
    )
    (v,) = RULES["mlflow-cpu-fits-planned-writes"](unstated)
    assert v.where.endswith("planned_writes_per_second") and v.value is None
