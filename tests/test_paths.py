"""How the harness finds the platform it tests (harness/paths.py): the [tool.harness] table, its
defaults, the order of the ways to name a project, and a clear error for a wrong table; and the
table and error of docs/plugin.md are what the code reads and says."""

from __future__ import annotations

import re
import tomllib

import pytest

from harness import paths
from harness.errors import ConfigurationError
from tests import REPO
from tests.test_docs_examples import examples

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def project_at(folder, table: str = "[tool.harness]\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(table)
    return folder


def test_an_empty_table_means_the_defaults_relative_to_its_folder(tmp_path):
    p = paths.read(project_at(tmp_path))
    assert p.root == tmp_path and p.terraform_dir == tmp_path / "terraform"
    assert p.environments_dir == tmp_path / "terraform" / "environments"
    assert p.compose_file == tmp_path / "services" / "docker-compose.yml"
    assert p.pythonpath == str(tmp_path)


def test_a_key_moves_only_its_folder(tmp_path):
    table = '[tool.harness]\nterraform_dir = "infra"\nloadtests_dir = "perf"\nservices_dir = "platform/services"\n'
    p = paths.read(project_at(tmp_path, table))
    assert p.terraform_dir == tmp_path / "infra" and p.loadtests_dir == tmp_path / "perf"  # profiles: any name
    assert p.environments_dir == tmp_path / "terraform" / "environments"  # its own key
    assert p.pythonpath == str(tmp_path / "platform")  # services.* imports from the folder that holds it
    assert "[tool.harness] of" in p.source


@pytest.mark.parametrize(
    "table, expected",
    [
        ('[tool.harness]\nterraform_root = "infra"\n', "to have only the keys services_dir, "),
        ("[tool.harness]\nterraform_dir = 3\n", "terraform_dir in "),
        ('[tool.harness]\nterraform_dir = ""\n', "to be a path"),
        ('[tool]\nharness = "x"\n', "to be a table"),
        ("[tool.harness\n", "readable TOML"),
        ('[tool.harness]\nservices_dir = "platform/svc"\n', "to end in a folder named 'services'"),
    ],
)
def test_a_wrong_table_is_refused_naming_the_key(tmp_path, table, expected):
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        paths.read(project_at(tmp_path, table))


def test_the_nearest_table_above_wins_and_a_pyproject_without_one_is_passed_over(tmp_path):
    outer = project_at(tmp_path)
    inner = tmp_path / "lib" / "src"
    inner.mkdir(parents=True)
    (tmp_path / "lib" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert paths.find(inner) == outer
    assert paths.find(project_at(tmp_path / "lib" / "src", "[tool.harness]\n")) == inner


def test_harness_project_comes_first_then_the_folder_the_search_starts_from(tmp_path, monkeypatch):
    here, there = project_at(tmp_path / "here"), project_at(tmp_path / "there")
    monkeypatch.setenv(paths.PROJECT_ENV, str(there))
    assert paths.discover(here).root == there
    monkeypatch.setenv(paths.PROJECT_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="HARNESS_PROJECT to be a folder"):
        paths.discover(here)
    monkeypatch.delenv(paths.PROJECT_ENV)
    assert paths.discover(here).root == here
    with pytest.raises(ConfigurationError, match=r"(?s)with a \[tool.harness\] table in .*set HARNESS_PROJECT"):
        paths.discover(tmp_path / "here" / ".." / "..")


def test_this_repository_is_its_own_first_user():
    assert paths.project().root == REPO
    assert paths.project().source == f"[tool.harness] of {REPO / 'pyproject.toml'}"


def doc_blocks(lang: str) -> list[str]:
    return [e.text for e in examples([REPO / "docs" / "plugin.md"]) if e.lang == lang]


def test_the_docs_table_is_the_defaults_and_this_repository_writes_them_out():
    (table,) = [b for b in doc_blocks("toml") if "[tool.harness]" in b]
    assert tomllib.loads(table)["tool"]["harness"] == paths.DEFAULTS
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["harness"] == paths.DEFAULTS


def test_the_docs_error_is_the_one_a_wrong_key_gets(tmp_path):
    (shown,) = [b for b in doc_blocks("") if "expected [tool.harness]" in b]
    folder = project_at(tmp_path / "src" / "platform", '[tool.harness]\nterraform_root = "infra"\n')
    with pytest.raises(ConfigurationError) as caught:
        paths.read(folder)
    assert "ERROR: " + str(caught.value).replace(str(tmp_path), "") == shown.strip()  # as pytest shows it


def test_the_cli_reads_harness_settings_where_pytest_does(tmp_path, monkeypatch):
    """A project without pytest.ini keeps its pytest options in [tool.pytest.ini_options]: the
    harness command reads its harness_* keys there; pytest.ini wins when both exist, as in pytest."""
    from harness.settings import ini_values

    root = project_at(
        tmp_path, '[tool.harness]\n\n[tool.pytest.ini_options]\nharness_runtime = "local"\naddopts = "-ra"\n'
    )
    monkeypatch.setattr(paths, "_configured", paths.read(root))
    assert ini_values() == {"harness_runtime": "local"}
    (root / "pytest.ini").write_text("[pytest]\nharness_runtime = docker\n")
    assert ini_values() == {"harness_runtime": "docker"}
    monkeypatch.setattr(paths, "_configured", ConfigurationError("a project", "none"))
    assert ini_values() == {}  # outside a project: no file to read, nothing to say
