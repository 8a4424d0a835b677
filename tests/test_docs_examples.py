"""The examples of the README and docs/ run here, so an example that drifts from the harness fails
CI instead of misleading the next reader:

- a fault scenario (YAML with ``fault`` and ``expect``) is loaded by the harness's own loader and
  run on the faults suite's stack, judged against its budgets;
- a rollout scenario (with ``rollout``) is the committed file of its name, which the full proof
  rehearses (an example may leave out the long ``description``);
- a Python test (a block that defines ``test_*``) runs as written, with the session's fixtures;
- a pipeline job that calls one of this repository's reusable workflows passes only inputs the
  workflow declares, and every input it requires.

Each example is named by its file and line."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.faults import scenarios
from harness.paths import shown
from pytest_harness.faults import configured_for, run_scenario
from tests import REPO

pytestmark = pytest.mark.harness
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Example:
    path: Path
    line: int  # of the opening fence
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{shown(self.path)}:{self.line}"


def examples(paths: list[Path] = DOCS) -> list[Example]:
    """Every fenced code block of ``paths`` with its language."""
    found = []
    for path in paths:
        fence: tuple[int, str] | None = None
        body: list[str] = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("```"):
                if fence is None:
                    fence, body = (number, line[3:].strip()), []
                else:
                    found.append(Example(path, fence[0], fence[1], "\n".join(body) + "\n"))
                    fence = None
            elif fence is not None:
                body.append(line)
    return found


def data(e: Example) -> object:
    return yaml.safe_load(e.text) if e.lang == "yaml" else None


def is_scenario(e: Example, rollout: bool) -> bool:
    d = data(e)
    return isinstance(d, dict) and {"fault", "expect"} <= set(d) and ("rollout" in d) == rollout


EXAMPLES = examples()
FAULT_SCENARIOS = [e for e in EXAMPLES if is_scenario(e, rollout=False)]
ROLLOUT_SCENARIOS = [e for e in EXAMPLES if is_scenario(e, rollout=True)]
PYTHON_TESTS = [e for e in EXAMPLES if e.lang == "python" and "\ndef test_" in f"\n{e.text}"]
LOCAL_WORKFLOW = "./.github/workflows/"


def calls(e: Example) -> dict[str, dict]:
    """The jobs of a pipeline example that call one of this repository's reusable workflows."""
    d = data(e)
    jobs = (d.get("jobs") or {}) if isinstance(d, dict) else {}
    return {n: j for n, j in jobs.items() if isinstance(j, dict) and str(j.get("uses", "")).startswith(LOCAL_WORKFLOW)}


WORKFLOW_CALLS = [e for e in EXAMPLES if calls(e)]


def ids(found: list[Example]) -> list[str]:
    return [e.id for e in found]


def test_the_docs_show_each_kind_of_example_this_module_runs():
    """Each list is found (a renamed fence or a moved block would otherwise leave it unchecked)."""
    assert {shown(e.path) for e in FAULT_SCENARIOS} >= {"README.md", "docs/faults.md"}
    assert ROLLOUT_SCENARIOS and PYTHON_TESTS and WORKFLOW_CALLS


@pytest.mark.proof  # a stack's fault each (about 20 s): in the full proof, which CI runs on every change
@pytest.mark.alone  # its own faults stack: beside a blue/green rehearsal, green detected 6.42 s of 6.05
@pytest.mark.disruptive
@pytest.mark.parametrize("example", FAULT_SCENARIOS, ids=ids(FAULT_SCENARIOS))
def test_a_scenario_example_runs_and_meets_its_budgets(example, fault_stack, budgets, tmp_path):
    name = data(example)["name"]
    path = tmp_path / f"{name}.yaml"
    path.write_text(example.text)
    scenario = scenarios.load(path)  # the harness's own loader: schema, names, fields
    with configured_for(fault_stack, scenario) as stack:
        _, verdicts = run_scenario(stack, scenario, budgets)
    failed = [str(v) for v in verdicts if not v.ok]
    assert not failed, f"{example.id}: the example's scenario fails as written:\n" + "\n".join(failed)


@pytest.mark.unit
@pytest.mark.parametrize("example", ROLLOUT_SCENARIOS, ids=ids(ROLLOUT_SCENARIOS))
def test_a_rollout_scenario_example_is_the_file_the_proof_rehearses(example, tmp_path):
    shownd = data(example)
    committed = scenarios.rollouts_dir() / f"{shownd['name']}.yaml"
    assert committed.exists(), f"{example.id}: no scenarios/rollouts/{shownd['name']}.yaml to rehearse it"
    real = yaml.safe_load(committed.read_text())
    if "description" not in shownd:
        real.pop("description")
    assert shownd == real, f"{example.id} differs from {shown(committed)}"
    path = tmp_path / committed.name
    path.write_text(example.text if "description" in shownd else committed.read_text())
    scenarios.load(path)


@pytest.mark.proof  # disrupts the session's stack: in the full proof, as above
@pytest.mark.alone  # and its session stack's boot, after the rehearsals, as above
@pytest.mark.disruptive
@pytest.mark.parametrize("example", PYTHON_TESTS, ids=ids(PYTHON_TESTS))
def test_a_python_test_example_passes_as_written(example, request):
    namespace: dict = {"__name__": f"example_{example.line}"}
    exec(compile(example.text, example.id, "exec"), namespace)  # noqa: S102 - our own docs
    tests = [f for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    assert tests, f"{example.id}: no test function"
    for test in tests:
        test(**{p: request.getfixturevalue(p) for p in inspect.signature(test).parameters})


@pytest.mark.unit
@pytest.mark.parametrize("example", WORKFLOW_CALLS, ids=ids(WORKFLOW_CALLS))
def test_a_pipeline_example_calls_a_workflow_with_the_inputs_it_declares(example):
    for name, job in calls(example).items():
        uses = job["uses"]
        called = REPO / uses
        assert called.exists(), f"{example.id}: jobs.{name}.uses: no {uses}"
        doc = yaml.safe_load(called.read_text())
        on = doc.get("on", doc.get(True))
        declared = (on.get("workflow_call") or {}).get("inputs") or {}
        given = set(job.get("with") or {})
        assert given <= set(declared), f"{example.id}: jobs.{name}.with: {sorted(given - set(declared))} undeclared"
        required = {k for k, v in declared.items() if v.get("required")}
        assert required <= given, f"{example.id}: jobs.{name}.with lacks {sorted(required - given)}"


@pytest.mark.unit
def test_no_install_hint_names_a_platform_the_harness_is_not_tested_on():
    """The harness is built and tested on Linux only (Debian's packages, debootstrap): a Homebrew
    line would send a macOS user down a path no one has walked."""
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert "brew install" not in line, f"{shown(path)}:{number}: {line.strip()}"
