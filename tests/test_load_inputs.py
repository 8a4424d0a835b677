"""The load runner's inputs and outputs without a stack: profiles, the SLO file, verdicts, the
matcher, the history and index, and the command line's errors."""

import base64
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from harness import slo
from harness.errors import ConfigurationError
from harness.load import profile as profiles
from harness.load import report as loadreport
from harness.load.config import LoadTest
from harness.load.matcher import matches, parse_matcher, reason
from harness.load.results import RequestLog

pytestmark = pytest.mark.harness


@pytest.mark.parametrize("name", profiles.names())
def test_every_profile_is_valid_and_bounded(name):
    data = profiles.read(name)
    assert profiles.duration(data) <= 3600 and data["max_requests"] <= 10_000_000
    assert profiles.stage_at(data, profiles.duration(data)) is None  # the shape stops by itself
    assert profiles.stage_at(data, 0) is data["stages"][0]


def test_profiles_cover_the_six_shapes_and_soak_is_opt_in():
    assert set(profiles.names()) == {"smoke", "steady", "step", "spike", "soak", "breakpoint"}
    assert profiles.read("soak").get("opt_in") is True
    assert not any(profiles.read(n).get("opt_in") for n in ("smoke", "steady", "step", "spike", "breakpoint"))
    assert profiles.read("breakpoint").get("find_knee") is True
    assert profiles.read("spike").get("recover_within") == 10


def test_time_scale_compresses_the_stages():
    data = profiles.read("steady")
    assert profiles.duration(data, 0.25) == data["stages"][-1]["until"] * 0.25
    assert profiles.stage_at(data, 29.9, 0.25) is not None and profiles.stage_at(data, 30.0, 0.25) is None


@pytest.mark.parametrize(
    "data,message",
    [
        ({"stages": []}, "PROFILE: 'description' is a required property"),
        (
            {
                **profiles.read("smoke"),
                "stages": [{"until": 30, "clients": 2, "spawn_rate": 1}, {"until": 10, "clients": 2, "spawn_rate": 1}],
            },
            "PROFILE.stages.1.until: 10 is not greater than the previous stage's 30",
        ),
        ({**profiles.read("smoke"), "poller": {"nodes": 0, "interval": 1}}, "PROFILE.poller.nodes: 0 is less than"),
        ({**profiles.read("smoke"), "client_wait": [2, 1]}, "PROFILE.client_wait: [2, 1] must be [min, max]"),
        ({**profiles.read("smoke"), "max_requests": "many"}, "PROFILE.max_requests: 'many' is not of type"),
    ],
)
def test_a_wrong_profile_names_the_field(data, message):
    with pytest.raises(profiles.ProfileError) as err:
        profiles.validate(data, "x.py")
    assert message in str(err.value)


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(profiles.ProfileError, match="expected one of breakpoint, smoke, soak, spike, steady, step"):
        profiles.read("nope")


def write(tmp_path, data) -> object:
    path = tmp_path / "slo.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "data,message",
    [
        (
            {"objectives": {"GET /health [lb]": {"p99_ms": "fast"}}},
            "objectives.GET /health [lb].p99_ms: a known name (alb_timeout, alb_timeout_ms)",
        ),
        (
            {"objectives": {"GET /health [lb]": {"p99": 5}}},
            "Additional properties are not allowed ('p99' was unexpected)",
        ),
        ({"objectives": {"/health": {"p99_ms": 5}}}, "'/health' does not match"),
        ({"objectives": {"total": {"error_rate": [1]}}}, "objectives.total.error_rate: [1] is not of type"),
        ({"objective": {}}, "'objectives' is a required property"),
        ("objectives: [", "valid YAML"),
    ],
)
def test_a_wrong_slo_file_names_the_field(tmp_path, data, message):
    with pytest.raises(ConfigurationError) as err:
        slo.load(write(tmp_path, data), names={"alb_timeout": 5})
    assert message in str(err.value)


def test_limits_use_the_planned_alb_timeout_and_profiles_override_fields(tmp_path):
    path = write(
        tmp_path,
        {
            "names": {"alb_timeout": 5},
            "objectives": {"GET /health [lb]": {"p99_ms": "alb_timeout_ms / 2", "p95_ms": 100}},
            "profiles": {"spike": {"GET /health [lb]": {"p95_ms": 900}}},
        },
    )
    assert slo.load(path).objectives["GET /health [lb]"] == {"p99_ms": 2500, "p95_ms": 100}
    planned = slo.load(path, profile="spike", names={"alb_timeout": 6}, sources={"alb_timeout": "plan"})
    assert planned.objectives["GET /health [lb]"] == {"p99_ms": 3000, "p95_ms": 900}
    assert planned.sources["alb_timeout"] == "plan"


def test_verdicts_say_which_objective_broke_and_by_how_much(tmp_path):
    path = write(
        tmp_path,
        {
            "objectives": {
                "GET /health [lb]": {"p99_ms": 1000, "success_ratio": 0.99},
                "POST /runs": {"error_rate": 0.01},
                "GET /x": {"p95_ms": 5},
            }
        },
    )
    stats = {"GET /health [lb]": slo.Figures(100, 5, p99_ms=1250), "POST /runs": slo.Figures(200, 1)}
    verdicts = {f"{v.endpoint} {v.objective}": v for v in slo.judge(slo.load(path), stats)}
    assert str(verdicts["GET /health [lb] p99_ms"]) == "GET /health [lb] p99 1250 ms > 1000 ms (over by 250 ms, 25%)"
    assert (
        str(verdicts["GET /health [lb] success_ratio"])
        == "GET /health [lb] success_ratio 0.95 < 0.99 (under by 0.04, 4%)"
    )
    assert (
        verdicts["POST /runs error_rate"].ok
        and str(verdicts["POST /runs error_rate"]) == "POST /runs error_rate 0.005 <= 0.01"
    )
    # no data is a breach, not a pass
    assert not verdicts["GET /x p95_ms"].ok and "no requests were recorded" in str(verdicts["GET /x p95_ms"])
    assert len(slo.breaches(list(verdicts.values()))) == 3


@pytest.mark.parametrize(
    "status,matcher,ok",
    [
        (200, "200", True),
        (503, "200", False),
        (202, "200,202", True),
        (299, "200-299", True),
        (300, "200-299", False),
    ],
)
def test_matcher_follows_the_target_group_syntax(status, matcher, ok):
    assert matches(status, matcher) is ok


@pytest.mark.parametrize("bad", ["", "ok", "200,", "2xx"])
def test_a_wrong_matcher_is_rejected(bad):
    with pytest.raises(ValueError, match="expected an HTTP code matcher"):
        parse_matcher(bad)


def test_failure_reasons_carry_the_apis_detail():
    assert (
        reason(503, {"error": "dependency unavailable", "detail": "postgres: timeout"})
        == "status 503: postgres: timeout"
    )
    assert reason(0, None, TimeoutError("read timed out")) == "no answer: TimeoutError: read timed out"
    assert reason(500, "<html>") == "status 500"
    health = {
        "status": "fail",
        "checks": {
            "postgres:connections": [{"status": "fail", "output": "timeout after 1.0s"}],
            "mlflow:responseTime": [{"status": "pass"}],
        },
    }
    assert reason(503, health) == "status 503: fail: postgres:connections fail: timeout after 1.0s"


def summary(profile="smoke", passed=True, p99=50.0, rps=10.0, day=28):
    return {
        "profile": profile,
        "started_iso": f"2026-11-{day:02d}T10:00:00+00:00",
        "passed": passed,
        "exit_code": 0,
        "duration_s": 30,
        "stop_reason": "the profile's last stage ended",
        "target": "http://x",
        "runtime": "local",
        "worker_count": 0,
        "commit": "abc",
        "load_balancer": {"timeout_s": 5, "matcher": "200", "source": "t"},
        "endpoints": {
            "GET /health [lb]": {
                "requests": 30,
                "failures": 0,
                "p50_ms": 5,
                "p95_ms": 20,
                "p99_ms": p99,
                "max_ms": 60,
                "rps": 1.0,
            },
            "total": {
                "requests": 300,
                "failures": 0,
                "p50_ms": 5,
                "p95_ms": 20,
                "p99_ms": 30,
                "max_ms": 60,
                "rps": rps,
                "error_rate": 0.0,
            },
        },
        "verdicts": [
            {
                "ok": passed,
                "text": "GET /health [lb] p99 ...",
                "endpoint": "GET /health [lb]",
                "objective": "p99_ms",
                "limit": 1000.0,
                "measured": p99,
            }
        ],
        "slo": {"file": "slo.yaml"},
    }


HISTORY_CSV = "\n".join(
    [  # Locust's --csv-full-history: the Aggregated rows are charted
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,"
        "Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
        "Total Min Response Time,Total Max Response Time,Total Average Content Size",
        "1795983414,0,,Aggregated,0.000000,0.000000,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0.0,0,0,0",
        "1795983415,2,GET,/health [lb],1.0,0.0,4,4,4,4,4,4,4,4,4,4,4,8,0,4,4.4,2.7,7.1,392.0",
        "1795983415,2,,Aggregated,9.500000,0.000000,5,6,7,8,9,12,14,15,16,16,16,10,0,5,5.0,2.0,16.0,300",
        "1795983416,4,,Aggregated,18.000000,0.500000,6,7,8,9,11,25,30,31,32,32,32,28,1,6,6.0,2.0,32.0,300",
        "",
    ]
)


def test_history_index_and_comparison_with_the_previous_run(tmp_path):
    root = tmp_path / "load"
    for i, (p99, passed) in enumerate([(50.0, True), (80.0, True), (2000.0, False)]):
        report_dir = root / f"smoke-{i}"
        report_dir.mkdir(parents=True)
        (report_dir / "stats_stats_history.csv").write_text(HISTORY_CSV)
        line, before = loadreport.publish(root, summary(p99=p99, passed=passed, day=20 + i), report_dir)
    assert before["report_dir"] == "smoke-1" and line["health_p99_ms"] == 2000.0
    assert "GET /health [lb] p99: 80 ms -> 2000 ms (+2400%)" in loadreport.changes(line, before)
    assert "Against the previous smoke run (smoke-1)" in (root / "smoke-2" / "summary.md").read_text()
    (root / "history.jsonl").open("a").write("{not json\n")  # a damaged line is skipped
    assert [h["report_dir"] for h in loadreport.read_history(root)] == ["smoke-0", "smoke-1", "smoke-2"]
    page = (root / "index.html").read_text()
    assert "smoke-2/report.html" in page and 'class="bad"' in page and "<script" not in page
    pictures = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pictures) == 1  # one trend picture per profile
    trend = base64.b64decode(pictures[0]).decode()
    ids = {el.get("id") for el in ET.fromstring(trend).iter() if el.get("id")}
    # the SLO limit the runs were judged by, as a line; the run that broke its gate, crossed
    assert {"limit-get-health-lb-p99", "failed-get-health-lb-p99"} <= ids
    assert "SLO 1000 ms" in trend and "Nov" in trend  # the date axis
    run = (root / "smoke-2" / "run.svg").read_text()
    assert "![requests/s, p95 and failures over the run](run.svg)" in (root / "smoke-2" / "summary.md").read_text()
    assert ">requests/s<" in run and ">users<" in run and "seconds since the run started" in run


def test_old_load_run_folders_are_pruned_and_the_history_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(loadreport.prune_runs, "__defaults__", (2,))
    monkeypatch.setattr(loadreport.append_history, "__defaults__", (3,))
    root = tmp_path / "load"
    (root / "someone-elses").mkdir(parents=True)  # a folder the history does not name is never touched
    for i in range(4):
        report_dir = root / f"smoke-{i}"
        report_dir.mkdir(parents=True)
        (report_dir / "stats_stats_history.csv").write_text(HISTORY_CSV)
        loadreport.publish(root, summary(p99=50.0, passed=True, day=20 + i), report_dir)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["smoke-2", "smoke-3", "someone-elses"]
    assert [h["report_dir"] for h in loadreport.read_history(root)] == ["smoke-1", "smoke-2", "smoke-3"]
    page = (root / "index.html").read_text()
    assert "smoke-3/report.html" in page and "smoke-1/report.html" not in page and "pruned (the newest" in page


def test_a_planned_outage_is_marked_on_its_runs_picture_with_the_answers_it_was_meant_to_bring(tmp_path):
    """A run under a planned outage shows failures/s in its window: the picture shades the window and
    says it was planned and what answers were expected, and so does its summary.md."""
    report_dir = tmp_path / "load" / "steady-postgres-killed"
    report_dir.mkdir(parents=True)
    (report_dir / "stats_stats_history.csv").write_text(HISTORY_CSV)
    loadreport.publish(tmp_path / "load", summary(p99=50.0, passed=True, day=21), report_dir)
    plain = (report_dir / "run.svg").read_text()
    assert "planned" not in plain
    outage = loadreport.Outage(1795983415.0, 1795983416.0, "postgres killed (a shared outage)", "clients get 503")
    loadreport.mark_outage(report_dir, {**summary(p99=50.0, passed=True, day=21), "started": 1795983414}, outage)
    run = (report_dir / "run.svg").read_text()
    ids = {el.get("id") for el in ET.fromstring(run).iter() if el.get("id")}
    assert {"outage-throughput", "outage-failures", "outage-label"} <= ids, ids
    assert "planned: postgres killed (a shared outage); expected: clients get 503" in run
    loadreport.mark_outage(report_dir, summary(p99=50.0, passed=True, day=21), outage)  # again: said once
    said = (report_dir / "summary.md").read_text()
    note = "**Planned outage** from 1 s to 2 s: postgres killed (a shared outage). Expected: clients get 503."
    assert said.count(note) == 1, said  # seconds from the picture's zero: Locust's first second


def test_request_log_reads_only_complete_lines(tmp_path):
    path = tmp_path / "requests.jsonl"
    row = {"t": 1.0, "name": "GET /health [lb]", "status": 503, "ms": 3.0, "error": "unhealthy"}
    path.write_text(json.dumps(row) + "\n" + '{"t": 2.0, "na')
    log = RequestLog(path)
    assert log.select("GET /health [lb]", ok=False) == [row]
    with open(path, "a") as f:
        f.write('me": "POST /runs", "status": 201, "ms": 9.0, "error": null}\n')
    assert [r["status"] for r in log.select({"POST /runs", "GET /health [lb]"})] == [503, 201]
    assert log.select("POST /runs", after=2.5) == []


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("workers", 99, "--workers between 0"),
        ("time_scale", 0, "--time-scale between"),
        ("lb_timeout", 1.0, "--lb-timeout between 2 and 120"),
        ("lb_matcher", "2xx", "--lb-matcher"),
        ("max_requests", 0, "--max-requests of at least 1"),
    ],
)
def test_a_wrong_run_option_fails_before_anything_starts(field, value, message):
    spec = LoadTest("smoke")
    setattr(spec, field, value)
    with pytest.raises(ConfigurationError, match=message.replace("-", r"\-")):
        spec.validate()


def test_the_command_line_rejects_an_unknown_profile_and_a_bad_slo_file(tmp_path):
    bad = subprocess.run(
        [sys.executable, "-m", "harness", "load", "--profile", "nope"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr and "smoke" in bad.stderr
    slo_file = write(tmp_path, {"objectives": {"GET /health [lb]": {"p99_ms": "fast"}}})
    wrong = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "load",
            "--profile",
            "smoke",
            "--slo",
            str(slo_file),
            "--target-url",
            "http://127.0.0.1:9",
            "--lb-timeout",
            "5",
            "--reports-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2, wrong.stderr
    assert "objectives.GET /health [lb].p99_ms" in wrong.stderr and not (tmp_path / "r" / "load").exists()


def test_lb_from_plan_without_a_plan_fails_naming_the_plan_where_the_default_falls_back(monkeypatch, tmp_path):
    """The nightly run against staging judges staging's own check: with --lb-from-plan, a plan
    that cannot be made stops the run (exit 2) instead of falling back to the SLO file's figure."""
    from harness.errors import DependencyMissing
    from harness.load import runner
    from harness.plan import timing

    def no_plan(*args, **kwargs):
        raise DependencyMissing("terraform on PATH", "not found", "install Terraform 1.11")

    monkeypatch.setattr(timing, "planned", no_plan)
    fallback = runner.load_balancer(LoadTest("smoke", reports_dir=tmp_path))
    assert fallback.timeout == slo.load(slo.slo_file()).names["alb_timeout"]
    assert "no plan: expected terraform on PATH" in fallback.source
    with pytest.raises(ConfigurationError) as err:
        runner.load_balancer(LoadTest("smoke", reports_dir=tmp_path, lb_from_plan=True))
    assert err.value.expected == "the api's ALB health check from the Terraform plan of staging.tfvars (--lb-from-plan)"
    assert "terraform on PATH" in err.value.seen


def test_lb_from_plan_and_a_typed_check_are_refused_together():
    with pytest.raises(ConfigurationError, match="--lb-from-plan alone, or --lb-timeout/--lb-matcher alone"):
        LoadTest("smoke", lb_from_plan=True, lb_timeout=5).validate()
    both = subprocess.run(
        [sys.executable, "-m", "harness", "load", "--profile", "smoke", "--lb-from-plan", "--lb-matcher", "200"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 2 and "--lb-from-plan alone" in both.stderr, both.stderr


def test_the_distributed_flags_are_named_as_locust_names_them():
    """A Locust user's flags work: --master-host/--master-port on a worker (default port 5557, as
    Locust's), --master-bind-host/--master-bind-port on the master."""
    from harness.cli import parser
    from harness.cli.load import _bind

    worker = parser().parse_args(["load-worker", "--profile", "smoke", "--master-host", "10.0.0.5"])
    assert (worker.master_host, worker.master_port) == ("10.0.0.5", 5557)
    load = parser().parse_args(["load", "--profile", "smoke", "--master-bind-host", "0.0.0.0"])
    assert _bind(load) == "0.0.0.0:5557"
    assert _bind(parser().parse_args(["load", "--profile", "smoke"])) == ""  # local: a free port
    both = parser().parse_args(["load", "--profile", "smoke", "--master-bind-port", "6000"])
    assert _bind(both) == "127.0.0.1:6000"
    with pytest.raises(SystemExit):
        parser().parse_args(["load-worker", "--profile", "smoke", "--master", "10.0.0.5:5557"])
