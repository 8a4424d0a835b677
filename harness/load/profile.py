"""A load profile's data: the ``PROFILE`` dict literal at the top of ``<loadtests_dir>/profiles/<name>.py``.

Locust reads it through the shape class in the same file; the runner reads the same literal with
``ast`` (it must not import Locust, which monkey-patches the process) to know the bounds before it
starts anything. Both validate it here, so a wrong profile fails with the field that is wrong:

    loadtests/profiles/x.py: PROFILE.stages.1.until: 10 is not greater than the previous stage's 30
"""

from __future__ import annotations

import ast
from pathlib import Path

import jsonschema

from harness.paths import project, shown


def profiles_dir() -> Path:
    return project().loadtests_dir / "profiles"


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["description", "stages", "poller", "client_wait", "max_requests"],
    "properties": {
        "description": {"type": "string", "minLength": 10},
        "stages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["until", "clients", "spawn_rate"],
                "properties": {
                    "until": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 86400,
                        "description": "seconds since the start at which this stage ends",
                    },
                    "clients": {"type": "integer", "minimum": 0, "maximum": 1000},
                    "spawn_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
                },
            },
        },
        "poller": {
            "type": "object",
            "additionalProperties": False,
            "required": ["nodes", "interval"],
            "properties": {
                "nodes": {"type": "integer", "minimum": 1, "maximum": 20},
                "interval": {"type": "number", "minimum": 0.05, "maximum": 300},
            },
        },
        "client_wait": {
            "type": "array",
            "items": {"type": "number", "minimum": 0, "maximum": 60},
            "minItems": 2,
            "maxItems": 2,
            "description": "[min, max] seconds between requests",
        },
        "max_requests": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
        "opt_in": {"type": "boolean", "description": "long: run only when asked for by name"},
        "find_knee": {"type": "boolean", "description": "a ramp: report the knee and what saturated first"},
        "recover_within": {
            "type": "number",
            "minimum": 0,
            "maximum": 600,
            "description": (
                "seconds into the last stage after which the write path must fail no more than its base SLO"
            ),
        },
    },
}


class ProfileError(ValueError):
    """A profile file is missing or its data is wrong; the message names the field."""


def validate(data: object, where: str) -> dict:
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise ProfileError(
            "; ".join(f"{where}: {'.'.join(['PROFILE', *map(str, e.absolute_path)])}: {e.message}" for e in errors)
        )
    assert isinstance(data, dict)  # the schema's top level is an object
    stages = data["stages"]
    for i in range(1, len(stages)):
        if stages[i]["until"] <= stages[i - 1]["until"]:
            raise ProfileError(
                f"{where}: PROFILE.stages.{i}.until: {stages[i]['until']} is not greater than "
                f"the previous stage's {stages[i - 1]['until']}"
            )
    low, high = data["client_wait"]
    if low > high:
        raise ProfileError(f"{where}: PROFILE.client_wait: [{low}, {high}] must be [min, max]")
    return data


def path_of(name: str) -> Path:
    path = profiles_dir() / f"{name}.py"
    if not path.is_file() or name.startswith("_"):
        raise ProfileError(f"profile {name!r}: expected one of {', '.join(names())} (files in {profiles_dir()})")
    return path


def names() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.py") if not p.stem.startswith("_"))


def read(name: str) -> dict:
    """The profile's data without importing its module."""
    path = path_of(name)
    where = shown(path)
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PROFILE" for t in node.targets):
            try:
                data = ast.literal_eval(node.value)
            except ValueError:
                raise ProfileError(f"{where}: PROFILE must be a literal (numbers, strings, lists, dicts)") from None
            return validate(data, where)
    raise ProfileError(f"{where}: a module-level PROFILE = {{...}} dict")


def duration(profile: dict, time_scale: float = 1.0) -> float:
    """Seconds from start to the end of the last stage."""
    return profile["stages"][-1]["until"] * time_scale


def stage_at(profile: dict, run_time: float, time_scale: float = 1.0) -> dict | None:
    """The stage running at ``run_time``, or None once the last one ended (the shape's tick)."""
    for stage in profile["stages"]:
        if run_time < stage["until"] * time_scale:
            return stage
    return None
