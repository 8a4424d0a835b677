"""What a load run leaves for people: a Markdown summary per run, a history of every run
(``reports/load/history.jsonl``, one JSON line each) and an index page listing the runs with a
trend chart per profile (dates on the time axis, the SLO limits as lines, failed runs crossed), so
a scheduled run shows a regression against the runs before it; each run's ``run.svg`` draws
requests/s, p95 and failures over the run, and its ``summary.md`` shows it.

The page is one self-contained HTML file (SVG pictures as data, no script, no network)."""

from __future__ import annotations

import base64
import fcntl
import html
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from harness.load import locust_csv
from harness.pictures import Panel, Window, charts
from harness.slo import HEALTH_ENDPOINT, TOTAL


class KeyFigure(NamedTuple):
    """A figure kept per run and charted: its key in the history line, label and unit."""

    key: str
    label: str
    unit: str


class Objective(NamedTuple):
    """An SLO objective as the gate's verdicts name it."""

    endpoint: str
    objective: str


class Published(NamedTuple):
    """A run as the history now holds it, and the previous run of its profile (None: the first)."""

    line: dict
    previous: dict | None


KEY_FIGURES = (
    KeyFigure("health_p99_ms", f"{HEALTH_ENDPOINT} p99", "ms"),
    KeyFigure("write_p95_ms", "POST /runs p95", "ms"),
    KeyFigure("read_p95_ms", "GET /runs/{id} p95", "ms"),
    KeyFigure("rps", "requests/s", ""),
    KeyFigure("error_rate", "error rate", ""),
)
HISTORY = "history.jsonl"
INDEX = "index.html"
RUN_SVG = "run.svg"  # each run's picture: requests/s, p95 and failures over the run
CHART_RUNS = 30  # the newest runs per profile drawn in its chart
KEEP_RUNS = 30  # run folders kept (Locust's CSVs and reports); older ones are removed, their lines stay
KEEP_LINES = 1000  # history lines kept


def report_of(line: dict | None) -> str | None:
    """The report folder a history line names (lines written before 2026-11-29 call it "run")."""
    return None if line is None else line.get("report_dir", line.get("run"))


def history_line(summary: dict, report_dir: str) -> dict:
    """The figures of one run that the index lists and charts."""
    ep = summary.get("endpoints", {})

    def fig(endpoint: str, key: str) -> float | None:
        return ep.get(endpoint, {}).get(key)

    return {
        "report_dir": report_dir,
        "profile": summary.get("profile"),
        "started": summary.get("started_iso"),
        "target": summary.get("target"),
        "runtime": summary.get("runtime"),
        "workers": summary.get("worker_count"),
        "commit": summary.get("commit"),
        "passed": summary.get("passed"),
        "exit_code": summary.get("exit_code"),
        "breaches": [v["text"] for v in summary.get("verdicts", []) if not v["ok"]],
        "duration_s": summary.get("duration_s"),
        "requests": fig(TOTAL, "requests"),
        "health_p99_ms": fig(HEALTH_ENDPOINT, "p99_ms"),
        "write_p95_ms": fig("POST /runs", "p95_ms"),
        "read_p95_ms": fig("GET /runs/{id}", "p95_ms"),
        "rps": fig(TOTAL, "rps"),
        "error_rate": fig(TOTAL, "error_rate"),
        "limits": limits_of(summary),
    }


def read_history(root: Path) -> list[dict]:
    """Every run recorded under ``root``; a damaged line is skipped, not fatal."""
    out: list[dict] = []
    try:
        lines = (root / HISTORY).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def append_history(root: Path, line: dict, keep: int = KEEP_LINES) -> list[dict]:
    """Add ``line``, keeping the newest ``keep`` (written whole, then renamed)."""
    root.mkdir(parents=True, exist_ok=True)
    history = [*read_history(root), line][-keep:]
    tmp = root / (HISTORY + ".tmp")
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    tmp.replace(root / HISTORY)
    return history


def prune_runs(root: Path, history: list[dict], keep: int = KEEP_RUNS) -> list[str]:
    """Remove the folders under ``root`` of all but the newest ``keep`` runs the history names
    (a folder the history does not name is never touched); the removed names."""
    named = [n for n in dict.fromkeys(report_of(h) for h in history) if isinstance(n, str) and n not in ("", ".", "..")]
    # only folders directly under root (a damaged line never reaches outside it)
    present = [n for n in named if (root / n).is_dir() and (root / n).resolve().parent == root.resolve()]
    gone = present[:-keep] if keep else present
    for name in gone:
        shutil.rmtree(root / name, ignore_errors=True)
    return gone


def previous(history: list[dict], line: dict) -> dict | None:
    """The last earlier run of the same profile, to compare with."""
    same = [h for h in history if h.get("profile") == line.get("profile") and report_of(h) != report_of(line)]
    return same[-1] if same else None


def changes(line: dict, before: dict | None) -> list[str]:
    """'health p99 12 ms -> 30 ms (+150%)' for each key figure that both runs have."""
    if before is None:
        return []
    out = []
    for figure in KEY_FIGURES:
        a, b = before.get(figure.key), line.get(figure.key)
        if a is None or b is None:
            continue
        delta = f" ({(b - a) / a:+.0%})" if a else ""
        out.append(f"{figure.label}: {_num(a, figure.unit)} -> {_num(b, figure.unit)}{delta}")
    return out


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown(summary: dict, before: dict | None, line: dict, picture: bool = False) -> str:
    lines = [
        f"# Load run: {summary.get('profile')} ({'passed' if summary.get('passed') else 'FAILED'})",
        "",
        f"- started {summary.get('started_iso')}, {summary.get('duration_s')} s, stopped because "
        f"{summary.get('stop_reason')}",
        f"- target {summary.get('target')} ({summary.get('runtime')}), Locust workers: "
        f"{summary.get('worker_count') or 'none (one process)'}, commit {summary.get('commit')}",
        f"- load balancer check: timeout {summary['load_balancer']['timeout_s']:g} s, matcher "
        f"{summary['load_balancer']['matcher']} (from {summary['load_balancer']['source']})",
        "",
    ]
    cache = summary.get("health_cache")
    if cache:
        lines += [
            f"- Postgres checks by /health: {cache['checks']} in {cache['seconds']} s "
            f"({cache['per_second']}/s; cache TTL {cache.get('ttl', 'unknown')} s)",
            "",
        ]
    if picture:
        lines += [f"![requests/s, p95 and failures over the run]({RUN_SVG})", ""]
    lines += [
        "| endpoint | requests | failures | p50 ms | p95 ms | p99 ms | max ms | req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in summary.get("endpoints", {}).items():
        lines.append(
            f"| `{name}` | {f['requests']} | {f['failures']} | {f['p50_ms']:.0f} | {f['p95_ms']:.0f} | "
            f"{f['p99_ms']:.0f} | {f['max_ms']:.0f} | {f['rps']:.1f} |"
        )
    k = summary.get("knee")
    if k:
        from harness.load.knee import describe

        lines += [
            "",
            f"## Capacity ({k['endpoint']})",
            "",
            f"- {describe(k)}",
            "",
            "| clients | req/s | errors | p99 ms |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {s['clients']} | {s['rps']:g} | {s['error_rate']:.2%} | "
            f"{s['p99_ms'] if s['p99_ms'] is not None else '-'} |"
            for s in k["stages"]
        ]
    lines += ["", "## SLO verdicts", ""]
    lines += [f"- {'pass' if v['ok'] else '**BREACH**'}: {v['text']}" for v in summary.get("verdicts", [])]
    if summary.get("failures"):
        lines += ["", "## Failures (most frequent first)", ""]
        lines += [f"- {f['count']}x `{f['request']}`: {f['reason']}" for f in summary["failures"]]
    diff = changes(line, before)
    if diff:
        lines += ["", f"## Against the previous {summary.get('profile')} run ({report_of(before)})", ""]
        lines += [f"- {d}" for d in diff]
    return "\n".join(lines) + "\n"


# the SLO objective each charted figure is held to
LIMITS = {
    "health_p99_ms": Objective(HEALTH_ENDPOINT, "p99_ms"),
    "write_p95_ms": Objective("POST /runs", "p95_ms"),
    "read_p95_ms": Objective("GET /runs/{id}", "p95_ms"),
    "error_rate": Objective(TOTAL, "error_rate"),
}


def limits_of(summary: dict) -> dict[str, float]:
    """The SLO limits the run was judged by, for the charted figures."""
    by = {Objective(v.get("endpoint"), v.get("objective")): v.get("limit") for v in summary.get("verdicts", [])}
    return {key: by[want] for key, want in LIMITS.items() if by.get(want) is not None}


def _when(line: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(str(line.get("started")).replace("Z", "+00:00"))
    except ValueError:
        return None


def trend_svg(profile: str, runs: list[dict]) -> str:
    """One panel per key figure over the runs' start dates, the newest run's SLO limit as a line,
    runs that failed their gate crossed."""
    panels = []
    for figure in KEY_FIGURES:
        key = figure.key
        points = [(w, r[key]) for r in runs if r.get(key) is not None and (w := _when(r)) is not None]
        failed = [
            (w, r[key]) for r in runs if r.get(key) is not None and not r.get("passed") and (w := _when(r)) is not None
        ]
        limit = next((r["limits"][key] for r in reversed(runs) if key in (r.get("limits") or {})), None)
        panels.append(
            Panel(figure.label, {profile: points}, limit=limit, unit=figure.unit, limit_label="SLO", failed=failed)
        )
    return charts(panels, title=f"{profile}: the last {len(runs)} runs", xlabel="run started (UTC)")


def run_svg(summary: dict, history_csv: Path, outages: Sequence[Outage] = ()) -> str | None:
    """Requests/s (with the users), p95 and failures/s over one run, from Locust's per-second
    history; each planned outage shaded, with what it was and the answers it was meant to bring."""
    try:
        rows = [r for r in locust_csv.rows(history_csv) if r["Name"] == "Aggregated"]
    except OSError:
        return None
    if not rows:
        return None
    t0 = int(rows[0]["Timestamp"])

    def series(column: str) -> list[tuple[float, float]]:
        return [(int(r["Timestamp"]) - t0, float(r[column])) for r in rows if r[column] not in ("N/A", "")]

    panels = [
        Panel("throughput", {"requests/s": series("Requests/s"), "users": series("User Count")}),
        Panel("p95", {"all requests": series("95%")}, unit="ms"),
        Panel("failures", {"failures/s": series("Failures/s")}, unit="per s"),
    ]
    windows = [
        Window("outage", o.start - t0, o.end - t0, f"planned: {o.what}; expected: {o.expected}") for o in outages
    ]
    return charts(
        panels,
        title=f"{summary.get('profile')} run started {summary.get('started_iso')}",
        xlabel="seconds since the run started",
        windows=windows,
    )


@dataclass(frozen=True)
class Outage:
    """A planned outage during a load run (epoch seconds), and what it was meant to bring."""

    start: float
    end: float
    what: str  # "postgres killed"
    expected: str  # "clients get 503 with Retry-After; /health stays 200 warn"


def mark_outage(report_dir: Path, summary: dict, outage: Outage) -> None:
    """Draw the run's picture again with the planned outage on it, and say it in its summary.md:
    without it, a chart full of failures reads as a broken run, not the intended answers."""
    history = report_dir / locust_csv.HISTORY
    picture = run_svg(summary, history, [outage])
    if picture is not None:
        (report_dir / RUN_SVG).write_text(picture)
    try:  # the picture's zero: the first second of Locust's history
        t0: float | None = int(next(r for r in locust_csv.rows(history) if r["Name"] == "Aggregated")["Timestamp"])
    except (OSError, StopIteration, KeyError, ValueError):
        t0 = None
    at = f" from {outage.start - t0:.0f} s to {outage.end - t0:.0f} s" if t0 is not None else ""
    note = f"**Planned outage**{at}: {outage.what}. Expected: {outage.expected}."
    md = report_dir / "summary.md"
    said = md.read_text() if md.exists() else ""
    if note not in said:  # marked once, however often asked
        md.write_text(said + f"\n{note}\n")


def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}"></figure>'


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left;font-size:.9em}
.ok{color:#2a7}.bad{color:#c33}img{max-width:100%}
figure{margin:0 0 1em 0}
figcaption{font-size:.85em}"""


def index_html(history: list[dict], root: Path | None = None) -> str:
    """The page: per profile, one chart per key figure over its newest runs; then every run (a
    pruned run's folder is gone: its line stays, without links)."""
    profiles = sorted({h.get("profile") or "?" for h in history})
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Load runs</title><style>{STYLE}</style>"
        f"</head><body><h1>Load runs ({len(history)})</h1>"
        "<p>Each run: Locust's HTML report, its CSV and JSON stats, and the harness's summary with the SLO "
        "verdicts (<code>scenarios/slo.yaml</code>). Green points passed the gate, red ones broke it.</p>"
    ]
    for profile in profiles:
        runs = [h for h in history if (h.get("profile") or "?") == profile][-CHART_RUNS:]
        parts.append(f"<h2>{html.escape(profile)}: trend over the last {len(runs)} runs</h2>")
        parts.append(_img(trend_svg(profile, runs), f"{profile}: key figures per run"))
    parts.append(
        "<h2>Runs, newest first</h2><table><tr><th>started</th><th>profile</th><th>verdict</th>"
        "<th>runtime</th><th>workers</th><th>requests</th><th>req/s</th><th>/health p99</th>"
        "<th>POST /runs p95</th><th>breaches</th><th>reports</th></tr>"
    )
    for h in reversed(history):
        run = html.escape(str(report_of(h)))
        verdict = '<span class="ok">pass</span>' if h.get("passed") else '<span class="bad">FAIL</span>'
        parts.append(
            f"<tr><td>{html.escape(str(h.get('started')))}</td><td>{html.escape(str(h.get('profile')))}</td>"
            f"<td>{verdict}</td><td>{html.escape(str(h.get('runtime')))}</td><td>{h.get('workers') or '-'}</td>"
            f"<td>{h.get('requests')}</td><td>{_num(h.get('rps'), '')}</td><td>{_num(h.get('health_p99_ms'), 'ms')}"
            f"</td><td>{_num(h.get('write_p95_ms'), 'ms')}</td>"
            f"<td>{html.escape('; '.join(h.get('breaches') or [])) or '-'}</td>"
            + (
                f"<td><a href='{run}/report.html'>Locust</a> <a href='{run}/summary.md'>summary</a></td></tr>"
                if root is None or (root / str(report_of(h))).is_dir()
                else f"<td>pruned (the newest {KEEP_RUNS} are kept)</td></tr>"
            )
        )
    parts.append("</table></body></html>\n")
    return "".join(parts)


def publish(root: Path, summary: dict, report_dir: Path) -> Published:
    """Write the run's summary.md, append it to the history, rewrite the index.
    Returns the run's history line and the previous run of its profile."""
    line = history_line(summary, report_dir.name)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / (HISTORY + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs finishing together keep both lines and one index
        before = previous(read_history(root), line)
        picture = run_svg(summary, report_dir / locust_csv.HISTORY)
        if picture is not None:
            (report_dir / RUN_SVG).write_text(picture)
        (report_dir / "summary.md").write_text(markdown(summary, before, line, picture is not None))
        history = append_history(root, line)
        prune_runs(root, history)
        tmp = root / (INDEX + ".tmp")
        tmp.write_text(index_html(history, root))
        tmp.replace(root / INDEX)
    return Published(line, before)
