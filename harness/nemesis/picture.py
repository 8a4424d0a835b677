"""The nemesis run as a timeline: one row per fault slot (each fault as it was held) and one per
client (each attempt from send to answer, coloured by its answer), the moments the faults were
removed, the stack recovered and the writes settled."""

from __future__ import annotations

from harness.nemesis.run import Run
from harness.pictures import Mark, Row, Span, gantt

# Okabe-Ito: faults in cool colours, answers as the health pictures colour them
COLORS = {
    "kill": "#882255",
    "pause": "#0072B2",
    "restart": "#CC79A7",
    "latency": "#56B4E9",
    "reset": "#332288",
    "cut_after": "#44AA99",
    "2xx": "#009E73",
    "409 held": "#F0E442",
    "503": "#E69F00",
    "no answer": "#555555",
    "unexpected": "#D55E00",
}


def answer(status: int | None) -> str:
    if status is None:
        return "no answer"
    if status in (200, 201):
        return "2xx"
    if status == 409:
        return "409 held"
    return "503" if status == 503 else "unexpected"


def timeline(run: Run) -> str:
    rows: dict[str, Row] = {}
    for a in run.faults:
        row = rows.setdefault(f"fault {a.op.move.target}", Row(f"fault {a.op.move.target}"))
        if a.start is not None:
            row.spans.append(Span(a.op.move.kind, a.start, a.end if a.end is not None else a.start + 0.05))
    for t in run.attempts:
        row = rows.setdefault(f"client {t.client}", Row(f"client {t.client}"))
        row.spans.append(Span(answer(t.status), t.t, max(t.ended, t.t + 0.02)))
    marks = [
        Mark("faults-removed", run.schedule.duration, "faults removed"),
        Mark("recovered", run.recovered_at, "/health/deep passes"),
        Mark("settled", run.settled_at, "every key settled", ok=run.ok),
    ]
    verdict = "no violation" if run.ok else f"{len(run.violations)} violations"
    return gantt(
        sorted(rows.values(), key=lambda r: (not r.label.startswith("fault"), r.label)),
        title=f"nemesis seed {run.schedule.seed}: {len(run.attempts)} attempts, {verdict}",
        marks=marks,
        end=run.settled_at or run.schedule.duration,
        colors=COLORS,
        xlabel="seconds since the nemesis began",
    )
