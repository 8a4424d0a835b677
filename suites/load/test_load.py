"""Load profiles against the real stack: the SLO gate passes when it should (that it fails when it
must, and the request cap, are the runner's own: tests/test_load_gate.py), /health stays fast and
cached under load, and a frozen database under load keeps the fleet in
service while monitoring sees it and clients get clear 503s. Reports of every run:
reports/load-suite/ (index.html lists them)."""

import json
import math
import os
import subprocess
import sys
import threading
import time

import pytest

from harness.faults import scenarios
from harness.faults.judge import detected, mark, recovered
from harness.faults.kinds import fault
from harness.faults.sampler import Sampler
from harness.faults.writer import Writer, exactly_once
from harness.load import profile as profiles
from harness.load import report as loadreport
from harness.load.live import dependency_checks
from harness.load.results import RequestLog
from harness.pictures import Window
from harness.ports import free_port, release
from harness.slo import HEALTH_ENDPOINT, TOTAL
from harness.stack.api import api_config
from harness.wait import wait_until
from pytest_harness.faults import budget_names

pytestmark = pytest.mark.load
CLIENTS = {"POST /runs", "GET /runs/{id}", "GET /runs/{id} (missing)"}


def test_smoke_profile_meets_its_slos_and_publishes_reports(run_profile, load_reports):
    outcome = run_profile("smoke")
    s = outcome.summary
    assert outcome.exit_code == 0, [v["text"] for v in s["verdicts"] if not v["ok"]]
    assert s["passed"] and all(v["ok"] for v in s["verdicts"])
    assert {HEALTH_ENDPOINT, *CLIENTS, TOTAL} <= set(s["endpoints"]), s["endpoints"].keys()
    assert s["stop_reason"] == "the profile's last stage ended"
    for name in ("report.html", "stats.json", "stats_stats.csv", "stats_stats_history.csv", "summary.md"):
        assert (outcome.report_dir / name).stat().st_size > 0, name
    assert "Locust" in (outcome.report_dir / "report.html").read_text()
    history = (load_reports / "load" / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["report_dir"] == outcome.report_dir.name
    assert outcome.report_dir.name in (load_reports / "load" / "index.html").read_text()


@pytest.mark.proof
def test_two_workers_merge_into_one_report(run_profile):
    outcome = run_profile("smoke", workers=2, time_scale=0.5)
    s = outcome.summary
    assert outcome.exit_code == 0, [v["text"] for v in s["verdicts"] if not v["ok"]]
    per_worker = s["workers"]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    assert sum(per_worker.values()) == s["endpoints"][TOTAL]["requests"], (per_worker, s["endpoints"][TOTAL])
    assert all((outcome.report_dir / f"locust-worker-{i}.log").exists() for i in (1, 2))


@pytest.mark.proof
def test_a_worker_on_another_machine_joins_with_the_load_worker_command(run_profile, harness_session):
    """Across machines the master waits for --remote-workers and each machine runs load-worker;
    here the "other machine" is a second process on loopback."""
    port = free_port()
    env = {**os.environ, **harness_session.env()}
    remote = subprocess.Popen(
        [
            *(sys.executable, "-m", "harness", "load-worker", "--profile", "smoke"),
            *("--master-host", "127.0.0.1", "--master-port", str(port)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        outcome = run_profile("smoke", workers=1, remote_workers=1, master_bind=f"127.0.0.1:{port}", time_scale=0.5)
        remote_rc = remote.wait(timeout=30)  # it exits when its master quits
    finally:
        if remote.poll() is None:
            remote.terminate()
            remote.wait(timeout=30)
        release(port)
    s = outcome.summary
    assert outcome.exit_code == 0, [v["text"] for v in s["verdicts"] if not v["ok"]]
    assert len(s["workers"]) == 2 and all(n > 0 for n in s["workers"].values()), s["workers"]
    assert sum(s["workers"].values()) == s["endpoints"][TOTAL]["requests"]
    assert remote_rc == 0, remote.stderr.read()[-2000:]


@pytest.mark.proof
def test_health_stays_fast_and_cached_while_clients_saturate_the_api(run_profile, stack, lb_check):
    ttl = api_config(stack.environment("api")).health_cache_ttl
    before = _checks(stack.url("api"))
    outcome = run_profile("steady", time_scale=0.25)
    checks = _checks(stack.url("api")) - before
    s = outcome.summary
    health = s["endpoints"][HEALTH_ENDPOINT]
    # many more /health calls than TTL windows, or the cache is not being exercised
    windows = math.ceil(s["health_cache"]["seconds"] / ttl) + 1
    assert health["requests"] >= 4 * windows, (health, windows)
    assert health["failures"] == 0, s["failures"]
    timeout_ms = lb_check.timeout * 1000
    assert health["p99_ms"] < timeout_ms, f"/health p99 {health['p99_ms']} ms >= ALB timeout {timeout_ms} ms"
    health_verdicts = [v for v in s["verdicts"] if v["endpoint"] == HEALTH_ENDPOINT]
    assert health_verdicts and all(v["ok"] for v in health_verdicts), health_verdicts
    assert checks <= windows, f"{checks} Postgres checks in {s['health_cache']['seconds']} s with TTL {ttl} s"


# (kind, target, params, the scenario whose budgets apply, outage length): "past-unhealthy" holds the
# fault longer than the planned unhealthy threshold x interval of the api's target group, the time
# after which a load balancer would have drained a task whose check failed on the dependency
LOAD_FAULTS = [
    pytest.param("pause", "postgres", {}, "postgres-frozen", None, id="postgres-frozen"),
    pytest.param("latency", "api->mlflow", {"ms": 3000}, "mlflow-slow", None, id="mlflow-slow-3s"),
    pytest.param("kill", "mlflow", {}, "mlflow-killed", None, id="mlflow-down"),
    pytest.param("kill", "postgres", {}, "postgres-killed", "past-unhealthy", id="postgres-down-past-unhealthy"),
]


@pytest.mark.proof
@pytest.mark.parametrize("kind, target, params, scenario_name, hold", LOAD_FAULTS)
def test_a_shared_outage_under_steady_load_keeps_the_fleet_in_service_and_loses_nothing(
    fault_stack, make_model, run_profile, budgets, load_reports, kind, target, params, scenario_name, hold
):
    """The incident's class, under load: a dependency every task shares fails. The load balancer's
    poller must keep seeing a healthy target (a shared outage must not drain the fleet), monitoring's
    /health/deep must see the outage within the faults budget, clients get clear 503s with
    Retry-After (never a hang), every write acknowledged to a separate writer is in both stores,
    and everything recovers."""
    stack = fault_stack
    cfg = api_config(stack.environment("api"))
    scenario = scenarios.load(scenarios.faults_dir() / f"{scenario_name}.yaml")
    names = budget_names(stack, budgets)
    detect, recover = scenario.budget("detect_within", names), scenario.budget("recover_within", names)
    alb = make_model("staging").services["api"].alb
    outage = alb.unhealthy_threshold * alb.interval + alb.interval if hold == "past-unhealthy" else 0.0
    time_scale = 0.3 if not outage else round((outage + 60) / 120, 2)  # steady lasts 120 s at scale 1
    report_dir = load_reports / "load" / f"steady-{scenario_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    log = RequestLog(report_dir / "requests.jsonl")
    result: dict = {}

    def load():
        try:
            result["outcome"] = run_profile(
                "steady", time_scale=time_scale, request_log=True, report_dir=report_dir, target_url=stack.url("api")
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: len(log.select("POST /runs", status=201)),
            until=lambda n: n >= 20,
            timeout=budgets.scaled(30),
            what="steady load to be writing runs",
        )
        with (
            Sampler(
                stack.url("api"),
                ("/health", "/health/deep"),
                interval=0.2,
                timeout=cfg.health_budget + 5,
                max_duration=300,
            ) as sampler,
            Writer(stack.url("api"), interval=0.2, max_requests=2000) as writer,
        ):
            # under steady load one write takes up to a second or two (p95 about 1 s on Docker)
            wait_until(
                lambda: len(writer.acknowledged),
                until=lambda n: n >= 1,
                timeout=budgets.scaled(cfg.request_timeout + 5),
                what="the writer's first acknowledged write",
            )
            down_wall = time.time()
            with fault(stack, kind, target, **params):
                down_at = sampler.now()  # in effect: a busy engine takes a while to pause or kill a container
                wait_until(
                    lambda: sampler.first("/health/deep", down_at, 503),
                    timeout=detect + budgets.http,
                    what="monitoring's /health/deep to see the outage",
                )
                wait_until(
                    lambda: log.select(CLIENTS, after=down_wall, status=503),
                    timeout=cfg.request_timeout + 5,
                    what="an api client to get a 503",
                )
                wait_until(
                    lambda: [s for s in sampler.series("/health") if s.t >= down_at and s.health == "warn"],
                    timeout=budgets.http,
                    what="/health's body to say a dependency is failing (warn)",
                )
                wait_until(
                    sampler.now,
                    until=lambda t: t >= down_at + outage,
                    timeout=outage + 5,
                    interval=0.5,
                    what=f"the outage to last {outage:g} s (past the unhealthy threshold x interval)",
                )
                up_wall, up_at = time.time(), sampler.now()
            wait_until(
                lambda: sampler.first("/health/deep", up_at, 200),
                timeout=recover + budgets.http,
                what="/health/deep to pass again",
            )
            acknowledged = len(writer.acknowledged)
            wait_until(
                lambda: len(writer.acknowledged),
                until=lambda n: n > acknowledged,
                timeout=budgets.scaled(cfg.request_timeout + 5),
                what="an acknowledged write after recovery",
            )
    finally:
        thread.join(timeout=profiles.duration(profiles.read("steady"), time_scale) + 120)
    assert "error" not in result, result.get("error")
    outcome = result["outcome"]
    # the run's own picture says the failures in its window were the outage's intended answers
    loadreport.mark_outage(
        outcome.report_dir,
        outcome.summary,
        loadreport.Outage(
            down_wall,
            up_wall,
            f"{target} {kind} (a shared outage)",
            "clients get 503 with Retry-After, /health stays 200 warn, /health/deep 503",
        ),
    )
    seen = detected(
        sampler.series("/health/deep"), down_at, detect, lambda s: s.status == 503, "/health/deep saw the outage"
    )
    back = recovered(sampler.series("/health/deep"), up_at, recover, lambda s: s.status == 200)
    sampler.windows.append(Window("fault-window", down_at, up_at, f"outage: {kind} {target}"))
    sampler.marks += [
        mark(seen, down_at, "detected", "/health/deep detected"),  # the report's picture
        mark(back, up_at, "recovered", "/health/deep recovered"),
    ]
    assert seen.ok, str(seen)
    assert back.ok, str(back)
    assert up_at - down_at >= outage
    # the load balancer's view: every poll during the outage healthy; the body says what fails
    polled = log.select(HEALTH_ENDPOINT, after=down_wall - 1, before=up_wall + recover)
    assert polled and not [r for r in polled if r["error"]], [r for r in polled if r["error"]][:5]
    lb = [s for s in sampler.series("/health") if down_at <= s.t <= up_at]
    assert lb and all(s.status == 200 for s in lb), [str(s) for s in lb if s.status != 200][:5]
    assert any(s.health == "warn" for s in lb), "the body of /health never said a dependency was failing"
    during = log.select(CLIENTS, after=down_wall, before=up_wall)
    assert during and not [r for r in during if r["status"] == 0], "client requests without an answer (hangs)"
    slowest = max(during, key=lambda r: r["ms"])
    assert slowest["ms"] <= (cfg.request_timeout + names["slack"]) * 1000, slowest
    failed = [r for r in during if r["error"]]
    assert failed and all(r["status"] == 503 for r in failed), {r["status"] for r in failed}
    assert all("status 503: " in r["error"] and len(r["error"]) > len("status 503: ") for r in failed), failed[0]
    assert not [r for r in failed if "no Retry-After" in r["error"]], "a 503 without Retry-After"
    # nothing acknowledged is lost; every failed write said so clearly, and its retry with its
    # Idempotency-Key recorded it exactly once
    assert writer.acknowledged and not writer.unclear_failures, writer.unclear_failures[:5]
    unsettled = writer.settle(timeout=120)
    retried = [(r.key, r.answers[:3], r.answers[-1:]) for r in writer.retried if len(r.answers) > 1]
    assert unsettled == [], f"{len(unsettled)} not recorded; retried more than once: {retried[:5]}"
    assert exactly_once(stack, writer) == []
    # the gate: the load balancer's health SLO held; the clients' errors are what broke the run
    verdicts = outcome.summary["verdicts"]
    assert all(v["ok"] for v in verdicts if v["endpoint"] == HEALTH_ENDPOINT), verdicts


def _checks(api: str) -> float:
    value = dependency_checks(api)
    assert value is not None, "the api's /metrics has no api_health_checks_total for postgres"
    return value
