"""One frozen settings object. Each value comes from, in order: the command-line option, the
``HARNESS_*`` environment variable, the ``harness_*`` key in pytest.ini, the default."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import ConfigurationError

RUNTIMES = ("auto", "docker", "local")


def parse_runtime(raw: str) -> str:
    if raw not in RUNTIMES:
        raise ValueError(f"expected one of {', '.join(RUNTIMES)}, got {raw!r}")
    return raw


def parse_bool(raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def parse_multiplier(raw: str | float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not 0.1 <= value <= 20:
        raise ValueError(f"expected a number between 0.1 and 20, got {raw!r}")
    return value


def parse_url(raw: str | None) -> str | None:
    if raw in (None, ""):
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s):// URL, got {raw!r}")
    return raw.rstrip("/")


def parse_workers(raw: str | int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None
    if not 1 <= value <= 8:
        raise ValueError(f"expected an integer between 1 and 8, got {raw!r}")
    return value


def parse_count(raw: str | int) -> int:
    """A whole number, 1 or more (a seed, a number of examples)."""
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"expected a whole number of 1 or more, got {raw!r}")
    return value


REQUIRABLE = ("docker", "terraform")


def parse_require(raw: str | tuple) -> tuple[str, ...]:
    if isinstance(raw, tuple):
        return raw
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip() and n.strip() != "none"))
    wrong = [n for n in names if n not in REQUIRABLE]
    if wrong:
        raise ValueError(f"expected a comma-separated list of {', '.join(REQUIRABLE)} (or none), got {raw!r}")
    return names


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "HARNESS_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "harness_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option(
        "runtime", "auto", parse_runtime, "where the stack runs: auto (docker when an engine answers), docker, local"
    ),
    Option(
        "target_url",
        None,
        parse_url,
        "verify a deployed api at this URL (the remote suite); tests that start a stack are deselected",
    ),
    Option(
        "mlflow_url",
        None,
        parse_url,
        "MLflow's URL for --target-url (default: <target-url>/mlflow, the ALB's path rule)",
    ),
    Option("allow_writes", False, parse_bool, "let the remote suite write a run to the target (read-only otherwise)"),
    Option("keep_on_failure", False, parse_bool, "leave the stack running when a test fails, for inspection"),
    Option("timeout_multiplier", 1.0, parse_multiplier, "scale every named budget (slow machines: 2-3)"),
    Option("reports_dir", "reports", str, "where reports, logs and timings.json go"),
    Option("mlflow_workers", 1, parse_workers, "MLflow uvicorn workers (1: ~0.4 GB; 4: ~1-3 GB, slower start)"),
    Option("fuzz_seed", 1, parse_count, "the contract fuzzer's seed (the nightly run draws a new one)"),
    Option(
        "fuzz_examples",
        25,
        parse_count,
        "the contract fuzzer's cases per operation and phase; its time limit grows with them",
    ),
    Option(
        "require",
        (),
        parse_require,
        "fail, not skip, the tests that need these when they are missing: docker, terraform "
        "(default under CI=true: both)",
    ),
)


@dataclass(frozen=True)
class Settings:
    runtime: str = "auto"
    target_url: str | None = None
    mlflow_url: str | None = None
    allow_writes: bool = False
    keep_on_failure: bool = False
    timeout_multiplier: float = 1.0
    reports_dir: str = "reports"
    mlflow_workers: int = 1
    fuzz_seed: int = 1
    fuzz_examples: int = 25
    require: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def reports_path(self) -> Path:
        return Path(self.reports_dir)

    def describe(self) -> list[str]:
        """One line per setting with its source, for the pytest report header."""
        return [f"{o.name}={getattr(self, o.name)!r} (from {self.sources.get(o.name, 'default')})" for o in OPTIONS]

    def with_(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def resolve(cli: Mapping[str, Any], env: Mapping[str, str], ini: Mapping[str, Any]) -> Settings:
    """Build Settings; a bad value raises ConfigurationError naming where it came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        for source, raw in (
            (opt.flag, cli.get(opt.name)),
            (opt.env, env.get(opt.env)),
            (f"pytest.ini {opt.ini}", ini.get(opt.ini)),
        ):
            if raw is not None and raw != "":
                try:
                    values[opt.name] = opt.parse(raw)
                except ValueError as exc:
                    raise ConfigurationError(
                        f"{source}: {opt.help}",
                        str(exc),
                        f"fix {source} or unset it to use the default {opt.default!r}",
                    ) from None
                sources[opt.name] = source
                break
        else:
            values[opt.name] = opt.default
            sources[opt.name] = "default"
            if opt.name == "require" and parse_bool_or_false(env.get("CI")):
                values[opt.name], sources[opt.name] = REQUIRABLE, "CI=true"
    return Settings(**values, sources=sources)


def parse_bool_or_false(raw: str | None) -> bool:
    try:
        return parse_bool(raw or "")
    except ValueError:
        return False


def ini_values(path: Path | None = None) -> dict[str, str]:
    """The ``harness_*`` keys of the project's pytest configuration, for ``python -m harness``
    (pytest reads them itself): the same four layers, whichever door the user comes in by. The
    project's ``pytest.ini`` when it has one (as pytest prefers it), else its ``pyproject.toml``'s
    ``[tool.pytest.ini_options]``; none outside a project."""
    import configparser
    import tomllib

    from harness.paths import project

    if path is None:
        try:
            root = project().root
        except ConfigurationError:
            return {}
        path = root / "pytest.ini"
        if not path.exists():
            try:
                table = tomllib.loads((root / "pyproject.toml").read_text()).get("tool", {}).get("pytest", {})
            except (OSError, tomllib.TOMLDecodeError):
                return {}
            options = table.get("ini_options", {}) if isinstance(table, dict) else {}
            return {k: str(v) for k, v in options.items() if k.startswith("harness_")}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise ConfigurationError("pytest.ini to be readable", str(exc).splitlines()[0], "fix its syntax") from None
    if not parser.has_section("pytest"):
        return {}
    return {k: v for k, v in parser.items("pytest") if k.startswith("harness_")}
