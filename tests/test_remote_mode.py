"""`pytest --target-url URL` verifies a stack the harness did not start: the remote suite alone runs
against the URLs; every other test (not about the target, or starting a stack of its own) is
deselected, saying why."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests import REPO

pytestmark = [pytest.mark.harness, pytest.mark.slow]


def test_target_url_runs_the_remote_suite_without_a_stack_of_its_own(stack, tmp_path):
    reports = tmp_path / "reports"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/remote",
            "suites/integration/test_stack.py",
            "suites/unit/test_config.py",
            "-k",
            "not contract",  # the contract test runs against this stack in the test command already
            "-p",
            "no:xdist",
            "-p",
            "no:html",
            "-q",
            "--target-url",
            stack.url("api"),
            "--mlflow-url",
            stack.url("mlflow"),
            "--allow-writes",
            "--reports-dir",
            str(reports),
            f"--junitxml={tmp_path / 'j.xml'}",
        ],
        cwd=REPO,
        env={**os.environ, "HARNESS_RUNTIME": "local"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    counts = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "6", "failures": "0", "errors": "0", "skipped": "0"}, counts
    # the unit file and the integration file ran nothing: only the remote suite's 6 above
    assert "the remote suite alone; deselected" in result.stdout and "not marked `remote`" in result.stdout
    assert not (reports / "timings.json").exists(), "a stack of its own was started (it recorded its start times)"


@pytest.mark.proof  # in the full proof (docs/pipeline.md, "Stages"): a nested remote session, about 27 s
def test_without_allow_writes_a_target_is_read_only(stack, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/remote",
            "-p",
            "no:xdist",
            "-p",
            "no:html",
            "-q",
            "-rs",
            "--target-url",
            stack.url("api"),
            "--mlflow-url",
            stack.url("mlflow"),
            "--reports-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "read-only: the target is not the harness's own stack and --allow-writes was not given" in result.stdout
