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


# The numbers a load test takes, with their bounds (None: no upper bound); the CLI checks the same.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "workers": (0, 16),  # 0: one process
    "remote_workers": (0, 256),
    "time_scale": (0.01, 10),
    "lb_timeout": (2, 120),  # AWS's range for a target group's health-check timeout
    "max_requests": (1, None),
}
BOUND_HINTS = {
    "time_scale": "it multiplies the end of every stage of the profile",
    "lb_timeout": "AWS's range for a target group's health-check timeout",
}


@dataclass
class LoadTest:
    """What one load test needs. ``lb_timeout``/``lb_matcher`` None: read them from the Terraform plan."""

    profile: str
    target_url: str | None = None
    workers: int = 0
    time_scale: float = 1.0
    slo_file: Path = field(default_factory=slo.slo_file)
    reports_dir: Path = Path("reports")
    env: str = "staging"
    lb_timeout: float | None = None
    lb_matcher: str | None = None
    lb_source: str = "the command line"
    # the check must come from the plan of ``env``: no plan is an error, not the SLO file's fallback
    # (a nightly run against staging measures staging's own check)
    lb_from_plan: bool = False
    max_requests: int | None = None
    request_log: bool = False
    remote_workers: int = 0  # workers on other machines: `python -m harness load-worker --master-host HOST`
    master_bind: str = ""  # HOST:PORT the master listens on (default 127.0.0.1 and a free port)
    report_dir: Path | None = None  # default: <reports_dir>/load/<profile>-<UTC timestamp>
    runtime: str = "auto"
    mlflow_workers: int = 1
    timeout_multiplier: float = 1.0
    out: TextIO = field(default=sys.stderr, repr=False)

    def validate(self) -> dict:
        """Check everything before anything starts; returns the profile's data."""
        data = profiles.read(self.profile)
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not (low <= value and (high is None or value <= high)):
                flag = "--" + name.replace("_", "-")
                span = f"of at least {low:g}" if high is None else f"between {low:g} and {high:g}"
                raise ConfigurationError(f"{flag} {span}", repr(value), BOUND_HINTS.get(name, ""))
        if self.lb_from_plan and (self.lb_timeout is not None or self.lb_matcher is not None):
            raise ConfigurationError(
                "--lb-from-plan alone, or --lb-timeout/--lb-matcher alone",
                "both",
                "--lb-from-plan reads the timeout and the matcher from the plan of --env",
            )
        if self.master_bind:
            parse_address(self.master_bind, "--master-bind-host and --master-bind-port")
        if self.lb_matcher is not None:
            try:
                parse_matcher(self.lb_matcher)
            except ValueError as exc:
                raise ConfigurationError("--lb-matcher", str(exc), "") from None
        # a wrong SLO file fails now, not after the load (alb_timeout: the plan's value comes later)
        slo.load(self.slo_file, profile=self.profile, names={"alb_timeout": self.lb_timeout or 5.0})
        return data


def parse_address(raw: str, flag: str) -> Address:
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigurationError(f"{flag} as HOST:PORT", repr(raw), "e.g. 127.0.0.1:5557 or 0.0.0.0:5557")
    return Address(host, int(port))
