"""The transcripts of the docs whose output the harness computes from the plan (``harness timings``,
``simulate``, ``outage``: offline plans and virtual time, the same on every machine) are run, and
every output line the docs show must come out, in order. Lines the machine measures (the boot
estimate's pull and start times) and elisions (``...``) are not compared; a command that needs a
file the reader has (an incident's tfvars) is not run. Measured transcripts (``up``, ``rehearse``,
``load``) are checked as commands only (tests/test_docs_commands.py)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import REPO
from tests.test_docs_examples import Example, examples

pytestmark = [pytest.mark.harness, pytest.mark.terraform]
COMPUTED = ("timings", "simulate", "outage")  # output from the plan and virtual time only
# measured on the machine that ran it: the boot estimate's inputs
VOLATILE = re.compile(
    r"estimate pull|reports/timings\.json|built mlplatform-|boot \d+(\.\d+)?s from the declared budget"
)


def transcripts(e: Example) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown after it) for each ``$`` line of a transcript."""
    out: list[tuple[str, list[str]]] = []
    continued = False
    for line in e.text.splitlines():
        if continued:  # the command goes on (a line ending in a backslash)
            out[-1] = (out[-1][0][:-1] + " " + line.strip(), [])
        elif line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
        continued = bool(out) and not out[-1][1] and out[-1][0].endswith("\\")
    return out


def harness_argv(command: str) -> tuple[list[str], str | None] | None:
    """The harness arguments of ``command`` and a ``grep -E`` pattern it is piped into, or None
    when it is not a computed harness command this test can run."""
    command, _, piped = command.partition("|")
    words = shlex.split(command, comments=True)
    if "harness" not in words:
        return None
    argv = words[words.index("harness") + 1 :]
    if not argv or argv[0] not in COMPUTED:
        return None
    if any(a.endswith(".tfvars") and not (REPO / a).exists() for a in argv):
        return None  # the reader's own file
    pattern = None
    if piped:
        grep = shlex.split(piped)
        assert grep[:2] == ["grep", "-E"], f"a pipe this test cannot follow: {piped}"
        pattern = grep[2]
    return argv, pattern


CASES = [
    (e, command, shown) for e in examples() for command, shown in transcripts(e) if harness_argv(command) is not None
]


def squeeze(line: str) -> str:
    return " ".join(line.split())


# One test for all, not one per transcript: an id would be the example's line, which every edit
# above it moves (the recorded durations are keyed by test id).
def test_every_computed_transcript_says_what_the_harness_says(terraform, tmp_path):
    said = []
    for example, command, shown in CASES:
        try:
            compare(example, command, shown, tmp_path)
        except pytest.fail.Exception as exc:
            said.append(str(exc))
    assert not said, "\n\n".join(said)


def compare(example: Example, command: str, shown: list[str], tmp_path) -> None:
    argv, pattern = harness_argv(command)
    done = subprocess.run(
        [sys.executable, "-m", "harness", *argv],
        cwd=tmp_path,  # its pictures go there
        env={**os.environ, "HARNESS_PROJECT": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = [squeeze(x) for x in (done.stdout + done.stderr).splitlines()]
    if pattern:
        said = [x for x in said if re.search(pattern, x)]
    expected = [squeeze(x) for x in shown if x.strip() and "..." not in x and not VOLATILE.search(x)]
    assert expected, f"{example.id}: nothing to compare"
    at = 0
    for line in expected:
        try:
            at = said.index(line, at) + 1
        except ValueError:
            pytest.fail(
                f"{example.id}: `{command}` no longer says\n  {line}\n(in this order); it said:\n  "
                + "\n  ".join(said[-60:]),
                pytrace=False,
            )


def test_there_are_computed_transcripts_to_check():
    assert {c.split("harness ")[1].split()[0] for _, c, _ in CASES} == set(COMPUTED)
