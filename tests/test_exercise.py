"""When a scenario's fault window opens: once the fault is in effect, not when its injection began.
A busy Docker engine can take a second or more to pause a container; counting that second against
the health check's detection budget made postgres-frozen pass or fail with the machine's load. A
stand-in api (an HTTP server that warns once its "Postgres" is paused) and a pause that takes
0.8 s show the detection measured from the pause, and the time it took kept apart."""

import http.server
import threading
import time

import pytest

from harness.faults.exercise import exercise
from harness.faults.judge import figures, judge
from harness.faults.scenarios import faults_dir, load

pytestmark = [pytest.mark.harness, pytest.mark.unit]
FROZEN = load(faults_dir() / "postgres-frozen.yaml")
SLOW_PAUSE = 0.8  # seconds the stand-in engine takes to pause; the detect budget is 2.75 s


class Postgres:
    """A service whose pause takes effect only when the call returns, as ``docker pause`` does."""

    def __init__(self) -> None:
        self.paused = threading.Event()

    def pause(self) -> None:
        time.sleep(SLOW_PAUSE)  # the engine's latency, not a wait for a state
        self.paused.set()

    def resume(self) -> None:
        self.paused.clear()


class Api:
    url = ""


def handler(pg: Postgres) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            down = pg.paused.is_set()
            status, health = {
                "/health/live": (200, "pass"),
                "/health": (200, "warn" if down else "pass"),
                "/health/deep": (503 if down else 200, "fail" if down else "pass"),
            }[self.path]
            body = f'{{"status":"{health}"}}'.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/health+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class StandIn:
    def __init__(self, url: str, pg: Postgres) -> None:
        api = Api()
        api.url = url
        self.services = {"api": api, "postgres": pg}
        self.proxies: dict = {}

    def url(self, name: str) -> str:
        return self.services["api"].url if name == "api" else self.services["api"].url + "/mlflow"


@pytest.fixture
def observation():
    pg = Postgres()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(pg))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield exercise(StandIn(f"http://127.0.0.1:{server.server_port}", pg), FROZEN, settle=5)  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()


def test_the_fault_window_opens_when_the_fault_is_in_effect_and_the_time_to_apply_it_is_kept(observation):
    names = {"ttl": 1.0, "db_timeout": 1.0, "slack": 0.75, "health_budget": 3.3}
    detect = next(v for v in judge(observation, names) if v.name == "detect")
    assert detect.ok and detect.measured < 0.5, str(detect)  # counted from the pause, not from the call
    assert observation.applying >= SLOW_PAUSE
    assert figures(observation, [detect], "local")["applying_s"] >= SLOW_PAUSE
    windows = {w.gid: w for w in observation.sampler.windows}
    assert windows["fault-applying"].end == windows["fault-window"].start == observation.fault_start
    assert observation.fault_end - observation.fault_start >= FROZEN.duration
