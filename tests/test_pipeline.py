"""The stages, the shard planner, the durations each run keeps, and the merge of the pipeline
jobs' reports (harness/pipeline, pytest_harness/durations.py)."""

import html
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import ConfigurationError
from harness.pipeline import reports, shards, stages
from harness.pipeline.durations import read_recorded
from pytest_harness.durations import LongestFirst
from tests import REPO

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def item(nodeid: str, seconds: float, serial: bool = False) -> shards.Item:
    return shards.Item(nodeid, seconds, serial)


# ---- the stages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collected() -> dict[str, set[str]]:
    """Every test with its markers, as pytest collects them."""
    return stages.collect()


@pytest.fixture(scope="module")
def selections(collected):
    """Node ids of each stage's phases."""
    return {
        name: [
            {n for n, m in collected.items() if stages.selects(p.expression, m)}
            for p in stages.phases(stages.stage(name))
        ]
        for name in stages.STAGES
    }


# pytest's own ``-m``, once per expression, in one process: conftests and imports load once
# (about 4 s for all of them; a pytest process per expression took 50 s)
PYTEST_M = """
import json, sys, pytest
class Listed:
    def pytest_collection_finish(self, session):
        self.ids = [item.nodeid for item in session.items]
expressions, paths = json.loads(sys.argv[1]), sys.argv[2:]
out = {}
for expression in expressions:
    listed = Listed()
    code = pytest.main(["--co", "-q", "-p", "no:cacheprovider", "-m", expression, *paths], plugins=[listed])
    out[expression] = listed.ids if code == 0 else [] if code == 5 else code  # 5: none selected
print(json.dumps(out))
"""


def test_marker_expressions_select_as_pytest_does(collected):
    """The planner's reading of ``-m`` agrees with pytest's own on the stages' expressions."""
    expressions = [p.expression for s in stages.STAGES.values() for p in stages.phases(s)] + ["remote or e2e"]
    sample = ["tests/test_pipeline.py", "suites/load", "suites/remote", "suites/faults/test_nemesis.py"]
    done = subprocess.run(
        [sys.executable, "-c", PYTEST_M, json.dumps(expressions), *sample],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HARNESS_REQUIRE": "none"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.splitlines()[-1])
    tests = {n: m for n, m in collected.items() if n.startswith(tuple(sample))}
    for expression in expressions:
        assert isinstance(theirs[expression], list), (expression, theirs[expression])
        assert {n for n, m in tests.items() if stages.selects(expression, m)} == set(theirs[expression]), expression
    assert len({frozenset(ids) for ids in theirs.values()}) > 3  # the sample tells the expressions apart
    with pytest.raises(ConfigurationError):
        stages.selects("__import__('os')", set())


def test_every_test_is_in_exactly_one_of_the_pull_request_stage_and_what_the_proof_adds(collected, selections):
    everything = set(collected)
    pr, extra, proof = (set().union(*selections[n]) for n in ("pr", "proof-extra", "proof"))
    assert pr | extra == everything, sorted(everything - pr - extra)[:10]  # nothing proven in no stage
    assert not pr & extra, sorted(pr & extra)[:10]
    assert proof == everything
    for name in stages.STAGES:  # and each test in one phase of its stage
        parallel, serial = selections[name]
        assert not parallel & serial


def test_the_pull_request_stage_runs_what_the_issue_names_and_leaves_the_rest_to_the_proof(selections):
    pr, extra = (set().union(*selections[n]) for n in ("pr", "proof-extra"))
    files = {n.split("::")[0] for n in pr}
    for suite in ("unit", "integration", "e2e", "remote", "terraform", "faults"):
        assert any(f.startswith(f"suites/{suite}/") for f in files), suite
    scenarios = {n for n in pr | extra if n.startswith("suites/faults/test_scenarios.py")}
    assert scenarios and scenarios <= pr  # every fault scenario
    assert (
        "suites/deployment/test_rehearsal.py::"
        "test_the_staging_plan_comes_into_service_and_a_rolling_replacement_loses_nothing" in pr
    )  # one rolling rehearsal
    smoke = "suites/load/test_load.py::test_smoke_profile_meets_its_slos_and_publishes_reports"
    gate = "tests/test_load_gate.py::test_an_impossible_slo_fails_the_gate_with_a_readable_message"
    assert smoke in selections["pr"][1]  # the load smoke, its SLO gate judging latencies, by itself
    assert gate in selections["pr"][0]  # a gate that must fail fails whatever the latencies
    assert any("test_nemesis" in n for n in extra) and any("test_blue_green" in n for n in extra)
    assert any("test_rollout_faults" in n for n in extra)


def fake_ci(tmp_path: Path, make_exit: dict[str, int]) -> tuple[Path, dict]:
    """A copy of .ci/run in a folder of its own, with stand-ins for make and the machine's tools:
    make records its arguments and exits as ``make_exit`` says for its first one."""
    root = tmp_path / "repo"
    (root / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", root / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "make.log"
    codes = " ".join(f"{k}) exit {v};;" for k, v in make_exit.items())
    tools = {
        "make": f'echo "$*" >> {log}\ncase "$1" in {codes} *) exit 0;; esac',
        "docker": "exit 0",  # `docker info` answers: no engine is started
        "docker-compose": "exit 0",
        "dockerd": "exit 1",
        "debootstrap": "exit 0",
        "initdb": "exit 0",
    }
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return root, {"env": env, "log": log}


@pytest.mark.parametrize(
    "make_exit, expected",
    [({}, 0), ({"test": 2}, 2), ({"proof-extra": 1}, 1), ({"test": 2, "proof-extra": 1}, 2)],
    ids=["green", "pr-stage-fails", "proof-fails", "both-fail"],
)
def test_ci_runs_the_pull_request_stage_then_what_the_proof_adds_whatever_the_first_says(tmp_path, make_exit, expected):
    root, fake = fake_ci(tmp_path, make_exit)
    done = subprocess.run(["sh", str(root / ".ci" / "run")], env=fake["env"], capture_output=True, text=True)
    assert done.returncode == expected, done.stderr
    assert fake["log"].read_text().splitlines() == ["test", "proof-extra"]


def test_ci_with_arguments_runs_a_pipeline_jobs_make_target_instead(tmp_path):
    root, fake = fake_ci(tmp_path, {})
    args = ["shard", "STAGE=proof", "SHARDS=4", "SHARD=2"]
    done = subprocess.run(["sh", str(root / ".ci" / "run"), *args], env=fake["env"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert fake["log"].read_text().splitlines() == [" ".join(args)]


def test_the_make_targets_run_their_stages():
    def recipe(*target: str) -> str:
        return subprocess.run(["make", "-n", *target], cwd=REPO, capture_output=True, text=True, check=True).stdout

    assert "harness stage pr" in recipe("test") and "proof-extra" not in recipe("test")
    for target in ("test", "proof", "report"):  # the static checks beside the pull-request stage's tests
        assert 'harness stage pr --beside "make --no-print-directory lint" --' in recipe(target), target
    assert "harness stage proof-extra" in recipe("proof-extra")
    proof = recipe("proof")
    assert proof.index("harness stage pr ") < proof.index("harness stage proof-extra")
    assert 'harness stage "$STAGE" --shard "$SHARD/$SHARDS" --' in recipe("shard", "STAGE=pr", "SHARDS=4", "SHARD=1")


def test_a_pipeline_jobs_argument_list_runs_its_share_of_the_stage(collected, monkeypatch, tmp_path):
    """The argument list `make shard` gives (options after the stage's name, then --) parses, and
    the job's tests reach pytest as node ids, each in its phase."""
    from harness.cli import main

    monkeypatch.setattr(stages, "collect", lambda *a, **k: collected)  # the module's one collection
    calls = []
    monkeypatch.setattr(stages, "follow", lambda cmd, cwd: calls.append(cmd) or 0)
    assert main(["stage", "proof", "--shard", "4/4", "--reports-dir", str(tmp_path), "--"]) == 0
    planned = shards.plan(stages.stage_items(stages.stage("proof"), read_recorded()), 4)[3]
    ran = [a for cmd in calls for a in cmd if "::" in a]
    assert sorted(ran) == sorted(planned.nodeids) and ran
    assert all("junit-proof-shard-4of4" in " ".join(cmd) for cmd in calls)


def test_each_stage_runs_on_its_own_number_of_workers_unless_told(monkeypatch, tmp_path):
    """The pull-request stage on three workers (a third of the CPU sat idle on two), the full
    proof's on two (four fleets side by side missed a detection budget): docs/measured.md,
    "Workers per stage"."""
    from harness.cli import main

    calls = []
    monkeypatch.setattr(stages, "follow", lambda cmd, cwd: calls.append(cmd) or 0)
    for name, workers, asked in (
        ("pr", "3", []),
        ("proof-extra", "2", []),
        ("proof", "2", []),
        ("pr", "2", ["--workers", "2"]),
    ):
        calls.clear()
        assert main(["stage", name, *asked, "--reports-dir", str(tmp_path), "--"]) == 0
        parallel, serial = calls
        assert parallel[parallel.index("-n") + 1] == workers, (name, asked)
        assert "-n" not in serial


@pytest.mark.parametrize(
    "tests_exit, beside_exit, expected",
    [(0, 0, 0), (0, 3, 3), (1, 0, 1), (1, 3, 1)],
    ids=["both-pass", "beside-fails", "tests-fail", "both-fail"],
)
def test_a_command_beside_the_tests_runs_while_they_run_and_its_failure_fails_the_stage(
    monkeypatch, tmp_path, tests_exit, beside_exit, expected
):
    """``make test`` runs the static checks beside the tests: both run at once (the tests' phase
    sees the command's mark), and a failing command fails the stage, its output shown and kept."""
    from harness.cli import main

    started, said = tmp_path / "beside-started", []
    beside = f"sh -c 'touch {started}; echo the checks say $((6 * 7)); exit {beside_exit}'"

    def fake_follow(cmd, cwd):
        from harness.wait import wait_until

        wait_until(started.exists, timeout=20, what="the command beside the tests to start")
        return tests_exit

    monkeypatch.setattr(stages, "follow", fake_follow)
    monkeypatch.setattr("builtins.print", lambda *a, **k: said.append(" ".join(map(str, a))))
    argv = ["stage", "pr", "--reports-dir", str(tmp_path), "--beside", beside, "--"]
    assert main(argv) == expected
    log = (tmp_path / "pr-beside.log").read_text()
    assert log == "the checks say 42\n"
    shown = "\n".join(said)
    if beside_exit:
        assert f"FAILED (exit {beside_exit})" in shown and "the checks say 42" in shown, shown
    else:
        assert "passed in" in shown and "the checks say 42" not in shown, shown


def test_a_command_beside_the_tests_killed_by_a_signal_fails_the_stage_saying_so(monkeypatch, tmp_path):
    from harness.cli import main

    said: list[str] = []
    monkeypatch.setattr(stages, "follow", lambda cmd, cwd: 0)
    monkeypatch.setattr("builtins.print", lambda *a, **k: said.append(" ".join(map(str, a))))
    argv = ["stage", "pr", "--reports-dir", str(tmp_path), "--beside", "sh -c 'kill -9 $$'", "--"]
    assert main(argv) == 128 + 9
    assert any("was killed by signal 9" in line for line in said), said


def test_ctrl_c_stops_the_command_beside_the_tests_and_leaves_nothing_running(tmp_path):
    """The command beside the tests has a process group of its own (Ctrl-C at the terminal does
    not reach it): the stage stops it, and whatever it started, when interrupted."""
    import psutil

    pids = tmp_path / "pids"
    child = pytest_stand_in(tmp_path)
    beside = f"sh -c 'sleep 300 & echo $$ $! > {pids}; wait'"
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, shlex; from pathlib import Path; from harness.pipeline import stages;"
            f"stages._phases = lambda *a: stages.follow([sys.executable, {str(child)!r}], Path('.'));"
            f"sys.exit(stages.run('pr', reports=Path({str(tmp_path)!r}), beside=shlex.split({beside!r})))",
        ],
        cwd=REPO,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )
    from harness.wait import wait_until

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    wait_until(
        lambda: (tmp_path / "ready").exists() and pids.exists() and pids.read_text().strip(),
        timeout=20,
        what="the stage's pytest and the command beside it to start",
    )
    shell, sleeper = (int(p) for p in pids.read_text().split())
    assert running(sleeper)
    os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C does: the stage's group, not the command's
    assert runner.wait(timeout=30) == 130
    wait_until(
        lambda: not any(running(p) for p in (shell, sleeper)),
        timeout=15,
        what="the command beside the tests and its child to be gone",
    )


def test_a_stage_passes_pytests_arguments_and_narrows_by_a_users_marker_expression(monkeypatch, tmp_path):
    """What follows -- goes to pytest; a -m among it narrows the stage's selection (pytest keeps
    only the last -m: it would replace it); a stage whose every phase selected nothing fails (5)."""
    from harness.cli import main

    calls = []

    def fake_follow(cmd, cwd):
        calls.append(cmd)
        return 5 if "nothing" in " ".join(cmd) else 0

    monkeypatch.setattr(stages, "follow", fake_follow)
    argv = ["stage", "pr", "--workers", "3", "--reports-dir", str(tmp_path), "--", "-x", "-m", "integration"]
    assert main(argv) == 0
    parallel, serial = calls

    def markexpr(cmd):  # [python, -m, pytest, -m, EXPR, ...]
        assert cmd[1:4] == ["-m", "pytest", "-m"] and cmd.count("-m") == 2, cmd  # one -m for pytest
        return cmd[4]

    assert markexpr(parallel) == "((not proof) and not (load or alone)) and ((integration))"
    assert markexpr(serial) == "((not proof) and (load or alone)) and ((integration))"
    assert "-x" in parallel and parallel[parallel.index("-n") + 1] == "3"
    assert "-n" not in serial
    assert main(["stage", "pr", "--reports-dir", str(tmp_path), "--", "-k", "nothing"]) == 5
    with pytest.raises(SystemExit) as refused:  # a command without pytest's arguments refuses them
        main(["timings", "--", "-x"])
    assert refused.value.code == 2


@pytest.mark.parametrize("kind", ["shell", "make"])
def test_make_verify_passes_the_target_from_the_environment_to_pytest_as_text(tmp_path, kind):
    """A URL with shell syntax or make syntax in it, passed as the workflow passes it (in the
    environment), reaches pytest as text and runs nothing."""
    marker = tmp_path / "ran"
    target = {"shell": f'http://x"; touch {marker}; echo "', "make": f"http://x/$(shell touch {marker})"}[kind]
    fake_py = tmp_path / "py"
    fake_py.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done > "$OUT"\n')
    fake_py.chmod(0o755)
    out = tmp_path / "argv"
    subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "verify", f"PY={fake_py}"],
        cwd=REPO,
        env={**os.environ, "OUT": str(out), "TARGET": target, "MLFLOW": target, "WRITES": ""},
        check=True,
        capture_output=True,
    )
    argv = out.read_text().splitlines()
    assert not marker.exists()
    assert argv[argv.index("--target-url") + 1] == target and argv[argv.index("--mlflow-url") + 1] == target
    assert "--allow-writes" not in argv


# ---- the shard planner -------------------------------------------------------------------------


def test_a_files_parallel_tests_stay_in_one_job_and_serial_tests_run_after_them():
    items = [
        item("suites/a/test_a.py::t1", 100),
        item("suites/a/test_a.py::t2", 50),
        item("suites/b/test_b.py::t1", 120),
        item("suites/c/test_c.py::t1", 30),
        item("suites/load/test_load.py::smoke", 60, serial=True),
        item("suites/load/test_load.py::gate", 20, serial=True),
    ]
    jobs = shards.plan(items, 2, workers=2)
    where = {n: j.number for j in jobs for n in j.nodeids}
    assert where["suites/a/test_a.py::t1"] == where["suites/a/test_a.py::t2"]
    assert sorted(where) == sorted(i.nodeid for i in items)  # each test in one job
    for j in jobs:  # a job: its longest worker, then its serial tests one after another
        assert j.seconds == max(j.worker_loads, default=0) + sum(u.seconds for u in j.serial)
    assert shards.plan(items, 2, workers=2)[0].nodeids == jobs[0].nodeids  # the same plan every time


def test_jobs_come_out_about_equal_and_no_shorter_than_their_longest_piece():
    items = [item(f"suites/x/test_{k}.py::t", s) for k, s in enumerate([300, 200, 200, 100, 100, 100, 50, 50])]
    jobs = shards.plan(items, 3, workers=1)
    lengths = sorted(j.seconds for j in jobs)
    assert sum(lengths) == 1100
    assert lengths[-1] <= 400 and lengths[0] >= 300, lengths
    two = shards.plan(items, 1, workers=2)[0]
    assert two.seconds == 550  # two workers: 300+100+100+50, 200+200+100+50


def test_a_test_without_a_recorded_duration_is_planned_like_its_neighbours():
    recorded = {"suites/a/test_a.py::t1": 10.0, "suites/a/test_a.py::t2": 30.0, "suites/b/test_b.py::t": 100.0}
    (new,) = shards.items_of(["suites/a/test_a.py::t3"], set(), recorded)
    assert new.seconds == 20.0
    (other,) = shards.items_of(["suites/z/test_z.py::t"], set(), recorded)
    assert other.seconds == 30.0


def test_the_recorded_durations_cover_every_test_but_the_newest(collected):
    recorded = read_recorded()
    assert len(recorded) > 900
    everything = set(collected)
    missing = everything - set(recorded)
    assert len(missing) < 0.05 * len(everything), sorted(missing)[:10]


def test_the_plan_for_four_pipeline_jobs_keeps_each_within_ten_minutes():
    """The done-when of the pipeline: a proof split into 4 jobs of 2 workers, none expected over 10 min."""
    done = subprocess.run(
        [sys.executable, "-m", "harness", "shards", "--stage", "proof", "--jobs", "4", "--limit", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---- what a run keeps, and the merge ----------------------------------------------------------


def test_a_run_keeps_each_tests_seconds_and_its_report_says_where_the_time_went(tmp_path):
    target = "tests/test_pipeline.py::test_a_test_without_a_recorded_duration_is_planned_like_its_neighbours"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            target,
            f"--junitxml={tmp_path / 'junit-x.xml'}",
            f"--html={tmp_path / 'x.html'}",
            "--self-contained-html",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-2000:]
    kept = json.loads((tmp_path / "durations-x.json").read_text())
    assert kept["run"] == "x" and kept["tests"][target]["outcome"] == "passed"
    assert kept["tests"][target]["seconds"] >= kept["tests"][target]["call"] >= 0
    page = (tmp_path / "x.html").read_text()
    assert "Where the time went" in page and "test_a_test_without_a_recorded_duration" in page


def test_a_collection_writes_no_report(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_pipeline.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")},
    )
    assert done.returncode == 0, done.stdout
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def junit(path: Path, name: str, tests: int, failures: int, ids: list[tuple[str, str]] | None = None) -> None:
    """A JUnit file as pytest writes one: ``tests`` cases named ``name<k>`` (the last ``failures``
    of them failed), or one passing case per (classname, name) of ``ids``."""
    passing = ids or [("m", f"{name}{k}") for k in range(tests - failures)]
    cases = "".join(
        '<testcase classname="{}" name="{}" time="1.5"/>'.format(*(html.escape(x, quote=True) for x in case))
        for case in passing
    )
    cases += "".join(
        f'<testcase classname="m" name="{name}f{k}" time="2"><failure message="no"/></testcase>'
        for k in range(failures)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" '
        f'errors="0" skipped="0" time="{tests * 2}">{cases}</testsuite></testsuites>'
    )


def test_the_jobs_reports_merge_into_one_junit_file_and_an_index_that_links_them(tmp_path):
    one, two, out = tmp_path / "shard-1", tmp_path / "shard-2", tmp_path / "merged"
    junit(one / "junit-proof-shard-1of2.xml", "a", 3, 0)
    (one / "proof-shard-1of2.html").write_text("<html></html>")
    (one / "durations-proof-shard-1of2.json").write_text(
        json.dumps({"tests": {"suites/x/test_x.py::a": {"seconds": 9}}})
    )
    junit(two / "junit-proof-shard-2of2.xml", "b", 2, 1)
    (two / "proof-shard-2of2.html").write_text("<html></html>")
    made = {  # what a run leaves besides its pytest-html page: each linked from the index
        "load-suite/load/index.html": "<html></html>",
        "faults/postgres-frozen-docker.svg": "<svg/>",
        "deployment/rolling/fleet.svg": "<svg/>",
        "timings.svg": "<svg/>",
        "contract/junit-1.xml": "<testsuites/>",
        "faults.json": json.dumps(
            [
                {
                    "scenario": "postgres-frozen",
                    "runtime": "docker",
                    "detected_s": 2.14,
                    "detect_budget_s": 5.05,
                    "recovered_s": 0.08,
                    "recover_budget_s": 5.05,
                    "slowest_s": 1.0,
                    "slowest_budget_s": 1.75,
                    "passed": True,
                }
            ]
        ),
    }
    for name, text in made.items():
        (two / name).parent.mkdir(parents=True, exist_ok=True)
        (two / name).write_text(text)
    total = reports.merge([one, two], out)
    assert (total.tests, total.failures) == (5, 1) and not total.passed
    merged = (out / "junit.xml").read_text()
    assert merged.count("<testcase") == 5 and 'tests="5"' in merged
    index = (out / "index.html").read_text()
    assert index.startswith("<!doctype html>") and "FAILED" in index
    assert "../shard-1/proof-shard-1of2.html" in index and "../shard-2/proof-shard-2of2.html" in index
    assert "suites/x/test_x.py::a" in index
    for name in made:
        assert f"../shard-2/{name}" in index, name
    assert "<td>postgres-frozen</td><td>docker</td><td>2.14 / 5.05</td><td>0.08 / 5.05</td>" in index
    assert reports._cell("IS TRUE|FALSE `x`") == "IS TRUE\\|FALSE \\`x\\`"  # a cell stays one cell
    summary = (out / "summary.md").read_text()  # the same first screen for CI's job summary
    assert (
        summary.startswith("## FAILED: 5 tests, 1 failed") and "| postgres-frozen | docker | 2.14 / 5.05 |" in summary
    )
    done = subprocess.run(
        [sys.executable, "-m", "harness", "merge-reports", "--reports-dir", str(out), str(one)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr  # only the passing job: exit 0


def test_the_merge_fails_when_the_jobs_reports_miss_a_test_of_the_stage(collected, monkeypatch, tmp_path, capsys):
    """Each job passes on its own; only the merge sees that together they ran less than the stage
    (a job planned from other inputs, a file its runner did not collect)."""
    from harness.cli import main

    monkeypatch.setattr(stages, "collect", lambda *a, **k: collected)  # the module's collection
    tests = stages.stage_tests(stages.stage("pr"), collected)
    for k, share in enumerate([tests[: len(tests) // 2], tests[len(tests) // 2 :]], 1):
        ids = [reports.junit_id(n) for n in share]
        junit(tmp_path / f"shard-{k}" / f"junit-pr-shard-{k}of2.xml", "", len(share), 0, ids)
    both = [str(tmp_path / "shard-1"), str(tmp_path / "shard-2")]
    assert main(["merge-reports", "--reports-dir", str(tmp_path / "merged"), "--stage", "pr", *both]) == 0
    missing = tests[len(tests) // 2]
    assert main(["merge-reports", "--reports-dir", str(tmp_path / "merged"), "--stage", "pr", both[0]]) == 1
    err = capsys.readouterr().err
    assert f"{len(tests) - len(tests) // 2} of its {len(tests)} tests are in no job's report" in err and missing in err


def test_the_merge_names_each_test_as_pytests_own_junit_file_does(tmp_path):
    """Nested classes, and parameters holding ``::``, ``/``, ``.py`` or brackets: the test ids
    the merge expects are the names pytest's junitxml writes, read from a real run."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "test_sample.py").write_text(
        textwrap.dedent(
            """
            import pytest

            class TestOuter:
                class TestInner:
                    def test_nested(self):
                        pass

            @pytest.mark.parametrize("x", ["a::b", "c/d.py", "e[f]"])
            def test_params(x):
                pass

            def test_plain():
                pass
            """
        )
    )
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-c", "/dev/null"]
    base += ["--rootdir", str(tmp_path), "pkg/test_sample.py"]
    listed = subprocess.run([*base, "--collect-only"], cwd=tmp_path, capture_output=True, text=True)
    nodeids = [line for line in listed.stdout.splitlines() if "::" in line]
    assert len(nodeids) == 5, listed.stdout + listed.stderr
    junit_file = tmp_path / "junit-sample.xml"
    ran = subprocess.run([*base, f"--junitxml={junit_file}", "-k", "not plain"], cwd=tmp_path, capture_output=True)
    assert ran.returncode == 0, ran.stdout
    assert reports.not_reported([junit_file], nodeids) == ["pkg/test_sample.py::test_plain"]


def test_merge_reports_without_junit_files_names_what_it_expected(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "harness", "merge-reports", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "JUnit files" in done.stderr, done.stderr


# ---- the runner --------------------------------------------------------------------------------


def pytest_stand_in(tmp_path: Path) -> Path:
    """A script that behaves as an interrupted pytest does: it says it is ready (file ``ready``),
    takes SIGINT, tears down for 0.3 s (a second SIGINT would land there), writes how many SIGINTs
    it saw (file ``count``) and exits 2."""
    child = tmp_path / "child.py"
    child.write_text(
        textwrap.dedent(
            f"""
            import signal, sys, time
            seen = []
            signal.signal(signal.SIGINT, lambda *a: seen.append(1))
            open({str(tmp_path / "ready")!r}, "w").close()
            while not seen:
                time.sleep(0.05)
            time.sleep(0.3)
            open({str(tmp_path / "count")!r}, "w").write(str(len(seen)))
            sys.exit(2)
            """
        )
    )
    return child


def test_ctrl_c_reaches_the_stages_pytest_once_and_the_stage_stops_with_130(tmp_path):
    """Ctrl-C reaches the whole foreground process group, pytest included: the runner only notes it
    (a second SIGINT would cut pytest's teardown short), waits for the teardown, and says 130."""
    child = pytest_stand_in(tmp_path)
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from harness.pipeline.stages import follow; from pathlib import Path;"
            f"sys.exit(follow([sys.executable, {str(child)!r}], Path('.')))",
        ],
        cwd=REPO,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )
    from harness.wait import wait_until

    wait_until(lambda: (tmp_path / "ready").exists(), timeout=20, what="the child to start")
    os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C does
    assert runner.wait(timeout=20) == 130
    assert (tmp_path / "count").read_text() == "1"


def test_the_files_that_share_the_applied_platform_run_on_one_worker_as_the_planner_places_them(
    pytestconfig, monkeypatch
):
    """The run's xdist scheduler (pytest_harness/durations.py) and the shard planner group alike: one
    work unit for the files that share the platform applied to moto, one per file otherwise."""
    from pytest_harness.durations import LongestFirst, pytest_xdist_make_scheduler

    monkeypatch.setattr(pytestconfig.option, "dist", "loadfile")
    monkeypatch.setattr(pytestconfig.option, "numprocesses", 2)
    monkeypatch.setattr(pytestconfig.option, "tx", ["2*popen"], raising=False)
    scheduler = pytest_xdist_make_scheduler(pytestconfig, None)
    apply_check = "suites/deployment/test_moto_apply.py::test_x"
    rehearsal = "suites/deployment/test_rehearsal.py::test_y"
    other = "suites/deployment/test_blue_green.py::test_z"
    assert scheduler._split_scope(apply_check) == scheduler._split_scope(rehearsal) == shards.scope_of(rehearsal)
    assert scheduler._split_scope(other) == "suites/deployment/test_blue_green.py"
    (unit,) = [u for u in shards.units([item(apply_check, 100), item(rehearsal, 200)])]
    assert unit.seconds == 300
    assert isinstance(scheduler.workqueue, LongestFirst)
    monkeypatch.setattr(pytestconfig.option, "dist", "load")
    assert pytest_xdist_make_scheduler(pytestconfig, None) is None  # other modes keep xdist's own


def test_a_free_worker_takes_the_longest_unit_left_by_the_recorded_durations():
    """xdist ordered units by their number of tests: the rehearsal's few long tests ran last."""
    queue = LongestFirst({"a.py::t1": 1.0, "a.py::t2": 1.0, "a.py::t3": 1.0, "b.py::long": 250.0, "c.py::t": 9.0})
    queue["a.py"] = {"a.py::t1": False, "a.py::t2": False, "a.py::t3": False}
    queue["c.py"] = {"c.py::t": False, "c.py::new": False}  # a new test: estimated like its file's
    queue["b.py"] = {"b.py::long": False}
    assert [queue.popitem(last=False)[0] for _ in range(3)] == ["b.py", "c.py", "a.py"]
    queue["a.py"], queue["b.py"] = {}, {}
    assert queue.popitem()[0] == "b.py"  # last=True keeps its meaning
    # a unit handed back after a worker crashed is costed by what it has left to run
    queue = LongestFirst({"b.py::long": 250.0, "b.py::short": 1.0, "c.py::t": 9.0})
    queue["b.py"] = {"b.py::long": True, "b.py::short": False}
    queue["c.py"] = {"c.py::t": False}
    assert queue.popitem(last=False)[0] == "c.py"


def test_recorded_durations_name_the_commit_their_runs_measured_not_the_recording_checkout(tmp_path):
    measured = tmp_path / "ci-clone"
    (measured / "reports").mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(measured)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "measured"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    run = measured / "reports" / "durations-pr.json"
    run.write_text(json.dumps({"run": "pr", "wall_s": 1.0, "tests": {"t.py::a": {"seconds": 1.0}}}))
    recording = tmp_path / "project"
    (recording / ".ci").mkdir(parents=True)
    (recording / "pyproject.toml").write_text("[tool.harness]\n")
    env = {**os.environ, "HARNESS_PROJECT": str(recording)}
    done = subprocess.run(
        [sys.executable, "-m", "harness", "durations", "--record", str(run)],
        cwd=recording,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads((recording / ".ci" / "durations.json").read_text())
    assert doc["commit"] == head and doc["tests"] == {"t.py::a": 1.0}, doc
