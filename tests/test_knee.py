"""The knee of a ramp, on a synthetic Locust history: per-stage figures, the first stage that breaks
the write path's SLO, the capacity before it, and the dependency that saturated first."""

import csv
import json

import pytest

from harness.load import locust_csv
from harness.load.knee import describe, knee, saturated, stage_figures

pytestmark = [pytest.mark.harness, pytest.mark.unit]
PROFILE = {
    "stages": [
        {"until": 10, "clients": 4, "spawn_rate": 4},
        {"until": 20, "clients": 8, "spawn_rate": 4},
        {"until": 30, "clients": 16, "spawn_rate": 4},
    ]
}
COLUMNS = [
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    "50%",
    "95%",
    "99%",
    "Total Request Count",
    "Total Failure Count",
]


def history(tmp_path, per_stage):
    """per_stage: (requests, failures, p99 ms) added during each 10 s stage, written every second."""
    path = tmp_path / "stats_stats_history.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        total = failed = 0
        w.writerow(
            {
                "Timestamp": 1000,
                "Type": "POST",
                "Name": "/runs",
                "99%": "N/A",
                "Total Request Count": 0,
                "Total Failure Count": 0,
            }
        )  # Locust's first row, at the start
        for i, (n, bad, p99) in enumerate(per_stage):
            for s in range(1, 11):
                total += n // 10
                failed += bad // 10
                t = 1000 + i * 10 + s
                w.writerow(
                    {
                        "Timestamp": t,
                        "User Count": 0,
                        "Type": "POST",
                        "Name": "/runs",
                        "Requests/s": 0,
                        "Failures/s": 0,
                        "50%": 1,
                        "95%": 1,
                        "99%": p99,
                        "Total Request Count": total,
                        "Total Failure Count": failed,
                    }
                )
                w.writerow(
                    {
                        "Timestamp": t,
                        "Type": "GET",
                        "Name": "/health [lb]",
                        "99%": 5,
                        "Total Request Count": 1,
                        "Total Failure Count": 0,
                    }
                )
    return path


def test_stage_figures_from_cumulative_counts(tmp_path):
    stages = stage_figures(PROFILE, history(tmp_path, [(100, 0, 200), (200, 0, 400), (300, 30, 5000)]))
    assert [s["clients"] for s in stages] == [4, 8, 16]
    assert [s["rps"] for s in stages] == [10.0, 20.0, 30.0]
    assert stages[2]["error_rate"] == 0.1 and stages[2]["p99_ms"] == 5000


def test_the_knee_is_the_first_stage_over_the_slo_and_capacity_the_one_before(tmp_path):
    k = knee(
        PROFILE,
        history(tmp_path, [(100, 0, 200), (200, 0, 3500), (300, 30, 5000)]),
        {"p99_ms": 3000, "error_rate": 0.01},
    )
    assert k["knee"]["clients"] == 8 and k["knee"]["broke"] == "p99 3500 ms > 3000"
    assert k["capacity"]["clients"] == 4
    assert describe(k) == "knee at 8 clients (20 req/s): p99 3500 ms > 3000; capacity 4 clients, 10 req/s"


def test_errors_alone_make_a_knee_and_no_breach_means_no_knee(tmp_path):
    k = knee(PROFILE, history(tmp_path, [(100, 0, 200), (200, 0, 300), (300, 30, 300)]), {"error_rate": 0.01})
    assert k["knee"]["clients"] == 16 and k["knee"]["broke"] == "errors 10.00% > 1.00%"
    calm = knee(PROFILE, history(tmp_path, [(100, 0, 200)] * 3), {"p99_ms": 3000, "error_rate": 0.01})
    assert calm["knee"] is None
    assert describe(calm) == "no knee: POST /runs met its SLO at every stage up to 16 clients (10 req/s)"


def test_the_dependency_shed_first_saturated_first(tmp_path):
    path = tmp_path / "api_metrics.jsonl"
    lines = [
        {"t": 1, "in_flight": {"mlflow": 3, "postgres": 1}, "shed": {"mlflow": 0, "postgres": 0}},
        {"t": 2, "in_flight": {"mlflow": 8, "postgres": 2}, "shed": {"mlflow": 0, "postgres": 0}},
        {"t": 3, "in_flight": {"mlflow": 8, "postgres": 2}, "shed": {"mlflow": 4, "postgres": 0}},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines))
    assert saturated(path) == {"dependency": "mlflow", "t": 3, "evidence": "api_shed_total{dependency='mlflow'} 4"}
    path.write_text("\n".join(json.dumps({**x, "shed": {}}) for x in lines))
    assert saturated(path)["evidence"] == "api_in_flight{dependency='mlflow'} peaked at 8; nothing was shed"
    assert saturated(tmp_path / "absent.jsonl") is None


def test_recovery_after_a_peak_counts_only_the_last_stage_after_the_allowance(tmp_path):
    from harness.load.knee import recovery

    # stage 3 (the way back, 20-30 s) fails 30 of 300; all its failures within its first 5 s
    path = history(tmp_path, [(100, 0, 200), (200, 100, 3000), (300, 30, 300)])
    v = recovery(PROFILE, path, 0, 0.01)
    assert not v["ok"] and v["measured"] == 0.1
    assert v["text"] == "POST /runs errors from 0 s after the peak 10.00% of 300 > 1.00%"
    rows = locust_csv.rows(path)
    for r in rows:  # the same 30 failures, all in the first 5 s of the last stage
        rel = int(r["Timestamp"]) - 1000
        if r["Name"] == "/runs" and rel > 20:
            r["Total Failure Count"] = str(min(130, 100 + 6 * (rel - 20)))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows({k: r.get(k) for k in COLUMNS} for r in rows)
    late = recovery(PROFILE, path, 5, 0.01)
    assert late["ok"] and late["measured"] == 0.0, late
    assert not recovery(PROFILE, path, 4, 0.01)["ok"], "4 s after the peak it still failed"
