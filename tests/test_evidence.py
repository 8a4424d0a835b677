"""What a report keeps of a test, run through pytest itself (pytester) with the harness's plugins: a
failed test's report carries the services' log tails and the last health samples, every test that
sampled health gets its timeline picture (also when it passed), and a failed scenario's JUnit entry
still carries its measured figures. The stack is a stand-in here (an HTTP server that answers
/health 503 and a service whose log is known): what is under test is the report, not the stack."""

import base64
import json
import re
import xml.etree.ElementTree as ET
from html import unescape

import pytest

from tests import REPO

pytestmark = pytest.mark.harness

CONFTEST = """
# the harness plugin loads itself (its pytest11 entry point)


def pytest_configure(config):
    config.addinivalue_line("markers", "harness: the harness's own tests")
"""

TESTS = """
import http.server
import threading

import pytest

from pytest_harness.stack import ACTIVE
from harness.faults.sampler import Sampler
from harness.pictures import Window
from harness.wait import wait_until

pytestmark = pytest.mark.harness


class Service:
    def status(self):
        return "running"

    def logs(self, lines):
        return "starting\\nthe api's last words before the outage\\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code, body = (200, b'{"status":"pass"}') if self.path == "/health/live" else (503, b'{"status":"fail"}')
        self.send_response(code)
        self.send_header("Content-Type", "application/health+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class StandIn:
    services = {"api": Service()}


@pytest.fixture
def stack():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    s = StandIn()
    s.url = f"http://127.0.0.1:{server.server_port}"
    ACTIVE.append(s)
    yield s
    ACTIVE.remove(s)
    server.shutdown()
    server.server_close()


def sample(url, endpoint, n=5):
    with Sampler(url, (endpoint,), interval=0.02, timeout=5) as sampler:
        wait_until(lambda: len(sampler.samples), until=lambda k: k >= n, timeout=10, what="a few samples")
    sampler.windows.append(Window("fault-window", 0.0, 0.05, "fault"))
    return sampler


def test_outage(stack, keep_figures):
    sampler = sample(stack.url, "/health")
    keep_figures({"scenario": "stand-in", "runtime": "local", "detected_s": 1.25})
    assert all(s.status == 200 for s in sampler.samples), "the api answered 503"


def test_live(stack):
    sampler = sample(stack.url, "/health/live")
    assert all(s.status == 200 for s in sampler.samples)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One pytest run of the two tests above: (outcome, terminal output, report HTML, JUnit, dir)."""
    import os
    import subprocess
    import sys

    where = tmp_path_factory.mktemp("evidence")
    (where / "conftest.py").write_text(CONFTEST)
    (where / "test_stand_in.py").write_text(TESTS)
    # the stand-ins run in another folder, on this repository's platform (its [tool.harness])
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_PROJECT": str(REPO)}
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--junitxml=junit.xml",
            "--html=report.html",
            "--self-contained-html",
            "-rf",
        ],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, (where / "report.html").read_text(), ET.parse(where / "junit.xml"), where


def test_a_failed_test_report_carries_the_log_tail_and_the_last_health_samples(run):
    done, html, _, _ = run
    assert done.returncode == 1, done.stdout[-3000:]
    assert "1 failed, 1 passed" in done.stdout
    out = done.stdout
    assert "api log (last 60 lines)" in out and "the api's last words before the outage" in out
    assert "last health samples" in out and "/health -> 503 fail" in out
    # the HTML report's attachments (base64 data) carry the same
    attached = [
        base64.b64decode(m).decode(errors="replace")
        for m in re.findall(r"data:text/plain;charset=utf-8;base64,([A-Za-z0-9+/=]+)", html)
    ]
    assert any("the api's last words" in a for a in attached)
    assert any("/health -> 503 fail" in a for a in attached)


def test_every_test_that_sampled_health_gets_its_timeline_picture_passed_or_failed(run):
    _, html, _, where = run
    pictures = sorted(p.name for p in (where / "reports" / "timelines").glob("*.svg"))
    assert pictures == ["test_stand_in.py_test_live.svg", "test_stand_in.py_test_outage.svg"]
    kept = json.loads((where / "reports" / "timelines" / "test_stand_in.py_test_outage.json").read_text())
    assert kept["samples"] and kept["samples"][0]["status"] == 503 and kept["windows"][0]["gid"] == "fault-window"
    embedded = re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)
    assert len(embedded) == 2
    assert all('id="fault-window"' in base64.b64decode(e).decode() for e in embedded)


def test_a_failed_scenarios_junit_entry_carries_its_measured_figures(run):
    _, _, junit, where = run
    case = next(c for c in junit.iter("testcase") if c.get("name") == "test_outage")
    assert case.find("failure") is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["detected_s"] == "1.25" and props["scenario"] == "stand-in"
    kept = json.loads((where / "reports" / "faults.json").read_text())
    assert kept[0]["detected_s"] == 1.25


def test_the_html_reports_environment_names_the_runtime_commit_terraform_and_every_setting_with_its_source(run):
    _, html, _, _ = run
    env = json.loads(unescape(re.search(r'data-jsonblob="([^"]*)"', html).group(1)))["environment"]
    assert env["Runtime"].split()[0] in ("local", "docker")
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", env["Commit"]), env["Commit"]
    assert "Terraform" in env and "AWS provider" in env
    assert env["Setting reports_dir"] == "'reports' (from default)"
    assert env["Setting runtime"] == "'auto' (from default)"
