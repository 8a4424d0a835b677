"""The planned tasks rehearsed on Docker as ECS would run them (python -m harness rehearse): the
staging plan comes into service within its grace periods and is replaced rolling, losing nothing
(the pull-request stage's rehearsal); the simulator agrees with it. The variants (a broken plan or
revision each) are in test_rehearsal_variants.py, in the full proof."""

import json

import pytest

from harness.gantt import rollout_svg
from harness.lifecycle import Step, disagreements, timeline
from harness.rehearsal.rehearsal import Rehearsal
from harness.simulation.replay import replay
from harness.simulation.simulator import SimConfig, simulation_svg
from pytest_harness.docker import leftovers

pytestmark = [pytest.mark.deployment, pytest.mark.docker, pytest.mark.slow]


# The simulator and the rehearsal agree on each event of the staging plan's rolling deployment
# within this many seconds: the rehearsal's checks run on the wall clock and its deployment acts on
# a one-second tick (the simulator's on the exact second), and the app's start lies somewhere within
# one ALB interval before its first passing check (docs/deployment.md, "The simulator and the
# rehearsal agree").
AGREEMENT_TOLERANCE = 5.0


def role(name: str) -> str | None:
    """The rehearsal's api tasks as the simulator names them: the running version old, the new one new."""
    return "new" if name.startswith("api (new revision)") else "old" if name.startswith("api") else None


@pytest.fixture(scope="module")
def staging_fleet(docker_client, applied_platform, tmp_path_factory):
    """The staging plan rehearsed once for the tests below: every task at the plan's counts (two api
    tasks, one MLflow), then the api's tasks replaced under client traffic."""
    reports = tmp_path_factory.mktemp("staging-fleet")
    rehearsal = Rehearsal("staging", ("mlflow", "api"), reports, platform=applied_platform)
    rehearsal.run()
    return rehearsal, reports


@pytest.mark.timeout(600)  # the fleet (five tasks) and, when it runs first, the session's apply (about 100 s)
def test_the_staging_plan_comes_into_service_and_a_rolling_replacement_loses_nothing(
    docker_client, staging_fleet, attach_picture
):
    rehearsal, reports = staging_fleet
    rollout = rehearsal.rollout
    attach_picture(
        rollout_svg(rollout, "staging plan rehearsed on Docker"), "deployment/rehearsal-staging", "rehearsal"
    )
    for t in rollout.tasks.values():
        assert t.ok, t.describe()
        dbinit = t.exit_of("dbinit")
        assert dbinit is not None and dbinit.code == 0, t.describe()
        assert dbinit.at <= t.at(Step.RUNNING) < t.at(Step.CONTAINER_HEALTHY), t.describe()
        assert t.at(Step.IN_SERVICE) == max(t.at(Step.CONTAINER_HEALTHY), t.at(Step.TARGET_HEALTHY))
    # the plan's counts (staging: two api tasks, one MLflow), started together, each with its dbinit;
    # then both api tasks replaced: both new ones start at once (maximum 200 % of 2), and each time
    # one comes into service an old one leaves (minimum healthy 100 %)
    assert list(rollout.tasks) == ["mlflow", "api", "api #2", "api (new revision)", "api (new revision) #2"]
    starts = [rollout.tasks[k].started for k in ("mlflow", "api", "api #2")]
    assert max(starts) - min(starts) < 5, starts  # together, not one after another
    summary = rehearsal.replacement_summary
    assert summary["outcome"] == "completed" and summary["replaced"] == 0, summary
    assert summary["events"][0]["started"] == ["api (new revision)", "api (new revision) #2"], summary
    stopped = [(e["at"], key) for e in summary["events"] for key in e.get("stopped", [])]
    assert sorted(key for _, key in stopped) == ["api", "api #2"], summary
    in_service = sorted(rollout.tasks[n].at(Step.IN_SERVICE) for n in rollout.tasks if role(n) == "new")
    for k, (at, key) in enumerate(sorted(stopped)):
        # the k-th old task leaves only once k+1 new ones are in service (both on the rollout's
        # clock: ``in_service`` alone counts from a task's own start)
        assert at >= in_service[k], (key, at, in_service)
        # drained for the deregistration delay, then stopped gracefully on SIGTERM; times are
        # rounded to 0.1 s: compare their differences rounded alike (92.6 - 62.6 is
        # 29.999999999999993 in floating point, and failed CI once)
        old = rollout.tasks[key]
        assert round(old.at(Step.STOPPING) - old.at(Step.DRAINING), 1) >= 30, old.describe()
        assert round(old.at(Step.STOPPED) - old.at(Step.STOPPING), 1) < 30 and old.exit_of("api").code == 0
        assert Step.KILLED not in old.steps, old.describe()
    assert summary["failed"] == 0 and all(n > 0 for n in summary["by_target"].values()), summary
    measured = json.loads((reports / "timings.json").read_text())["rehearsal"]
    assert set(measured) == {"api", "mlflow"}
    assert rehearsal.session_id and leftovers(docker_client, rehearsal.session_id) == []


def test_the_simulator_and_the_rehearsal_agree_on_the_staging_plan(staging_fleet, attach_picture):
    """The simulator given the rehearsal's own boot times (and its dbinit and stop times) orders the
    rolling deployment's events as the rehearsal did, each within the tolerance, and finishes
    within it too: the model that judges every plan is the deployment that really ran."""
    rehearsal, _ = staging_fleet
    rehearsed = rehearsal.rollout
    began = min(rehearsed.tasks[n].started for n in rehearsed.tasks if role(n) == "new")
    assert rehearsal.model is not None
    simulated = replay(SimConfig.from_timing(rehearsal.model.services["api"]), rehearsed, role)
    attach_picture(
        simulation_svg(simulated, "the staging api's rolling deployment, simulated with the rehearsal's boot times"),
        "deployment/rehearsal-vs-simulator",
        "the simulator, given the rehearsal's boot times",
    )
    ours = timeline(rehearsed, role, since=began)
    theirs = timeline(simulated.rollout, lambda name: name.split()[0])
    said = "\n".join(
        f"{a.at:6.1f}s {a.kind:24} | {b.at:6.1f}s {b.kind}" for a, b in zip(ours, theirs, strict=False)
    )  # the rehearsal's, then the simulator's
    said += f"\n{simulated.describe()}"
    print(said)  # the margins, in the report's captured output
    assert simulated.outcome == "completed", said
    assert disagreements(ours, theirs, AGREEMENT_TOLERANCE, ("the rehearsal", "the simulator")) == [], said
    finished = max(e.at for e in ours)
    assert abs(finished - simulated.time) <= AGREEMENT_TOLERANCE, (finished, simulated.time, said)
