"""The fault judge on synthetic series: each expectation passes on a good series and fails, with
its measured value and budget, when the behaviour it names breaks."""

import pytest

from harness.errors import ConfigurationError
from harness.faults.exercise import Observation
from harness.faults.judge import detected, figures, judge, recovered
from harness.faults.kinds import KINDS
from harness.faults.sampler import Sample
from harness.faults.scenarios import faults_dir, load

pytestmark = [pytest.mark.harness, pytest.mark.unit]
NAMES = {"ttl": 1.0, "db_timeout": 1.0, "slack": 0.75, "health_budget": 3.3, "mlflow_budget": 3.3}
FROZEN = load(faults_dir() / "postgres-frozen.yaml")  # fault 4 s; detect 2.75; recover 5.05; max latency 1.75


def series(points, endpoint="/health"):
    """(t, status, health, latency) -> samples."""
    return [Sample(endpoint, t, status, latency, health) for t, status, health, latency in points]


def frozen(health_points, live_status=200, deep_points=None):
    """The load balancer's /health as given; monitoring's /health/deep fails where /health warns
    (unless given); /health/live as ``live_status``."""
    if deep_points is None:
        deep_points = [
            (t + 0.01, 503, "fail", lat) if h == "warn" else (t + 0.01, st, h, lat) for t, st, h, lat in health_points
        ]
    samples = (
        series(health_points)
        + series(deep_points, "/health/deep")
        + series([(t, live_status, None, 0.01) for t in range(0, 12)], "/health/live")
    )
    return Observation(FROZEN, fault_start=1.0, fault_end=5.0, samples=samples)


GOOD = [
    (0.5, 200, "pass", 0.01),
    (1.2, 200, "pass", 0.01),
    (2.3, 200, "warn", 1.0),
    (3.5, 200, "warn", 1.0),
    (5.2, 200, "warn", 1.0),
    (6.5, 200, "pass", 0.05),
]


def verdicts_by_name(obs):
    return {v.name: v for v in judge(obs, NAMES)}


def test_a_good_series_passes_every_expectation_with_its_figures():
    v = verdicts_by_name(frozen(GOOD))
    assert all(x.ok for x in v.values()), [str(x) for x in v.values()]
    assert v["detect"].measured == 2.3 and v["detect"].budget == 2.75
    assert v["recover"].measured == pytest.approx(1.55) and v["max_latency"].measured == 1.0
    out = figures(frozen(GOOD), list(v.values()), "local")
    assert out["detected_s"] == 2.3 and out["detect_budget_s"] == 2.75 and out["passed"] is True


@pytest.mark.parametrize(
    "points, broken",
    [
        (
            [(0.5, 200, "pass", 0.01), (3.0, 200, "pass", 0.01), (4.0, 200, "warn", 1.0), (6.5, 200, "pass", 0.01)],
            "detect",
        ),
        (GOOD[:-1] + [(11.0, 200, "pass", 0.01)], "recover"),
        (GOOD[:-1], "recover"),
        (GOOD[:3] + [(3.5, 200, "pass", 0.01)] + GOOD[4:], "during /health"),
        (GOOD[:3] + [(3.5, 503, "fail", 1.0)] + GOOD[4:], "during /health"),  # the incident: the fleet drained
        (GOOD[:3] + [(3.5, None, None, 1.0)] + GOOD[4:], "max_latency"),
        (GOOD[:3] + [(3.5, 200, "warn", 2.5)] + GOOD[4:], "max_latency"),
    ],
)
def test_each_broken_behaviour_fails_its_own_verdict(points, broken):
    v = verdicts_by_name(frozen(points))
    assert not v[broken].ok, str(v[broken])
    assert broken in str(v[broken]) and "FAILED" in str(v[broken])


def test_monitoring_that_does_not_see_the_outage_fails():
    blind = [(t + 0.01, 200, h, lat) for t, _, h, lat in GOOD]
    assert not verdicts_by_name(frozen(GOOD, deep_points=blind))["during /health/deep"].ok


def test_liveness_touched_by_the_fault_fails():
    assert not verdicts_by_name(frozen(GOOD, live_status=503))["liveness"].ok


def test_a_toxic_that_never_took_effect_proves_nothing():
    sc = load(faults_dir() / "mlflow-transient-503.yaml")
    ok = [(t / 2, 200, "pass", 0.01) for t in range(12)]
    for applied, passes in ((1, True), (0, False), (2, False)):  # limit 1: exactly one answer replaced
        v = verdicts_by_name(Observation(sc, 1.0, 4.0, series(ok), applied=applied))
        assert v["applied"].ok is passes, str(v["applied"])


def test_detected_and_recovered_on_any_series():
    s = series([(0.0, 200, None, 0.1), (1.0, 503, None, 0.2), (2.0, 200, None, 0.1)])
    assert detected(s, 0.5, 1.0, lambda x: x.status == 503).measured == 0.7
    assert not detected(s, 0.5, 0.5, lambda x: x.status == 503).ok
    assert not detected(s, 0.5, 9, lambda x: x.status == 500).ok
    assert recovered(s, 1.5, 1.0).measured == 0.6


def test_every_kind_builds_its_fault_and_a_wrong_parameter_is_named(tmp_path):
    for kind in KINDS.values():
        if kind.on_link:
            assert kind.toxic({}).applied == 0
    bad = tmp_path / "x.yaml"
    bad.write_text(
        "name: x\ndescription: latency with a typo in its parameters\n"
        "fault: {kind: latency, target: api->postgres, params: {msec: 10}}\nexpect: {}\n"
    )
    with pytest.raises(ConfigurationError) as err:
        load(bad)
    assert "fault.params" in str(err.value) and "'msec' is not one of" in str(err.value)


def fleet(b_detects: bool = True, outage: bool = False, late_blind: bool = False, lost: bool = False) -> Observation:
    """A fleet behind the rehearsal's listener, the database frozen from 1 s to 13 s: targets A and
    B answer throughout (B's cache says pass a second longer than A's), D leaves (drained) before the
    detection budget ends, E joins during the fault (and detects 1.5 s after), C joins after the
    fault; ``outage``: once, no target in service."""
    from harness.faults.scenarios import rollouts_dir

    def answers(source, points, endpoint):
        return [Sample(endpoint, t, st, 0.01, h, source=source) for t, st, h in points]

    b_fail = (503, "fail") if b_detects else (200, "pass")
    samples = (
        answers("A", [(0.5, 200, "pass"), (2.0, 503, "fail"), (6.0, 503, "fail"), (14.0, 200, "pass")], "/health/deep")
        + answers(
            "B",
            [(0.7, 200, "pass"), (2.2, 200, "pass"), (3.2, *b_fail), (9.0, *b_fail), (15.0, 200, "pass")],
            "/health/deep",
        )
        + answers("D", [(0.8, 200, "pass")], "/health/deep")
        + answers("C", [(20.0, 200, "pass")], "/health/deep")
        + answers("E", [(2.5, 200, "pass"), (4.0, 503, "fail"), (14.6, 200, "pass")], "/health/deep")
        + answers("E", [(2.6, 200, "warn"), (14.5, 200, "pass")], "/health")
        + answers("A", [(0.4, 200, "pass"), (4.0, 200, "warn"), (14.0, 200, "pass")], "/health")
        + answers("B", [(0.6, 200, "pass"), (5.0, 200, "warn"), (15.0, 200, "pass")], "/health")
        + answers("C", [(20.1, 200, "pass")], "/health")
        + (answers("(none)", [(7.0, 503, None)], "/health") if outage else [])
        + (
            answers("F", [(6.0, 200, "pass"), (9.5, 200, "pass"), (12.0, 200, "pass")], "/health/deep")
            if late_blind
            else []
        )
        + ([Sample("/health/deep", 5.0, None, 30.0, error="ReadTimeout")] if lost else [])
    )
    scenario = load(rollouts_dir() / "rolling-postgres-frozen.yaml")
    return Observation(scenario, fault_start=1.0, fault_end=13.0, samples=samples)


def test_a_fleet_is_judged_target_by_target_and_a_listener_without_a_target_is_an_outage():
    v = verdicts_by_name(fleet())
    timing = ("detect", "during /health/deep", "during /health", "recover")  # no writer here: no write verdicts
    assert all(v[n].ok for n in timing), [str(v[n]) for n in timing]
    # the slowest target present at the start decides detection (B: 3.2 s), each target's window
    # opens at its own detection (B's cached pass at 2.2 s is not a failure), recovery waits for
    # every target there at the end (B: 15 s), not for C, which joined later; E, which joined during
    # the fault, is counted from its joining
    assert v["detect"].measured == pytest.approx(2.21) and "from B" in v["detect"].detail
    assert v["recover"].measured == pytest.approx(2.01) and "from B" in v["recover"].detail
    blind = verdicts_by_name(fleet(b_detects=False))
    assert not blind["detect"].ok and "never seen from B" in blind["detect"].detail
    drained = verdicts_by_name(fleet(outage=True))["during /health"]
    assert not drained.ok and "(none)" in drained.detail
    # a target that came into service well into the fault is held to it too: blind, it fails
    late = verdicts_by_name(fleet(late_blind=True))
    assert not late["detect"].ok and "never seen from F" in late["detect"].detail, str(late["detect"])
    assert not late["during /health/deep"].ok and "from F" in late["during /health/deep"].detail
    # a request of the sampler that got no answer names no target: it is not one more target
    v = verdicts_by_name(fleet(lost=True))
    assert v["detect"].ok and v["detect"].measured == pytest.approx(2.21), str(v["detect"])


def test_behind_a_listener_a_target_seen_seldom_is_late_only_if_it_answered_the_old_state_after_its_budget():
    """A canary's green target is routed one request in twenty: its first answer seen bounds its
    detection from above, it does not measure it. Late is an answer of the old state sent after
    the budget (2.75 s from the fault's start at 1 s) ended."""

    def with_target(points):
        obs = fleet()
        obs.samples += [Sample("/health/deep", t, st, 0.01, h, source="G") for t, st, h in points]
        return verdicts_by_name(obs)["detect"]

    seldom = with_target([(0.6, 200, "pass"), (5.0, 503, "fail"), (8.0, 503, "fail")])
    assert seldom.ok and seldom.measured == pytest.approx(4.01), str(seldom)
    late = with_target([(0.6, 200, "pass"), (4.0, 200, "pass"), (5.0, 503, "fail")])
    assert not late.ok and "late: t=  4.000s /health/deep -> 200 pass from G" in late.detail, str(late)
