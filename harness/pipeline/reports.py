"""The pipeline's jobs' reports brought back together (``harness merge-reports``): one JUnit file
with every job's test suites, one ``durations.json`` with every test, and ``index.html``, the run's
front door: the verdict and counts, each fault scenario's measured figures against its budgets and
the slowest tests on one screen, then a link to every report the run made (the pytest-html pages,
the load runs' index, the fault, deployment and health pictures, the timings, the contract
results). ``summary.md`` says the same screen in Markdown (CI's job summary)."""

from __future__ import annotations

import html
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigurationError
from harness.pipeline.durations import Timed, by_suite, read_runs, run_file


@dataclass(frozen=True)
class Counts:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tests + other.tests,
            self.failures + other.failures,
            self.errors + other.errors,
            self.skipped + other.skipped,
            self.seconds + other.seconds,
        )

    @property
    def passed(self) -> bool:
        return not (self.failures or self.errors)


def suites_of(path: Path) -> list[ET.Element]:
    """The ``<testsuite>`` elements of one JUnit file (pytest writes them under ``<testsuites>``)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ConfigurationError(f"{path}: a JUnit XML file", str(exc)) from None
    return [root] if root.tag == "testsuite" else list(root.iter("testsuite"))


def counts(suite: ET.Element) -> Counts:
    return Counts(
        int(suite.get("tests", 0)),
        int(suite.get("failures", 0)),
        int(suite.get("errors", 0)),
        int(suite.get("skipped", 0)),
        float(suite.get("time", 0.0)),
    )


def merge_junit(paths: Iterable[Path], out: Path) -> Counts:
    """Every test suite of ``paths`` under one ``<testsuites>`` in ``out``; the totals."""
    root = ET.Element("testsuites")
    total = Counts()
    for path in paths:
        for suite in suites_of(path):
            suite.set("name", f"{suite.get('name', 'pytest')} ({path.parent.name}/{path.name})")
            root.append(suite)
            total += counts(suite)
    root.set("tests", str(total.tests))
    root.set("failures", str(total.failures))
    root.set("errors", str(total.errors))
    root.set("skipped", str(total.skipped))
    root.set("time", f"{total.seconds:.3f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return total


def junit_files(dirs: Iterable[Path]) -> list[Path]:
    """The stage runner's own JUnit files, at the top of each folder (not schemathesis's under
    contract/, not what an earlier merge wrote)."""
    return sorted(p for d in dirs for p in Path(d).glob("junit-*.xml"))


def junit_id(nodeid: str) -> tuple[str, str]:
    """The classname and name pytest's JUnit file gives a test: ``suites/a/test_b.py::C::t[x]`` is
    ``("suites.a.test_b.C", "t[x]")``. As pytest's junitxml does it (``mangle_test_address``): the
    parameters are set aside first, so a ``::`` or ``/`` among them splits nothing."""
    address, bracket, params = nodeid.partition("[")
    path, *rest = address.split("::")
    return ".".join([re.sub(r"\.py$", "", path.replace("/", ".")), *rest[:-1]]), rest[-1] + bracket + params


def not_reported(junits: Iterable[Path], nodeids: Iterable[str]) -> list[str]:
    """The tests of ``nodeids`` that no test case of ``junits`` reports: a job that ran less than
    its share (a plan computed from other inputs, a test file its runner did not collect) passes
    on its own, and only the merge can tell."""
    reported = {(c.get("classname"), c.get("name")) for j in junits for s in suites_of(j) for c in s.iter("testcase")}
    return [n for n in nodeids if junit_id(n) not in reported]


def merge(dirs: Iterable[Path], out: Path) -> Counts:
    """The jobs' report folders ``dirs`` merged into ``out`` (``junit.xml``, ``durations.json``,
    ``index.html``); each folder's HTML reports are linked where they are."""
    dirs = [Path(d) for d in dirs]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise ConfigurationError("report folders of the pipeline's jobs", f"no such folder: {', '.join(missing)}")
    junits = junit_files(dirs)
    if not junits:
        raise ConfigurationError(
            "JUnit files (junit*.xml) in the report folders", f"none in {', '.join(map(str, dirs))}"
        )
    total = merge_junit(junits, out / "junit.xml")
    runs = sorted(p for d in dirs for p in d.glob("durations-*.json"))
    seconds = read_runs(runs)
    (out / "durations.json").write_text(
        json.dumps(run_file([Timed(k, v) for k, v in seconds.items()], 0.0, "merged"), indent=1) + "\n"
    )
    pages = sorted(p for d in dirs for p in d.glob("*.html") if p.name != "index.html")
    found = artifacts(dirs, out)
    faults = fault_figures(dirs)
    (out / "index.html").write_text(index_html(junits, pages, seconds, total, out, found, faults))
    (out / "summary.md").write_text(summary_md(total, faults, seconds))
    return total


# What a run leaves besides its pytest-html pages, by kind: (title, glob under a report folder)
ARTIFACTS = (
    ("Load runs", "load*/**/index.html"),
    ("Fault scenarios: health timelines", "faults/*.svg"),
    ("Deployments: rollouts and fleets", "deployment/**/*.svg"),
    ("Health timelines of other tests", "timelines/*.svg"),
    ("Times to ready", "timings.svg"),
    ("Figures", "*.json"),
    ("Contract (schemathesis)", "contract/*.xml"),
)


def artifacts(dirs: list[Path], out: Path) -> dict[str, list[Path]]:
    """Every file of ``ARTIFACTS`` in the report folders, by title (``out``'s own outputs left out)."""
    own = {out / "junit.xml", out / "durations.json"}
    found: dict[str, list[Path]] = {}
    for title, pattern in ARTIFACTS:
        paths = sorted({p for d in dirs for p in d.glob(pattern) if p.is_file() and p not in own})
        if paths:
            found[title] = paths
    return found


def fault_figures(dirs: list[Path]) -> list[dict]:
    """Each fault scenario's measured figures (faults.json of each folder; unreadable ones skipped)."""
    rows: dict[tuple, dict] = {}
    for d in dirs:
        try:
            data = json.loads((d / "faults.json").read_text())
        except (OSError, ValueError):
            continue
        for r in data if isinstance(data, list) else []:
            if isinstance(r, dict) and "scenario" in r:
                rows[(r["scenario"], r.get("runtime"))] = r
    return [rows[k] for k in sorted(rows, key=str)]


BUDGET_OF = {"detected": "detect", "recovered": "recover", "slowest": "slowest"}  # faults.json's keys


def _figure(row: dict, key: str) -> str:
    value, budget = row.get(f"{key}_s"), row.get(f"{BUDGET_OF[key]}_budget_s")
    if value is None:
        return "-"
    return f"{value:g} / {budget:g}" if budget is not None else f"{value:g}"


def _cell(text: object) -> str:
    """Text for a Markdown table cell: a ``|`` would end the cell, a backtick open code."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def summary_md(total: Counts, faults: list[dict], seconds: dict[str, float]) -> str:
    """The index's first screen in Markdown, for CI's job summary."""
    lines = [
        f"## {'passed' if total.passed else 'FAILED'}: {total.tests} tests, {total.failures} failed, "
        f"{total.errors} errors, {total.skipped} skipped",
        "",
    ]
    if faults:
        lines += [
            "| scenario | runtime | detected s / budget | recovered s / budget | passed |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {_cell(r['scenario'])} | {_cell(r.get('runtime', ''))} | {_figure(r, 'detected')} | "
            f"{_figure(r, 'recovered')} | "
            f"{'yes' if r.get('passed') else 'NO'} |"
            for r in faults
        ]
        lines.append("")
    lines += ["| seconds | slowest tests |", "|---:|---|"]
    lines += [f"| {v:.1f} | {_cell(k)} |" for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])[:10]]
    return "\n".join(lines) + "\n"


def index_html(
    junits: list[Path],
    pages: list[Path],
    seconds: dict[str, float],
    total: Counts,
    out: Path,
    found: dict[str, list[Path]] | None = None,
    faults: list[dict] | None = None,
) -> str:
    verdict = "passed" if total.passed else "FAILED"
    jobs = "".join(
        f"<tr><td>{html.escape(str(Path(os.path.relpath(j, out))))}</td><td>{c.tests}</td><td>{c.failures}</td>"
        f"<td>{c.errors}</td><td>{c.skipped}</td><td>{c.seconds / 60:.1f}</td></tr>"
        for j in junits
        for c in [sum((counts(s) for s in suites_of(j)), Counts())]
    )
    links = "".join(
        f'<li><a href="{html.escape(os.path.relpath(p, out))}">{html.escape(os.path.relpath(p, out))}</a></li>'
        for p in pages
    )
    suites = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{n}</td><td>{sec:.0f}</td></tr>" for s, n, sec in by_suite(seconds)
    )
    slow = "".join(
        f"<tr><td>{v:.1f}</td><td>{html.escape(k)}</td></tr>"
        for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])[:15]
    )

    def link(p: Path) -> str:
        rel = html.escape(os.path.relpath(p, out))
        return f'<li><a href="{rel}">{rel}</a></li>'

    more = "".join(
        f"<h3>{html.escape(title)}</h3><ul>{''.join(link(p) for p in paths)}</ul>"
        for title, paths in (found or {}).items()
    )
    figures = "".join(
        f"<tr><td>{html.escape(str(r['scenario']))}</td><td>{html.escape(str(r.get('runtime', '')))}</td>"
        f"<td>{_figure(r, 'detected')}</td><td>{_figure(r, 'recovered')}</td><td>{_figure(r, 'slowest')}</td>"
        f"<td>{'yes' if r.get('passed') else '<b>NO</b>'}</td></tr>"
        for r in faults or []
    )
    fault_table = (
        "<h2>Fault scenarios: measured against budgets (seconds)</h2><table><tr><th>scenario</th><th>runtime</th>"
        f"<th>detected / budget</th><th>recovered / budget</th><th>slowest answer / budget</th><th>passed</th></tr>"
        f"{figures}</table>"
        if figures
        else ""
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>reports</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style></head><body>"
        f"<h1>{verdict}: {total.tests} tests, {total.failures} failed, {total.errors} errors,"
        f" {total.skipped} skipped</h1>"
        "<h2>Runs</h2><table><tr><th>JUnit</th><th>tests</th><th>failures</th><th>errors</th><th>skipped</th>"
        f"<th>minutes</th></tr>{jobs}</table>"
        f"{fault_table}"
        f"<h2>Reports</h2><ul>{links}</ul>{more}"
        f"<h2>Seconds per suite</h2><table><tr><th>suite</th><th>tests</th><th>seconds</th></tr>{suites}</table>"
        f"<h2>The slowest tests</h2><table><tr><th>seconds</th><th>test</th></tr>{slow}</table>"
        "</body></html>\n"
    )
