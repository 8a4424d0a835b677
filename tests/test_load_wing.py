"""The load wing's seams without Locust running: what Locust's files import, the one reader of
Prometheus text and of Locust's CSV, the records the runner hands on, and the summary it completes."""

import ast
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from harness.cli.load import run_load
from harness.errors import HarnessError
from harness.load import locust_csv, locust_process, prometheus
from harness.load.config import Address, LoadBalancerCheck, LoadTest
from harness.load.live import bulkheads, live_figures, postgres_checks
from harness.load.locust_process import locust_argv
from harness.load.results import RunFacts, read_summary, summarise
from harness.load.runner import execute, load_balancer
from tests import REPO

pytestmark = [pytest.mark.harness, pytest.mark.unit]
DEPLOYMENT = ("harness.plan", "harness.rehearsal", "harness.simulation")
# imports the modules it is given, in order: the deployment modules each one brought in, and the
# files of every module of the harness loaded by then
IMPORTS = (
    f"deployment = {DEPLOYMENT!r}\n"
    + """
import importlib, importlib.util, json, pathlib, sys
seen, brought = set(), {}
for name in sys.argv[1:]:
    if name.endswith(".py"):  # a profile, by path
        spec = importlib.util.spec_from_file_location(pathlib.Path(name).stem, name)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        name = "profiles." + pathlib.Path(name).stem
    else:
        importlib.import_module(name)
    now = {m for m in sys.modules if m in deployment or m.startswith(tuple(d + "." for d in deployment))}
    brought[name] = sorted(now - seen)
    seen |= now
harness = sorted(m.__file__ for n, m in sys.modules.items() if n.startswith("harness.") and m.__file__)
print(json.dumps({"brought": brought, "harness": harness}))
"""
)


def locust_modules(root: Path) -> list[str]:
    """Every module Locust loads: the shipped side (``harness_locust``: the locustfile, users, shape
    and gate) by name, then the project's profiles by path, as Locust loads them."""
    shipped = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in (root / "harness_locust").rglob("*.py")
    )
    return shipped + sorted(str(p) for p in (root / "loadtests" / "profiles").glob("*.py"))


def locust_imports(root: Path) -> dict:
    """Importing every module Locust loads under ``root``: per module the deployment modules it
    brought in ("brought"), and the files of the harness it loaded ("harness")."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS, *locust_modules(root)],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def lazy_deployment_imports(files: list[str]) -> dict[str, list[str]]:
    """Per file: the deployment modules it imports anywhere, inside functions too (not yet run)."""
    found = {}
    for file in files:
        names = [m for m in imported(Path(file)) if m in DEPLOYMENT or m.startswith(tuple(d + "." for d in DEPLOYMENT))]
        if names:
            found[Path(file).name] = sorted(names)
    return found


def test_locusts_files_import_no_deployment_code():
    found = locust_imports(REPO)
    assert {"harness_locust.locustfile", "harness_locust.gate", "profiles.smoke"} <= set(found["brought"]), found
    assert {name: modules for name, modules in found["brought"].items() if modules} == {}
    assert any(f.endswith("harness/load/matcher.py") for f in found["harness"]), found["harness"]
    # not even inside a function: what Locust loads could run it (the runner's are never loaded there)
    assert lazy_deployment_imports(found["harness"]) == {}


def test_a_deployment_import_under_a_locust_user_is_caught(tmp_path):
    for package in ("harness", "harness_locust", "loadtests"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    matcher = tmp_path / "harness" / "load" / "matcher.py"
    matcher.write_text(matcher.read_text() + "\nimport harness.plan.timing  # put back by the test\n")
    profile = tmp_path / "harness" / "load" / "profile.py"
    profile.write_text(profile.read_text() + "\n\ndef later():\n    import harness.rehearsal.moto  # put back\n")
    found = locust_imports(tmp_path)
    first = next(name for name, modules in found["brought"].items() if modules)
    assert first == "harness_locust.gate" and "harness.plan.timing" in found["brought"][first], found
    lazy = lazy_deployment_imports(found["harness"])
    assert lazy["matcher.py"] == ["harness.plan.timing"] and lazy["profile.py"] == ["harness.rehearsal.moto"], lazy


def wing_files() -> list[Path]:
    return [
        *(REPO / "harness" / "load").glob("*.py"),
        *(REPO / "harness_locust").rglob("*.py"),
        *(REPO / "loadtests").rglob("*.py"),
        REPO / "pytest_harness" / "load.py",
        *(REPO / "suites" / "load").glob("*.py"),
    ]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module, reader",
    [("csv", "harness/load/locust_csv.py"), ("prometheus_client.parser", "harness/load/prometheus.py")],
)
def test_the_wing_reads_csv_and_prometheus_text_in_one_place(module, reader):
    users = sorted(str(p.relative_to(REPO)) for p in wing_files() if module in imported(p))
    assert users == [reader]


def exposition() -> str:
    """/metrics as the api writes it: prometheus_client's own output, so the test reads the real format."""
    registry = CollectorRegistry()
    checks = Counter("api_health_checks", "checks", ["component", "status"], registry=registry)
    checks.labels("postgres", "pass").inc(5)
    checks.labels("postgres", "fail").inc(2)
    checks.labels("mlflow", "pass").inc(9)
    in_flight = Gauge("api_in_flight", "in flight", ["dependency"], registry=registry)
    in_flight.labels("mlflow").set(3)
    in_flight.labels("postgres").set(1)
    Counter("api_shed", "shed", ["dependency"], registry=registry).labels("mlflow").inc(4)
    return generate_latest(registry).decode()


def test_postgres_checks_count_every_status_of_postgres_only():
    text = exposition()
    assert postgres_checks(text) == 7.0
    assert postgres_checks(text.replace('component="postgres"', 'component="db"')) is None
    assert postgres_checks('{"detail": "Not Found"}') is None  # not Prometheus text
    assert prometheus.total(prometheus.samples(text), "api_health_checks_total", status="pass") == 14.0


def test_bulkheads_per_dependency():
    assert bulkheads(exposition()) == {"in_flight": {"mlflow": 3.0, "postgres": 1.0}, "shed": {"mlflow": 4.0}}
    with pytest.raises(ValueError):
        bulkheads("<html>502 Bad Gateway</html>")


HEADER = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,95%,Total Request Count"


def aggregated(t: int, users: int) -> str:
    return f"{t},{users},,Aggregated,{users * 2}.0,0.0,{100 + users},{users * 10}"


def test_locust_csv_rows_whole_and_by_tail(tmp_path):
    path = tmp_path / locust_csv.HISTORY
    lines = [HEADER, '1,1,GET,"/runs/{id}, missing",1.0,0.0,5,1', *(aggregated(t, t) for t in range(2, 400))]
    path.write_text("\r\n".join(lines) + "\r\n")
    whole = locust_csv.rows(path)
    assert len(whole) == 399 and whole[0]["Name"] == "/runs/{id}, missing"  # quoted as Locust quotes it
    tail = locust_csv.rows(path, tail=300)
    assert tail == whole[-len(tail) :] and 1 < len(tail) < 20  # complete rows only, the newest
    assert locust_csv.rows(path, tail=10**6) == whole
    cut = len((lines[-1] + "\r\n").encode())  # a tail that starts exactly at a line
    assert locust_csv.rows(path, tail=cut) == whole[-1:]


def test_live_figures_skip_the_row_being_written(tmp_path):
    path = tmp_path / locust_csv.HISTORY
    path.write_text("\n".join([HEADER, aggregated(1, 4), aggregated(2, 8)]) + "\n" + "3,12,,Aggregated,24")
    assert live_figures(path) == "8 users, 16.0 req/s, 0.0 failures/s, p95 108 ms"


def test_the_runner_hands_on_named_records(tmp_path):
    test = LoadTest("smoke", workers=2, lb_timeout=6.0, lb_matcher="200-299", reports_dir=tmp_path)
    lb = load_balancer(test)
    assert lb == LoadBalancerCheck(timeout=6.0, matcher="200-299", source="the command line")
    master = locust_argv(test, tmp_path, "http://api", lb, "master", Address("0.0.0.0", 5557))
    assert master[master.index("--lb-timeout") + 1] == "6.0" and master[master.index("--lb-matcher") + 1] == "200-299"
    assert master[master.index("--master-bind-host") + 1 :][:3] == ["0.0.0.0", "--master-bind-port", "5557"]
    worker = locust_argv(test, tmp_path, "http://api", lb, "worker", Address("0.0.0.0", 5557))
    assert worker[-4:] == ["--master-host", "127.0.0.1", "--master-port", "5557"]


SPIKE = {"stages": [{"until": 10, "clients": 2}, {"until": 20, "clients": 9}, {"until": 30, "clients": 2}]}


def test_the_summary_takes_the_recovery_verdict_and_the_health_cache(tmp_path):
    gate = {"started": 1795983400, "passed": True, "verdicts": [{"ok": True, "text": "fine"}]}
    (tmp_path / "summary.json").write_text(json.dumps(gate))
    history = ["Timestamp,Type,Name,99%,Total Request Count,Total Failure Count", "1000,POST,/runs,5,0,0"]
    history += [f"{1000 + t},POST,/runs,5,{10 * t},{0 if t <= 20 else 2 * (t - 20)}" for t in range(1, 31)]
    (tmp_path / locust_csv.HISTORY).write_text("\n".join(history) + "\n")
    test = LoadTest("spike", lb_timeout=5.0)
    facts = RunFacts("local", "abc1234", 10.0, 16.0, 12.0, 1.0)
    summary = summarise(tmp_path, {**SPIKE, "recover_within": 5}, test, load_balancer(test), 0, facts)
    assert summary["exit_code"] == 1 and not summary["passed"]  # failures went on after the allowance
    assert summary["verdicts"][-1]["text"] == "POST /runs errors from 5 s after the peak 20.00% of 50 > 1.00%"
    assert summary["health_cache"] == {"checks": 6, "seconds": 12.0, "per_second": 0.5, "ttl": 1.0}
    assert summary["runtime"] == "local" and summary["commit"] == "abc1234"
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_no_summary_is_a_failed_load_test_with_locusts_log(tmp_path):
    (tmp_path / "locust-master.log").write_text("Traceback ...\nImportError: no module named x\n")
    with pytest.raises(HarnessError, match="no module named x"):
        read_summary(tmp_path, 2)


# stands in for Locust at the process boundary: a worker exits, the master (or the only process)
# writes the gate's summary from its command line, as harness_locust/gate.py does, and exits with 0
STAND_IN = """
import json, sys, time
a = sys.argv
if "--worker" in a:
    sys.exit(0)
if "--profile-name" not in a:
    print("no options: a Locust that crashed")
    sys.exit(1)
value = lambda flag: a[a.index(flag) + 1]
summary = {
    "profile": value("--profile-name"), "target": value("--host"), "started": time.time(), "duration_s": 0.1,
    "stop_reason": "the stand-in ended", "endpoints": {}, "failures": [], "exceptions": [],
    "load_balancer": {"timeout_s": float(value("--lb-timeout")), "matcher": value("--lb-matcher"),
                      "source": value("--lb-source")},
    "slo": {"file": "slo.yaml"}, "verdicts": [], "passed": True, "argv": a[1:],
}
open(value("--summary-file"), "w").write(json.dumps(summary))
"""


def test_a_load_test_end_to_end_with_a_stand_in_for_locust(tmp_path, monkeypatch):
    monkeypatch.setattr(locust_process, "_locust", lambda profile: [sys.executable, "-c", STAND_IN])
    out = io.StringIO()
    test = LoadTest("smoke", target_url="http://127.0.0.1:9", workers=1, lb_timeout=5.0, reports_dir=tmp_path, out=out)
    outcome = execute(test)
    s = outcome.summary
    assert outcome.exit_code == 0 and s["passed"] and s["runtime"] == "target" and s["worker_count"] == 1, s
    assert s["load_balancer"] == {"timeout_s": 5.0, "matcher": "200", "source": "the command line"}
    argv = " ".join(s["argv"])
    assert "--master " in argv and "--expect-workers 1 " in argv and "--summary-file" in argv, argv
    assert "health_cache" not in s  # nothing answers /metrics at the target
    assert outcome.report_dir.parent == tmp_path / "load" and outcome.report_dir.name.startswith("smoke-")
    assert {"locust-master.log", "locust-worker-1.log", "summary.json", "summary.md"} <= {
        p.name for p in outcome.report_dir.iterdir()
    }
    assert outcome.history_line["report_dir"] == outcome.report_dir.name and outcome.previous is None
    assert "load balancer check timeout 5 s, matcher 200 (from the command line)" in out.getvalue()


def test_a_locust_that_writes_no_summary_fails_the_load_test_with_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(locust_process, "locust_argv", lambda *args: [sys.executable, "-c", STAND_IN])
    test = LoadTest("smoke", target_url="http://127.0.0.1:9", lb_timeout=5.0, reports_dir=tmp_path, out=io.StringIO())
    assert run_load(test) == 2
    error = capsys.readouterr().err
    assert "exit code 1, no summary" in error and "no options: a Locust that crashed" in error, error
