"""The outage model (harness/simulation/outage.py) pinned on hand-computed cases: a shared dependency
outage of 10 minutes against two api tasks, under the incident's health design and the fleet-safe
one. Timings: ALB every 10 s, unhealthy after 2 failures, healthy again after 3 passes, grace 60 s,
RUNNING 20 s after launch, the app answering 5 s after that; the outage from t = 5 s to 605 s."""

import json

import pytest

from harness.simulation.outage import OutageConfig, compare, outage

pytestmark = [pytest.mark.harness, pytest.mark.unit]
BASE = OutageConfig(
    desired=2, alb_interval=10, healthy_threshold=3, unhealthy_threshold=2, grace=60, provisioning=20, boot=5
)
START, MINUTES = 5, 10  # the outage ends at 605 s


def test_incident_design_drains_the_fleet_and_replaces_it_every_grace_period():
    # checks at 10 and 20 fail: both targets unhealthy at 20, replaced at once (grace long over).
    # Each replacement: RUNNING at +20, checks at +30 and +40 fail, unhealthy at +40, grace over at
    # +60: replaced every 60 s, at 20, 80, ..., 620 (11 times per task; at 620 the checks of 610 and
    # 620 passed, 2 of the 3 an unhealthy target needs). The task launched at 620 is RUNNING at
    # 640, answers at 645, passes its first check at 650: full service 45 s after the outage.
    r = outage(BASE, "incident", START, MINUTES)
    assert r.replaced == 22 and r.exited == 0
    assert r.no_healthy_s == 650 - 20
    assert r.full_service_s == 45


def test_fleet_safe_design_keeps_every_task_in_service():
    r = outage(BASE, "fleet-safe", START, MINUTES)
    assert (r.replaced, r.exited, r.no_healthy_s, r.full_service_s) == (0, 0, 0, 0)


def test_fleet_safe_a_task_replaced_during_the_outage_cannot_enter_service_until_it_ends():
    # churn at 100 s: the new task's dependencies never answered, so its check fails ("starting"):
    # unhealthy at 140, replaced at 160, 220, ..., 580 (8 times). The one launched at 580 is RUNNING
    # at 600, answers at 605 (outage over: its dependencies answer), passes at 610.
    r = outage(OutageConfig(**{**BASE.__dict__, "retire": (100,)}), "fleet-safe", START, MINUTES)
    assert r.replaced == 8
    assert r.no_healthy_s == 0, "the other task stayed in service"
    assert r.full_service_s == 5


def test_a_database_outage_makes_new_tasks_exit_at_their_startup_timeout():
    # grace 120 s: a replacement launched at 20 is RUNNING at 40 and gives up waiting for Postgres at
    # 100, before its grace ends; relaunched every 80 s (the launches at 20, 100, ..., 500 exit: 7
    # per task; the one at 580 is RUNNING at 600 and answers at 605 once Postgres is back); healthy
    # at 610.
    cfg = OutageConfig(**{**BASE.__dict__, "grace": 120, "database": True, "startup_timeout": 60})
    r = outage(cfg, "incident", START, MINUTES)
    assert r.replaced == 2 and r.exited == 14
    assert r.no_healthy_s == 610 - 20
    assert r.full_service_s == 5
    safe = outage(cfg, "fleet-safe", START, MINUTES)
    assert (safe.replaced, safe.exited, safe.no_healthy_s) == (0, 0, 0)


def test_compare_and_bad_design():
    rows = [r.row() for r in compare(BASE, START, MINUTES)]
    assert [r["design"] for r in rows] == ["incident", "fleet-safe"]
    assert rows[0]["tasks_replaced"] == 22 and rows[0]["minutes_no_healthy_target"] == 10.5
    with pytest.raises(ValueError, match="design: expected one of incident, fleet-safe, got 'x'"):
        outage(BASE, "x", START, MINUTES)


def test_a_task_launched_with_no_provisioning_time_still_registers():
    """Provisioning 0: the replacement is RUNNING in the tick it was launched (a defect once left it
    unregistered for ever, and the fleet never came back)."""
    cfg = OutageConfig(**{**BASE.__dict__, "provisioning": 0})
    r = outage(cfg, "incident", START, MINUTES)
    assert r.full_service_s is not None and r.full_service_s < 60, r.events[-5:]


@pytest.mark.terraform
def test_the_outage_command_prints_its_comparison_as_json(capsys):
    from harness.cli import main

    assert main(["outage", "--env", "staging", "--minutes", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["outage"] == {"dependency": "mlflow", "start_s": 5, "minutes": 5.0}
    designs = {row["design"]: row for row in doc["designs"]}
    assert set(designs) == {"incident", "fleet-safe"}
    assert designs["fleet-safe"]["tasks_replaced"] == 0 and designs["fleet-safe"]["minutes_no_healthy_target"] == 0
    assert designs["incident"]["tasks_replaced"] > 0  # the shared outage drained the incident's fleet
    assert doc["api"]["desired"] >= 1 and doc["plan"].endswith("staging.tfvars")
