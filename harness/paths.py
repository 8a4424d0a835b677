"""Where things are in this repository: the one definition of its root and its main folders."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICES_DIR = REPO / "services"  # the system under test: reached as a black box
COMPOSE_FILE = SERVICES_DIR / "docker-compose.yml"
TERRAFORM_DIR = REPO / "terraform"
SCENARIOS_DIR = REPO / "scenarios"
LOADTESTS_DIR = REPO / "loadtests"  # what Locust runs


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it, for messages."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


ENVIRONMENTS_DIR = TERRAFORM_DIR / "environments"  # one <name>.tfvars per environment: the plan's inputs


def environments() -> list[str]:
    """Every environment the plan has, one ``<name>.tfvars`` each: adding a file needs no code."""
    return sorted(p.stem for p in ENVIRONMENTS_DIR.glob("*.tfvars"))


def environment_file(env: str) -> Path:
    """The tfvars file of environment ``env`` (it may not exist: callers say what they expected)."""
    return ENVIRONMENTS_DIR / f"{env}.tfvars"
