"""Where capacity ends: the knee of a ramping load test, and which dependency saturated first.

A ramp (the ``breakpoint`` profile) holds each client count for one stage. Per stage, from Locust's
``stats_stats_history.csv`` (``--csv-full-history``: cumulative counts per endpoint every second,
percentiles over Locust's current 10 s window): requests/s, the error rate and p99 of the
endpoint judged (``POST /runs``, the write path through both dependencies). The knee is the first
stage that breaks the endpoint's SLO (p99 or error rate of ``scenarios/slo.yaml``); the capacity is
the stage before it. The api's ``/metrics`` sampled during the run (``api_metrics.jsonl``, written
by ``live.MetricsRecorder``: one line per second with ``api_in_flight`` and ``api_shed_total`` per
dependency) say which dependency's bulkhead filled or shed first.

    k = knee(profile, report_dir / "stats_stats_history.csv", limits, report_dir / "api_metrics.jsonl")
    k["capacity"] -> {"clients": 24, "rps": 41.5, ...}; k["knee"] -> {...,"broke": "p99 3400 ms > 3000"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from harness.load import locust_csv


class Endpoint(NamedTuple):
    """A request name as Locust's CSV keys it: its ``Type`` (the method) and ``Name``."""

    method: str
    name: str

    def __str__(self) -> str:
        return f"{self.method} {self.name}"


class Totals(NamedTuple):
    """Locust's cumulative counts of one endpoint at one second of its history."""

    requests: int
    failures: int


class Peak(NamedTuple):
    """A dependency's highest ``api_in_flight`` and the second it was first seen."""

    value: float
    t: float


ENDPOINT = Endpoint("POST", "/runs")


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _rows(history: Path, endpoint: Endpoint) -> list[locust_csv.Row]:
    return [r for r in locust_csv.rows(history) if (r["Type"], r["Name"]) == endpoint]


def stage_figures(profile: dict, history: Path, endpoint: Endpoint = ENDPOINT, time_scale: float = 1.0) -> list[dict]:
    """Per stage of ``profile``: clients, seconds, requests/s, error rate and p99 (ms) of ``endpoint``."""
    rows = _rows(history, endpoint)
    if not rows:
        return []
    t0 = int(rows[0]["Timestamp"])
    out, previous_end, requests_before, failures_before = [], 0.0, 0, 0
    for stage in profile["stages"]:
        end = stage["until"] * time_scale
        inside = [r for r in rows if previous_end < int(r["Timestamp"]) - t0 <= end]
        if inside:
            last = inside[-1]
            requests, failures = int(last["Total Request Count"]), int(last["Total Failure Count"])
            seconds = end - previous_end
            n = requests - requests_before
            out.append(
                {
                    "clients": stage["clients"],
                    "seconds": round(seconds, 1),
                    "rps": round(n / seconds, 2) if seconds else 0.0,
                    "error_rate": round((failures - failures_before) / n, 4) if n else 0.0,
                    "p99_ms": _number(last["99%"]),
                    "requests": n,
                }
            )
            requests_before, failures_before = requests, failures
        previous_end = end
    return out


def saturated(metrics: Path) -> dict | None:
    """The dependency whose requests were shed first (else whose in-flight count peaked highest
    relative to the others), with the second it happened, from ``api_metrics.jsonl``."""
    if not metrics.exists():
        return None
    lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    for line in lines:
        shed = {dep: n for dep, n in line.get("shed", {}).items() if n > 0}
        if shed:
            dep = max(shed, key=lambda d: shed[d])
            evidence = f"api_shed_total{{dependency={dep!r}}} {shed[dep]:g}"
            return {"dependency": dep, "t": line["t"], "evidence": evidence}
    peak: dict[str, Peak] = {}
    for line in lines:
        for dep, n in line.get("in_flight", {}).items():
            if n > peak.get(dep, Peak(-1.0, 0.0)).value:
                peak[dep] = Peak(n, line["t"])
    if not peak:
        return None
    dep = max(peak, key=lambda d: peak[d].value)
    return {
        "dependency": dep,
        "t": peak[dep].t,
        "evidence": f"api_in_flight{{dependency={dep!r}}} peaked at {peak[dep].value:g}; nothing was shed",
    }


def knee(profile: dict, history: Path, limits: dict, metrics: Path | None = None, time_scale: float = 1.0) -> dict:
    """``limits``: the endpoint's SLO (``p99_ms``, ``error_rate``). Returns the stages, the knee
    (None when no stage broke: the ramp did not reach capacity) and the capacity before it."""
    stages = stage_figures(profile, history, time_scale=time_scale)
    found, capacity = None, None
    for stage in stages:
        broke = []
        if limits.get("p99_ms") is not None and stage["p99_ms"] is not None and stage["p99_ms"] > limits["p99_ms"]:
            broke.append(f"p99 {stage['p99_ms']:g} ms > {limits['p99_ms']:g}")
        if limits.get("error_rate") is not None and stage["error_rate"] > limits["error_rate"]:
            broke.append(f"errors {stage['error_rate']:.2%} > {limits['error_rate']:.2%}")
        if broke:
            found = {**stage, "broke": "; ".join(broke)}
            break
        capacity = stage
    return {
        "endpoint": str(ENDPOINT),
        "limits": limits,
        "stages": stages,
        "knee": found,
        "capacity": capacity,
        "saturated_first": saturated(metrics) if metrics is not None else None,
    }


def describe(k: dict) -> str:
    if k["knee"] is None:
        top = k["stages"][-1] if k["stages"] else None
        return f"no knee: {k['endpoint']} met its SLO at every stage" + (
            f" up to {top['clients']} clients ({top['rps']:g} req/s)" if top else ""
        )
    cap = k["capacity"]
    text = f"knee at {k['knee']['clients']} clients ({k['knee']['rps']:g} req/s): {k['knee']['broke']}; " + (
        f"capacity {cap['clients']} clients, {cap['rps']:g} req/s" if cap else "no stage met the SLO"
    )
    sat = k.get("saturated_first")
    if sat:
        text += f"; saturated first: {sat['dependency']} at {sat['t']:g} s ({sat['evidence']})"
    return text


def recovery(
    profile: dict,
    history: Path,
    within: float,
    limit: float,
    time_scale: float = 1.0,
    endpoint: Endpoint = ENDPOINT,
) -> dict:
    """After a profile's peak: the last stage is the way back. Its requests from ``within`` seconds
    after it began to its end must fail at most at ``limit`` (full service returned in time). A
    verdict in the SLO gate's form."""
    rows = _rows(history, endpoint)
    stages = profile["stages"]
    begin = (stages[-2]["until"] if len(stages) > 1 else 0) * time_scale + within
    end = stages[-1]["until"] * time_scale
    name = f"{endpoint} errors from {within:g} s after the peak"
    if not rows:
        return {
            "endpoint": str(endpoint),
            "objective": "recovered_error_rate",
            "limit": limit,
            "measured": None,
            "ok": False,
            "text": f"{name}: no requests were recorded",
        }
    t0 = int(rows[0]["Timestamp"])

    def totals(at: float) -> Totals:
        seen = [r for r in rows if int(r["Timestamp"]) - t0 <= at]
        if not seen:
            return Totals(0, 0)
        return Totals(int(seen[-1]["Total Request Count"]), int(seen[-1]["Total Failure Count"]))

    start, finish = totals(begin), totals(end)
    n, failed = finish.requests - start.requests, finish.failures - start.failures
    rate = failed / n if n else None
    ok = rate is not None and rate <= limit
    measured = "no requests" if rate is None else f"{rate:.2%} of {n}"
    return {
        "endpoint": str(endpoint),
        "objective": "recovered_error_rate",
        "limit": limit,
        "measured": rate,
        "ok": ok,
        "text": f"{name} {measured} {'<=' if ok else '>'} {limit:.2%}",
    }
