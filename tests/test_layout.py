"""The rule for where a test lives is checked at collection: a harness test outside tests/, or a
platform test without its suite's marker, stops the run naming it."""

from types import SimpleNamespace

import pytest

from pytest_harness.layout import misplaced, pytest_collection_modifyitems
from tests import REPO

pytestmark = [pytest.mark.harness, pytest.mark.unit]


@pytest.mark.parametrize(
    "path, markers, broken",
    [
        ("tests/test_wait.py", {"harness", "unit"}, None),
        ("tests/test_wait.py", {"unit"}, "mark it `harness`"),
        ("suites/faults/test_scenarios.py", {"faults", "disruptive"}, None),
        ("suites/faults/test_scenarios.py", {"integration"}, "carries its suite's marker `faults`"),
        ("suites/unit/test_health.py", {"unit", "harness"}, "the `harness` marker belongs to tests/"),
    ],
)
def test_the_rule(path, markers, broken):
    why = misplaced(REPO / path, markers, REPO)
    assert (why is None) if broken is None else (broken in why), why


def item(path: str, *markers: str) -> SimpleNamespace:
    marks = [SimpleNamespace(name=m) for m in markers]
    return SimpleNamespace(path=REPO / path, nodeid=f"{path}::test_x", iter_markers=lambda: iter(marks))


def test_collection_stops_naming_the_misplaced_test():
    good = [item("tests/test_wait.py", "harness"), item("suites/e2e/test_containers.py", "e2e", "docker")]
    config = SimpleNamespace(rootpath=REPO)
    pytest_collection_modifyitems(config, good)  # nothing to say
    with pytest.raises(pytest.UsageError, match=r"suites/load/test_x.py::test_x: .*marker `load`"):
        pytest_collection_modifyitems(config, [*good, item("suites/load/test_x.py", "unit")])
