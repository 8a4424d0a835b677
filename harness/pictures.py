"""Pictures for the reports, drawn offline as SVG (matplotlib, no script or network needed to view):
a health timeline per sampled endpoint, a Gantt chart of a deployment, and line charts over time.

Every mark a reader looks for carries an SVG id (matplotlib writes an artist's ``gid`` as the id
of its group), so a test finds the fault window, a budget or an SLO line in the file:

    svg = health_timeline(samples, title="postgres-frozen", windows=[Window("fault-window", 3.0, 13.0, "fault")],
                          marks=[Mark("detected", 4.2, "detected 1.2 s", budget_at=6.0)], max_latency=5.0)

The renderers take plain data (samples need ``endpoint``, ``t``, ``status``, ``latency``,
``health``), so the base layer draws for every wing. matplotlib is imported on first use: it
takes about a second, which a command that draws nothing should not pay."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class Sampled(Protocol):
    """What a timeline reads of a sample (read-only: the sampler's samples are frozen)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def t(self) -> float: ...
    @property
    def status(self) -> int | None: ...
    @property
    def latency(self) -> float: ...
    @property
    def health(self) -> str | None: ...


@dataclass(frozen=True)
class Window:
    """A shaded stretch of time (the fault, a load stage)."""

    gid: str
    start: float
    end: float
    label: str
    alpha: float = 0.12  # lighter for a lead-in (a fault still being applied)


@dataclass(frozen=True)
class Mark:
    """A moment: a solid line at ``at`` (None: it never happened), and a dashed line at
    ``budget_at``, the latest it was allowed to happen."""

    gid: str
    at: float | None
    label: str
    budget_at: float | None = None
    ok: bool = True


@dataclass(frozen=True)
class Span:
    phase: str
    start: float
    end: float


@dataclass
class Row:
    """One task of a deployment: its phases in order, and moments on its own row (grace period ends)."""

    label: str
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


# outcome of a health sample -> colour (colour-blind safe: Okabe-Ito)
OUTCOMES = {"pass": "#009E73", "warn": "#E69F00", "fail": "#D55E00", "no answer": "#555555"}
PHASES = {
    "provisioning": "#BBBBBB",
    "start period": "#56B4E9",
    "container healthy": "#0072B2",
    "target healthy": "#CC79A7",
    "unhealthy": "#F4A582",
    "in service": "#009E73",
    "kept, no traffic": "#A6DBA0",  # blue/green: blue after the shift, for the termination wait
    "draining": "#E69F00",
    "stopping": "#F0E442",  # SIGTERM sent: the app finishes what it has
    "SIGKILL": "#882255",  # the stop timeout ended first: a forced stop
    "stopped": "#EEEEEE",
    "replaced": "#D55E00",
}
WIDTH = 9.0  # inches at 100 dpi: fits a report's column


def outcome(sample: Sampled) -> str:
    if sample.status is None:
        return "no answer"
    if sample.status >= 400:
        return "fail"
    return "warn" if sample.health == "warn" else "pass"


def runs(samples: Sequence[Sampled], step: float) -> list[tuple[str, float, float]]:
    """Consecutive samples of one outcome as (outcome, start, end): a sample stands until the next
    one was sent (the last for ``step``)."""
    out: list[tuple[str, float, float]] = []
    for i, s in enumerate(samples):
        end = samples[i + 1].t if i + 1 < len(samples) else s.t + step
        kind = outcome(s)
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1], end)
        else:
            out.append((kind, s.t, end))
    return out


def _figure(height: float, rows: int = 1, ratios: Sequence[float] | None = None) -> tuple[Any, list]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), dpi=100, layout="constrained")
    axes = fig.subplots(
        rows, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": list(ratios)} if ratios else None
    )[:, 0]
    return fig, list(axes)


def _svg(fig: Any, title: str) -> str:
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "harness"}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Title": title, "Date": None})
    return buf.getvalue()


def thin(samples: list, buckets: int = 600) -> list:
    """At most two samples per bucket of time (the fastest and the slowest): a 5-minute series at
    10 per second stays a small file and keeps every spike."""
    if len(samples) <= 2 * buckets:
        return samples
    lo, hi = samples[0].t, samples[-1].t
    width = (hi - lo) / buckets or 1.0
    kept: dict[int, tuple] = {}
    for s in samples:
        b = int((s.t - lo) / width)
        fast, slow = kept.get(b, (s, s))
        kept[b] = (s if s.latency < fast.latency else fast, s if s.latency > slow.latency else slow)
    return sorted({id(s): s for pair in kept.values() for s in pair}.values(), key=lambda s: s.t)


MARK_COLOURS = ("#000000", "#0072B2", "#CC79A7", "#56B4E9", "#F0E442")


def _marks(axes: Sequence[Any], marks: Iterable[Mark], legend_axis: Any) -> None:
    """Each mark as a solid line (when it happened) and a dashed line at its budget, on every axis,
    one colour per mark, named in the legend (a mark that is not ok red and thick). The ids go on the first
    axis's lines (the others repeat them for the eye)."""
    for n, m in enumerate(marks):
        colour = MARK_COLOURS[n % len(MARK_COLOURS)] if m.ok else "#D55E00"
        width = 1.2 if m.ok else 2.4
        label = m.label
        if m.at is None:
            legend_axis.plot([], [], color=colour, linewidth=width, label=label)
        for i, ax in enumerate(axes):
            if m.at is not None:
                line = ax.axvline(m.at, color=colour, linewidth=width, label=label if ax is legend_axis else None)
                if i == 0:
                    line.set_gid(m.gid)
            if m.budget_at is not None:
                line = ax.axvline(m.budget_at, color=colour, linewidth=1.0, linestyle="--")
                if i == 0:
                    line.set_gid(f"{m.gid}-budget")
    if any(m.budget_at is not None for m in marks):
        legend_axis.plot([], [], color="#777777", linestyle="--", linewidth=1.0, label="its budget (latest allowed)")


def health_timeline(
    samples: Sequence[Sampled],
    *,
    title: str,
    windows: Sequence[Window] = (),
    marks: Sequence[Mark] = (),
    max_latency: float | None = None,
) -> str:
    """One status band per endpoint over time (pass, warn, fail, no answer), each endpoint's
    latency below it (log scale, the ``max_latency`` limit as a line), windows shaded, marks drawn."""
    endpoints = list(dict.fromkeys(s.endpoint for s in samples))
    fig, (band, lat) = _figure(1.6 + 0.35 * max(1, len(endpoints)) + 2.2, 2, (0.5 + 0.35 * max(1, len(endpoints)), 2.2))
    by_endpoint = {e: sorted((s for s in samples if s.endpoint == e), key=lambda s: s.t) for e in endpoints}
    for row, (endpoint, series) in enumerate(by_endpoint.items()):
        gaps = [b.t - a.t for a, b in zip(series, series[1:], strict=False)]
        step = sorted(gaps)[len(gaps) // 2] if gaps else 0.1
        for kind in OUTCOMES:
            bars = [(start, end - start) for k, start, end in runs(series, step) if k == kind]
            if bars:
                band.broken_barh(bars, (row - 0.4, 0.8), facecolors=OUTCOMES[kind], label=kind)
        answered = thin([s for s in series if s.status is not None])
        lat.plot(
            [s.t for s in answered],
            [max(s.latency * 1000, 0.1) for s in answered],
            marker=".",
            markersize=2,
            linewidth=0.8,
            label=endpoint,
        )
    band.set_yticks(range(len(endpoints)), endpoints, fontsize=8)
    band.set_ylim(max(1, len(endpoints)) - 0.5, -0.5)
    for w in windows:
        for i, ax in enumerate((band, lat)):
            span = ax.axvspan(w.start, w.end, color="#000000", alpha=w.alpha, linewidth=0, zorder=3)
            if i == 0:
                span.set_gid(w.gid)
        band.annotate(
            w.label,
            ((w.start + w.end) / 2, 0.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, -10),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    _marks((band, lat), marks, band)
    handles, labels = band.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    fig.legend(unique.values(), unique.keys(), fontsize=7, ncol=4, loc="outside lower center", frameon=False)
    band.set_title(title, fontsize=10, loc="left")
    lat.set_yscale("log")
    lat.set_ylabel("latency (ms)", fontsize=8)
    lat.set_xlabel("seconds since sampling began", fontsize=8)
    if max_latency is not None:
        line = lat.axhline(
            max_latency * 1000, color="#D55E00", linestyle=":", linewidth=1.2, label=f"max_latency {max_latency:g} s"
        )
        line.set_gid("max-latency")
    if endpoints:
        lat.legend(fontsize=7, loc="upper right")
    if not samples:
        band.text(0.5, 0.5, "no samples", transform=band.transAxes, ha="center")
    return _svg(fig, title)


def gantt(
    rows: Sequence[Row],
    *,
    title: str,
    marks: Sequence[Mark] = (),
    end: float | None = None,
    colors: Mapping[str, str] = PHASES,
    xlabel: str = "seconds since the deployment began",
) -> str:
    """One row per task with its phases as coloured spans (``colors``: phase -> colour); ``marks``
    (circuit breaker, rollback) across every row, each row's own marks (its grace period's end) as
    ticks on it."""
    fig, (ax,) = _figure(1.2 + 0.28 * max(1, len(rows)))
    seen: set[str] = set()
    for i, row in enumerate(rows):
        for span in row.spans:
            label = span.phase if span.phase not in seen else None
            seen.add(span.phase)
            ax.broken_barh(
                [(span.start, max(span.end - span.start, 0.01))],
                (i - 0.38, 0.76),
                facecolors=colors.get(span.phase, "#999999"),
                edgecolor="#FFFFFF",
                linewidth=0.3,
                label=label,
            )
        for m in row.marks:
            if m.at is None:
                continue
            tick = ax.plot([m.at, m.at], [i - 0.45, i + 0.45], color="#000000" if m.ok else "#D55E00", linewidth=1.5)[0]
            tick.set_gid(f"{m.gid}-{i}")
    if any(m.gid.startswith("grace") for row in rows for m in row.marks):
        ax.plot([], [], color="#000000", linewidth=1.5, label="grace period ends")
    ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(xlabel, fontsize=8)
    if end is not None:
        ax.set_xlim(0, end * 1.02 or 1)
    ax.set_title(title, fontsize=10, loc="left")
    _marks((ax,), marks, ax)
    fig.legend(fontsize=7, loc="outside lower center", ncol=5, frameon=False)
    return _svg(fig, title)


@dataclass(frozen=True)
class Panel:
    """One chart: a line per label over x (seconds or datetimes), the limit (an SLO, a budget) as a
    dashed line."""

    label: str
    lines: Mapping[str, Sequence[tuple[float | datetime, float]]]
    limit: float | None = None
    unit: str = ""
    limit_label: str = "limit"
    failed: Sequence[tuple[float | datetime, float]] = ()  # points to mark as failed (red crosses)


def charts(panels: Sequence[Panel], *, title: str, xlabel: str, windows: Sequence[Window] = ()) -> str:
    """One panel per figure over a shared x axis (seconds, or dates), each with its limit as a line;
    ``windows`` shaded on every panel, each labelled on the first."""
    fig, axes = _figure(0.7 + 1.6 * max(1, len(panels)), max(1, len(panels)))
    for index, (ax, p) in enumerate(zip(axes, panels, strict=False)):
        xs: list = []
        for name, points in p.lines.items():
            xs += [pt[0] for pt in points]
            ax.plot(
                [pt[0] for pt in points],
                [pt[1] for pt in points],
                marker="o",
                markersize=2.5,
                linewidth=1.0,
                label=name if len(p.lines) > 1 else None,
            )
        if p.failed:
            crosses = ax.plot(
                [pt[0] for pt in p.failed],
                [pt[1] for pt in p.failed],
                linestyle="none",
                marker="x",
                markersize=7,
                color="#D55E00",
                label="failed its gate",
            )[0]
            crosses.set_gid(f"failed-{_slug(p.label)}")
        ax.set_ylabel(p.label + (f" ({p.unit})" if p.unit else ""), fontsize=8)
        ax.set_ylim(bottom=0)
        if p.limit is not None:
            ax.set_ylim(0, max(ax.get_ylim()[1], p.limit * 1.15))  # the limit is always in view
            line = ax.axhline(
                p.limit,
                color="#D55E00",
                linestyle="--",
                linewidth=1.0,
                label=f"{p.limit_label} {p.limit:g}{(' ' + p.unit) if p.unit else ''}",
            )
            line.set_gid(f"limit-{_slug(p.label)}")
        if p.limit is not None or len(p.lines) > 1 or p.failed:
            ax.legend(fontsize=7, loc="upper left")
        for w in windows:
            span = ax.axvspan(w.start, w.end, color="#000000", alpha=0.06, linewidth=0)
            span.set_gid(f"{w.gid}-{_slug(p.label)}")
            if index == 0:
                note = ax.annotate(
                    w.label,
                    xy=(w.start, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -3),
                    textcoords="offset points",
                    va="top",
                    fontsize=7,
                    wrap=True,
                )
                note.set_gid(f"{w.gid}-label")
        if xs and isinstance(xs[0], datetime):
            import matplotlib.dates as mdates

            locator = mdates.AutoDateLocator(minticks=2, maxticks=7)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if xs and all(isinstance(x, int) for x in xs):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # runs are counted, not measured
        if not xs:
            ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center", fontsize=8)
    axes[0].set_title(title, fontsize=10, loc="left")
    axes[-1].set_xlabel(xlabel, fontsize=8)
    return _svg(fig, title)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
