"""The write path under a seeded nemesis (``harness.nemesis``): four clients write with keys and
retry as clients do while faults drawn from the kinds table run on Postgres, MLflow and the api's
links to them; after settle the checker reads both stores. A failing seed names its violations and
the command that replays it; every seed keeps its history and timeline in reports/nemesis/.

CI runs the seeds below, and every seed kept in scenarios/nemesis/, on every change; the nightly
workflow runs many more (``python -m harness nemesis --seed 1 --seeds 100 --keep-failing ...``)."""

import json
import os

import pytest

from harness.cli.nemesis import keep, replay_command
from harness.nemesis.run import run
from harness.nemesis.schedule import draw, load_regressions
from harness.paths import project

# alone: its MLflow restarts saturate the machine; `make test` runs it after the others, by itself
pytestmark = [pytest.mark.faults, pytest.mark.disruptive, pytest.mark.alone, pytest.mark.proof]
DURATION = 15.0
CI_SEEDS = [(int(s), DURATION) for s in os.environ.get("HARNESS_NEMESIS_SEEDS", "1,2").split(",")]
# every seed that once found a violation, replayed on every run (python -m harness nemesis --keep-failing)
KEPT = [(r.seed, r.duration) for r in load_regressions(project().scenarios_dir / "nemesis")]


@pytest.mark.parametrize(("seed", "duration"), CI_SEEDS + KEPT, ids=[f"seed-{s}" for s, _ in CI_SEEDS + KEPT])
def test_every_acknowledged_write_is_recorded_exactly_once_under_the_nemesis(
    seed, duration, fault_stack, attach_picture, pytestconfig
):
    result = run(fault_stack, draw(seed, duration))
    history, picture = keep(result, pytestconfig.rootpath / "reports" / "nemesis")
    attach_picture(picture.read_text(), f"nemesis/seed-{seed}", f"nemesis seed {seed}")
    took = [a for a in result.faults if a.start is not None]
    assert took, f"no fault of seed {seed} took effect: {[a.error for a in result.faults]}"
    keys = {a.key for a in result.attempts}
    assert len(keys) >= 8, f"the clients sent {len(keys)} keys: too few to judge"
    replay = replay_command(seed, duration, fault_stack.runtime.name)
    assert result.ok, "\n".join([*result.violations, f"history: {history}", f"replay: {replay}"])


def test_every_log_line_the_stack_wrote_under_the_nemesis_is_json(fault_stack):
    """After the seeds above (and the fault scenarios): the api's and MLflow's logs parse line by line."""
    broken = {}
    for name in ("api", "mlflow"):
        lines = [line for line in fault_stack.services[name].logs(tail=5000).splitlines() if line.strip()]
        assert lines, f"no log of {name}"
        bad = []
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                bad.append(line[:200])
        if bad:
            broken[name] = bad[:5]
    assert not broken, broken
