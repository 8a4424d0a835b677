"""Where things are: the platform under test (a project, found through its ``[tool.harness]``
table) and the harness's own files.

A project is the folder of a ``pyproject.toml`` with a ``[tool.harness]`` table; every key is
optional and relative to that folder (docs/plugin.md)::

    [tool.harness]
    services_dir = "services"                        # one folder per service, each with its Dockerfile
    compose_file = "services/docker-compose.yml"
    terraform_dir = "terraform"
    environments_dir = "terraform/environments"      # one <name>.tfvars per environment
    scenarios_dir = "scenarios"                      # faults/, rollouts/
    slo_file = "scenarios/slo.yaml"
    loadtests_dir = "loadtests"                      # profiles/: one load profile per file

The project is the one pytest's plugin was configured with (its rootdir, or a parent folder),
else ``HARNESS_PROJECT`` (a folder), else the nearest such ``pyproject.toml`` at or above the
current folder. Everything asks :func:`project` when it needs a path, never at import, so an
installed harness finds the project of the run that uses it."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from harness.errors import ConfigurationError

PACKAGE = Path(__file__).resolve().parent  # the harness's own files, wherever it is installed
# folders whose Python code is imported by package name: the harness runs ``python -m services.api``;
# only the folder that holds them can move (load profiles are loaded by path, so theirs may have any name)
IMPORTED_AS = {"services_dir": "services"}
PROJECT_ENV = "HARNESS_PROJECT"
TABLE = "tool.harness"
DEFAULTS = {
    "services_dir": "services",
    "compose_file": "services/docker-compose.yml",
    "terraform_dir": "terraform",
    "environments_dir": "terraform/environments",
    "scenarios_dir": "scenarios",
    "slo_file": "scenarios/slo.yaml",
    "loadtests_dir": "loadtests",
}


@dataclasses.dataclass(frozen=True)
class Project:
    """A platform's folders, absolute; ``source`` says where they were read from."""

    root: Path
    services_dir: Path
    compose_file: Path
    terraform_dir: Path
    environments_dir: Path
    scenarios_dir: Path
    slo_file: Path
    loadtests_dir: Path
    source: str

    @property
    def pythonpath(self) -> str:
        """PYTHONPATH for the project's own Python children: the services (``services.api``, ...)
        import from the folder that holds them."""
        return str(self.services_dir.parent)


def read(root: Path) -> Project:
    """The project of ``root``'s ``pyproject.toml`` (its ``[tool.harness]`` table; an empty or
    missing table means the defaults)."""
    root = root.resolve()
    pyproject = root / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text()) if pyproject.is_file() else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{pyproject} to be readable TOML", str(exc), "fix its syntax") from None
    table = data.get("tool", {}).get("harness", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"[{TABLE}] in {pyproject} to be a table", repr(table), "make it a table")
    unknown = sorted(set(table) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"[{TABLE}] in {pyproject} to have only the keys {', '.join(DEFAULTS)}",
            ", ".join(unknown),
            "remove or rename them",
        )
    values: dict[str, Path] = {}
    for key, default in DEFAULTS.items():
        raw = table.get(key, default)
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigurationError(
                f"[{TABLE}] {key} in {pyproject} to be a path (a string, relative to {root})",
                repr(raw),
                f"give a path such as {default!r}",
            )
        values[key] = (root / raw).resolve()
        package = IMPORTED_AS.get(key)
        if package and values[key].name != package:
            raise ConfigurationError(
                f"[{TABLE}] {key} in {pyproject} to end in a folder named {package!r} (it is imported as {package}.*)",
                repr(raw),
                f"move the folder that holds {package}/ instead, e.g. {('platform/' + package)!r}",
            )
    where = f"[{TABLE}] of {pyproject}" if table else f"the defaults, relative to {root}"
    return Project(root=root, source=where, **values)


def find(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` whose ``pyproject.toml`` has a ``[tool.harness]`` table."""
    for folder in (start.resolve(), *start.resolve().parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                if "harness" in tomllib.loads(pyproject.read_text()).get("tool", {}):
                    return folder
            except (OSError, tomllib.TOMLDecodeError):
                continue
    return None


_configured: Project | ConfigurationError | None = None


def configure(start: Path) -> Project:
    """Use the project at or above ``start`` (``HARNESS_PROJECT`` first) from now on in this
    process. (Its children find it as this process did: from their folder, or ``HARNESS_PROJECT``.)"""
    global _configured
    found = discover(start)
    _configured = found
    return found


def configure_none(start: Path) -> None:
    """This process has no project (a pytest run whose rootdir ``start`` has no table): asking for
    one fails, instead of searching from wherever the process happens to be."""
    global _configured
    _configured = ConfigurationError(
        f"a pyproject.toml with a [{TABLE}] table at or above pytest's rootdir {start}",
        "none",
        f"add the table (docs/plugin.md) or set {PROJECT_ENV}",
    )


def discover(start: Path) -> Project:
    explicit = os.environ.get(PROJECT_ENV)
    if explicit:
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise ConfigurationError(f"{PROJECT_ENV} to be a folder", explicit, "give the folder of the pyproject.toml")
        return read(folder)
    found = find(start)
    if found is None:
        raise ConfigurationError(
            f"a pyproject.toml with a [{TABLE}] table in {start.resolve()} or a folder above it",
            "none",
            f"add the table (docs/plugin.md), run from the project's folder, or set {PROJECT_ENV}",
        )
    return read(found)


def project() -> Project:
    """The platform under test (see the module's docstring for how it is found)."""
    global _configured
    if isinstance(_configured, ConfigurationError):
        raise _configured
    if _configured is None:
        _configured = discover(Path.cwd())
    return _configured


def shown(path: Path) -> str:
    """``path`` relative to the project when inside it, for messages."""
    try:
        root = project().root
    except ConfigurationError:
        return str(path)
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def environments() -> list[str]:
    """Every environment the plan has, one ``<name>.tfvars`` each: adding a file needs no code."""
    return sorted(p.stem for p in project().environments_dir.glob("*.tfvars"))


def environment_file(env: str) -> Path:
    """The tfvars file of environment ``env`` (it may not exist: callers say what they expected)."""
    return project().environments_dir / f"{env}.tfvars"
