"""Every scenario in scenarios/faults/*.yaml: inject, observe, then judge the recorded series
against the scenario's budgets. A new scenario file needs no new code."""

import pytest

from harness.faults.judge import draw, figures
from harness.faults.scenarios import load_all
from pytest_harness.faults import configured_for, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.disruptive]
SCENARIOS = load_all()  # a wrong file fails collection with the file, the field and what was expected


@pytest.fixture
def scenario_stack(request, fault_stack):
    """The fault stack, with the api reconfigured when the scenario asks for it (restored after)."""
    with configured_for(fault_stack, request.param) as stack:
        yield stack, request.param


@pytest.mark.parametrize("scenario_stack", [pytest.param(s, id=s.id) for s in SCENARIOS], indirect=True)
def test_scenario(scenario_stack, budgets, keep_figures):
    stack, scenario = scenario_stack
    observation, verdicts = run_scenario(stack, scenario, budgets)
    draw(observation, verdicts)  # the report's picture: fault window, detection and recovery against budgets
    observation.sampler.name = f"faults/{scenario.id}-{stack.runtime.name}"
    measured = figures(observation, verdicts, stack.runtime.name)
    keep_figures(measured)  # before the verdict, so a failed scenario keeps its figures
    failed = [str(v) for v in verdicts if not v.ok]
    assert not failed, "\n".join(failed)
