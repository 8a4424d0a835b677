"""The load runner's own stops and verdicts, against the session's api: a request cap ends a run,
and an SLO no stack can meet fails the gate with a message that names the breach. Four clients:
light enough to run beside other tests (the load suite's runs, which judge the platform's
latencies, run by themselves)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.load import profile as profiles
from harness.slo import HEALTH_ENDPOINT, TOTAL

pytestmark = pytest.mark.harness


def test_request_cap_stops_the_run(run_profile):
    cap = 60
    outcome = run_profile("smoke", max_requests=cap)
    s = outcome.summary
    assert s["stop_reason"] == f"the request cap ({cap}) was reached"
    total = s["endpoints"][TOTAL]["requests"]
    assert cap <= total <= cap + 30, total  # the checker looks twice a second
    assert s["duration_s"] < profiles.duration(profiles.read("smoke")), s["duration_s"]


def test_an_impossible_slo_fails_the_gate_with_a_readable_message(api_url, lb_check, tmp_path):
    slo_file = tmp_path / "impossible.yaml"
    slo_file.write_text(yaml.safe_dump({"objectives": {HEALTH_ENDPOINT: {"p99_ms": 0.001}}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "load",
            "--profile",
            "smoke",
            "--time-scale",
            "0.2",
            "--slo",
            str(slo_file),
            "--target-url",
            api_url,
            "--lb-timeout",
            str(lb_check.timeout),
            "--reports-dir",
            str(tmp_path / "reports"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    line = next((x for x in result.stderr.splitlines() if "BREACH" in x), "")
    assert f"{HEALTH_ENDPOINT} p99" in line and "> 0.00 ms (over by" in line, result.stderr[-2000:]
    assert "FAILED (exit 1)" in result.stderr
    doc = json.loads(result.stdout)  # --json: the same verdict for a script, on stdout alone
    assert doc["passed"] is False and doc["exit_code"] == 1
    (breach,) = [v for v in doc["summary"]["verdicts"] if not v["ok"]]
    assert breach["endpoint"] == HEALTH_ENDPOINT and Path(doc["report"]).exists()
