"""The pipeline files keep the rules a reviewer would otherwise have to remember (docs/pipeline.md):
no workflow input spliced into a shell line, every third-party action pinned by commit, least
privilege, a concurrency group, artifacts that expire, jobs that time out; and the verify step
that follows a deployment, run here as the workflow runs it, against the session's stack."""

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests import REPO

pytestmark = [pytest.mark.harness]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")  # owner/repo[/path]@<commit>


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(doc: dict):
    for name, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield name, job, step


@pytest.mark.unit
@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_no_expression_is_spliced_into_a_shell_line(path):
    """Inputs, variables, matrix values and outputs reach a script through `env:` only, quoted."""
    spliced = [
        (job, step.get("name", step["run"][:40])) for job, _, step in steps(load(path)) if "${{" in step.get("run", "")
    ]
    assert spliced == [], spliced


@pytest.mark.unit
@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_every_third_party_action_is_pinned_by_commit_with_its_version_beside_it(path):
    text = path.read_text()
    for line in text.splitlines():
        m = re.match(r"\s*(?:- )?uses:\s*(\S+)(.*)$", line)
        if not m or m.group(1).startswith("./"):
            continue
        assert PINNED.match(m.group(1)), line
        assert re.match(r"\s*# v\d", m.group(2)), f"the version the commit is, as a comment: {line}"


@pytest.mark.unit
@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_least_privilege_a_concurrency_group_expiring_artifacts_and_time_limits(path):
    doc = load(path)
    assert doc.get("permissions") == {"contents": "read"}, "the workflow's default: read the code, nothing more"
    assert "group" in doc.get("concurrency", {}), "a concurrency group"
    for name, job in doc["jobs"].items():
        granted = {k: v for k, v in (job.get("permissions") or {}).items() if v != "read"}
        uses = " ".join(s.get("uses", "") for s in job.get("steps", [])) + job.get("uses", "")
        for scope in granted:
            why = {
                "checks": "mikepenz/action-junit-report" in uses
                or job.get("uses", "").endswith(("verify.yml", "test.yml")),
                "id-token": "aws-actions/configure-aws-credentials" in uses,
            }.get(scope, False)
            assert why and granted[scope] == "write", f"{path.name}: job {name} is granted {scope}: {granted[scope]}"
        if "uses" not in job:  # a job that calls a workflow takes the called jobs' limits
            assert "timeout-minutes" in job, f"{path.name}: job {name} has no time limit"
    for _, _, step in steps(doc):
        if "actions/upload-artifact" in step.get("uses", ""):
            assert "retention-days" in step.get("with", {}), f"{path.name}: {step.get('name')} keeps artifacts forever"


@pytest.mark.unit
def test_a_pull_request_runs_the_pull_request_stage_and_main_the_full_proof():
    test = load(REPO / ".github" / "workflows" / "test.yml")
    stage = test["env"]["STAGE"]
    assert "pull_request" in stage and "'pr'" in stage and "'proof'" in stage
    shard = next(s for _, _, s in steps(test) if "shard" in s.get("run", "") and ".ci/run" in s.get("run", ""))
    assert '.ci/run shard STAGE="$STAGE" SHARDS="$SHARDS" SHARD="$SHARD"' in shard["run"]
    assert test["jobs"]["merge"]["needs"] == ["lint", "shards"]
    merge = next(st["run"] for _, _, st in steps(test) if "archive-reports" in st.get("run", ""))
    assert 'cat reports/summary.md >> "$GITHUB_STEP_SUMMARY"' in merge  # the index's first screen on the run page
    assert '--stage "$STAGE"' in merge  # every test of the stage in some shard's report
    # the history of earlier runs comes from the cache and goes back to it, whatever the outcome
    merge_steps = test["jobs"]["merge"]["steps"]
    restore = next(s for s in merge_steps if s.get("id") == "history")
    save = next(s for s in merge_steps if s.get("name") == "Save the history")
    assert restore["with"]["path"] == save["with"]["path"] == "reports/history.jsonl"
    assert save["with"]["key"] == "${{ steps.history.outputs.cache-primary-key }}" and "!cancelled()" in save["if"]
    names = [s.get("name") for s in merge_steps]
    assert (
        names.index("Restore the history of earlier runs")
        < names.index("Merge the reports")
        < names.index("Save the history")
    )
    deploy = load(REPO / ".github" / "workflows" / "deploy.yml")
    assert deploy["jobs"]["proof"]["uses"] == "./.github/workflows/test.yml"
    assert deploy["jobs"]["proof"]["with"]["stage"] == "proof"
    assert deploy["jobs"]["verify"]["uses"] == "./.github/workflows/verify.yml"
    assert "rollback" in deploy["jobs"] and "failure()" in deploy["jobs"]["rollback"]["if"]


@pytest.mark.unit
def test_the_nightly_load_fails_loudly_without_a_target_and_reads_the_balancers_check_from_the_plan():
    """Without STAGING_API_URL the harness would load a local stack and record it as staging's
    night; and the balancer's timeout and matcher are staging's own, read from its plan."""
    nightly = load(REPO / ".github" / "workflows" / "nightly-load.yml")
    job = nightly["jobs"]["load"]
    check = next(s for _, _, s in steps(nightly) if s.get("name") == "Check the target")
    env = {**os.environ, **{k: "" for k in job["env"]}}
    empty = subprocess.run(["bash", "-c", check["run"]], env=env, capture_output=True, text=True)
    assert empty.returncode == 1 and "::error::" in empty.stdout and "STAGING_API_URL" in empty.stdout
    given = subprocess.run(
        ["bash", "-c", check["run"]], env={**env, "TARGET_URL": "https://api.example.com"}, capture_output=True
    )
    assert given.returncode == 0
    run = next(s["run"] for _, _, s in steps(nightly) if "harness load" in s.get("run", ""))
    assert "--lb-from-plan" in run and "--env staging" in run
    assert "--lb-timeout" not in run and "--lb-matcher" not in run  # no figure typed by hand
    assert any(s.get("uses", "").startswith("hashicorp/setup-terraform@") for _, _, s in steps(nightly))


def evaluate(expression: str, inputs: dict) -> str:
    """The two forms of expression the verify step's `env:` uses, as GitHub evaluates them:
    ``${{ inputs.x }}`` and ``${{ inputs.x && 'a' || 'b' }}``."""
    m = re.fullmatch(r"\$\{\{\s*inputs\.([\w-]+)\s*(?:&&\s*'([^']*)'\s*\|\|\s*'([^']*)'\s*)?\}\}", expression)
    assert m, f"an expression this test cannot evaluate: {expression}"
    value = inputs[m.group(1)]
    if m.group(2) is None:
        return str(value)
    return m.group(2) if value else m.group(3)


@pytest.mark.slow
def test_the_verify_step_of_the_workflow_passes_against_the_sessions_stack(stack, tmp_path):
    """The step runs as the runner would run it: its `env:` evaluated from the inputs, its script in
    bash from the repository; only the report paths are moved into this test's folder (PYTEST_ARGS,
    which `make verify` appends) and the contract test left out (it runs against this stack in the
    same stage already)."""
    verify = load(REPO / ".github" / "workflows" / "verify.yml")
    (step,) = [s for _, _, s in steps(verify) if s.get("name") == "The remote suite"]
    inputs = {"target-url": stack.url("api"), "allow-writes": False, "environment": "staging"}
    env = {k: evaluate(v, inputs) for k, v in step["env"].items()}
    assert env == {"TARGET": stack.url("api"), "WRITES": ""}
    assert {k: evaluate(v, {**inputs, "allow-writes": True}) for k, v in step["env"].items()}["WRITES"] == "1"
    junit = tmp_path / "junit-verify.xml"
    extra = f"-p no:xdist -k 'not contract' --reports-dir={tmp_path} --junitxml={junit} --html={tmp_path / 'v.html'}"
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=REPO,
        # MLFLOW (make verify's variable): on the platform the balancer routes /mlflow on the api's
        # host; the session's stack serves MLflow on a port of its own
        env={**os.environ, **env, "PYTEST_ARGS": extra, "MLFLOW": stack.url("mlflow"), "HARNESS_RUNTIME": "local"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 3 and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert "read-only" in done.stdout or int(suite.get("skipped")) >= 1, done.stdout[-2000:]  # no writes asked
