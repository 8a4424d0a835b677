"""What one load test is: its options (``LoadTest``), checked before anything starts, and the
records the runner hands on (the load balancer's health check, a HOST:PORT address)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

from harness import slo
from harness.errors import ConfigurationError
from harness.load import profile as profiles
from harness.load.matcher import parse_matcher


class Address(NamedTuple):
    host: str
    port: int


class LoadBalancerCheck(NamedTuple):
    """The api target group's health check as the poller plays it, and where it was read from."""

    timeout: float
    matcher: str
    source: str


@dataclass
class LoadTest:
    """What one load test needs. ``lb_timeout``/``lb_matcher`` None: read them from the Terraform plan."""

    profile: str
    target_url: str | None = None
    workers: int = 0
    time_scale: float = 1.0
    slo_file: Path = slo.SLO_FILE
    reports_dir: Path = Path("reports")
    env: str = "staging"
    lb_timeout: float | None = None
    lb_matcher: str | None = None
    lb_source: str = "the command line"
    max_requests: int | None = None
    request_log: bool = False
    remote_workers: int = 0  # workers on other machines: `python -m harness load-worker --master HOST:PORT`
    master_bind: str = ""  # HOST:PORT the master listens on (default 127.0.0.1 and a free port)
    report_dir: Path | None = None  # default: <reports_dir>/load/<profile>-<UTC timestamp>
    runtime: str = "auto"
    mlflow_workers: int = 1
    timeout_multiplier: float = 1.0
    out: TextIO = field(default=sys.stderr, repr=False)

    def validate(self) -> dict:
        """Check everything before anything starts; returns the profile's data."""
        data = profiles.read(self.profile)
        if not 0 <= self.workers <= 16:
            raise ConfigurationError("--workers between 0 (one process) and 16", repr(self.workers), "")
        if not 0 <= self.remote_workers <= 256:
            raise ConfigurationError("--remote-workers between 0 and 256", repr(self.remote_workers), "")
        if self.master_bind:
            parse_address(self.master_bind, "--master-bind")
        if not 0.01 <= self.time_scale <= 10:
            raise ConfigurationError(
                "--time-scale between 0.01 and 10",
                repr(self.time_scale),
                "it multiplies the end of every stage of the profile",
            )
        if self.lb_timeout is not None and not 2 <= self.lb_timeout <= 120:
            raise ConfigurationError("--lb-timeout between 2 and 120 s (AWS's range)", repr(self.lb_timeout), "")
        if self.lb_matcher is not None:
            try:
                parse_matcher(self.lb_matcher)
            except ValueError as exc:
                raise ConfigurationError("--lb-matcher", str(exc), "") from None
        if self.max_requests is not None and self.max_requests < 1:
            raise ConfigurationError("--max-requests of at least 1", repr(self.max_requests), "")
        # a wrong SLO file fails now, not after the load (alb_timeout: the plan's value comes later)
        slo.load(self.slo_file, profile=self.profile, names={"alb_timeout": self.lb_timeout or 5.0})
        return data


def parse_address(raw: str, flag: str) -> Address:
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigurationError(f"{flag} as HOST:PORT", repr(raw), "e.g. 127.0.0.1:5557 or 0.0.0.0:5557")
    return Address(host, int(port))
