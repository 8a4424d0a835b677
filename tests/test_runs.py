"""One folder per run and the history across runs (harness/pipeline/runs.py, ``harness
archive-reports``, the end of ``make report``): two runs in a row keep both, ``latest`` points at
the newest, the front door links into it and lists every kept run, old runs are pruned, and a test
whose outcome changed between runs is shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.errors import ConfigurationError
from harness.pipeline import history as kept
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
    first, _, _ = runs.archive(reports, [reports], "abc1234", at(1))
    a_run(reports, failures=1, boot=12.0)  # the next run overwrites the working files...
    second, total, ok = runs.archive(reports, [reports], "abc1234", at(2))
    assert first != second and first.is_dir() and second.is_dir()  # ...the filed ones stay
    assert (first / "pr.html").read_text() == "<html>0 failures</html>"
    assert (second / "pr.html").read_text() == "<html>1 failures</html>"
    assert (reports / "latest").resolve() == second.resolve()
    assert not total.passed and not ok and (second / "junit.xml").exists() and (second / "index.html").exists()
    assert not (second / "timings.lock").exists() and not (second / "runs").exists()
    assert (reports / "timings.json").exists()  # the plan's boot estimates still read it at the top
    door = (reports / "index.html").read_text()
    assert door.startswith("<!doctype html>") and "FAILED: 4 tests, 1 failed" in door
    assert f"runs/{second.name}/pr.html" in door and f"runs/{second.name}/faults/postgres-frozen-docker.svg" in door
    assert f'href="runs/{first.name}/index.html"' in door and f'href="runs/{second.name}/index.html"' in door
    assert 'href="latest/' not in door  # an uploaded artifact or a copy may not keep the link
    assert 'src="trends.svg"' in door and "limit-fault-detection-worst" in (reports / "trends.svg").read_text()
    history = kept.read_history(reports)
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
    monkeypatch.setattr(kept, "KEEP_HISTORY", 3)
    reports = tmp_path / "reports"
    filed = []
    for second in range(4):
        a_run(reports)
        filed.append(runs.archive(reports, [reports], "abc1234", at(second))[0].name)
        door = (reports / "index.html").read_text()
        assert all(f'href="runs/{name}/index.html"' not in door for name in filed[:-2])  # no link to a pruned run
    assert sorted(p.name for p in (reports / "runs").iterdir()) == filed[-2:]
    assert [h["run"] for h in kept.read_history(reports)] == filed[-3:]
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
    history = kept.read_history(reports)
    assert kept.changed(history) == [("m::flaky", {"passed": 2, "failed": 1}, history[1]["run"], "passed", True)]
    row = f"<td>m::flaky</td><td>failed 1, passed 2</td><td>{history[1]['run']}</td><td>passed</td><td>yes</td>"
    assert row in (reports / "index.html").read_text()
    assert "m::steady" not in (reports / "index.html").read_text().split("outcome changed")[1]


def test_changed_tells_flaky_from_broken_and_fixed_and_ignores_steady_tests():
    history = [
        {"run": "1", "commit": "a", "outcomes": {"a": ["passed", 1], "b": ["failed", 1], "c": ["passed", 1]}},
        {"run": "2", "commit": "b", "outcomes": {"a": ["passed", 1], "b": ["failed", 1], "c": ["error", 1]}},
        {"run": "3", "commit": "c", "outcomes": {"a": ["passed", 1], "b": ["passed", 1], "c": ["error", 1]}},
    ]
    assert kept.changed(history) == [
        ("c", {"passed": 1, "error": 2}, "3", "error", False),  # broken since commit b
        ("b", {"failed": 2, "passed": 1}, "2", "passed", False),  # fixed at commit c
    ]


def test_several_job_folders_are_filed_each_in_a_folder_of_its_name(tmp_path):
    reports, one, two = tmp_path / "reports", tmp_path / "shard-1", tmp_path / "shard-2"
    junit(one / "junit-pr-shard-1of2.xml", "a", 2, 0)
    junit(two / "junit-pr-shard-2of2.xml", "b", 3, 1)
    run_dir, total, _ = runs.archive(reports, [one, two], "abc1234", at(1))
    assert (total.tests, total.failures) == (5, 1)
    assert (run_dir / "shard-1" / "junit-pr-shard-1of2.xml").exists() and (run_dir / "junit.xml").exists()


def test_a_run_that_cannot_be_filed_leaves_no_half_run(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "pr.html").write_text("<html></html>")  # no JUnit file: nothing to merge
    with pytest.raises(ConfigurationError, match="JUnit files"):
        runs.archive(reports, [reports], "abc1234", at(1))
    assert not any((reports / "runs").iterdir()) and not (reports / "history.jsonl").exists()


def test_two_job_folders_of_one_name_keep_both(tmp_path):
    reports, one, two = tmp_path / "reports", tmp_path / "a" / "reports", tmp_path / "b" / "reports"
    junit(one / "junit-pr-shard-1of2.xml", "a", 2, 0)
    junit(two / "junit-pr-shard-2of2.xml", "b", 3, 0)
    run_dir, total, _ = runs.archive(reports, [one, two], "abc1234", at(1))
    assert total.tests == 5 and sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["reports", "reports-2"]


def test_with_since_only_what_the_run_wrote_is_filed(tmp_path):
    """make report marks its start: a verify run's JUnit file, a scenario measured by an earlier
    run and an earlier start left at the top of reports/ stay out of this run's folder and history."""
    reports = tmp_path / "reports"
    reports.mkdir()
    junit(reports / "junit-verify.xml", "old", 2, 2)  # an earlier `make verify` failed
    os.utime(reports / "junit-verify.xml", (1_000_000, 1_000_000))
    marker = reports / ".run-started"
    marker.write_text("")
    since = marker.stat().st_mtime
    a_run(reports)
    old, new = "2026-01-01T00:00:00Z", datetime.fromtimestamp(since + 5, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [
        {"scenario": "gone-scenario", "runtime": "docker", "detected_s": 9.0, "measured_at": old},
        {
            "scenario": "postgres-frozen",
            "runtime": "docker",
            "detected_s": 2.0,
            "detect_budget_s": 2.75,
            "measured_at": new,
        },
    ]
    (reports / "faults.json").write_text(json.dumps(rows))
    timing = {"max_s": 30.0, "samples": [30.0, 11.0], "sampled_at": [old, new]}
    (reports / "timings.json").write_text(json.dumps({"docker": {"api": timing}}))
    run_dir, total, ok = runs.archive(reports, [reports], "abc1234", at(1), since=since)
    assert ok and total.tests == 4 and not (run_dir / "junit-verify.xml").exists()
    (line,) = kept.read_history(reports)
    assert [f["scenario"] for f in line["faults"]] == ["postgres-frozen"] and line["boot_s"] == {"docker api": 11.0}
    assert (reports / "junit-verify.xml").exists()  # left where it was: only filing skips it


def test_a_load_run_that_broke_its_gate_fails_the_run(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / ".run-started").write_text("")
    since = (reports / ".run-started").stat().st_mtime
    a_run(reports)
    (reports / "load" / "smoke-1").mkdir(parents=True)
    (reports / "load" / "smoke-1" / "summary.json").write_text(json.dumps({"profile": "smoke", "passed": False}))
    _, total, ok = runs.archive(reports, [reports], "abc1234", at(1), since=since)
    assert total.passed and not ok
    door = (reports / "index.html").read_text()
    assert "FAILED (a load run broke its SLO gate)" in door and 'href="load/smoke-1/report.html"' in door
    assert "load run smoke-1: FAILED its SLO gate" in (reports / "summary.md").read_text()


def test_a_damaged_history_line_or_a_latest_folder_does_not_stop_the_filing(tmp_path):
    reports = tmp_path / "reports"
    a_run(reports)
    damaged = (
        '{"run": "x", "outcomes": {"t": "passed"}}\n{"run": "y", "seconds": "9"}\nnot json\n'
        '{"run": "z", "faults": ["x"]}\n{"run": "w", "boot_s": {"docker api": "slow"}}\n'
    )
    (reports / "history.jsonl").write_text(damaged)
    (reports / "latest").mkdir()  # as an artifact unpacked with its link followed leaves it
    run_dir, _, _ = runs.archive(reports, [reports], "abc1234", at(1))
    assert [h["run"] for h in kept.read_history(reports)] == [run_dir.name]
    assert (reports / "latest").is_symlink() and (reports / "latest").resolve() == run_dir.resolve()
