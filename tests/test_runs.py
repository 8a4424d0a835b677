"""One folder per run and the history across runs (harness/pipeline/runs.py, ``harness
archive-reports``, the end of ``make report``): two runs in a row keep both, ``latest`` points at
the newest, the front door links into it and lists every kept run, old runs are pruned, and a test
whose outcome changed between runs is shown."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.errors import ConfigurationError
from harness.pipeline import runs
from tests.test_pipeline import junit

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def a_run(reports: Path, failures: int = 0, boot: float = 10.5, detected: float = 2.0) -> None:
    """What a stage leaves at the top of reports/: its JUnit file, HTML page, durations and figures."""
    junit(reports / "junit-pr.xml", "t", 4, failures)
    (reports / "pr.html").write_text(f"<html>{failures} failures</html>")
    (reports / "durations-pr.json").write_text(json.dumps({"tests": {"tests/test_a.py::t0": {"seconds": 1.5}}}))
    (reports / "timings.json").write_text(json.dumps({"docker": {"api": {"max_s": boot, "samples": [boot]}}}))
    (reports / "timings.lock").write_text("")
    row = {"scenario": "postgres-frozen", "runtime": "docker", "detected_s": detected, "detect_budget_s": 2.75}
    (reports / "faults.json").write_text(json.dumps([{**row, "passed": detected <= 2.75}]))
    (reports / "faults").mkdir(exist_ok=True)
    (reports / "faults" / "postgres-frozen-docker.svg").write_text("<svg/>")


def at(second: int) -> datetime:
    return datetime(2026, 12, 7, 12, 0, second, tzinfo=UTC)


def test_two_runs_in_a_row_keep_both_and_the_front_door_links_the_newest(tmp_path):
    reports = tmp_path / "reports"
    a_run(reports, failures=0)
    first, _ = runs.archive(reports, [reports], "abc1234", at(1))
    a_run(reports, failures=1, boot=12.0)  # the next run overwrites the working files...
    second, total = runs.archive(reports, [reports], "abc1234", at(2))
    assert first != second and first.is_dir() and second.is_dir()  # ...the filed ones stay
    assert (first / "pr.html").read_text() == "<html>0 failures</html>"
    assert (second / "pr.html").read_text() == "<html>1 failures</html>"
    assert (reports / "latest").resolve() == second.resolve()
    assert not total.passed and (second / "junit.xml").exists() and (second / "index.html").exists()
    assert not (second / "timings.lock").exists() and not (second / "runs").exists()
    assert (reports / "timings.json").exists()  # the plan's boot estimates still read it at the top
    door = (reports / "index.html").read_text()
    assert door.startswith("<!doctype html>") and "FAILED: 4 tests, 1 failed" in door
    assert f"runs/{second.name}/pr.html" in door and f"runs/{second.name}/faults/postgres-frozen-docker.svg" in door
    assert f'href="runs/{first.name}/index.html"' in door and f'href="runs/{second.name}/index.html"' in door
    assert 'src="trends.svg"' in door and "limit-fault-detection-worst" in (reports / "trends.svg").read_text()
    history = runs.read_history(reports)
    assert [h["run"] for h in history] == [first.name, second.name]
    assert history[1]["boot_s"] == {"docker api": 12.0} and history[1]["faults"][0]["detected_s"] == 2.0
    assert history[1]["outcomes"]["m::tf0"] == ["failed", 2.0]
    assert (reports / "summary.md").read_text().startswith("## FAILED") and (reports / "junit.xml").exists()


def test_the_command_prints_one_path_the_front_door(tmp_path):
    reports = tmp_path / "reports"
    a_run(reports)
    done = subprocess.run(
        [sys.executable, "-m", "harness", "archive-reports", "--reports-dir", str(reports)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(reports / "index.html")], done.stdout
    assert "filed under" in done.stderr


def test_old_runs_are_pruned_and_the_history_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "KEEP_RUNS", 2)
    monkeypatch.setattr(runs, "KEEP_HISTORY", 3)
    monkeypatch.setattr(runs.append_history, "__defaults__", (3,))
    monkeypatch.setattr(runs.prune, "__defaults__", (2,))
    reports = tmp_path / "reports"
    filed = []
    for second in range(4):
        a_run(reports)
        filed.append(runs.archive(reports, [reports], "abc1234", at(second))[0].name)
    assert sorted(p.name for p in (reports / "runs").iterdir()) == filed[-2:]
    assert [h["run"] for h in runs.read_history(reports)] == filed[-3:]
    door = (reports / "index.html").read_text()
    assert f"{filed[1]} (pruned)" in door and f'href="runs/{filed[1]}/index.html"' not in door


def test_a_test_whose_outcome_changed_between_runs_is_shown(tmp_path):
    reports = tmp_path / "reports"
    for second, failed in enumerate([False, True, False]):
        a_run(reports)
        verdict = '<failure message="no"/>' if failed else ""
        (reports / "junit-pr.xml").write_text(
            '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="2" failures="0" errors="0" skipped="0"'
            f' time="3"><testcase classname="m" name="steady" time="1"/><testcase classname="m" name="flaky"'
            f' time="2">{verdict}</testcase></testsuite></testsuites>'
        )
        runs.archive(reports, [reports], "abc1234", at(second))
    history = runs.read_history(reports)
    assert runs.changed(history) == [("m::flaky", {"passed": 2, "failed": 1}, history[1]["run"])]
    assert (
        f"<td>m::flaky</td><td>failed 1, passed 2</td><td>{history[1]['run']}</td>"
        in (reports / "index.html").read_text()
    )
    assert "m::steady" not in (reports / "index.html").read_text().split("outcome changed")[1]


def test_changed_ignores_tests_that_always_fail_or_always_pass():
    history = [
        {"run": "1", "outcomes": {"a": ["passed", 1], "b": ["failed", 1], "c": ["passed", 1]}},
        {"run": "2", "outcomes": {"a": ["passed", 1], "b": ["failed", 1], "c": ["error", 1]}},
    ]
    assert runs.changed(history) == [("c", {"passed": 1, "error": 1}, "2")]


def test_several_job_folders_are_filed_each_in_a_folder_of_its_name(tmp_path):
    reports, one, two = tmp_path / "reports", tmp_path / "shard-1", tmp_path / "shard-2"
    junit(one / "junit-pr-shard-1of2.xml", "a", 2, 0)
    junit(two / "junit-pr-shard-2of2.xml", "b", 3, 1)
    run_dir, total = runs.archive(reports, [one, two], "abc1234", at(1))
    assert (total.tests, total.failures) == (5, 1)
    assert (run_dir / "shard-1" / "junit-pr-shard-1of2.xml").exists() and (run_dir / "junit.xml").exists()


def test_a_run_that_cannot_be_filed_leaves_no_half_run(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "pr.html").write_text("<html></html>")  # no JUnit file: nothing to merge
    with pytest.raises(ConfigurationError, match="JUnit files"):
        runs.archive(reports, [reports], "abc1234", at(1))
    assert not any((reports / "runs").iterdir()) and not (reports / "history.jsonl").exists()
