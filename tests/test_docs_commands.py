"""Every command, configuration fragment and import in the README's and docs/' examples is checked
against what it names, so an example cannot drift from the harness unnoticed (tests/test_docs_examples.py
runs the scenario, test and workflow examples themselves):

- a command (an ``sh`` block's lines, a transcript's ``$`` lines, a cron line) is parsed as the
  shell would split it; a ``harness`` command must parse with the harness's own argument parser,
  a ``pytest`` command name existing paths and options pytest knows, ``make`` an existing target,
  a script an executable file of the repository, ``gh workflow run`` a workflow and the inputs it
  declares, ``-f``/``-r`` files that exist; a program this test does not know fails it;
- JSON, TOML and YAML blocks parse (an SLO fragment validates against the SLO schema), HCL names
  only variables the Terraform declares, Python blocks compile and import what exists;
- the layout tree names folders that exist.

Outputs in transcripts and pictures are text: shown, not run."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.cli import parser
from harness.paths import project
from tests import REPO
from tests.test_docs_examples import Example, examples

pytestmark = [pytest.mark.harness, pytest.mark.unit]
EXAMPLES = examples()
# programs an example may show without this test checking more than their file arguments
KNOWN = {"curl", "docker", "docker-compose", "rm", "grep", "export", "cd", "cat", "uv", "pip", "gh", "sudo", "sh"}
OPERATORS = {"|", "||", "&&", ";", "&"}
REDIRECTS = {">", ">>", "<", ">&", "&>", "2>", "2>>"}


def lines_of(e: Example) -> list[str]:
    """The command lines of an example: every line of an sh block, the ``$`` lines of a transcript,
    the command of a cron line; continuation lines joined."""
    raw = e.text.splitlines()
    transcript = any(line.startswith("$ ") for line in raw)
    out: list[str] = []
    pending = ""
    for line in raw:
        if pending:
            pending += " " + line.strip()
        elif transcript:
            if not line.startswith("$ "):
                continue
            pending = line[2:]
        else:
            pending = line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        if e.lang == "cron" and pending.strip() and not pending.lstrip().startswith("#"):
            pending = pending.split(None, 5)[5]
        out.append(pending)
        pending = ""
    return [line for line in out if line.strip() and not line.lstrip().startswith("#")]


def commands(line: str) -> list[list[str]]:
    """The simple commands of a line: split at pipes and lists, redirections and assignments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out: list[list[str]] = [[]]
    skip = False
    for token in lexer:
        if skip:
            skip = False
        elif token in OPERATORS:
            out.append([])
        elif token in REDIRECTS or token.rstrip("&") in REDIRECTS:
            skip = True
            if out[-1] and out[-1][-1].isdigit():
                out[-1].pop()  # 2>&1's "2"
        else:
            out[-1].append(token)
    cleaned = []
    for cmd in out:
        while cmd and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", cmd[0]):
            cmd = cmd[1:]  # VAR=value before the program
        if cmd:
            cleaned.append(cmd)
    return cleaned


COMMAND_EXAMPLES = [
    e for e in EXAMPLES if e.lang in ("sh", "cron") or any(ln.startswith("$ ") for ln in e.text.splitlines())
]


@cache
def pytest_options() -> str:
    done = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=REPO, capture_output=True, text=True)
    return done.stdout


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.M))


def check_harness(argv: list[str], where: str, tmp_path) -> None:
    if "--" in argv:
        argv = argv[: argv.index("--")]
    for arg in argv:  # files the reader has (an incident's tfvars): the parser checks they exist
        if arg.endswith(".tfvars") and not (REPO / arg).exists():
            (tmp_path / arg).write_text("")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.chdir(tmp_path):
        try:
            parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{where}: `harness {' '.join(argv)}` does not parse (exit {exc.code}): {err.getvalue()}")


def check_pytest(argv: list[str], where: str) -> None:
    known = pytest_options()
    for arg in argv:
        if arg.startswith("--"):
            assert re.search(rf"^\s+{re.escape(arg.split('=')[0])}\b", known, re.M), f"{where}: pytest has no {arg}"
        elif "/" in arg or arg.endswith(".py"):
            assert (REPO / arg.split("::")[0]).exists(), f"{where}: no {arg} for pytest to run"


def check_gh(argv: list[str], where: str) -> None:
    if argv[:2] != ["workflow", "run"]:
        return
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / argv[2]).read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    declared = set((on.get("workflow_dispatch") or {}).get("inputs") or {})
    given = {argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "-f"}
    assert given <= declared, f"{where}: {argv[2]} declares no input {sorted(given - declared)}"


def check(cmd: list[str], where: str, tmp_path) -> None:
    program, args = cmd[0], cmd[1:]
    if program == "sudo":
        program, args = args[0], args[1:]
    if os.path.basename(program) in ("python", "python3") and args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "harness":
            return check_harness(rest, where, tmp_path)
        if module == "pytest":
            return check_pytest(rest, where)
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        return
    if program == "harness":
        return check_harness(args, where, tmp_path)
    if program == "make" or program.endswith(".ci/run"):
        if program.endswith(".ci/run"):
            assert os.access(REPO / ".ci" / "run", os.X_OK), where
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        missing = set(targets) - makefile_targets()
        assert not missing, f"{where}: the Makefile has no target {sorted(missing)}"
        return
    if "/" in program and not program.startswith(("/", "~")):
        assert os.access(REPO / program, os.X_OK), f"{where}: {program} is not an executable file here"
        return
    assert program in KNOWN, f"{where}: a program this test does not know: {program} (teach it what to check)"
    if program == "gh":
        check_gh(args, where)
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("-f", "-r") and program in ("docker-compose", "pip"):
            assert (REPO / value).exists(), f"{where}: no {value}"


def problems(checks) -> list[str]:
    """What each of ``checks`` (callables) said when it failed: every drifted example at once."""
    said = []
    for one in checks:
        try:
            one()
        except (AssertionError, pytest.fail.Exception, ValueError, ImportError, SyntaxError) as exc:
            said.append(str(exc).splitlines()[0] if str(exc) else repr(exc))
    return said


# One test per kind, not one per example: an example's id would be its line, which every edit
# above it moves (and the recorded durations are keyed by test id).
def test_every_command_of_an_example_names_what_exists(tmp_path):
    def one(example: Example):
        def run() -> None:
            found = [c for line in lines_of(example) for c in commands(line)]
            assert found, f"{example.id}: no command found"
            for cmd in found:
                check(cmd, example.id, tmp_path)

        return run

    assert len(COMMAND_EXAMPLES) > 20
    said = problems(one(e) for e in COMMAND_EXAMPLES)
    assert not said, "\n".join(said)


def test_the_checker_catches_a_drifted_command(tmp_path):
    bad = [
        ".venv/bin/python -m harness load --profile smoke --no-such-option",
        ".venv/bin/python -m harness rehearse --env nowhere",
        ".venv/bin/python -m pytest suites/no_such_suite",
        ".venv/bin/python -m pytest --no-such-pytest-option",
        "make no-such-target",
        "gh workflow run deploy.yml -f no-such-input=1",
        "brew install wrk",
    ]
    for line in bad:
        (cmd,) = commands(line)
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check(cmd, line, tmp_path)
    drifted = [
        Example(REPO / "x.md", 1, "json", '{"a": 1,}\n'),
        Example(REPO / "x.md", 2, "hcl", "no_such_variable = 1\n"),
        Example(REPO / "x.md", 3, "python", "from harness.wait import no_such_name\n"),
        Example(REPO / "x.md", 4, "yaml", "objectives:\n  total: {p99_ms: [1, 2]}\n"),
        Example(REPO / "x.md", 5, "toml", "[tool.harness\n"),
    ]
    assert len(problems((lambda e=e: fragment(e)) for e in drifted)) == len(drifted)
    assert commands("A=1 make test PYTEST_ARGS='-x' >> log 2>&1 | tee x") == [
        ["make", "test", "PYTEST_ARGS=-x"],
        ["tee", "x"],
    ]


DATA = [e for e in EXAMPLES if e.lang in ("json", "toml", "yaml", "hcl", "python")]


def test_every_data_and_code_fragment_parses_and_names_what_exists():
    assert len(DATA) > 10
    said = problems((lambda e=e: fragment(e)) for e in DATA)
    assert not said, "\n".join(said)


def fragment(example: Example) -> None:
    text = example.text
    if example.lang == "json":
        try:
            json.loads(text)
        except ValueError:
            try:
                json.loads("{" + text + "}")  # a fragment of an object
            except ValueError as exc:
                raise AssertionError(f"{example.id}: not JSON: {exc}") from None
    elif example.lang == "toml":
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AssertionError(f"{example.id}: {exc}") from None
    elif example.lang == "yaml":
        data = yaml.safe_load(text)
        if isinstance(data, dict) and "objectives" in data:
            from harness.slo import SCHEMA

            errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
            assert not errors, f"{example.id}: {errors[0].message}"
    elif example.lang == "hcl":
        declared = set(re.findall(r'^variable "(\w+)"', variables_tf(), re.M))
        named = set(re.findall(r"^(\w+)\s*=", text, re.M))
        assert named and named <= declared, f"{example.id}: the plan declares no {sorted(named - declared)}"
    else:
        compile(text, example.id, "exec")  # a SyntaxError names the example as its file
        for module, names in re.findall(r"^from ([\w.]+) import ([\w, ]+)$", text, re.M):
            defined = defined_in(module)
            for name in names.split(","):
                assert name.strip() in defined, f"{example.id}: {module} has no {name.strip()}"


def defined_in(module: str) -> set[str]:
    """The names ``module`` defines. The Locust side is read, not imported: importing Locust
    patches gevent into the process, and this one is pytest's."""
    if module.split(".")[0] != "harness_locust":
        return set(dir(importlib.import_module(module)))
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    names = set()
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            names |= {t.id for t in ast.walk(node) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def variables_tf() -> str:
    return "".join(p.read_text() for p in sorted(project().terraform_dir.glob("*.tf")))


def test_the_layout_tree_names_folders_that_exist():
    (tree,) = [e for e in EXAMPLES if e.text.startswith("harness/ ")]
    named = re.findall(r"^(?:  )?([a-z_.][\w.-]*/)", tree.text, re.M)
    top = [n for n in re.findall(r"^([a-z_.][\w.-]*/)", tree.text, re.M)]
    assert len(named) > 10 and top, tree.text[:400]
    parent = ""
    for line in tree.text.splitlines():
        m = re.match(r"^(  )?([a-z_.][\w.-]*)/", line)
        if not m:
            continue
        if m.group(1):
            path = REPO / parent / m.group(2)
        else:
            parent = m.group(2)
            path = REPO / parent
        assert path.is_dir(), f"{tree.id}: the layout names {path.relative_to(REPO)}/, which does not exist"
