"""What the load balancer does for the rehearsal: a poller per target (the target group's health
check), a listener that forwards to target groups by weight (100 % to one of them unless a
blue/green deployment shifts it), routing within a group to the targets it calls healthy and that
are not draining, and a client that sends requests through it, bounded in count and time,
recording every answer (a request the listener cannot route is a failure, as the ALB's 503)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx

from harness import healthjson
from harness.matcher import matches
from harness.plan.timing import Alb


class TargetPoller:
    """One target group's view of one target: checks on the planned interval with the planned
    timeout; healthy after H passing checks in a row (the conservative reading), unhealthy again
    after U failing ones (the load balancer stops routing to it, and ECS replaces its task); bounded
    in time, and stopped with its ``with`` block."""

    def __init__(self, url: str, alb: Alb, started: float, limit: float) -> None:
        self.url, self.alb, self.started, self.limit = url, alb, started, limit
        self.healthy = False
        self.healthy_at: float | None = None  # the first time it turned healthy (seconds since ``started``)
        self.unhealthy_at: list[float] = []  # each time it turned unhealthy after being healthy
        self.first_pass: float | None = None  # the first passing check (seconds since ``started``)
        self.last = ""
        self._passes = self._fails = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"target poller {url}", daemon=True)

    def __enter__(self) -> TargetPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.alb.timeout + 2)

    def record(self, passed: bool, at: float) -> None:
        """One check's result ``at`` seconds since ``started``: the target's state moves by the
        thresholds in a row (a check that fails resets the passes, one that passes the failures)."""
        self._passes, self._fails = (self._passes + 1, 0) if passed else (0, self._fails + 1)
        if passed and self.first_pass is None:
            self.first_pass = at
        if not self.healthy and self._passes >= self.alb.healthy_threshold:
            self.healthy = True
            self.healthy_at = at if self.healthy_at is None else self.healthy_at
        elif self.healthy and self._fails >= self.alb.unhealthy_threshold:
            self.healthy = False
            self.unhealthy_at.append(at)

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - self.started < self.limit:
            try:
                r = httpx.get(
                    self.url + self.alb.path,
                    timeout=self.alb.timeout,
                    headers={"User-Agent": "ELB-HealthChecker/2.0", "Connection": "close"},
                )
                passed, self.last = matches(r.status_code, self.alb.matcher), f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                passed, self.last = False, type(exc).__name__
            self.record(passed, round(time.monotonic() - self.started, 1))
            # on the ALB's fixed schedule: a slow or timed-out check does not push the next one later
            due += self.alb.interval
            self._stop.wait(max(0.0, due - time.monotonic()))


@dataclass
class Target:
    name: str
    url: str
    poller: TargetPoller
    draining: bool = False
    group: str = "blue"  # the target group it is registered in


class Balancer:
    """A listener forwarding to target groups by weight; within a group, round robin over the
    targets the poller calls healthy and that are not draining."""

    def __init__(self) -> None:
        self._targets: dict[str, Target] = {}
        self._lock = threading.Lock()
        # each connection's requests go round robin on their own, from where the listener's rotation
        # stood when it opened (each ALB node keeps its own rotation, and a connection reaches one
        # node): a sampler sees every target in turn, whatever other clients send meanwhile. The
        # listener serves a connection on one thread, so the rotation is the thread's.
        self._turn = itertools.count()
        self._turns = threading.local()
        self._requests = itertools.count()
        self.weights: dict[str, int] = {"blue": 100}  # target group -> percent of the listener's requests

    def register(self, name: str, url: str, poller: TargetPoller, group: str = "blue") -> None:
        with self._lock:
            self._targets[name] = Target(name, url, poller, group=group)

    def shift(self, weights: dict[str, int]) -> None:
        """The listener's weighted forward action (what CodeDeploy changes to move traffic)."""
        if sum(weights.values()) != 100 or min(weights.values()) < 0:
            raise ValueError(f"listener weights must be percents summing to 100, got {weights}")
        with self._lock:
            self.weights = dict(weights)

    def _group(self) -> str:
        """The target group of the next request: each group gets its weight's share of every 100
        requests, spread evenly (37 is coprime with 100, so one pass covers every slot once)."""
        slot, total = (next(self._requests) * 37) % 100, 0
        for group, weight in sorted(self.weights.items()):
            total += weight
            if slot < total:
                return group
        return max(self.weights, key=lambda g: self.weights[g])

    def drain(self, name: str) -> None:
        """Deregistration: no new request goes to it; the ones in flight finish."""
        with self._lock:
            self._targets[name].draining = True

    def pick(self) -> Target | None:
        """The target of the next request; None when its target group has none in service."""
        with self._lock:
            group = self._group()
            ready = [t for t in self._targets.values() if t.group == group and t.poller.healthy and not t.draining]
        turn = getattr(self._turns, "next", None)
        if turn is None:
            turn = next(self._turn)
        self._turns.next = turn + 1
        return ready[turn % len(ready)] if ready else None


@dataclass
class Answer:
    t: float  # when it was sent (seconds since the client started)
    target: str
    status: int | None
    error: str = ""
    latency: float = 0.0  # seconds until it was answered


@dataclass
class Client:
    """Requests through the balancer every ``interval`` until stopped: GET /runs/<random id> (404 is
    the right answer: read-only, and it reaches the database), bounded in count and time."""

    balancer: Balancer
    interval: float = 0.1
    max_requests: int | None = None  # None: as many as ``max_duration`` holds at ``interval``
    max_duration: float = 600.0
    timeout: float = 10.0  # seconds one request may take
    answers: list[Answer] = field(default_factory=list)
    # [start, end] on time.monotonic() of faults injected on purpose (Launcher.excused): answers
    # within them are the fault's judge's to judge, not failed requests of the deployment
    excused: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.max_requests is None:
            self.max_requests = int(self.max_duration / self.interval) + 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rehearsal client", daemon=True)

    def __enter__(self) -> Client:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _loop(self) -> None:
        assert self.max_requests is not None  # set in __post_init__
        with httpx.Client(timeout=self.timeout) as http:
            for _ in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() - self.started > self.max_duration:
                    return
                target = self.balancer.pick()
                t = round(time.monotonic() - self.started, 2)
                if target is None:  # the ALB answers 503 when the group has no target in service
                    self.answers.append(Answer(t, NO_TARGET, None, "no target in service in the routed group"))
                else:
                    sent = time.monotonic()
                    try:
                        r = http.get(f"{target.url}/runs/{uuid.uuid4()}")
                        status, error = r.status_code, ""
                    except httpx.HTTPError as exc:
                        status, error = None, type(exc).__name__
                    self.answers.append(Answer(t, target.name, status, error, round(time.monotonic() - sent, 3)))
                self._stop.wait(self.interval)

    def _excused(self, a: Answer) -> bool:
        """Whether ``a`` is the fault's to explain: an answer of the api itself (a target's status;
        never "no target in service", a refused connection or no answer at all) in flight at some
        moment of a fault (sent before it began counts)."""
        if a.status is None or a.target == NO_TARGET:
            return False
        sent = self.started + a.t
        return any(start <= sent + a.latency and sent <= end for start, end in self.excused)

    def split(self) -> tuple[list[Answer], list[Answer]]:
        """(failed, during faults) in one pass, so that a fault's window closing meanwhile counts
        each answer in exactly one of them."""
        failed: list[Answer] = []
        during: list[Answer] = []
        for a in list(self.answers):
            if a.status != 404:
                (during if self._excused(a) else failed).append(a)
        return failed, during

    @property
    def failed(self) -> list[Answer]:
        """Answers other than the 404 a random id deserves, outside the faults injected on purpose."""
        return self.split()[0]

    @property
    def during_faults(self) -> list[Answer]:
        """Answers other than 404 within a fault injected on purpose."""
        return self.split()[1]


def validate(url: str, timeout: float = 10.0) -> str | None:
    """The rehearsal's AfterAllowTestTraffic hook, sent through the test listener (which routes to
    green only): ``/health`` answers 200 ``pass``, and one write goes through and reads back
    (``POST /runs`` 201, then ``GET /runs/<id>`` 200). None when green passed, else what failed: a
    version can pass the load balancer's check (200 ``warn``) and still be unable to work."""
    key = uuid.uuid4().hex
    try:
        with httpx.Client(base_url=url, timeout=timeout) as http:
            r = http.get("/health")
            health = healthjson.body(r) or {}
            if r.status_code != 200 or health.get("status") != "pass":
                said = f"GET /health answered {r.status_code} {health.get('status') or r.text[:80]!r}"
                return said + (f": {health['output']}" if health.get("output") else "")
            body = {"experiment": "rehearsal-validation", "name": f"v-{key[:8]}", "params": {"v": "1"}, "metrics": {}}
            r = http.post("/runs", json=body, headers={"Idempotency-Key": key})
            if r.status_code != 201:
                return f"POST /runs answered {r.status_code} {r.text[:160]!r}"
            run_id = r.json()["id"]
            r = http.get(f"/runs/{run_id}")
            if r.status_code != 200:
                return f"GET /runs/{run_id} answered {r.status_code} {r.text[:160]!r}"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__} from {url}: {exc}"
    return None


TARGET_HEADER = "X-Harness-Target"  # the listener's answers name the target that gave them
NO_TARGET = "(none)"  # ... or say it had none in service (its 503)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class Listener:
    """The balancer as an ALB listener on a loopback port, so that any HTTP client (the fault
    suite's sampler and writer) reaches the rehearsal's fleet through it: each request is forwarded
    to the target ``Balancer.pick`` names (method, path, query, body, end-to-end headers) and its
    answer returned, with ``X-Harness-Target`` naming the target. As the ALB answers: 503 when the
    routed group has no target in service, 502 when the target did not answer, 504 when it took
    longer than ``timeout`` (the ALB's idle timeout)."""

    def __init__(self, balancer: Balancer, timeout: float = 60.0) -> None:
        import http.server

        self.balancer, self.timeout = balancer, timeout
        self._http = httpx.Client(timeout=timeout)
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass  # the client records what it saw; a line per request here would only be noise

            def _forward(self) -> None:
                status, headers, body = listener.forward(
                    self.command,
                    self.path,
                    {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP},
                    self.rfile.read(int(self.headers.get("Content-Length") or 0)),
                )
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward  # noqa: N815 - the base class's names

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="rehearsal listener", daemon=True)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        """(status, headers, body) of one request sent on to the picked target."""
        target = self.balancer.pick()
        if target is None:
            return 503, [(TARGET_HEADER, NO_TARGET)], b"no target in service in the routed group\n"
        mark = [(TARGET_HEADER, target.name)]
        try:
            r = self._http.request(method, target.url + path, headers=headers, content=body)
        except httpx.TimeoutException:
            return 504, mark, f"{target.name} did not answer within {self.timeout:g}s\n".encode()
        except httpx.HTTPError as exc:
            return 502, mark, f"{target.name}: {type(exc).__name__}\n".encode()
        except RuntimeError:  # the listener closed while a kept-alive connection still sent
            return 503, mark, b"the listener is closing\n"
        kept = [(k, v) for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}]
        return r.status_code, kept + mark, r.content
