"""Fault scenarios: YAML files validated against a schema, with budgets as small expressions over
the api's own settings and the Dockerfiles' HEALTHCHECK timings (computed, not retyped).

A wrong file fails with the file, the field and what was expected:
    scenarios/faults/x.yaml: fault.kind: 'freeze' is not one of ['kill', 'pause', ...]
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from harness.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[1]
FAULTS_DIR = REPO / "scenarios" / "faults"
PROCESS_KINDS = ["kill", "pause", "restart", "stop"]
NETWORK_KINDS = ["latency", "bandwidth", "blackhole", "reset", "slow_close", "refuse", "respond"]
SERVICES = ["postgres", "mlflow"]
LINKS = ["api->postgres", "api->mlflow", "mlflow->postgres"]
BUDGET = {"type": ["number", "string"], "description": "seconds, or an expression such as db_timeout + 0.5"}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "description", "fault", "expect"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "description": {"type": "string", "minLength": 10},
        "api": {"type": "object", "description": "API_* variables for this scenario",
                "propertyNames": {"pattern": "^API_[A-Z_]+$"}, "additionalProperties": {"type": "string"}},
        "fault": {
            "type": "object", "additionalProperties": False, "required": ["kind", "target"],
            "properties": {
                "kind": {"enum": PROCESS_KINDS + NETWORK_KINDS},
                "target": {"enum": SERVICES + LINKS},
                "duration": {"type": "number", "minimum": 0, "maximum": 120},
                "params": {"type": "object"},
            },
            "allOf": [
                {"if": {"properties": {"kind": {"enum": PROCESS_KINDS}}},
                 "then": {"properties": {"target": {"enum": SERVICES}}}},
                {"if": {"properties": {"kind": {"enum": NETWORK_KINDS}}},
                 "then": {"properties": {"target": {"enum": LINKS}}}},
            ],
        },
        "probe": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "endpoints": {"type": "array", "items": {"type": "string", "pattern": "^/"}, "minItems": 1},
                "interval": {"type": "number", "exclusiveMinimum": 0, "maximum": 5},
            },
        },
        "writer": {
            "type": "object", "additionalProperties": False,
            "properties": {"interval": {"type": "number", "minimum": 0, "maximum": 5},
                           "max_requests": {"type": "integer", "minimum": 1, "maximum": 100000}},
        },
        "expect": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "during": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": False, "required": ["status"],
                    "properties": {"status": {"type": "integer", "minimum": 100, "maximum": 599},
                                   "health": {"enum": ["pass", "warn", "fail"]},
                                   "always": {"type": "boolean"}}}},
                "detect_within": BUDGET,
                "recover_within": BUDGET,
                "max_latency": BUDGET,
                "liveness_unaffected": {"type": "boolean"},
                "no_loss": {"type": "boolean"},
            },
        },
    },
}

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_FUNCS = {"max": max, "min": min}


def evaluate(expr: float | str, names: dict[str, float], where: str) -> float:
    """A number, or + - * / max() min() over known names; anything else is a ConfigurationError."""
    if isinstance(expr, (int, float)):
        return float(expr)

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ConfigurationError(f"{where}: a known name ({', '.join(sorted(names))})", repr(node.id),
                                         "budgets may use only these names")
            return float(names[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        raise ConfigurationError(f"{where}: numbers, names, + - * / max() min()", ast.dump(node)[:60], "")

    try:
        tree = ast.parse(str(expr), mode="eval")
    except SyntaxError:
        raise ConfigurationError(f"{where}: an arithmetic expression", repr(expr), "e.g. db_timeout + 0.5") from None
    return ev(tree)


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
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
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
        raise ConfigurationError(f"{rel} to match the scenario schema (harness/scenarios.py)",
                                 "; ".join(lines), "see scenarios/faults/README.md for the fields")
    if data["name"] != path.stem:
        raise ConfigurationError(f"{rel}: name equal to the file name {path.stem!r}", repr(data["name"]), "")
    probe = data.get("probe", {})
    fault = data["fault"]
    return Scenario(path, data["name"], data["description"], fault["kind"], fault["target"],
                    float(fault.get("duration", 0)), fault.get("params", {}), data.get("api", {}),
                    tuple(probe.get("endpoints", ["/health", "/health/live"])), float(probe.get("interval", 0.1)),
                    data.get("writer"), data["expect"])


def load_all(folder: Path = FAULTS_DIR) -> list[Scenario]:
    return [load(p) for p in sorted(folder.glob("*.yaml"))]
