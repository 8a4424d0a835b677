"""The rehearsal's listener: weighted forwarding to target groups (what CodeDeploy shifts), round
robin within a group over targets in service, and no route when the group has none."""

from collections import Counter
from types import SimpleNamespace

import pytest

from harness.rehearsal.balancer import Balancer

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def poller(healthy: bool = True):
    return SimpleNamespace(healthy=healthy)


def groups(balancer: Balancer, n: int = 100) -> Counter:
    return Counter(t.group if t else None for t in (balancer.pick() for _ in range(n)))


def test_all_requests_go_to_blue_until_the_listener_shifts_then_each_group_gets_its_share():
    b = Balancer()
    b.register("blue-1", "http://b1", poller(), "blue")
    b.register("blue-2", "http://b2", poller(), "blue")
    b.register("green-1", "http://g1", poller(), "green")
    assert groups(b) == {"blue": 100}
    b.shift({"blue": 90, "green": 10})
    assert groups(b) == {"blue": 90, "green": 10}
    picks = [b.pick().group for _ in range(20)]
    assert picks.count("green") == 2 and picks[:10].count("green") == 1  # spread, not in a burst
    b.shift({"blue": 0, "green": 100})
    assert groups(b) == {"green": 100}
    assert Counter(b.pick().name for _ in range(10)) == {"green-1": 10}


def test_round_robin_within_a_group_skips_targets_not_in_service_or_draining():
    b = Balancer()
    b.register("blue-1", "http://b1", poller(), "blue")
    b.register("blue-2", "http://b2", poller(healthy=False), "blue")
    b.register("blue-3", "http://b3", poller(), "blue")
    b.drain("blue-3")
    assert {b.pick().name for _ in range(6)} == {"blue-1"}


def test_a_group_with_no_target_in_service_routes_nothing():
    b = Balancer()
    b.register("blue-1", "http://b1", poller(), "blue")
    b.register("green-1", "http://g1", poller(healthy=False), "green")
    b.shift({"blue": 50, "green": 50})
    assert groups(b) == {"blue": 50, None: 50}


@pytest.mark.parametrize("weights", [{"blue": 90, "green": 20}, {"blue": 110, "green": -10}])
def test_weights_must_be_percents_summing_to_100(weights):
    with pytest.raises(ValueError, match="summing to 100"):
        Balancer().shift(weights)


@pytest.mark.parametrize(
    "desired, min_healthy, max_percent, expected",
    [
        (3, 100, 200, (3, 6)),  # prod's api: three new tasks beside the three old ones
        (2, 50, 100, (1, 2)),  # no room beside: one old task stops first
        (3, 50, 150, (2, 4)),  # ECS rounds the minimum up and the maximum down
        (1, 0, 100, (0, 1)),
    ],
)
def test_a_rolling_deployments_bounds_round_as_ecs_rounds_them(desired, min_healthy, max_percent, expected):
    from harness.rehearsal.rolling import bounds

    svc = SimpleNamespace(min_healthy_percent=min_healthy, max_percent=max_percent)
    assert bounds(desired, svc) == expected


def test_task_keys_and_their_container_names_are_unique_per_task():
    from harness.rehearsal.tasks import _suffix, task_key

    keys = [task_key(base, i) for base in ("api", "api (new revision)", "api (green)") for i in range(3)]
    assert keys[:4] == ["api", "api #2", "api #3", "api (new revision)"]
    suffixes = [_suffix(k, "api") for k in keys]
    assert suffixes[:3] == ["", "-2", "-3"] and len(set(suffixes)) == len(keys), suffixes


@pytest.fixture
def targets():
    """Two small HTTP servers on loopback that answer with their name, the path and the body."""
    import http.server
    import threading

    servers = []

    def serve(name: str):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                said = f"{name} {self.command} {self.path} {body.decode()} {self.headers.get('Idempotency-Key')}"
                self.send_response(201)
                self.send_header("Content-Length", str(len(said)))
                self.end_headers()
                self.wfile.write(said.encode())

            do_GET = do_POST

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def test_the_listener_forwards_each_request_to_a_target_in_service_and_answers_as_the_alb(targets):
    import httpx

    from harness.ports import free_port, release
    from harness.rehearsal.balancer import Listener

    b = Balancer()
    b.register("api", targets("api"), poller())
    b.register("api #2", targets("api #2"), poller())
    with Listener(b, timeout=5) as listener:
        answers = [
            httpx.post(f"{listener.url}/runs?x=1", content=b"{}", headers={"Idempotency-Key": "k"}) for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [201] * 4
        assert {a.text for a in answers} == {"api POST /runs?x=1 {} k", "api #2 POST /runs?x=1 {} k"}
        assert {a.headers["X-Harness-Target"] for a in answers} == {"api", "api #2"}
        b.drain("api")
        b.drain("api #2")
        assert httpx.get(f"{listener.url}/health").status_code == 503  # no target in service
        port = free_port()  # held, so nothing listens there meanwhile
        try:
            b.register("gone", f"http://127.0.0.1:{port}", poller())
            gone = httpx.get(f"{listener.url}/health")
        finally:
            release(port)
        assert (gone.status_code, gone.headers["X-Harness-Target"]) == (502, "gone")


def test_a_target_turns_healthy_after_h_passes_in_a_row_and_unhealthy_again_after_u_failures():
    """As the ALB: H passing checks in a row make a target healthy, U failing ones in a row take it
    out of service again (a fleet drained by a shared outage shows here), H passes bring it back."""
    from harness.plan.timing import Alb
    from harness.rehearsal.balancer import TargetPoller

    p = TargetPoller("http://t", Alb(5, 2, healthy_threshold=2, unhealthy_threshold=3, matcher="200", path="/"), 0, 1)
    for at, passed in enumerate([True, False, True, True], start=1):
        p.record(passed, float(at))
    assert (p.healthy, p.healthy_at, p.first_pass) == (True, 4.0, 1.0)
    for at in (5.0, 6.0):  # two failures of three: still in service
        p.record(False, at)
    p.record(True, 7.0)  # a pass resets the failures
    for at in (8.0, 9.0):
        p.record(False, at)
    assert p.healthy and p.unhealthy_at == []
    p.record(False, 10.0)
    assert not p.healthy and p.unhealthy_at == [10.0]
    p.record(True, 11.0)
    assert not p.healthy  # one pass is not H
    p.record(True, 12.0)
    assert p.healthy and p.healthy_at == 4.0 and p.unhealthy_at == [10.0]
    b = Balancer()
    b.register("t", "http://t", p)
    p.record(False, 13.0), p.record(False, 14.0), p.record(False, 15.0)
    assert b.pick() is None  # out of service: no request routed to it


def test_each_connection_goes_round_robin_on_its_own_whatever_others_send_meanwhile():
    """A sampler's stream behind the listener (one connection, one thread) sees every target in
    turn, even when another client's requests come between each of its own (a shared rotation
    would send all of them to one target)."""
    import threading

    b = Balancer()
    b.register("api", "http://a", poller())
    b.register("api #2", "http://b", poller())
    seen: list[str] = []
    mine, theirs = threading.Event(), threading.Event()

    def other_stream():
        for _ in range(6):
            mine.wait(5)
            mine.clear()
            seen.append(b.pick().name)
            theirs.set()

    t = threading.Thread(target=other_stream)
    t.start()
    own = []
    for _ in range(6):
        own.append(b.pick().name)
        mine.set()
        theirs.wait(5)
        theirs.clear()
    t.join(5)
    assert own.count("api") == 3 and own.count("api #2") == 3, own
    assert own[0] != own[1] and seen[0] != seen[1], (own, seen)


def test_only_the_apis_own_answers_in_flight_during_a_fault_are_excused():
    """Answers within a fault injected on purpose are the fault judge's, not failed requests of the
    deployment: a 503 the api gave, also one sent just before the fault began; never "no target in
    service" nor a request that got no answer (those are the fleet's failures, fault or not)."""
    from harness.rehearsal.balancer import NO_TARGET, Answer, Client

    c = Client(Balancer())
    c.started = 100.0
    c.excused = [[110.0, 120.0]]
    c.answers = [
        Answer(5.0, "api", 404),  # right
        Answer(12.0, "api", 503, latency=1.0),  # the api's own, during the fault: excused
        Answer(9.5, "api #2", 503, latency=1.0),  # sent before, answered during: excused
        Answer(13.0, NO_TARGET, None, "no target in service in the routed group"),
        Answer(14.0, "api", None, "ConnectError", 0.01),
        Answer(25.0, "api", 503),  # after the fault and its recovery
    ]
    assert [(a.t, a.target) for a in c.during_faults] == [(12.0, "api"), (9.5, "api #2")]
    assert [(a.t, a.target) for a in c.failed] == [(13.0, NO_TARGET), (14.0, "api"), (25.0, "api")]


def test_the_target_is_checked_on_a_fixed_schedule_however_slow_its_answers():
    """As the ALB: a check every interval, not an interval after each answer, so that a target
    whose checks time out fails U of them in U intervals (a drifting poller would need longer than
    the fault lasts to see what the ALB sees)."""
    import http.server
    import threading
    import time

    from harness.plan.timing import Alb
    from harness.rehearsal.balancer import TargetPoller
    from harness.wait import wait_until

    checks: list[float] = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            checks.append(time.monotonic())
            time.sleep(0.3)  # slower than nothing, within the check's timeout
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        alb = Alb(0.5, 1, healthy_threshold=2, unhealthy_threshold=3, matcher="200", path="/health")
        with TargetPoller(f"http://127.0.0.1:{server.server_address[1]}", alb, time.monotonic(), 2.2) as poller:
            # its own limit (2.2 s) ends it
            wait_until(poller._thread.is_alive, until=lambda alive: not alive, timeout=5, what="the poller's end")
    finally:
        server.shutdown()
        server.server_close()
    # on the schedule 0, 0.5, 1.0, 1.5, 2.0 s: a check that starts late (a busy machine) does not move
    # the next one, which a poller that waits an interval after each 0.3-s answer would (0, 0.8, 1.6)
    late = [round(t - checks[0] - k * alb.interval, 2) for k, t in enumerate(checks)]
    assert len(checks) == 5 and all(abs(d) <= 0.2 for d in late), late
