"""The static checks of `make lint` pass on the repository and catch what they are there for: each
is run here on the repo's files and on a sample with the mistake it exists to find."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_harness.settings import missing
from tests import REPO

pytestmark = pytest.mark.harness
BIN = Path(sys.executable).parent
SHELL_SCRIPTS = [".ci/run", "services/base/build.sh", "services/postgres/entrypoint.sh"]


def run(*argv, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_dockerfiles_pass_hadolint_and_a_cd_in_run_does_not(tmp_path):
    assert run(BIN / "hadolint", *sorted(REPO.glob("services/*/Dockerfile"))).returncode == 0
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM debian:bookworm\nRUN cd /tmp && touch x\nCMD ["true"]\n')
    done = run(BIN / "hadolint", bad, cwd=tmp_path)
    assert done.returncode != 0 and "DL3003" in done.stdout


def test_shell_scripts_pass_shellcheck_and_an_unquoted_variable_does_not(tmp_path):
    assert run(BIN / "shellcheck", *SHELL_SCRIPTS).returncode == 0
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/cache\n")
    done = run(BIN / "shellcheck", bad)
    assert done.returncode != 0 and "SC2086" in done.stdout


def test_workflows_match_the_github_schema_and_a_job_without_a_runner_does_not(tmp_path):
    workflows = sorted(REPO.glob(".github/workflows/*.yml"))
    assert {w.name for w in workflows} == {
        "test.yml",
        "deploy.yml",
        "verify.yml",
        "nightly-load.yml",
        "nightly-nemesis.yml",
        "nightly-fuzz.yml",
    }
    schema = ("--builtin-schema", "vendor.github-workflows")
    assert run(BIN / "check-jsonschema", *schema, *workflows).returncode == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\non: push\njobs:\n  test:\n    steps:\n      - run: make test\n")
    assert run(BIN / "check-jsonschema", *schema, bad).returncode != 0


@pytest.mark.terraform
def test_terraform_is_formatted_and_a_misaligned_file_is_not(tmp_path, pytestconfig):
    terraform = shutil.which("terraform")
    if terraform is None:
        missing(pytestconfig, "terraform", "terraform: the terraform binary on PATH: none")
    env = {"PATH": str(Path(terraform).parent)}
    fmt = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "terraform"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fmt.returncode == 0, fmt.stdout
    (tmp_path / "bad.tf").write_text('variable "x" {\n  default="a"\n    type = string\n}\n')
    bad = subprocess.run(
        [terraform, "fmt", "-check", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0 and "bad.tf" in bad.stdout


def test_workflows_pass_actionlint_and_an_undefined_matrix_value_does_not(tmp_path):
    workflows = sorted(REPO.glob(".github/workflows/*.yml"))
    # with shellcheck beside it: actionlint checks every `run:` script with it, and silently
    # skips that check when shellcheck is not on PATH
    done = run(BIN / "actionlint", "-shellcheck", BIN / "shellcheck", *workflows)
    assert done.returncode == 0, done.stdout
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.write_text(
        "name: bad\non: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ matrix.python }}\n"
    )
    done = run(BIN / "actionlint", bad, cwd=tmp_path)
    assert done.returncode != 0 and "matrix" in done.stdout


def test_the_code_is_formatted_and_a_misformatted_file_is_not(tmp_path):
    done = run(BIN / "ruff", "format", "--check", ".")
    assert done.returncode == 0, done.stdout
    bad = tmp_path / "bad.py"
    bad.write_text("x = {  'a':1 }\n")
    assert run(BIN / "ruff", "format", "--check", bad, cwd=tmp_path).returncode != 0


def test_mypy_reads_the_project_configuration_and_rejects_a_wrong_type(tmp_path):
    """The whole tree is checked by `make lint`; here, that the configuration holds the services to
    the strict rules (an unannotated function) and the harness to the checked ones (a wrong type)."""
    services = tmp_path / "services"
    services.mkdir()
    (services / "__init__.py").write_text("")
    (services / "loose.py").write_text("def f(x):\n    return x\n")
    (tmp_path / "wrong.py").write_text("def f(x: int) -> str:\n    return x\n")
    config = ("--config-file", REPO / "pyproject.toml", "--no-incremental")
    done = run(sys.executable, "-m", "mypy", *config, "services/loose.py", "wrong.py", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "loose.py:1: error: Function is missing a type annotation" in done.stdout
    assert 'wrong.py:2: error: Incompatible return value type (got "int", expected "str")' in done.stdout
