"""Named timeouts, in one place, scaled by one multiplier (``--timeout-multiplier``); and the small
budget expressions (``db_timeout + 0.5``) that scenario and SLO files use instead of retyped numbers."""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass

from harness.errors import ConfigurationError

# Seconds on a 2-core machine; see docs/measured.md for the measured values they cover.
BASE = {
    "postgres_ready": 30.0,  # initdb + start: ~1-3 s measured
    "mlflow_ready": 90.0,  # the container start period; measured 4-19 s locally
    "api_ready": 30.0,  # ~1 s once Postgres answers
    "stop": 20.0,  # SIGTERM to gone, per service (api drain + grace included)
    "http": 5.0,  # one HTTP call made by the harness
    "detect": 3.0,  # a fault shows in /health, beyond the api's own check budget
}


@dataclass(frozen=True)
class Budgets:
    multiplier: float = 1.0

    def __getattr__(self, name: str) -> float:
        try:
            return BASE[name] * self.multiplier
        except KeyError:
            raise AttributeError(f"no budget named {name!r}; known: {sorted(BASE)}") from None

    def scaled(self, seconds: float) -> float:
        return seconds * self.multiplier


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
                raise ConfigurationError(
                    f"{where}: a known name ({', '.join(sorted(names))})",
                    repr(node.id),
                    "budgets may use only these names",
                )
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
