"""Settings precedence: CLI, then HARNESS_* env, then pytest.ini, then default; errors name the source."""

import pytest

from harness.errors import ConfigurationError
from harness.settings import resolve

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def test_defaults_with_sources():
    s = resolve({}, {}, {})
    assert (s.runtime, s.timeout_multiplier, s.target_url, s.keep_on_failure) == ("auto", 1.0, None, False)
    assert set(s.sources.values()) == {"default"}


def test_precedence_cli_env_ini_default():
    ini = {"harness_runtime": "docker", "harness_timeout_multiplier": "3"}
    env = {"HARNESS_RUNTIME": "local", "HARNESS_TIMEOUT_MULTIPLIER": "2"}
    s = resolve({"runtime": "auto"}, env, ini)
    assert s.runtime == "auto" and s.sources["runtime"] == "--runtime"
    assert s.timeout_multiplier == 2.0 and s.sources["timeout_multiplier"] == "HARNESS_TIMEOUT_MULTIPLIER"
    s = resolve({}, {}, ini)
    assert s.runtime == "docker" and s.sources["runtime"] == "pytest.ini harness_runtime"


def test_header_lines_name_every_setting_and_source():
    lines = resolve({"keep_on_failure": True}, {}, {}).describe()
    assert "keep_on_failure=True (from --keep-on-failure)" in lines
    assert any(line.startswith("runtime='auto' (from default)") for line in lines)


@pytest.mark.parametrize(
    "cli,env,message",
    [
        ({"runtime": "kubernetes"}, {}, "--runtime"),
        ({}, {"HARNESS_TIMEOUT_MULTIPLIER": "fast"}, "HARNESS_TIMEOUT_MULTIPLIER"),
        ({}, {"HARNESS_TIMEOUT_MULTIPLIER": "100"}, "between 0.1 and 20"),
        ({}, {"HARNESS_TARGET_URL": "ftp://x"}, "HARNESS_TARGET_URL"),
        ({}, {"HARNESS_KEEP_ON_FAILURE": "perhaps"}, "expected true or false"),
    ],
)
def test_bad_values_name_their_source(cli, env, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve(cli, env, {})


def test_settings_are_frozen():
    s = resolve({}, {}, {})
    with pytest.raises(AttributeError):
        s.runtime = "local"


def test_require_lists_what_must_not_skip_and_ci_requires_both():
    assert resolve({}, {}, {}).require == ()
    s = resolve({}, {"CI": "true"}, {})
    assert s.require == ("docker", "terraform") and s.sources["require"] == "CI=true"
    s = resolve({"require": "none"}, {"CI": "true"}, {})  # said explicitly: nothing required
    assert s.require == () and s.sources["require"] == "--require"
    assert resolve({}, {"HARNESS_REQUIRE": "terraform"}, {}).require == ("terraform",)
    with pytest.raises(ConfigurationError, match="HARNESS_REQUIRE.*docker, terraform"):
        resolve({}, {"HARNESS_REQUIRE": "kubernetes"}, {})


MISSING_TERRAFORM = """
import pytest
from pytest_harness.settings import missing

pytestmark = pytest.mark.terraform


def test_needs_terraform(pytestconfig):
    missing(pytestconfig, "terraform", "terraform: the terraform binary on PATH: none")
"""


@pytest.mark.parametrize(
    "env,outcome",
    [
        ({}, "1 skipped"),
        ({"CI": "true"}, "1 failed"),
        ({"HARNESS_REQUIRE": "terraform"}, "1 failed"),
        ({"CI": "true", "HARNESS_REQUIRE": "none"}, "1 skipped"),
    ],
)
def test_a_missing_dependency_skips_unless_the_run_requires_it(tmp_path, env, outcome):
    import os
    import subprocess
    import sys

    from tests import REPO

    (tmp_path / "conftest.py").write_text(
        'def pytest_configure(config):\n    config.addinivalue_line("markers", "terraform: x")\n'
    )
    (tmp_path / "test_it.py").write_text(MISSING_TERRAFORM)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "HARNESS_REQUIRE")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-rfs"],
        cwd=tmp_path,
        env={**base, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome in done.stdout, done.stdout[-2000:]
    if "failed" in outcome:
        assert "terraform is required here" in done.stdout and "the terraform binary on PATH" in done.stdout


def test_outside_a_project_the_plugin_stays_out_of_the_way(tmp_path):
    """The plugin loads in every pytest run of its virtualenv: in a folder without [tool.harness]
    it adds no header, no rule, no report, no durations file and no docker skip or requirement
    (CI=true and no engine would fail a docker-marked test in a project)."""
    import os
    import subprocess
    import sys

    (tmp_path / "test_other.py").write_text(
        "import pytest\n\n\n@pytest.mark.docker\ndef test_marked():\n    pass\n\n\ndef test_unmarked():\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "PYTEST_"))}
    env.update(CI="true", DOCKER_HOST="unix:///nonexistent/docker.sock")
    junit_file = tmp_path / "out" / "junit-other.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", f"--junitxml={junit_file}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    header = done.stdout.split("collected")[0].replace("ml-deploy-harness-", "")  # (the plugins line names it)
    assert "harness" not in header, done.stdout[:2000]  # no header lines
    assert not (tmp_path / "reports").exists()
    assert sorted(p.name for p in junit_file.parent.iterdir()) == ["junit-other.xml"]  # no durations file
