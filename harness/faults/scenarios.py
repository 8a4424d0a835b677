"""Fault scenarios: YAML files validated against a schema, with budgets as small expressions over
the api's own settings and the Dockerfiles' HEALTHCHECK timings (computed, not retyped).

A wrong file fails with the file, the field and what was expected:
    scenarios/faults/x.yaml: fault.kind: 'freeze' is not one of ['kill', 'pause', ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from harness.budgets import evaluate
from harness.errors import ConfigurationError
from harness.faults.kinds import KINDS, LINKS, SERVICES
from harness.paths import project, shown
from harness.plan.codedeploy import TRAFFIC
from harness.rehearsal.tasks import MOMENTS

ROLLOUT_TARGETS = ("postgres", "api->mlflow")


def faults_dir() -> Path:
    """The project's fault scenarios: ``faults/`` of its scenarios folder."""
    return project().scenarios_dir / "faults"


def rollouts_dir() -> Path:
    """Faults in the middle of a rehearsed deployment: ``rollouts/`` of the scenarios folder."""
    return project().scenarios_dir / "rollouts"


PROCESS_KINDS = [k.name for k in KINDS.values() if not k.on_link]
NETWORK_KINDS = [k.name for k in KINDS.values() if k.on_link]
BUDGET = {"type": ["number", "string"], "description": "seconds, or an expression such as db_timeout + 0.5"}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "description", "fault", "expect"],
    # a rehearsed fleet has the database stand-in and the api's link to MLflow to fault
    "if": {"required": ["rollout"]},
    "then": {"properties": {"fault": {"properties": {"target": {"enum": list(ROLLOUT_TARGETS)}}}}},
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "description": {"type": "string", "minLength": 10},
        "api": {
            "type": "object",
            "description": "API_* variables for this scenario",
            "propertyNames": {"pattern": "^API_[A-Z_]+$"},
            "additionalProperties": {"type": "string"},
        },
        "fault": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind", "target"],
            "properties": {
                "kind": {"enum": list(KINDS)},
                "target": {"enum": [*SERVICES, *LINKS]},
                "duration": {"type": "number", "minimum": 0, "maximum": 120},
                "params": {"type": "object"},
            },
            "allOf": [
                {
                    "if": {"properties": {"kind": {"enum": PROCESS_KINDS}}},
                    "then": {"properties": {"target": {"enum": list(SERVICES)}}},
                },
                {
                    "if": {"properties": {"kind": {"enum": NETWORK_KINDS}}},
                    "then": {"properties": {"target": {"enum": list(LINKS)}}},
                },
                # each kind takes its own parameters (harness/faults/kinds.py)
                *(
                    {
                        "if": {"properties": {"kind": {"const": k.name}}},
                        "then": {"properties": {"params": {"propertyNames": {"enum": list(k.params)}}}},
                    }
                    for k in KINDS.values()
                ),
            ],
        },
        "rollout": {
            "type": "object",
            "description": "the fault injected at a moment of a rehearsed deployment (harness/faults/rollout.py)",
            "additionalProperties": False,
            "required": ["strategy", "at", "outcome"],
            "properties": {
                "env": {"type": "string", "pattern": "^[a-z0-9-]+$", "description": "the plan's environment"},
                "strategy": {"enum": ["rolling", "blue_green"]},
                "at": {"enum": [m for m in MOMENTS if m not in ("replacing", "replaced", "closing")]},
                "outcome": {"enum": ["completed", "rolled_back"]},
                "tasks": {"type": "integer", "minimum": 1, "maximum": 10},
                "traffic": {"enum": list(TRAFFIC), "description": "blue/green: CodeDeploy's configuration"},
                "time_scale": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "description": "blue/green: its traffic steps and termination wait scaled (0.02: 5 minutes as 6 s)",
                },
            },
        },
        "probe": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "endpoints": {"type": "array", "items": {"type": "string", "pattern": "^/"}, "minItems": 1},
                "interval": {"type": "number", "exclusiveMinimum": 0, "maximum": 5},
            },
        },
        "writer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "interval": {"type": "number", "minimum": 0, "maximum": 5},
                "max_requests": {"type": "integer", "minimum": 1, "maximum": 100000},
            },
        },
        "expect": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "during": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["status"],
                        "properties": {
                            "status": {"type": "integer", "minimum": 100, "maximum": 599},
                            "health": {"enum": ["pass", "warn", "fail"]},
                            "always": {"type": "boolean"},
                        },
                    },
                },
                "detect_within": BUDGET,
                "recover_within": BUDGET,
                "max_latency": BUDGET,
                "liveness_unaffected": {"type": "boolean"},
                "no_loss": {"type": "boolean"},
            },
        },
    },
}

# the load balancer's check, monitoring's check, liveness
DEFAULT_ENDPOINTS = ["/health", "/health/deep", "/health/live"]


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    kind: str
    target: str
    duration: float
    params: dict
    api_env: dict[str, str]
    endpoints: tuple[str, ...]
    interval: float
    writer: dict | None
    expect: dict = field(default_factory=dict)
    rollout: dict | None = None  # when and in which deployment the fault is injected

    @property
    def id(self) -> str:
        return self.name

    @property
    def is_network(self) -> bool:
        return self.kind in NETWORK_KINDS

    def budget(self, key: str, names: dict[str, float]) -> float | None:
        raw = self.expect.get(key)
        return None if raw is None else evaluate(raw, names, f"{self.path.name}: expect.{key}")


def load(path: Path) -> Scenario:
    rel = shown(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{rel}: valid YAML", str(exc).splitlines()[0], "") from None
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"{where}: {e.message}")
        raise ConfigurationError(
            f"{rel} to match the scenario schema (harness/faults/scenarios.py)",
            "; ".join(lines),
            "docs/faults.md lists the fields",
        )
    if data["name"] != path.stem:
        raise ConfigurationError(f"{rel}: name equal to the file name {path.stem!r}", repr(data["name"]), "")
    probe = data.get("probe", {})
    fault = data["fault"]
    return Scenario(
        path,
        data["name"],
        data["description"],
        fault["kind"],
        fault["target"],
        float(fault.get("duration", 0)),
        fault.get("params", {}),
        data.get("api", {}),
        tuple(probe.get("endpoints", DEFAULT_ENDPOINTS)),
        float(probe.get("interval", 0.1)),
        data.get("writer"),
        data["expect"],
        data.get("rollout"),
    )


def load_all(folder: Path | None = None) -> list[Scenario]:
    return [load(p) for p in sorted((folder or faults_dir()).glob("*.yaml"))]
