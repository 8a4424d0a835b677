"""The history across runs (``reports/history.jsonl``, written by ``harness archive-reports``):
what a run's line holds (the counts, each test's outcome and seconds, the services' worst times to
ready, each fault scenario's figures, its load runs, its CI run), reading it back (a damaged line
is skipped, never fatal), the tests whose outcome changed between runs, and the trends picture.
The newest ``KEEP_HISTORY`` lines are kept."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.pipeline.reports import Counts, fault_figures, suites_of

HISTORY = "history.jsonl"
KEEP_HISTORY = 50  # lines of the history (about 120 KB each with a full proof's 1,000 outcomes)


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
