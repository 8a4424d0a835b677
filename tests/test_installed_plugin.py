"""The harness as another repository uses it: its wheel, installed into a fresh virtualenv outside
this checkout, finds a platform through that project's ``[tool.harness]`` table and passes the
unit and Terraform suites there, and runs a load test with Locust's side as the wheel ships it and
the project's own profile. The copy puts its Terraform under ``infra/`` instead of ``terraform/``
and its load profiles under ``perf/profiles/``, so a harness that ignored the table, or found its
files next to its own code, would not find them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO
from tests.test_docs_examples import examples

# the full proof (a packaging check, about a minute of CPU): the pull-request stage stays inside its 10 minutes
pytestmark = [pytest.mark.harness, pytest.mark.slow, pytest.mark.proof]
UV = Path(sys.executable).with_name("uv")
# what the build reads: the packages, the metadata, and the files the optional dependencies name
BUILD_INPUTS = ("pyproject.toml", "README.md", "requirements-dev.in", "harness", "harness_locust", "pytest_harness")
BUILD_FILES = ("services/api/requirements.txt", "services/mlflow/requirements.txt")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".terraform", "*.tfstate*", ".terraform.lock.hcl")
# the pytest configuration docs/plugin.md tells another project to use, as it stands there
(PYTEST_OPTIONS,) = [
    e.text
    for e in examples([REPO / "docs" / "plugin.md"])
    if e.lang == "toml" and "[tool.pytest.ini_options]" in e.text
]
# the load profile docs/plugin.md shows another project, as it stands there
(PROFILE,) = [e.text for e in examples([REPO / "docs" / "plugin.md"]) if e.lang == "python" and "StagedShape" in e.text]
PROJECT = f"""\
[project]
name = "another-platform"
version = "0.1.0"

[tool.harness]
terraform_dir = "infra"
environments_dir = "infra/environments"
loadtests_dir = "perf"

{PYTEST_OPTIONS}"""


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv outside the checkout with the lock's packages and the harness's wheel."""
    if not UV.exists():
        pytest.fail(f"uv is missing next to {sys.executable}: `make venv` installs it", pytrace=False)
    work = tmp_path_factory.mktemp("installed")
    assert not work.is_relative_to(REPO)
    src = work / "src"
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=IGNORED)
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, src / name)
    for name in BUILD_FILES:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, src / name)
    run([str(UV), "build", "--wheel", "--offline", "--quiet", "--out-dir", str(work / "dist"), str(src)], work)
    (wheel,) = (work / "dist").glob("ml_deploy_harness-*.whl")
    venv = work / "venv"
    run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], work)
    python = venv / "bin" / "python"
    install = [str(UV), "pip", "install", "--quiet", "--offline", "--python", str(python)]
    run([*install, "--require-hashes", "-r", str(REPO / "requirements.txt")], work)
    run([*install, "--no-deps", str(wheel)], work)
    return python


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Path:
    """A copy of this repository's platform and its unit and Terraform suites, in another folder."""
    root = tmp_path_factory.mktemp("another-platform")
    for name, to in [
        ("services", "services"),
        ("terraform", "infra"),
        ("scenarios", "scenarios"),
        ("docs", "docs"),
        ("suites/unit", "suites/unit"),
        ("suites/terraform", "suites/terraform"),
    ]:
        shutil.copytree(REPO / name, root / to, ignore=IGNORED)
    shutil.copy(REPO / "suites" / "__init__.py", root / "suites" / "__init__.py")
    (root / "perf" / "profiles").mkdir(parents=True)
    (root / "perf" / "profiles" / "ours.py").write_text(PROFILE)  # its own profile; no Locust files of its own
    shutil.copy(REPO / ".dockerignore", root / ".dockerignore")  # the images' build context is the project
    (root / "pyproject.toml").write_text(PROJECT)
    return root


def clean_env() -> dict[str, str]:
    """This run's environment without what points at this checkout or its virtualenv."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("HARNESS_", "PYTEST_"))}
    return env


def test_the_wheel_ships_the_plugin_and_pytest_finds_the_project_by_its_table(installed, platform):
    code = "import harness, pytest_harness; print(harness.__file__); print(pytest_harness.__file__)"
    out = run([str(installed), "-c", code], platform, clean_env())
    assert all("/site-packages/" in line for line in out.splitlines()), out
    listed = run([str(installed), "-m", "pytest", "--collect-only", "suites/terraform"], platform, clean_env())
    assert f"harness project: [tool.harness] of {platform / 'pyproject.toml'}" in listed, listed[-3000:]
    versions = subprocess.run(
        [str(installed), "-m", "pytest", "--version", "--version"], cwd=platform, env=clean_env(), capture_output=True
    )
    assert b"ml-deploy-harness" in versions.stdout + versions.stderr, versions  # the pytest11 entry point


def test_the_unit_and_terraform_suites_pass_on_another_projects_platform(installed, platform):
    env = clean_env()
    out = run(
        [str(installed), "-m", "pytest", "-q", "suites/unit", "suites/terraform"],
        platform,
        {**env, "HARNESS_REQUIRE": "terraform"},
        timeout=900,
    )
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, out[-3000:]
    assert "skipped" not in summary, f"nothing may be skipped here: {out[-3000:]}"


def test_a_load_test_runs_the_wheels_locust_side_with_the_projects_own_profile(installed, platform, api_url, tmp_path):
    """``harness load`` from the wheel, in the other project, against the session's api: Locust
    runs the shipped locustfile, users and gate over the project's ``perf/profiles/ours.py``."""
    argv = [str(installed), "-m", "harness", "load", "--profile", "ours", "--time-scale", "0.2"]
    argv += ["--target-url", api_url, "--lb-timeout", "5", "--reports-dir", str(tmp_path / "reports"), "--json"]
    done = subprocess.run(argv, cwd=platform, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    summary = doc["summary"]
    assert doc["passed"] is True and summary["profile"] == "ours", summary
    endpoints = summary["endpoints"]
    assert endpoints["POST /runs"]["requests"] > 0 and endpoints["GET /health [lb]"]["requests"] > 0
