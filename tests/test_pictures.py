"""The report's pictures, rendered from recorded data: each is well-formed SVG and carries the marks
a reader looks for (fault window, budgets, the latency limit, grace periods, the circuit breaker,
SLO lines), found by the ids the renderers give them."""

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from harness.faults.sampler import Sample, picture
from harness.gantt import extent, rollout_marks, rollout_rows, rollout_svg
from harness.lifecycle import Lifecycle, Milestone, Rollout, Shift, Step
from harness.pictures import OUTCOMES, PHASES, Mark, Panel, Window, charts, gantt, health_timeline, runs, thin
from harness.simulation.simulator import SimConfig, simulate, simulation_svg
from harness.stack.stack import record_timings

pytestmark = pytest.mark.harness
DATA = Path(__file__).parent / "data"
SVG = "{http://www.w3.org/2000/svg}"


def ids(svg: str) -> set[str]:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed
    assert root.tag == f"{SVG}svg"
    return {el.get("id") for el in root.iter() if el.get("id")}


def fills(svg: str) -> set[str]:
    return {c.lower() for c in __import__("re").findall(r"fill: ?(#[0-9A-Fa-f]{6})", svg)}


def test_a_recorded_fault_scenario_draws_its_window_budgets_and_limit():
    """Recorded by suites/faults (postgres-frozen, local runtime): the kept series draws again."""
    record = json.loads((DATA / "timeline-postgres-frozen.json").read_text())
    svg = picture(record, "postgres-frozen")
    found = ids(svg)
    for gid in ("fault-window", "detected", "detected-budget", "recovered", "recovered-budget", "max-latency"):
        assert gid in found, f"{gid} missing from the picture"
    assert "<dc:title>postgres-frozen</dc:title>" in svg
    for endpoint in ("/health", "/health/deep", "/health/live"):
        assert f">{endpoint}<" in svg
    # the outage shows as warn on /health and fail on /health/deep
    assert {OUTCOMES["pass"].lower(), OUTCOMES["warn"].lower(), OUTCOMES["fail"].lower()} <= fills(svg)


def test_marks_that_never_happened_or_failed_still_show_and_a_picture_without_marks_has_none():
    samples = [Sample("/health", t / 10, 200, 0.002, "pass") for t in range(50)]
    svg = health_timeline(
        samples,
        title="t",
        windows=[Window("fault-window", 1.0, 3.0, "fault")],
        marks=[Mark("recovered", None, "recovered never: FAILED", budget_at=4.0, ok=False)],
    )
    found = ids(svg)
    assert "recovered-budget" in found and "recovered" not in found  # no line where nothing happened
    assert "recovered never: FAILED" in svg
    plain = ids(health_timeline(samples, title="t"))
    assert not {"fault-window", "max-latency", "detected"} & plain


def test_an_empty_series_is_still_a_picture():
    assert "no samples" in health_timeline([], title="nothing answered")


def test_status_runs_merge_consecutive_outcomes_and_each_sample_stands_until_the_next():
    s = [
        Sample("/health", 0.0, 200, 0.01, "pass"),
        Sample("/health", 0.1, 200, 0.01, "pass"),
        Sample("/health", 0.2, 200, 0.01, "warn"),
        Sample("/health", 0.35, None, 1.0, error="ReadTimeout"),
        Sample("/health", 0.5, 503, 0.01, "fail"),
    ]
    assert runs(s, 0.1) == [("pass", 0.0, 0.2), ("warn", 0.2, 0.35), ("no answer", 0.35, 0.5), ("fail", 0.5, 0.6)]


def test_a_long_series_keeps_its_slowest_sample():
    samples = [Sample("/health", t / 10, 200, 0.002, "pass") for t in range(5000)]
    samples[2345] = Sample("/health", 234.5, 200, 4.321, "pass")
    kept = thin(samples)
    assert len(kept) <= 1200 and samples[2345] in kept and kept == sorted(kept, key=lambda s: s.t)
    assert len(health_timeline(samples, title="long", max_latency=5.0)) < 400_000


STAGING_API = SimConfig(
    desired=2,
    container_interval=10,
    container_timeout=5,
    container_retries=3,
    container_start=30,
    alb_interval=10,
    alb_timeout=5,
    healthy_threshold=2,
    unhealthy_threshold=3,
    grace=120,
    deregistration_delay=30,
)


def spans(row):
    return [(s.phase, s.start, s.end) for s in row.spans]


def test_the_simulated_deployment_draws_one_row_per_task_with_its_phases():
    """Hand-computed: the app answers 25 s after start. Container checks: 10 s fails and times out
    (5 s), so the next runs at 25 s and passes (container healthy). ALB checks every 10 s: 10 and 20
    fail, 30 passes (target healthy, in service). Both old tasks drain for 30 s; done at 60 s."""
    result = simulate(STAGING_API, boot=25.0)
    rows = rollout_rows(result.rollout, result.time)
    assert [r.label for r in rows] == ["old 1", "old 2", "new 1", "new 2"]
    assert result.outcome == "completed" and result.time == 60.0
    assert spans(rows[0]) == [("in service", 0.0, 30.0), ("draining", 30.0, 60.0)]
    assert spans(rows[2]) == [
        ("start period", 0.0, 25.0),
        ("container healthy", 25.0, 30.0),
        ("in service", 30.0, 60.0),
    ]
    assert [m.at for m in rows[2].marks] == [120.0]  # the grace period's end: after the deployment
    found = ids(simulation_svg(result, "api (staging)"))
    assert "circuit-breaker" not in found
    assert {"completed", "grace-period-end-2", "grace-period-end-3"} <= found
    assert PHASES["draining"].lower() in fills(simulation_svg(result, "x"))


def test_a_broken_dependency_draws_replaced_tasks_the_grace_period_and_the_circuit_breaker():
    from dataclasses import replace

    result = simulate(replace(STAGING_API, dependencies_ok=False), boot=25.0)
    assert result.outcome == "rolled_back"
    rows = rollout_rows(result.rollout, result.time)
    new1 = next(r for r in rows if r.label == "new 1")
    # never healthy: the target is unhealthy after three failed ALB checks (10, 20, 30 s), which ECS
    # ignores until the grace period is over (120 s); then it replaces the task
    assert spans(new1)[:2] == [("start period", 0.0, 30.0), ("unhealthy", 30.0, 120.0)]
    assert spans(new1)[2][0] == "replaced"
    assert all(spans(r) == [("in service", 0.0, result.time)] for r in rows if r.label.startswith("old"))
    assert not new1.marks[0].ok  # its grace period ended without it in service
    svg = simulation_svg(result, "api (staging, broken dependency)")
    assert {"circuit-breaker", "grace-period-end-2"} <= ids(svg) and "completed" not in ids(svg)
    assert PHASES["replaced"].lower() in fills(svg)


def life(name: str, grace: float, started: float = 0.0, failure: str = "", group: str = "", **at: float) -> Lifecycle:
    """A lifecycle on the rollout's axis; ``at``: step name (lower case) -> seconds."""
    steps = {Step.STARTED: started} | {Step[k.upper()]: v for k, v in at.items()}
    return Lifecycle(name, grace, started, steps, failure=failure, group=group)


def test_the_rehearsal_draws_its_tasks_on_one_axis():
    """Steps as the rehearsal records them (seconds on the rollout's axis)."""
    api = life(
        "api", 60.0, running=1.2, container_healthy=6.1, target_healthy=8.0, in_service=8.0, draining=40.0,
        stopping=70.1, stopped=71.0,
    )  # fmt: skip
    new = life("api (new revision)", 60.0, 30.0, container_healthy=35.0, target_healthy=37.5, in_service=37.5)
    broken = life("mlflow", 40.0, 0.5, failure="never healthy", running=1.5, replaced=40.7)
    rollout = Rollout({t.name: t for t in (api, new, broken)})
    last, end = extent(rollout)
    assert (last, end) == (72.0, 92.0)  # the axis shows the last grace period's end (30 + 60 s)
    rows = rollout_rows(rollout, last, end)
    assert spans(rows[0]) == [
        ("provisioning", 0.0, 1.2),  # dbinit ran and exited 0 before the api's container started
        ("start period", 1.2, 6.1),
        ("container healthy", 6.1, 8.0),
        ("in service", 8.0, 40.0),
        ("draining", 40.0, 70.1),
        ("stopping", 70.1, 71.0),  # SIGTERM: the api finished its own requests and exited
        ("stopped", 71.0, 72.0),
    ]
    assert spans(rows[1])[-1] == ("in service", 37.5, 72.0)
    assert spans(rows[2]) == [("provisioning", 0.5, 1.5), ("start period", 1.5, 40.7), ("replaced", 40.7, 92.0)]
    assert [m.at for m in rows[2].marks] == [40.5] and not rows[2].marks[0].ok


def test_a_forced_stop_is_drawn_as_sigkill_after_the_stop_timeout():
    old = life("api", 60.0, running=1.0, in_service=8.0, draining=10.0, stopping=40.0, killed=50.0, stopped=50.4)
    rows = rollout_rows(Rollout({"api": old}), 51.0)
    assert spans(rows[0])[-3:] == [("stopping", 40.0, 50.0), ("SIGKILL", 50.0, 50.4), ("stopped", 50.4, 51.0)]
    assert PHASES["SIGKILL"].lower() in fills(gantt(rows, title="forced stop"))


def test_charts_over_dates_carry_the_slo_line_and_a_date_axis():
    day = datetime(2026, 11, 20, 2, 0)
    points = [(day + timedelta(days=i), 100.0 + i) for i in range(8)]
    svg = charts(
        [
            Panel("p95", {"steady": points}, limit=250.0, unit="ms"),
            Panel("errors", {"steady": [(p[0], 0.0) for p in points]}, limit=1.0, unit="%"),
        ],
        title="steady",
        xlabel="run date",
    )
    found = ids(svg)
    assert {"limit-p95", "limit-errors"} <= found
    assert "limit 250 ms" in svg and "run date" in svg
    assert "Nov" in svg  # the concise date axis names the month


def test_startup_times_draw_as_a_trend_with_the_readiness_budgets(tmp_path):
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"docker": {"api": {"samples": [9.0, 10.0], "ready_s": 10.0}}}))  # before dates
    record_timings(path, "docker", {"api": 10.4, "mlflow": 12.0})
    record_timings(path, "local", {"api": 1.2, "mlflow": 6.0})
    kept = json.loads(path.read_text())
    assert kept["docker"]["api"]["samples"] == [9.0, 10.0, 10.4] and len(kept["docker"]["api"]["sampled_at"]) == 1
    svg = (tmp_path / "timings.svg").read_text()
    assert {"limit-api", "limit-mlflow"} <= ids(svg)
    assert "budget 30 s" in svg and "budget 90 s" in svg and ">docker<" in svg and ">local<" in svg


def test_a_blue_green_rehearsal_shows_blue_kept_without_traffic_and_each_shift_of_the_listener():
    blue = life(
        "api", 60.0, group="blue", container_healthy=6.0, target_healthy=8.0, in_service=8.0, draining=52.0,
        stopping=82.0, stopped=83.0,
    )  # fmt: skip
    green = life("api (green)", 60.0, 32.0, group="green", container_healthy=37.0, in_service=40.0)
    rollout = Rollout(
        {"api": blue, "api (green)": green},
        [Shift(40.0, 10), Shift(46.0, 100)],
        {Milestone.GREEN_IN_SERVICE: 40.0, Milestone.TERMINATION_WAIT_OVER: 52.0},
    )
    rows = rollout_rows(rollout, *extent(rollout))
    assert spans(rows[0])[2:] == [
        ("in service", 8.0, 46.0),
        ("kept, no traffic", 46.0, 52.0),
        ("draining", 52.0, 82.0),
        ("stopping", 82.0, 83.0),
        ("stopped", 83.0, 84.0),
    ]
    assert not any(s.phase == "kept, no traffic" for s in rows[1].spans)  # green is not blue
    assert [(m.gid, m.at) for m in rollout_marks(rollout)] == [("traffic-10", 40.0), ("traffic-100", 46.0)]
    svg = rollout_svg(rollout, "blue/green")
    assert {"traffic-10", "traffic-100"} <= ids(svg)


def test_a_green_replaced_and_then_stopped_by_the_rollback_draws_its_phases_in_time_order():
    """The rollback stops a green that was already judged replaced: "stopped" is listed before
    "replaced" among the phases, and must not swallow the start period."""
    green = life("api (green)", 60.0, 30.0, group="green", running=31.0, replaced=90.6, stopping=91.0, stopped=92.1)
    rows = rollout_rows(Rollout({"api (green)": green}), 93.0)
    assert spans(rows[0]) == [
        ("provisioning", 30.0, 31.0),
        ("start period", 31.0, 90.6),
        ("replaced", 90.6, 92.1),
        ("stopped", 92.1, 93.0),
    ]
