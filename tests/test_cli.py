"""`python -m harness` as a user meets it: --version, one exit-code scheme (0 passed, 1 a check
failed, 2 could not run), JSON where a script reads the result, the pytest.ini layer of settings,
`up` that a script's SIGINT stops and whose DSN connects, and `down` that stops what `up` started."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from harness import __version__
from harness.paths import environment_file
from harness.settings import ini_values, resolve
from harness.wait import wait_until
from tests import REPO

pytestmark = pytest.mark.harness


def harness(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "TF_PLUGIN_DIR"},
    )


def test_version_and_the_top_level_help_name_every_command():
    done = harness("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"harness {__version__}"
    helptext = harness("--help").stdout
    for command in ("up", "down", "status", "logs", "timings", "simulate", "outage", "rehearse", "timeline", "load"):
        assert re.search(rf"^\s+{command}\s", helptext, re.M), command
    assert "Exit codes" in helptext


def test_a_broken_invocation_exits_2_naming_the_field():
    done = harness("timings", "--var-file", "/nonexistent.tfvars")
    assert done.returncode == 2 and "argument --var-file: expected an existing file" in done.stderr
    done = harness("timeline", "/nonexistent.json")
    assert done.returncode == 2 and "not a kept health series" in done.stderr


@pytest.mark.terraform
def test_timings_and_simulate_exit_1_for_a_failing_check_and_print_json(tmp_path):
    """Plain `python -m harness` (no TF_PLUGIN_DIR: the mirror is found as make finds it). Nothing
    measured (`--timings`, `--images` name no file): the verdict is the plan's alone, not this
    machine's last boot under load (a loaded CI run measured MLflow at 21 s and failed this test)."""
    unmeasured = ("--timings", str(tmp_path / "none.json"), "--images", str(tmp_path / "none.json"))
    passed = harness("timings", "--json", *unmeasured)
    assert passed.returncode == 0, passed.stderr
    verdict = json.loads(passed.stdout)
    assert verdict["passed"] and verdict["rules"] and all(r["passed"] for r in verdict["rules"])
    text = (environment_file("staging")).read_text()
    start = text.index("  mlflow = {")
    broken = tmp_path / "short-grace.tfvars"
    broken.write_text(text[:start] + re.sub(r"grace_period\s+= \d+", "grace_period = 20", text[start:], count=1))
    failed = harness("timings", "--json", "--var-file", str(broken), *unmeasured)
    assert failed.returncode == 1, failed.stderr
    assert not json.loads(failed.stdout)["passed"]
    rolled = harness("simulate", "--service", "api", "--broken-dependency", "--json")
    assert rolled.returncode == 1, rolled.stderr
    result = json.loads(rolled.stdout)
    assert result["outcome"] == "rolled_back" and result["trace"][-1]["event"].startswith("circuit breaker")


def test_the_cli_reads_the_pytest_ini_layer(tmp_path):
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\nharness_runtime = local\nharness_timeout_multiplier = 2\naddopts = -q\n")
    values = ini_values(ini)
    assert values == {"harness_runtime": "local", "harness_timeout_multiplier": "2"}
    s = resolve({}, {}, values)
    assert s.runtime == "local" and s.sources["runtime"] == "pytest.ini harness_runtime"


def start_up(**popen) -> tuple[subprocess.Popen, list[dict]]:
    up = subprocess.Popen(
        [sys.executable, "-m", "harness", "up", "--runtime", "local"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        **popen,
    )
    lines: list[dict] = []

    def ready() -> bool:
        line = up.stdout.readline()
        if line.strip() == "ready":
            return True
        if not line and up.poll() is not None:
            raise AssertionError(f"`harness up` exited {up.returncode} before ready")
        if line.startswith("{"):
            lines.append(json.loads(line))
        return False

    wait_until(ready, timeout=120, interval=0, what="`harness up` to print ready")
    return up, lines


@pytest.mark.proof  # in the full proof (docs/pipeline.md, "Stages"): a stack of its own, about 15 s
def test_up_prints_a_dsn_that_connects_and_a_scripts_sigint_stops_it():
    # started as a background job of a script would be: SIGINT ignored when it starts
    up, services = start_up(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        postgres = next(s for s in services if s.get("name") == "postgres")
        assert "***" not in postgres["url"]
        with psycopg.connect(f"{postgres['url']}/postgres", connect_timeout=5) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 130  # interrupted, as the README says of every command
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


@pytest.mark.proof  # in the full proof (docs/pipeline.md, "Stages"): a stack of its own, about 15 s
@pytest.mark.alone  # after the rehearsals: a stack's boot beside one crowds its detection budgets
def test_up_detach_status_logs_and_down_work_from_a_script():
    """`up --detach` returns once the stack is ready, printing what `up` prints; `status` lists it
    (URLs masked), `logs` shows a service's log, `down` stops it and `status` no longer lists it."""
    from harness.session import alive

    started = harness("up", "--detach", "--runtime", "local")
    assert started.returncode == 0, started.stderr[-2000:]
    lines = started.stdout.splitlines()
    assert lines[-1] == "ready", lines
    session = json.loads(lines[0])["session"]
    owner = None
    try:
        assert [json.loads(x)["name"] for x in lines[1:-1]] == ["postgres", "mlflow", "api"]
        status = harness("status", "--json")
        assert status.returncode == 0, status.stderr
        (mine,) = [s for s in json.loads(status.stdout)["stacks"] if s["session"] == session]
        owner = mine["pid"]
        assert mine["state"] == "ready" and [s["name"] for s in mine["services"]] == ["postgres", "mlflow", "api"]
        assert ":***@" in mine["services"][0]["url"]  # the registry is readable by every user: masked
        logs = harness("logs", "--session", session, "--service", "api", "--tail", "5")
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.startswith("==> api <==") and '"service":"api"' in logs.stdout, logs.stdout
    finally:
        down = harness("down", "--session", session, timeout=120)
    assert down.returncode == 0 and json.loads(down.stdout)["stopped"] == [session], down.stdout
    assert owner is not None and not alive(owner)
    assert session not in harness("status", "--json").stdout


@pytest.mark.proof  # in the full proof (docs/pipeline.md, "Stages"): a stack of its own, about 15 s
def test_down_stops_what_up_started():
    up, lines = start_up()
    try:
        session = lines[0]["session"]
        # --session: only this test's `up` (a user's own `up` on this machine stays up)
        # `up` stays a zombie after it stops (this test reaps it only below): `down` knows it has
        # exited, and does not wait out its 60 s for it
        started = time.monotonic()
        done = harness("down", "--session", session, timeout=120)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 30, "down waited for an owner that had exited"
        report = json.loads(done.stdout)
        assert report["stopped"] == [session]
        assert up.wait(timeout=30) == 130  # it stopped its own stack, as on Ctrl-C
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


@pytest.mark.parametrize("name", ["scenario", "slo", "profile"])
def test_the_published_schemas_are_the_ones_the_harness_validates_with(name):
    """docs/schemas/ is what editors read; it must not drift from the code (`make schemas` rewrites it)."""
    from harness.cli import schema_document

    published = json.loads((REPO / "docs" / "schemas" / f"{name}.schema.json").read_text())
    assert published == schema_document(name), f"docs/schemas/{name}.schema.json is stale: run `make schemas`"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "schema", name], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and json.loads(done.stdout) == published


def test_simulate_blue_green_exits_0_when_it_completes_and_1_when_green_never_passes(tmp_path):
    done = harness(
        "simulate", "--service", "mlflow", "--strategy", "blue_green", "--json", "--svg", str(tmp_path / "b.svg")
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["strategy"], result["outcome"]) == ("blue_green", "completed")
    assert [s["green_percent"] for s in result["traffic_shifts"]] == [100] and (tmp_path / "b.svg").exists()
    stuck = harness("simulate", "--service", "mlflow", "--strategy", "blue_green", "--broken-dependency", "--json")
    assert stuck.returncode == 1 and json.loads(stuck.stdout)["traffic_shifts"] == [], stuck.stderr
    wrong = harness("simulate", "--strategy", "blue_green", "--traffic", "AllAtOnce")
    assert wrong.returncode == 2 and "--traffic: invalid choice" in wrong.stderr


def test_rehearse_refuses_a_wrong_blue_green_setting_before_it_starts_anything():
    done = harness("rehearse", "--strategy", "blue_green", "--time-scale", "0")
    assert done.returncode == 2 and "--time-scale: expected a number above 0, got '0'" in done.stderr, done.stderr
    done = harness("rehearse", "--termination-wait", "-5")
    assert done.returncode == 2 and "--termination-wait: expected a number 0 or more" in done.stderr, done.stderr
    assert "applying" not in done.stderr  # refused before the plan was applied


def test_logs_and_status_say_when_no_stack_is_up():
    logs = harness("logs", "--session", "h00000000")
    assert logs.returncode == 2, logs.stderr
    assert "expected a running `harness up` with session h00000000" in logs.stderr
    status = harness("status", "--json")
    assert status.returncode in (0, 1) and "h00000000" not in status.stdout
    assert (status.returncode == 1) == (json.loads(status.stdout)["stacks"] == [])


def test_up_detach_that_cannot_start_shows_why_and_leaves_nothing(tmp_path):
    """The background `up` fails before its stack exists: `up --detach` shows the end of its log
    (the error naming the setting) and its exit code, and removes the log."""
    before = set(Path(tempfile.gettempdir()).glob("harness-up-*.log"))
    done = subprocess.run(
        [sys.executable, "-m", "harness", "up", "--detach", "--runtime", "local"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HARNESS_TIMEOUT_MULTIPLIER": "abc"},
    )
    assert done.returncode == 2, done.stderr
    assert "HARNESS_TIMEOUT_MULTIPLIER" in done.stderr and "did not come up (exit 2)" in done.stderr, done.stderr
    assert set(Path(tempfile.gettempdir()).glob("harness-up-*.log")) <= before
