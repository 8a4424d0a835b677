"""Every test here that disrupts the shared fault stack leaves it as it found it."""

from collections.abc import Iterator

import pytest

from harness.budgets import Budgets
from pytest_harness.stack import restore


@pytest.fixture(autouse=True)
def leaves_the_fault_stack_healthy(request: pytest.FixtureRequest, budgets: Budgets) -> Iterator[None]:
    """After a test on the fault stack: every service running, ready and healthy again. A fault
    that kills a service restarts it as it ends, but does not wait for it: the next test would
    start its fault while MLflow was still starting (a scenario then saw MLflow down that its own
    fault never took down)."""
    stack = request.getfixturevalue("fault_stack") if "fault_stack" in request.fixturenames else None
    yield
    if stack is not None:
        restore(stack, budgets)
