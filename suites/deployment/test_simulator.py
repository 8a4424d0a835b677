"""The deployment simulator pinned on hand-computed cases, and its verdict on the incident."""

import time

import pytest

from harness.errors import ConfigurationError
from harness.lifecycle import Lifecycle, Milestone, Rollout, Step, disagreements, timeline
from harness.plan.timing import breaker_threshold
from harness.simulation.blue_green import simulate_blue_green
from harness.simulation.simulator import SimConfig, measured_boot, simulate, simulation_svg

pytestmark = pytest.mark.deployment

# the fixed MLflow timings: container 10/5/3/90, ALB 15/5/2/3, grace 120, deregistration 30
FIXED = dict(
    desired=1,
    container_interval=10,
    container_timeout=5,
    container_retries=3,
    container_start=90,
    alb_interval=15,
    alb_timeout=5,
    healthy_threshold=2,
    unhealthy_threshold=3,
    grace=120,
    deregistration_delay=30,
)


def replaced(r) -> list[float]:
    """When each new task was replaced as unhealthy, in order."""
    return sorted(t.life.at(Step.REPLACED) for t in r.tasks if Step.REPLACED in t.life.steps)


def shifts(r) -> list[tuple[float, int]]:
    return [(s.at, s.percent) for s in r.rollout.shifts]


def test_one_task_optimistic():
    # app at 10 s; container check at 10 s passes; first ALB check at 15 s passes (one check
    # suffices); the old task drains 30 s: steady at 45 s
    r = simulate(SimConfig(**FIXED), boot=10)
    assert (r.outcome, r.time, r.replaced) == ("completed", 45.0, 0)
    assert r.tasks[0].life.at(Step.IN_SERVICE) == 15.0 and r.tasks[0].life.in_service == 15.0


def test_one_task_conservative():
    # H=2 passing ALB checks: 15 s and 30 s; + 30 s drain = 60 s
    assert simulate(SimConfig(**FIXED, conservative=True), boot=10).time == 60.0


def test_the_incident_rolls_back():
    # health checks on "/" (never pass), no start period, grace 60: each task is unhealthy by
    # 45 s (3 ALB checks) and replaced at 60 s; the third replacement trips the breaker (min 3)
    incident = {**FIXED, "grace": 60, "container_start": 0}
    r = simulate(SimConfig(**incident, alb_path_ok=False, container_path_ok=False), boot=10)
    assert (r.outcome, r.time, r.replaced, r.threshold) == ("rolled_back", 180.0, 3, 3)
    assert replaced(r) == [60.0, 120.0, 180.0]


def test_a_new_task_with_a_broken_dependency_configuration_never_enters_service_and_rolls_back():
    # the fixed timings, but the new task's database password is wrong: its checks never pass
    # ("starting"); unhealthy after the start period (90 + 3 x 10 = 120 s: container) and 3 ALB
    # checks (45 s); replaced when the grace ends at 120 s, then every 120 s; the third replacement
    # trips the breaker (minimum 3) at 360 s and the deployment rolls back to the old task, which
    # kept serving throughout
    r = simulate(SimConfig(**FIXED, dependencies_ok=False), boot=10)
    assert (r.outcome, r.replaced, r.threshold) == ("rolled_back", 3, 3)
    assert replaced(r) == [120.0, 240.0, 360.0]
    assert r.time == 360.0
    assert simulate(SimConfig(**FIXED, dependencies_ok=True), boot=10).outcome == "completed"


def test_slow_boot_needs_the_longer_grace():
    # app answers at 100 s. Grace 60: replaced at 60, 120, 180 -> rolled back at 180 s.
    assert simulate(SimConfig(**{**FIXED, "grace": 60}), boot=100).outcome == "rolled_back"
    # grace 120: the target, unhealthy since 45 s, needs H=2 passes (105 s, 120 s): healthy at
    # 120 s, exactly when the grace ends (checks count first); + 30 s drain = 150 s
    r = simulate(SimConfig(**FIXED), boot=100)
    assert (r.outcome, r.time) == ("completed", 150.0)


def test_without_circuit_breaker_a_broken_deployment_is_stuck():
    r = simulate(SimConfig(**{**FIXED, "circuit_breaker": False, "horizon": 1200}, alb_path_ok=False), boot=10)
    assert r.outcome == "stuck" and r.replaced >= 10


def test_rolling_limits_one_new_task_at_a_time_with_max_100():
    # max 100%: an old task must stop before a new one starts (min healthy 50% allows it)
    r = simulate(SimConfig(**{**FIXED, "desired": 2, "max_percent": 100, "min_healthy_percent": 50}), boot=10)
    assert r.outcome == "completed"
    launches = [t.started for t in r.tasks]
    assert len(launches) == 2 and launches[1] > launches[0]


@pytest.mark.parametrize(
    "desired,minimum,expected", [(1, 3, 3), (6, 3, 3), (25, 3, 13), (400, 3, 200), (800, 3, 200), (1, 10, 10)]
)
def test_breaker_threshold(desired, minimum, expected):
    assert breaker_threshold(desired, minimum) == expected


def test_a_hundred_tasks_in_well_under_a_second():
    t0 = time.perf_counter()
    r = simulate(SimConfig(**{**FIXED, "desired": 100}), boot=measured_boot([9.4, 11.6, 13.4], 3.0), seed=7)
    elapsed = time.perf_counter() - t0
    assert r.outcome == "completed" and elapsed < 0.5, elapsed


@pytest.mark.terraform
def test_planned_mlflow_timings_complete_and_the_incidents_roll_back(make_model, attach_picture):
    fixed = make_model("staging").services["mlflow"]
    served = "/mlflow/health"
    done = simulate(SimConfig.from_timing(fixed, served), boot=fixed.boot)
    attach_picture(
        simulation_svg(done, f"mlflow, staging plan: {done.outcome}"),
        "deployment/mlflow-planned",
        "simulated deployment: the plan",
    )
    assert done.outcome == "completed", done.describe()
    incident = make_model(
        "staging",
        "mlflow",
        (
            (r'health_path\s+= "/mlflow/health"', 'health_path = "/"'),
            (r"container_start\s+= \d+", "container_start = 0"),
            (r"grace_period\s+= \d+", "grace_period = 60"),
        ),
    ).services["mlflow"]
    r = simulate(SimConfig.from_timing(incident, served), boot=incident.boot)
    attach_picture(
        simulation_svg(r, f"mlflow, the incident's settings: {r.outcome}"),
        "deployment/mlflow-incident",
        "simulated deployment: the incident",
    )
    assert r.outcome == "rolled_back", r.describe()


# -- CodeDeploy blue/green ----------------------------------------------------------------------


def test_blue_green_all_at_once_shifts_when_green_is_in_service_and_keeps_blue_for_the_termination_wait():
    # app at 10 s: green's container check (10 s) and first ALB check (15 s) pass -> the
    # replacement task set is ready at 15 s, 100% of traffic moves then; blue stays 300 s, drains
    # 30 s: completed at 345 s. Blue served every request until 15 s, green every one after.
    r = simulate_blue_green(SimConfig(**FIXED), boot=10, termination_wait=300)
    assert (r.outcome, r.time, r.replaced, shifts(r)) == ("completed", 345.0, 0, [(15.0, 100)])
    assert [(o.at(Step.DRAINING), o.at(Step.STOPPED)) for o in r.old] == [(315.0, 345.0)]


def test_blue_green_canary_moves_ten_percent_then_the_rest_after_five_minutes():
    r = simulate_blue_green(
        SimConfig(**FIXED), boot=10, traffic="CodeDeployDefault.ECSCanary10Percent5Minutes", termination_wait=0
    )
    assert shifts(r) == [(15.0, 10), (315.0, 100)] and r.time == 345.0


def test_blue_green_linear_moves_ten_percent_a_minute():
    r = simulate_blue_green(
        SimConfig(**{**FIXED, "desired": 3}), boot=10, traffic="CodeDeployDefault.ECSLinear10PercentEvery1Minutes"
    )
    assert [p for _, p in shifts(r)] == list(range(10, 101, 10))
    assert [t for t, _ in shifts(r)] == [15.0 + 60 * i for i in range(10)]
    assert len(r.tasks) == 3, "the replacement task set starts whole"


def test_a_blue_green_deployment_whose_green_never_passes_moves_no_traffic_and_never_completes():
    """The incident's broken dependency under blue/green: green tasks are replaced within the task
    set (no circuit breaker) while blue keeps all traffic; CodeDeploy fails it at its timeout."""
    r = simulate_blue_green(SimConfig(**FIXED, dependencies_ok=False, horizon=900), boot=10)
    assert r.outcome == "stuck" and shifts(r) == [] and r.replaced >= 5
    assert all(o.at(Step.DRAINING) is None for o in r.old), "blue never stopped"


def test_a_rollback_alarm_while_blue_is_kept_moves_all_traffic_back_and_stops_green():
    # traffic on green at 15 s; the alarm 60 s later, inside the 300 s termination wait
    r = simulate_blue_green(SimConfig(**FIXED), boot=10, termination_wait=300, alarm_after=60)
    assert (r.outcome, r.time, shifts(r)) == ("rolled_back", 75.0, [(15.0, 100), (75.0, 0)]), r.describe()
    assert all(t.life.at(Step.STOPPED) == 75.0 for t in r.tasks) and all(o.at(Step.DRAINING) is None for o in r.old)
    assert 'id="traffic-0"' in simulation_svg(r, "rolled back")


def test_a_rollback_alarm_after_the_termination_wait_has_nothing_to_roll_back_to():
    r = simulate_blue_green(SimConfig(**FIXED), boot=10, termination_wait=60, alarm_after=225)
    assert (r.outcome, shifts(r)) == ("completed", [(15.0, 100)]), r.describe()
    assert (
        240.0,
        "rollback alarm fires after blue was terminated: nothing to roll back to, the failing version "
        "keeps serving (the termination wait is shorter than the time to alarm)",
    ) in r.trace


def test_green_takes_test_traffic_on_the_test_listener_before_any_production_traffic():
    # green in service at 15 s: the test listener routes to it at once; the AfterAllowTestTraffic
    # hooks validate for 40 s, then production traffic moves (55 s); blue kept 300 s, drains 30 s
    r = simulate_blue_green(SimConfig(**FIXED), boot=10, termination_wait=300, validation=40)
    test_traffic = r.rollout.milestones.get(Milestone.TEST_TRAFFIC)
    assert (test_traffic, shifts(r), r.time) == (15.0, [(55.0, 100)], 385.0), r.describe()
    events = [what for _, what in r.trace]
    assert events.index(next(e for e in events if e.startswith("test listener routes to green"))) < events.index(
        "production traffic: 100% green, 0% blue"
    )
    assert 'id="test-traffic"' in simulation_svg(r, "with a test listener")
    without = simulate_blue_green(SimConfig(**FIXED), boot=10, test_listener=False, validation=40)
    assert Milestone.TEST_TRAFFIC not in without.rollout.milestones, without.describe()
    assert shifts(without) == [(15.0, 100)], without.describe()
    assert "no test listener: production traffic is the first traffic green gets" in [w for _, w in without.trace]
    with pytest.raises(ConfigurationError, match="validation: seconds, 0 or more"):
        simulate_blue_green(SimConfig(**FIXED), boot=10, validation=-1)


def test_blue_green_rejects_an_unknown_traffic_configuration():
    with pytest.raises(ConfigurationError, match="traffic: one of CodeDeployDefault.ECSAllAtOnce"):
        simulate_blue_green(SimConfig(**FIXED), boot=10, traffic="AllAtOnce")


def test_the_planned_mlflow_deployment_both_ways(make_model, attach_picture):
    """The same service and timings, rolling and blue/green (the README's comparison)."""
    from harness.plan.dockerfile import service_healthcheck

    svc = make_model("staging").services["mlflow"]
    cfg = SimConfig.from_timing(svc, service_healthcheck("mlflow").path)
    rolling, blue_green = simulate(cfg, boot=svc.boot), simulate_blue_green(cfg, boot=svc.boot)
    assert rolling.outcome == blue_green.outcome == "completed"
    # both wait for the new task to pass the same checks; blue/green then keeps blue 5 minutes
    in_service = next(t.healthy_at for t in blue_green.tasks)
    assert shifts(blue_green) == [(in_service, 100)]
    assert blue_green.time == in_service + 300 + cfg.deregistration_delay
    svg = simulation_svg(blue_green, "mlflow (staging, blue/green)")
    assert 'id="traffic-100"' in svg
    attach_picture(svg, "deployment/simulate-blue-green-mlflow", "blue/green")


def test_an_old_task_stops_after_its_own_drain_or_is_killed_at_its_stop_timeout():
    # the old task drains until 45 s (as above), then SIGTERM: it exits 5 s later (its own drain),
    # and the deployment completes then; an app that would take 40 s is killed at the 30 s timeout
    graceful = simulate(SimConfig(**FIXED, stop_duration=5), boot=10)
    assert graceful.time == 50.0 and Step.KILLED not in graceful.old[0].steps
    assert (graceful.old[0].at(Step.STOPPING), graceful.old[0].at(Step.STOPPED)) == (45.0, 50.0)
    forced = simulate(SimConfig(**FIXED, stop_duration=40, stop_timeout=30), boot=10)
    assert forced.time == 75.0 and forced.old[0].at(Step.KILLED) == 75.0
    assert "SIGKILL" in forced.describe()


def test_two_timelines_agree_only_within_the_tolerance_and_with_the_same_events():
    def rollout(old_drain: float, new_in: float, stopped: bool = True) -> Rollout:
        old = Lifecycle("old 1", 60, 0.0, {Step.IN_SERVICE: 0.0, Step.DRAINING: old_drain})
        if stopped:
            old.mark(Step.STOPPED, old_drain + 30)
        new = Lifecycle("new 1", 60, 0.0, {Step.STARTED: 0.0, Step.IN_SERVICE: new_in})
        return Rollout({"old 1": old, "new 1": new})

    def role(name: str) -> str:
        return name.split()[0]

    a = timeline(rollout(30.0, 30.0), role)
    assert [e.kind for e in a] == ["new task started", "new in service", "old draining", "old stopped"]
    assert disagreements(a, timeline(rollout(33.0, 32.0), role), 5) == []
    late = disagreements(a, timeline(rollout(40.0, 30.0), role), 5, ("rehearsal", "simulator"))
    assert late == [
        "old draining #1: at 30.0s in rehearsal, 40.0s in simulator (more than 5s apart)",
        "old stopped #1: at 60.0s in rehearsal, 70.0s in simulator (more than 5s apart)",
    ]
    assert disagreements(a, timeline(rollout(30.0, 30.0, stopped=False), role), 5) == ["old stopped: 1 in a, 0 in b"]
