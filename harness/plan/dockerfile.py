"""Read a Dockerfile's HEALTHCHECK: timings and command, so budgets come from it, not retyped."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harness.errors import ConfigurationError
from harness.paths import project, shown

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
# Docker's own defaults when an option is absent
DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0}


@dataclass(frozen=True)
class HealthCheck:
    source: str  # file the check came from
    interval: float
    timeout: float
    retries: int
    start_period: float
    command: str

    @property
    def uses_curl(self) -> bool:
        return "curl" in shlex.split(self.command)[0:1] or " curl " in f" {self.command} "

    @property
    def url(self) -> str | None:
        m = re.search(r"https?://\S+", self.command)
        return m.group(0) if m else None

    @property
    def path(self) -> str | None:
        return urlsplit(self.url).path if self.url else None

    @property
    def unhealthy_after(self) -> float:
        """Worst case from start to UNHEALTHY for a never-healthy container: S + R*(I+T)."""
        return self.start_period + self.retries * (self.interval + self.timeout)

    def as_docker_api(self, **overrides: float | int | str) -> dict:
        """The check in the Engine API's form (nanoseconds), e.g. to start a container with it."""
        values = {
            "interval": self.interval,
            "timeout": self.timeout,
            "retries": self.retries,
            "start_period": self.start_period,
            "command": self.command,
            **overrides,
        }
        ns = 1_000_000_000
        return {
            "test": ["CMD-SHELL", values["command"]],
            "interval": int(values["interval"] * ns),
            "timeout": int(values["timeout"] * ns),
            "retries": int(values["retries"]),
            "start_period": int(values["start_period"] * ns),
        }


def parse_duration(raw: str, where: str) -> float:
    pos, total = 0, 0.0
    for m in _DURATION.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(raw) or not raw:
        raise ConfigurationError(
            f"{where}: a duration like 10s, 1m30s or 500ms", repr(raw), "Docker accepts Go durations"
        )
    return total


def healthcheck(dockerfile: Path) -> HealthCheck:
    """The last HEALTHCHECK of ``dockerfile`` (continuation lines joined)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"\s*HEALTHCHECK\s", ln, re.I)]
    rel = shown(dockerfile)
    if not lines:
        raise ConfigurationError(f"{rel}: a HEALTHCHECK instruction", "none", "add HEALTHCHECK ... CMD ...")
    body = re.sub(r"^HEALTHCHECK\s+", "", lines[-1], flags=re.I)
    values: dict = dict(DEFAULTS)
    while body.startswith("--"):
        opt, _, body = body.partition(" ")
        name, _, raw = opt[2:].partition("=")
        key = name.replace("-", "_")
        where = f"{rel} HEALTHCHECK --{name}"
        if key == "retries":
            values[key] = int(raw)
        elif key in values:
            values[key] = parse_duration(raw, where)
        elif key != "start_interval":
            raise ConfigurationError(
                f"{rel}: HEALTHCHECK options interval, timeout, retries, start-period",
                f"--{name}",
                "see the Dockerfile reference",
            )
        body = body.lstrip()
    if not body.upper().startswith("CMD"):
        raise ConfigurationError(f"{rel}: HEALTHCHECK ... CMD <command>", repr(body[:60]), "")
    command = body[3:].strip()
    if command.startswith("["):
        import json

        command = " ".join(json.loads(command)[1:] if json.loads(command)[0] == "CMD-SHELL" else json.loads(command))
    return HealthCheck(rel, values["interval"], values["timeout"], values["retries"], values["start_period"], command)


def service_healthcheck(service: str) -> HealthCheck:
    return healthcheck(project().services_dir / service / "Dockerfile")
