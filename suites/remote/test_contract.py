"""The api against its own OpenAPI description: schemathesis generates requests from
``/openapi.json`` (valid and invalid, every phase: examples, coverage, fuzzing, and stateful
sequences that follow the links, ``POST /runs`` then ``GET /runs/{run_id}``) and runs every check
on each answer: no server error, documented status codes, media types, headers and bodies,
invalid requests rejected, valid ones accepted, a created run readable.

Bounded: a fixed seed (setting ``fuzz_seed``, 1), at most ``fuzz_examples`` cases per operation
and phase (25) and ``MAX_TIME`` seconds in all, which grows in proportion to the examples: the
nightly fuzz run (``make fuzz``) draws a seed and asks for 500. Against a ``--target-url`` without
``--allow-writes`` only the reads are tested.
The run's JUnit file and its requests (HAR) land in ``reports/contract/``."""

import re
import sys
from pathlib import Path

import pytest

from harness.process import run_lines
from harness.progress import step
from harness.settings import Settings

pytestmark = [pytest.mark.remote, pytest.mark.slow]
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_TIME = 45  # seconds for the default examples: fuzzing and stateful sequences repeat until it is spent
READ_ONLY_TIME = 20  # the reads alone: two operations


def test_the_api_answers_as_its_openapi_description_says(target, harness_settings, pytestconfig, tmp_path):
    reports = Path(pytestconfig.rootpath, harness_settings.reports_dir, "contract")
    reports.mkdir(parents=True, exist_ok=True)
    seed, examples = harness_settings.fuzz_seed, harness_settings.fuzz_examples
    scale = max(1.0, examples / Settings.fuzz_examples)
    max_time = round(MAX_TIME * scale)
    print(f"schemathesis seed {seed}, {examples} examples, {max_time} s")  # the replay, in the report
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{target.api}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--max-time",
        str(max_time),
        "--workers",
        "1",
        "--seed",
        str(seed),
        "--request-timeout",
        "15",
        "--report",
        "junit,har",
        "--report-dir",
        str(reports),
    ]
    if target.writes:
        phases = ["examples", "coverage", "fuzzing", "stateful"]
    else:  # the reads alone: no run to create, so no stateful sequence and no example to send
        phases = ["coverage", "fuzzing"]
        argv += ["--include-method", "GET"]
        max_time = round(READ_ONLY_TIME * scale)
        argv[argv.index("--max-time") + 1] = str(max_time)
    argv += ["--phases", ",".join(phases)]
    lines: list[str] = []
    with step(f"contract test of {target.api}") as s:

        def on_line(line: str) -> None:
            lines.append(line)
            if line.strip():
                s.update(line.strip()[:100])

        # in a fresh folder: no example database from an earlier run changes what this one sends
        code, _ = run_lines(argv, None, max_time + 120, on_line, cwd=tmp_path)
    output = "".join(lines)
    (reports / "output.txt").write_text(output)
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    assert code == 0, f"schemathesis exit {code} (all of it in {reports / 'output.txt'}):\n{output[-6000:]}"
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases and int(cases.group(1)) > 0 and cases.group(1) == cases.group(2), summary
    expected = {p.capitalize() for p in phases}
    ran = {p for p in expected if re.search(rf"✅ {p}\b", summary)}
    assert ran == expected, f"phases that ran and passed: {sorted(ran)}; expected {sorted(expected)}:\n{summary}"
