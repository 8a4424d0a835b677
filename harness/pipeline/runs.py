"""One folder per run, and the history across runs (``harness archive-reports``; ``make report``
ends with it).

A run's reports are filed under ``reports/runs/<UTC time>-<commit>/`` (copied, so the working
files at the top of ``reports/``, which the plan's boot estimates read, stay where they are), with
the run's merged JUnit file and its own ``index.html``; ``reports/latest`` points at the newest. A
line per run goes to ``reports/history.jsonl``: the counts, each test's outcome and seconds, the
services' times to ready and each fault scenario's figures. ``reports/index.html``, the front door,
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


def load_runs(reports: Path, since: float | None) -> list[dict]:
    """The load runs of this run (``make report``'s smoke): each ``reports/load/<run>/summary.json``
    written since ``since`` (none without it: the load history is its own)."""
    if since is None:
        return []
    out = []
    for summary in sorted((reports / "load").glob("*/summary.json")):
        if summary.stat().st_mtime < since:
            continue
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        out.append(
            {"report_dir": summary.parent.name, "profile": data.get("profile"), "passed": bool(data.get("passed"))}
        )
    return out


def record(
    run_id: str, commit: str, total: Counts, folders: list[Path], junits: list[Path], loads: Sequence[dict] = ()
) -> dict:
    """The history's line for one run (``url``: the CI run's page, where its reports are kept)."""
    server, repo, ci_run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
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
        "loads": list(loads),
        "url": f"{server}/{repo}/actions/runs/{ci_run}" if server and repo and ci_run else None,
    }


def passed(line: dict) -> bool:
    return not (line.get("failures") or line.get("errors")) and all(x.get("passed") for x in line.get("loads") or [])


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
        if _well_formed(item):
            out.append(item)
    return out


def _well_formed(item: object) -> bool:
    """A line this module can read: a damaged or foreign one is skipped, never fatal."""
    if not isinstance(item, dict) or not isinstance(item.get("run"), str):
        return False
    numbers = all(
        isinstance(item.get(k, 0), int | float) for k in ("tests", "failures", "errors", "skipped", "seconds")
    )
    outcomes = item.get("outcomes", {})
    return (
        numbers
        and isinstance(outcomes, dict)
        and all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) for v in outcomes.values())
        and isinstance(item.get("boot_s", {}), dict)
        and all(isinstance(v, int | float) for v in item.get("boot_s", {}).values())
        and isinstance(item.get("faults", []), list)
        and isinstance(item.get("loads", []), list)
        and all(isinstance(x, dict) for x in [*item.get("faults", []), *item.get("loads", [])])
    )


def with_line(reports: Path, line: dict, keep: int | None = None) -> list[dict]:
    """The history with ``line`` added, the newest ``keep`` (default ``KEEP_HISTORY``; not written yet)."""
    return [*read_history(reports), line][-(KEEP_HISTORY if keep is None else keep) :]


def write_atomically(path: Path, text: str) -> None:
    """Written whole, then renamed: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_history(reports: Path, history: list[dict]) -> None:
    write_atomically(reports / HISTORY, "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))


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


BAD = ("failed", "error")


def changed(history: list[dict]) -> list[tuple[str, dict[str, int], str, str, bool]]:
    """Tests that passed in one kept run and failed (or errored) in another: (test, count per
    outcome, the last run it failed in, its newest outcome, flaky: both outcomes at one commit),
    the most recently failed first. Flaky, broken since, or fixed since: the last two columns say."""
    seen: dict[str, dict[str, int]] = {}
    last_bad: dict[str, str] = {}
    now: dict[str, str] = {}
    by_commit: dict[tuple[str, str], set[str]] = {}
    for line in history:
        for test, (outcome, _) in (line.get("outcomes") or {}).items():
            seen.setdefault(test, {})
            seen[test][outcome] = seen[test].get(outcome, 0) + 1
            now[test] = outcome
            by_commit.setdefault((test, str(line.get("commit"))), set()).add("bad" if outcome in BAD else outcome)
            if outcome in BAD:
                last_bad[test] = line["run"]
    both = [t for t, c in seen.items() if c.get("passed") and any(c.get(b) for b in BAD)]
    flaky = {t for (t, _), kinds in by_commit.items() if {"passed", "bad"} <= kinds}
    rows = [(t, seen[t], last_bad[t], now[t], t in flaky) for t in both]
    return sorted(rows, key=lambda row: (row[2], row[0]), reverse=True)


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
