"""Which way imports go is a check that fails (import-linter's contracts in .importlinter), and it
fails on a copy of the code with one wrong import put back."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO

pytestmark = [pytest.mark.harness, pytest.mark.unit]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("harness", "services", "harness_locust", "pytest_harness", "suites", "tests")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(root / ".importlinter")],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_contract_is_kept():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("harness/wait.py", "import harness.stack.stack", "The base imports no wing"),
        ("harness/stack/stack.py", "import harness.faults.kinds", "The CLI stands on the wings"),
        ("harness/load/runner.py", "import harness.faults.judge", "The CLI stands on the wings"),
        ("harness/stack/api.py", "import services.api.config", "black box"),
        ("harness/load/report.py", "import harness_locust.gate", "black box"),
        ("harness_locust/shape.py", "import harness.plan.timing", "Locust's files import the harness"),
        ("services/api/app.py", "import harness.wait", "The services import nothing"),
        ("pytest_harness/stack.py", "import suites.integration.test_stack", "The plugin never imports"),
        ("harness/rehearsal/driver.py", "import harness.simulation.simulator", "The CLI stands on the wings"),
        ("harness/simulation/simulator.py", "import harness.rehearsal.balancer", "The CLI stands on the wings"),
        ("harness/plan/rules.py", "import harness.rehearsal.platform", "The CLI stands on the wings"),
        ("harness/plan/timing.py", "import harness.simulation.outage", "The CLI stands on the wings"),
        ("harness/stack/stack.py", "import harness.plan.timing", "The CLI stands on the wings"),
        ("harness/gantt.py", "import harness.simulation.simulator", "The base imports no wing"),
        ("harness/lifecycle.py", "import harness.rehearsal.tasks", "The base imports no wing"),
        ("harness/matcher.py", "import harness.plan.timing", "The base imports no wing"),
        ("tests/test_wait.py", "import services.api.health", "The harness's own tests import nothing"),
    ],
    ids=[
        "base->wing",
        "stack->faults",
        "load<->faults",
        "harness->services",
        "harness->locust-side",
        "locust-side->plan",
        "services->harness",
        "plugin->suites",
        "rehearsal->simulation",
        "simulation->rehearsal",
        "plan->rehearsal",
        "plan->simulation",
        "stack->plan",
        "gantt->simulation",
        "lifecycle->rehearsal",
        "matcher->plan",
        "tests->services",
    ],
)
def test_a_wrong_import_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copy(REPO / ".importlinter", tmp_path)
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # put back by the test\n")
    result = lint(tmp_path)
    assert result.returncode != 0, result.stdout[-2000:]
    assert contract in result.stdout.replace("\n", " ") and "BROKEN" in result.stdout, result.stdout[-2000:]
