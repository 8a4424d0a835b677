"""Service level objectives for the load profiles: one YAML file (``scenarios/slo.yaml``) read by
the Locust gate (``harness_locust/gate.py``), by the load suite and by the timing checks.

Limits are numbers or small expressions over named values; ``alb_timeout`` (seconds) comes from
the Terraform plan when one can be made, else from the file's ``names``. A wrong file fails with
the field and what was expected:

    scenarios/slo.yaml: objectives.GET /health [lb].p99_ms: 'fast' is not of type 'number', 'string'

``judge(slo, stats)`` turns measured figures into verdicts; every breach says by how much.
This module never imports Locust (Locust monkey-patches the process it runs in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jsonschema
import yaml

from harness.budgets import evaluate
from harness.errors import ConfigurationError
from harness.paths import project, shown


def slo_file() -> Path:
    """The project's SLO file (``slo_file`` of its [tool.harness] table)."""
    return project().slo_file


HEALTH_ENDPOINT = "GET /health [lb]"  # the load-balancer poller's requests (harness_locust/users/health_poller.py)
TOTAL = "total"
LIMIT = {"type": ["number", "string"], "description": "a number, or an expression such as alb_timeout * 1000"}
# kind -> (how the measured value compares with the limit, unit)
KINDS = {
    "p50_ms": ("<=", "ms"),
    "p95_ms": ("<=", "ms"),
    "p99_ms": ("<=", "ms"),
    "max_ms": ("<=", "ms"),
    "error_rate": ("<=", ""),
    "success_ratio": (">=", ""),
    "min_requests": (">=", ""),
}
OBJECTIVE = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {k: LIMIT for k in KINDS},
}
ENDPOINT_KEY = "^(total|(GET|POST|PUT|DELETE|PATCH|HEAD) /.*)$"
OBJECTIVES = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": ENDPOINT_KEY},
    "additionalProperties": OBJECTIVE,
}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["objectives"],
    "properties": {
        "names": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "fallback values for the names limits use (alb_timeout when Terraform is absent)",
        },
        "objectives": OBJECTIVES,
        "profiles": {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z0-9][a-z0-9_-]*$"},
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"pattern": ENDPOINT_KEY},
                "additionalProperties": OBJECTIVE,
            },
        },
    },
}


@dataclass(frozen=True)
class Figures:
    """What was measured for one endpoint (or the total) in one run."""

    requests: int
    failures: int
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    rps: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def success_ratio(self) -> float:
        return 1.0 - self.error_rate if self.requests else 0.0

    @property
    def min_requests(self) -> float:
        return float(self.requests)


@dataclass(frozen=True)
class Verdict:
    endpoint: str
    objective: str
    limit: float
    measured: float | None
    ok: bool

    def __str__(self) -> str:
        op, unit = KINDS[self.objective]
        name = f"{self.endpoint} {self.objective.removesuffix('_ms')}"
        if self.measured is None:
            return f"{name}: no requests were recorded (limit {op} {_fmt(self.limit, unit)})"
        if self.ok:
            return f"{name} {_fmt(self.measured, unit)} {op} {_fmt(self.limit, unit)}"
        over = abs(self.measured - self.limit)
        share = f", {over / self.limit:.0%}" if self.limit else ""
        bad = {"<=": ">", ">=": "<"}[op]
        side = "over" if op == "<=" else "under"
        return (
            f"{name} {_fmt(self.measured, unit)} {bad} {_fmt(self.limit, unit)} ({side} by {_fmt(over, unit)}{share})"
        )


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.2f} ms"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Slo:
    path: Path
    names: dict[str, float]
    objectives: dict[str, dict[str, float]]  # endpoint -> kind -> limit, expressions already evaluated
    profile: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # name -> where its value came from

    def as_json(self) -> dict:
        return {
            "file": str(self.path),
            "profile": self.profile,
            "names": self.names,
            "sources": self.sources,
            "objectives": self.objectives,
        }


def load(
    path: Path | None = None,
    profile: str | None = None,
    names: Mapping[str, float] | None = None,
    sources: Mapping[str, str] | None = None,
) -> Slo:
    """Read and validate the file; ``names`` (e.g. alb_timeout from the plan) override its fallbacks;
    a profile's section overrides the common objectives field by field."""
    path = path or slo_file()
    rel = shown(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"an SLO file at {rel}", exc.strerror or str(exc), "see scenarios/slo.yaml") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{rel}: valid YAML", str(exc).splitlines()[0], "") from None
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in errors]
        raise ConfigurationError(
            f"{rel} to match the SLO schema (harness/slo.py)",
            "; ".join(lines),
            "fields per endpoint: " + ", ".join(KINDS),
        )
    known = {k: float(v) for k, v in (data.get("names") or {}).items()}
    where = {k: f"{rel} names" for k in known}
    known.update(names or {})
    where.update(sources or {k: "given" for k in names or {}})
    if "alb_timeout" in known:
        known["alb_timeout_ms"] = known["alb_timeout"] * 1000
    raw = {k: dict(v) for k, v in data["objectives"].items()}
    for endpoint, override in ((data.get("profiles") or {}).get(profile) or {}).items():
        raw.setdefault(endpoint, {}).update(override)
    objectives = {
        endpoint: {kind: evaluate(expr, known, f"{rel}: objectives.{endpoint}.{kind}") for kind, expr in kinds.items()}
        for endpoint, kinds in raw.items()
    }
    return Slo(path, known, objectives, profile, where)


def judge(slo: Slo, stats: Mapping[str, Figures]) -> list[Verdict]:
    """One verdict per objective. An endpoint with no requests breaks its objectives: a gate that
    passes because nothing was measured proves nothing."""
    out = []
    for endpoint, kinds in slo.objectives.items():
        fig = stats.get(endpoint)
        for kind, limit in kinds.items():
            if fig is None or fig.requests == 0:
                out.append(Verdict(endpoint, kind, limit, None, False))
                continue
            measured = float(getattr(fig, kind))
            op = KINDS[kind][0]
            ok = measured <= limit if op == "<=" else measured >= limit
            out.append(Verdict(endpoint, kind, limit, round(measured, 4), ok))
    return out


def breaches(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if not v.ok]


def verdicts_json(verdicts: list[Verdict]) -> list[dict]:
    return [{**asdict(v), "text": str(v)} for v in verdicts]


def gate_lines(verdicts: list[dict], exceptions: list[dict]) -> list[str]:
    """What the gate prints, from ``verdicts_json`` and Locust's exceptions: one line per objective."""
    lines = [f"  {'pass  ' if v['ok'] else 'BREACH'}  {v['text']}" for v in verdicts]
    lines += [f"  ERROR   the test itself raised {e['count']}x: {e['msg'].splitlines()[-1][:200]}" for e in exceptions]
    return lines
