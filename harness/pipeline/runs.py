"""One folder per run, and the history across runs (``harness archive-reports``; ``make report``
ends with it).

A run's reports are filed under ``reports/runs/<UTC time>-<commit>/`` (copied, so the working
files at the top of ``reports/``, which the plan's boot estimates read, stay where they are), with
the run's merged JUnit file and its own ``index.html``; ``reports/latest`` points at the newest. A
line per run goes to ``reports/history.jsonl`` (``harness.pipeline.history``). ``reports/index.html``, the front door,
shows the newest run's first screen with links into its folder, then every kept run, the tests
whose outcome changed between runs (flaky or newly broken), and the trends as a picture. Both are
bounded: the newest ``KEEP_RUNS`` folders and ``KEEP_HISTORY`` lines stay, older ones go.

The top of ``reports/`` is a working folder every run writes into; what an earlier run left there
stays until overwritten. ``since`` (``make report`` marks its start in ``reports/.run-started``)
files only what the run wrote: files changed since, fault rows measured since, times to ready
sampled since. Two archives at once take turns (a lock); a failure before the history line is
written leaves no trace of the run, and the front door, trends and copies are written before it."""

from __future__ import annotations

import fcntl
import html
import json
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import ConfigurationError
from harness.pipeline.durations import read_runs
from harness.pipeline.history import (
    HISTORY,
    KEEP_HISTORY,
    changed,
    load_runs,
    passed,
    record,
    trends_svg,
    with_line,
    write_atomically,
    write_history,
)
from harness.pipeline.reports import Counts, artifacts, fault_figures, index_html, junit_files, merge

RUNS = "runs"
LATEST = "latest"
TRENDS = "trends.svg"
KEEP_RUNS = 10  # run folders (a full proof's reports: about 25 MB each)
# what stays at the top of reports/ across runs: filed by no run
STARTED = ".run-started"  # make report touches it before its stages: the run's files are newer
LONG_LIVED = {RUNS, LATEST, HISTORY, TRENDS, STARTED, "index.html", "summary.md", "junit.xml", "load", "shards"}


def new_run_dir(reports: Path, commit: str, now: datetime | None = None) -> Path:
    """``reports/runs/<UTC time>-<commit>``, new (a suffix when two runs share a second)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = reports / RUNS / f"{stamp}-{commit or 'nocommit'}"
    base.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def file_run(sources: Sequence[Path], run_dir: Path, since: float | None = None) -> list[Path]:
    """Copy each source folder's reports (not the long-lived files; with ``since``, only files
    changed since then) into ``run_dir``: one source directly, several (a pipeline's jobs) each
    into a folder of its own name. The folders to merge."""

    def old(path: Path) -> bool:
        return since is not None and path.stat().st_mtime < since

    def ignored(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if Path(folder, n).is_file() and old(Path(folder, n))]

    targets: list[Path] = []
    for source in sources:
        if len(sources) == 1:
            target = run_dir
        else:
            name, n = source.name, 1
            while run_dir / name in targets:  # two jobs' folders of one name (a/reports, b/reports)
                n += 1
                name = f"{source.name}-{n}"
            target = run_dir / name
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(source.iterdir()):
            if entry.name in LONG_LIVED or entry.name.endswith(".lock") or entry.is_symlink():
                continue
            if entry.is_dir():
                shutil.copytree(entry, target / entry.name, ignore=ignored, dirs_exist_ok=True)
            elif not old(entry):
                shutil.copy2(entry, target / entry.name)
        if since is not None:
            only_since(target, since)
            for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
                if not any(folder.iterdir()):
                    folder.rmdir()  # held only an earlier run's files
        targets.append(target)
    return targets


def _when(stamp: object) -> float | None:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def only_since(folder: Path, since: float) -> None:
    """The figures files of ``folder`` cut to what was measured since ``since``: faults.json's rows
    (``measured_at``) and timings.json's samples (``sampled_at``); both keep earlier runs' too."""
    faults = folder / "faults.json"
    if faults.exists():
        try:
            rows = json.loads(faults.read_text())
            kept = [r for r in rows if (_when(r.get("measured_at")) or 0) >= since]
            faults.write_text(json.dumps(kept, indent=2))
        except (ValueError, AttributeError, TypeError):
            faults.unlink()
    timings = folder / "timings.json"
    if timings.exists():
        try:
            data = json.loads(timings.read_text())
            for services in data.values():
                for name, entry in list(services.items()):
                    # paired from the newest: samples older than 2026-11-29 have no time
                    newest = zip(
                        reversed(entry.get("sampled_at", [])), reversed(entry.get("samples", [])), strict=False
                    )
                    pairs = [(at, s) for at, s in newest if (_when(at) or 0) >= since][::-1]
                    if not pairs:
                        del services[name]
                        continue
                    entry["sampled_at"], entry["samples"] = [a for a, _ in pairs], [s for _, s in pairs]
                    entry["max_s"] = max(entry["samples"])
            timings.write_text(json.dumps(data, indent=2, sort_keys=True))
        except (ValueError, AttributeError, TypeError):
            timings.unlink()


def prunable(reports: Path, keep: int | None = None, spare: Path | None = None) -> list[Path]:
    """All but the newest ``keep`` run folders (default ``KEEP_RUNS``; names sort by time), never
    ``spare`` (the run just filed, should the clock have gone back)."""
    keep = KEEP_RUNS if keep is None else keep
    folders = sorted(p for p in (reports / RUNS).iterdir() if p.is_dir() and not p.is_symlink() and p != spare)
    return folders[: max(0, len(folders) - (keep - (spare is not None)))]


def prune(reports: Path, keep: int | None = None, spare: Path | None = None) -> list[str]:
    """Remove what ``prunable`` names; the removed names."""
    gone = prunable(reports, keep, spare)
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in gone]


def point_latest(reports: Path, run_dir: Path) -> None:
    """``reports/latest`` -> the run's folder (a folder of that name, as an unpacked artifact
    leaves one, is replaced)."""
    link = reports / LATEST
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    tmp = reports / f".{LATEST}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(run_dir, reports))
    tmp.replace(link)


def _run_cell(h: dict, kept: set[str]) -> str:
    name = html.escape(h["run"])
    if h["run"] in kept:
        return f'<a href="{RUNS}/{name}/index.html">{name}</a>'
    if h.get("url"):  # a CI run: its reports are that run's artifact
        return f'<a href="{html.escape(str(h["url"]))}">{name}</a> (its CI run)'
    return f"{name} (pruned)"


def front_door(
    reports: Path, run_dir: Path, folders: list[Path], total: Counts, history: list[dict], loads: list[dict]
) -> str:
    """``reports/index.html``: the newest run's screen (links into its folder), then the history."""
    seconds = read_runs(sorted(p for d in folders for p in d.glob("durations-*.json")))
    pages = sorted(p for d in folders for p in d.glob("*.html") if p.name != "index.html")
    page = index_html(
        junit_files(folders), pages, seconds, total, reports, artifacts(folders, run_dir), fault_figures(folders)
    )
    doomed = set(prunable(reports, spare=run_dir))  # pruned once the run is in the history
    kept = {p.name for p in (reports / RUNS).iterdir() if p.is_dir() and p not in doomed} | {run_dir.name}
    rows = "".join(
        f"<tr><td>{_run_cell(h, kept)}</td><td>{html.escape(str(h.get('commit', '')))}</td>"
        f"<td>{'passed' if passed(h) else '<b>FAILED</b>'}</td><td>{h.get('tests', 0)}</td>"
        f"<td>{h.get('failures', 0) + h.get('errors', 0)}</td><td>{h.get('skipped', 0)}</td>"
        f"<td>{h.get('seconds', 0) / 60:.1f}</td></tr>"
        for h in reversed(history)
    )
    moved = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(', '.join(f'{k} {v}' for k, v in sorted(c.items())))}</td>"
        f"<td>{html.escape(last)}</td><td>{html.escape(now)}</td><td>{'yes' if flaky else 'no'}</td></tr>"
        for t, c, last, now, flaky in changed(history)[:30]
    )
    load_rows = "".join(
        f'<li><a href="load/{html.escape(x["report_dir"])}/report.html">{html.escape(x["report_dir"])}</a>: '
        f"{'passed' if x['passed'] else '<b>FAILED its SLO gate</b>'}</li>"
        for x in loads
    )
    folder = html.escape(os.path.relpath(run_dir, reports))
    history_html = (
        (f"<h2>Load runs of this run</h2><ul>{load_rows}</ul>" if load_rows else "")
        + (
            '<p>Every load run, with its trends: <a href="load/index.html">load/index.html</a></p>'
            if (reports / "load" / "index.html").exists()
            else ""
        )
        + f"<h2>History: the last {len(history)} runs</h2>"
        f'<p>This run\'s folder: <a href="{folder}/index.html">{folder}/</a> (also <code>{LATEST}/</code>); the '
        f"newest {KEEP_RUNS} run folders and {KEEP_HISTORY} history lines are kept.</p>"
        f'<p><img src="{TRENDS}" alt="trends over the kept runs" style="max-width:100%"></p>'
        "<table><tr><th>run</th><th>commit</th><th>verdict</th><th>tests</th><th>failed + errors</th>"
        f"<th>skipped</th><th>test minutes</th></tr>{rows}</table>"
        "<h2>Tests whose outcome changed between runs</h2>"
        "<p>Flaky: both outcomes at one commit. Otherwise broken or fixed since: the newest outcome says which.</p>"
        + (
            "<table><tr><th>test</th><th>outcomes</th><th>last failed in</th><th>now</th><th>flaky</th></tr>"
            f"{moved}</table>"
            if moved
            else "<p>None: every test kept its outcome over the kept runs.</p>"
        )
    )
    page = (
        page.replace("<h1>passed:", "<h1>FAILED (a load run broke its SLO gate):", 1)
        if not all(x["passed"] for x in loads)
        else page
    )
    return page.replace("</body></html>", history_html + "</body></html>")


def archive(
    reports: Path, sources: Sequence[Path], commit: str, now: datetime | None = None, since: float | None = None
) -> tuple[Path, Counts, bool]:
    """File this run's reports from ``sources`` (with ``since``: only what was written since then)
    under ``reports/runs/<id>/``, merge them there, write the front door, the trends and the copies
    CI reads, then add the run to the history, point ``latest`` at it and prune old runs. One
    archive at a time (a lock). The run's folder, its counts, and whether it passed (its load runs too)."""
    sources = [Path(s) for s in sources]
    missing = [str(s) for s in sources if not s.is_dir()]
    if missing:
        raise ConfigurationError("report folders to file", f"no such folder: {', '.join(missing)}")
    reports.mkdir(parents=True, exist_ok=True)
    with open(reports / ".archive.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run_dir = new_run_dir(reports, commit, now)
        try:
            folders = file_run(sources, run_dir, since)
            total = merge(folders, run_dir)
            loads = load_runs(reports, since)
            line = record(run_dir.name, commit, total, folders, junit_files(folders), loads)
            history = with_line(reports, line)
            for name in ("summary.md", "junit.xml"):  # CI's job summary and its JUnit publisher read them here
                shutil.copy2(run_dir / name, reports / name)
            if loads:
                said = "".join(
                    f"- load run {x['report_dir']}: {'passed' if x['passed'] else 'FAILED its SLO gate'}\n"
                    for x in loads
                )
                with open(reports / "summary.md", "a") as summary:
                    summary.write("\n" + said)
            write_atomically(reports / TRENDS, trends_svg(history))
            write_atomically(reports / "index.html", front_door(reports, run_dir, folders, total, history, loads))
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # no half-filed run
            raise
        write_history(reports, history)
        point_latest(reports, run_dir)
        prune(reports, spare=run_dir)
    return run_dir, total, passed(line)


def commit_of(root: Path) -> str:
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
