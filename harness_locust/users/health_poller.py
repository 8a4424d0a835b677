"""The load balancer's view: each user is one ALB node polling ``/health`` on the profile's interval,
with the target group's timeout and matcher; a check that misses either is a failure with a reason."""

from __future__ import annotations

import time

from locust import HttpUser, task

from harness.load.matcher import matches, reason


class HealthPoller(HttpUser):
    fixed_count = 3  # the profile's poller.nodes; set on the master before users spawn (harness_locust/gate.py)
    weight = 1

    def on_start(self) -> None:
        options = self.environment.parsed_options
        profile = self.environment.shape_class.profile
        self.interval = float(profile["poller"]["interval"])
        self.timeout = float(options.lb_timeout)  # options of harness_locust/gate.py, sent by the master
        self.matcher = options.lb_matcher
        self._started = time.monotonic()

    def wait_time(self) -> float:
        """Constant pacing: one check per interval, however long the last one took."""
        return max(0.0, self.interval - (time.monotonic() - self._started))

    @task
    def check(self) -> None:
        self._started = time.monotonic()
        # an ALB health check is a fresh connection with its own user agent
        headers = {"User-Agent": "ELB-HealthChecker/2.0", "Connection": "close"}
        with self.client.get(
            "/health",
            name="/health [lb]",
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
            catch_response=True,
        ) as r:
            if not r.status_code:
                err = r.error
                timed_out = "timeout" in type(err).__name__.lower() or "timed out" in str(err).lower()
                r.failure(
                    f"no answer within the target group's {self.timeout:g} s timeout"
                    if timed_out
                    else reason(0, None, err)
                )
                return
            if not matches(r.status_code, self.matcher):
                try:
                    body = r.json()
                except ValueError:
                    body = None
                r.failure(f"unhealthy: {reason(r.status_code, body)} (matcher {self.matcher})")
            else:
                r.success()
