"""Every scenario in scenarios/faults/*.yaml: inject, observe, then judge the recorded series
against the scenario's budgets. A new scenario file needs no new code."""

import pytest
import pytest_html

from fixtures.faults import budget_names
from harness.faults import inject as faults
from harness.faults.scenarios import load_all

pytestmark = [pytest.mark.faults, pytest.mark.disruptive]
SCENARIOS = load_all()  # a wrong file fails collection with the file, the field and what was expected


@pytest.fixture
def scenario_stack(request, fault_stack):
    """The fault stack, with the api reconfigured when the scenario asks for it (restored after)."""
    scenario = request.param
    original = fault_stack.config
    if scenario.api_env:
        fault_stack.replace_api(original.with_api_env(**scenario.api_env))
    yield fault_stack, scenario
    if scenario.api_env:
        fault_stack.replace_api(original)


@pytest.mark.parametrize("scenario_stack", [pytest.param(s, id=s.id) for s in SCENARIOS], indirect=True)
def test_scenario(scenario_stack, budgets, fault_results, record_property, extras):
    stack, scenario = scenario_stack
    names = budget_names(stack, budgets)
    recover = scenario.budget("recover_within", names)
    outcome = faults.run(stack, scenario, settle=(recover or 10.0) + budgets.detect)
    start, end = outcome.fault_start, outcome.fault_end
    health = outcome.series("/health")
    during = scenario.expect.get("during", {})
    measured: dict = {"scenario": scenario.name, "fault": f"{scenario.kind} {scenario.target}",
                      "duration_s": round(end - start, 2), "runtime": stack.runtime.name,
                      "applied": outcome.applied}
    fault_results.append(measured)  # filled in below; reported even when an assertion fails
    extras.append(pytest_html.extras.json(measured, name="measured vs budget"))  # same dict, filled below
    if scenario.is_network:
        assert outcome.applied, f"the {scenario.kind} toxic on {scenario.target} never took effect"
        if scenario.params.get("limit"):
            assert outcome.applied == scenario.params["limit"], outcome.applied

    detect_budget = scenario.budget("detect_within", names)
    detected_at = start
    want = during.get("/health")
    if want and not want.get("always") and detect_budget is not None:
        hit = next((s for s in health if s.t >= start and s.status == want["status"]
                    and (want.get("health") is None or s.health == want["health"])), None)
        assert hit is not None, f"/health never answered {want} during the fault: {[str(s) for s in health[-10:]]}"
        measured["detected_s"] = round(hit.t + hit.latency - start, 2)
        detected_at = hit.t
        measured["detect_budget_s"] = round(detect_budget, 2)
        assert measured["detected_s"] <= detect_budget, str(hit)

    for endpoint, want in during.items():
        # from the detection on (itself held to its budget above) to the end of the fault
        lo = start if want.get("always") else detected_at
        hi = end + (recover or 0) if want.get("always") else end
        window = [s for s in outcome.series(endpoint) if lo <= s.t and s.t + s.latency <= hi]
        wrong = [str(s) for s in window if s.status != want["status"]
                 or (want.get("health") is not None and s.health != want["health"])]
        assert window, f"no {endpoint} samples between {lo:.2f}s and {hi:.2f}s"
        assert not wrong, f"{endpoint} expected {want} from {lo:.2f}s to {hi:.2f}s; got: {wrong[:5]}"

    if recover is not None:
        back = next((s for s in health if s.t >= end and s.status == 200 and s.health == "pass"), None)
        assert back is not None, f"/health never passed again after the fault: {[str(s) for s in health[-5:]]}"
        measured["recovered_s"] = round(back.t + back.latency - end, 2)
        measured["recover_budget_s"] = round(recover, 2)
        assert measured["recovered_s"] <= recover, str(back)

    max_latency = scenario.budget("max_latency", names)
    if max_latency is not None:
        slowest = max((s for s in health if s.status is not None), key=lambda s: s.latency)
        measured["slowest_s"] = round(slowest.latency, 3)
        measured["slowest_budget_s"] = round(max_latency, 2)
        assert not [s for s in health if s.status is None], "a /health call got no answer at all"
        assert slowest.latency <= max_latency, str(slowest)

    if scenario.expect.get("liveness_unaffected"):
        live = outcome.series("/health/live")
        assert live and all(s.status == 200 for s in live), [str(s) for s in live if s.status != 200][:5]

    if scenario.expect.get("no_loss"):
        w = outcome.writer
        measured.update({"writes": len(w.results), "acknowledged": len(w.acknowledged),
                         "clear_503": len(w.clear_failures), "unclear": len(w.unclear_failures)})
        assert w.acknowledged, "no write succeeded at all"
        assert not w.unclear_failures, [vars(r) for r in w.unclear_failures[:5]]
        missing = faults.missing_writes(stack, w.acknowledged)
        measured["missing"] = len(missing)
        assert not missing, missing[:5]

    measured["passed"] = True
    for key, value in measured.items():
        record_property(key, value)
