"""One folder per run, and the history across runs (``harness archive-reports``; ``make report``
ends with it).

A run's reports are filed under ``reports/runs/<UTC time>-<commit>/`` (copied, so the working
files at the top of ``reports/``, which the plan's boot estimates read, stay where they are), with
the run's merged JUnit file and its own ``index.html``; ``reports/latest`` points at the newest. A
line per run goes to ``reports/history.jsonl``: the counts, each test's outcome and seconds, the
services' times to ready and each fault scenario's figures. ``reports/index.html``, the front door,
shows the newest run's first screen with links into its folder, then every kept run, the tests
whose outcome changed between runs (flaky or newly broken), and the trends as a picture. Both are
bounded: the newest ``KEEP_RUNS`` folders and ``KEEP_HISTORY`` lines stay, older ones go."""

from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import ConfigurationError
from harness.pipeline.durations import read_runs
from harness.pipeline.reports import Counts, artifacts, fault_figures, index_html, junit_files, merge, suites_of

RUNS = "runs"
LATEST = "latest"
HISTORY = "history.jsonl"
TRENDS = "trends.svg"
KEEP_RUNS = 10  # run folders (a full proof's reports: about 25 MB each)
KEEP_HISTORY = 50  # lines of the history (about 120 KB each with a full proof's 1,000 outcomes)
# what stays at the top of reports/ across runs: filed by no run
LONG_LIVED = {RUNS, LATEST, HISTORY, TRENDS, "index.html", "summary.md", "junit.xml", "load", "shards"}


def new_run_dir(reports: Path, commit: str, now: datetime | None = None) -> Path:
    """``reports/runs/<UTC time>-<commit>``, new (a suffix when two runs share a second)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = reports / RUNS / f"{stamp}-{commit or 'nocommit'}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def file_run(sources: Sequence[Path], run_dir: Path) -> list[Path]:
    """Copy each source folder's reports (not the long-lived files) into ``run_dir``: one source
    directly, several (a pipeline's jobs) each into a folder of its name. The folders to merge."""
    targets = []
    for source in sources:
        target = run_dir if len(sources) == 1 else run_dir / source.name
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(source.iterdir()):
            if entry.name in LONG_LIVED or entry.name.endswith(".lock"):
                continue
            if entry.is_dir():
                shutil.copytree(entry, target / entry.name, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, target / entry.name)
        targets.append(target)
    return targets


def outcomes(junits: Iterable[Path]) -> dict[str, list]:
    """``classname::name`` -> [outcome, seconds] of every test case (passed, failed, error, skipped)."""
    out: dict[str, list] = {}
    for path in junits:
        for suite in suites_of(path):
            for case in suite.iter("testcase"):
                kinds = {child.tag for child in case}
                outcome = next((k for k in ("error", "failure", "skipped") if k in kinds), "passed")
                outcome = {"failure": "failed"}.get(outcome, outcome)
                key = f"{case.get('classname', '')}::{case.get('name', '')}"
                out[key] = [outcome, round(float(case.get("time") or 0), 2)]
    return out


def boot_times(folders: Iterable[Path]) -> dict[str, float]:
    """'<runtime> <service>' -> the run's worst time to ready, s (timings.json of each folder)."""
    out: dict[str, float] = {}
    for folder in folders:
        try:
            data = json.loads((folder / "timings.json").read_text())
        except (OSError, ValueError):
            continue
        for runtime, services in (data if isinstance(data, dict) else {}).items():
            for service, entry in (services if isinstance(services, dict) else {}).items():
                if isinstance(entry, dict) and isinstance(entry.get("max_s"), int | float):
                    key = f"{runtime} {service}"
                    out[key] = max(out.get(key, 0.0), float(entry["max_s"]))
    return out


def record(run_id: str, commit: str, total: Counts, folders: list[Path], junits: list[Path]) -> dict:
    """The history's line for one run."""
    faults = [
        {k: r.get(k) for k in ("scenario", "runtime", "detected_s", "detect_budget_s", "recovered_s", "passed")}
        for r in fault_figures(folders)
    ]
    return {
        "run": run_id,
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "tests": total.tests,
        "failures": total.failures,
        "errors": total.errors,
        "skipped": total.skipped,
        "seconds": round(total.seconds, 1),
        "outcomes": outcomes(junits),
        "boot_s": boot_times(folders),
        "faults": faults,
    }


def read_history(reports: Path) -> list[dict]:
    """The kept lines, oldest first; a damaged line is skipped."""
    try:
        lines = (reports / HISTORY).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "run" in item:
            out.append(item)
    return out


def append_history(reports: Path, line: dict, keep: int = KEEP_HISTORY) -> list[dict]:
    """Add ``line``; keep the newest ``keep`` (written whole, then renamed: a reader never sees half)."""
    history = [*read_history(reports), line][-keep:]
    tmp = reports / f".{HISTORY}.tmp"
    tmp.write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
    tmp.replace(reports / HISTORY)
    return history


def prune(reports: Path, keep: int = KEEP_RUNS) -> list[str]:
    """Remove all but the newest ``keep`` run folders (their names sort by time); the removed names."""
    folders = sorted(p for p in (reports / RUNS).iterdir() if p.is_dir() and not p.is_symlink())
    gone = folders[:-keep] if keep else folders
    for path in gone:
        shutil.rmtree(path)
    return [p.name for p in gone]


def point_latest(reports: Path, run_dir: Path) -> None:
    link = reports / LATEST
    tmp = reports / f".{LATEST}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(run_dir, reports))
    tmp.replace(link)


def changed(history: list[dict]) -> list[tuple[str, dict[str, int], str]]:
    """Tests that passed in one kept run and failed (or errored) in another: (test, count per
    outcome, the last run it failed in), the most recently failed first."""
    seen: dict[str, dict[str, int]] = {}
    last_bad: dict[str, str] = {}
    for line in history:
        for test, (outcome, _) in (line.get("outcomes") or {}).items():
            seen.setdefault(test, {})
            seen[test][outcome] = seen[test].get(outcome, 0) + 1
            if outcome in ("failed", "error"):
                last_bad[test] = line["run"]
    both = [t for t, c in seen.items() if c.get("passed") and (c.get("failed") or c.get("error"))]
    return sorted(((t, seen[t], last_bad[t]) for t in both), key=lambda row: (row[2], row[0]), reverse=True)


def trends_svg(history: list[dict]) -> str:
    """Failures, test seconds, the services' worst times to ready and the fault scenarios' worst
    detection against its budget, one point per kept run (oldest first)."""
    from harness.pictures import Panel, charts

    xs = list(range(1, len(history) + 1))
    boot: dict[str, list[tuple[float, float]]] = {}
    share: dict[str, list[tuple[float, float]]] = {}
    for x, line in zip(xs, history, strict=True):
        for key, value in (line.get("boot_s") or {}).items():
            boot.setdefault(key, []).append((x, value))
        worst: dict[str, float] = {}
        for f in line.get("faults") or []:
            if f.get("detected_s") is not None and f.get("detect_budget_s"):
                runtime = str(f.get("runtime"))
                worst[runtime] = max(worst.get(runtime, 0.0), 100.0 * f["detected_s"] / f["detect_budget_s"])
        for runtime, value in worst.items():
            share.setdefault(runtime, []).append((x, round(value, 1)))
    panels = [
        Panel(
            "failed + errors",
            {"tests": [(x, h.get("failures", 0) + h.get("errors", 0)) for x, h in zip(xs, history, strict=True)]},
        ),
        Panel(
            "test time, summed",
            {"all tests": [(x, h.get("seconds", 0) / 60) for x, h in zip(xs, history, strict=True)]},
            unit="min",
        ),
        Panel("time to ready, worst", boot, unit="s"),
        Panel("fault detection, worst", share, limit=100.0, unit="% of budget", limit_label="budget"),
    ]
    return charts(panels, title=f"The last {len(history)} runs", xlabel="run (oldest first)")


def front_door(reports: Path, run_dir: Path, folders: list[Path], total: Counts, history: list[dict]) -> str:
    """``reports/index.html``: the newest run's screen (links into its folder), then the history."""
    seconds = read_runs(sorted(p for d in folders for p in d.glob("durations-*.json")))
    pages = sorted(p for d in folders for p in d.glob("*.html") if p.name != "index.html")
    page = index_html(
        junit_files(folders), pages, seconds, total, reports, artifacts(folders, run_dir), fault_figures(folders)
    )
    kept = {p.name for p in (reports / RUNS).iterdir() if p.is_dir()}
    rows = "".join(
        "<tr><td>{run}</td><td>{commit}</td><td>{verdict}</td><td>{tests}</td><td>{bad}</td><td>{skipped}</td>"
        "<td>{minutes:.1f}</td></tr>".format(
            run=(
                f'<a href="{RUNS}/{html.escape(h["run"])}/index.html">{html.escape(h["run"])}</a>'
                if h["run"] in kept
                else html.escape(h["run"]) + " (pruned)"
            ),
            commit=html.escape(str(h.get("commit", ""))),
            verdict="passed" if not (h.get("failures") or h.get("errors")) else "<b>FAILED</b>",
            tests=h.get("tests", 0),
            bad=h.get("failures", 0) + h.get("errors", 0),
            skipped=h.get("skipped", 0),
            minutes=h.get("seconds", 0) / 60,
        )
        for h in reversed(history)
    )
    moved = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(', '.join(f'{k} {v}' for k, v in sorted(c.items())))}</td>"
        f"<td>{html.escape(last)}</td></tr>"
        for t, c, last in changed(history)[:30]
    )
    load = reports / "load" / "index.html"
    history_html = (
        (
            '<p>Every load run, with its trends: <a href="load/index.html">load/index.html</a></p>'
            if load.exists()
            else ""
        )
        + f"<h2>History: the last {len(history)} runs</h2>"
        f'<p>This run\'s folder: <a href="{LATEST}/index.html">{LATEST}/</a> '
        f"(<code>{html.escape(os.path.relpath(run_dir, reports))}</code>); the newest {KEEP_RUNS} run folders and "
        f"{KEEP_HISTORY} history lines are kept.</p>"
        f'<p><img src="{TRENDS}" alt="trends over the kept runs" style="max-width:100%"></p>'
        "<table><tr><th>run</th><th>commit</th><th>verdict</th><th>tests</th><th>failed + errors</th>"
        f"<th>skipped</th><th>test minutes</th></tr>{rows}</table>"
        "<h2>Tests whose outcome changed between runs (flaky, or broken since)</h2>"
        + (
            f"<table><tr><th>test</th><th>outcomes</th><th>last failed in</th></tr>{moved}</table>"
            if moved
            else "<p>None: every test kept its outcome over the kept runs.</p>"
        )
    )
    return page.replace("</body></html>", history_html + "</body></html>")


def archive(reports: Path, sources: Sequence[Path], commit: str, now: datetime | None = None) -> tuple[Path, Counts]:
    """File this run's reports from ``sources`` under ``reports/runs/<id>/``, merge them there,
    add the run to the history, write the front door and the trends, point ``latest`` at it and
    prune old runs. The run's folder and its counts."""
    sources = [Path(s) for s in sources]
    missing = [str(s) for s in sources if not s.is_dir()]
    if missing:
        raise ConfigurationError("report folders to file", f"no such folder: {', '.join(missing)}")
    reports.mkdir(parents=True, exist_ok=True)
    run_dir = new_run_dir(reports, commit, now)
    try:
        folders = file_run(sources, run_dir)
        total = merge(folders, run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # no half-filed run in the history
        raise
    history = append_history(reports, record(run_dir.name, commit, total, folders, junit_files(folders)))
    point_latest(reports, run_dir)
    prune(reports)
    (reports / TRENDS).write_text(trends_svg(history))
    (reports / "index.html").write_text(front_door(reports, run_dir, folders, total, history))
    for name in ("summary.md", "junit.xml"):  # CI's job summary and its JUnit publisher read them here
        shutil.copy2(run_dir / name, reports / name)
    return run_dir, total


def commit_of(root: Path) -> str:
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
