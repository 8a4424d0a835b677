"""Service images: built once per content, shared by every test and xdist worker.

The tag carries a hash of what goes into the image (Dockerfile, service code, requirements,
base image, offline flag), so an image is rebuilt only when one of those changed. A file lock
makes concurrent workers wait for one build instead of running several. Without a reachable
registry the offline base image and the wheelhouse are made on demand (services/base/build.sh)
and reused afterwards."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DependencyMissing, HarnessError
from harness.paths import project
from harness.process import run_lines
from harness.progress import step

DEFAULT_BASE = "python:3.11-slim-bookworm"
OFFLINE_BASE = "mlplatform-base:bookworm"
SERVICES = ("postgres", "mlflow", "api")
LOCK = Path(tempfile.gettempdir()) / "harness-image-build.lock"


@dataclass(frozen=True)
class BaseChoice:
    image: str
    offline: bool
    why: str


def _context() -> Path:
    """The build context: the folder that holds the services' folder (the Dockerfiles copy
    ``services/...`` from it), with its .dockerignore."""
    return project().services_dir.parent


def _inputs(service: str) -> list[Path]:
    services = project().services_dir
    files = [services / service / "Dockerfile", services / "__init__.py"]
    files += [p for p in (_context() / ".dockerignore",) if p.exists()]
    for folder in (services / service, services / "common"):
        files += [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(set(files))


def content_tag(service: str, base: BaseChoice | None = None) -> str:
    """``mlplatform-<service>:<12 hex>``, a hash of the image's inputs (and of the base, when
    known): an immutable name, as the plan requires (rule images-immutable)."""
    h = hashlib.sha256(f"{base.image}|{base.offline}".encode() if base else b"source")
    for path in _inputs(service):
        h.update(str(path.relative_to(_context())).encode())
        h.update(path.read_bytes())
    return f"mlplatform-{service}:{h.hexdigest()[:12]}"


def choose_base(client) -> BaseChoice:
    """BASE_IMAGE when the user sets it; else the usual base when present or pullable; else offline."""
    import docker

    if os.environ.get("BASE_IMAGE"):
        return BaseChoice(os.environ["BASE_IMAGE"], os.environ.get("PIP_OFFLINE") == "1", "BASE_IMAGE is set")
    try:
        client.images.get(DEFAULT_BASE)
        return BaseChoice(DEFAULT_BASE, False, "default base image present")
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(DEFAULT_BASE)
        return BaseChoice(DEFAULT_BASE, False, "default base image pulled")
    except docker.errors.APIError as exc:
        return BaseChoice(OFFLINE_BASE, True, f"no registry reachable ({str(exc)[:80]}): offline base")


def wheelhouse_current() -> bool:
    """Whether services/base/wheelhouse was made for today's requirements (build.sh's stamp)."""
    base = project().services_dir
    want = hashlib.sha256(b"".join((base / s / "requirements.txt").read_bytes() for s in ("api", "mlflow")))
    try:
        return (base / "base" / "wheelhouse" / ".requirements.sha256").read_text().strip() == want.hexdigest()
    except OSError:
        return False


def ensure_offline_base(client) -> float:
    """Make the offline base image and wheelhouse if missing; returns seconds spent."""
    import docker

    try:
        client.images.get(OFFLINE_BASE)
        if wheelhouse_current():
            return 0.0
    except docker.errors.ImageNotFound:
        pass
    t0 = time.monotonic()
    with step(f"offline base image {OFFLINE_BASE} (debootstrap and wheelhouse, minutes on a fresh machine)") as s:
        code, tail = run_lines(
            ["sh", str(project().services_dir / "base" / "build.sh")],
            {**os.environ, "PYTHON": sys.executable},
            1800,
            s.update,
        )
        if code != 0:
            raise DependencyMissing(
                "the offline base image (services/base/build.sh)",
                f"exit {code}: {tail[-400:]}",
                "install debootstrap (apt-get install -y debootstrap) or set BASE_IMAGE",
            )
    return time.monotonic() - t0


def ensure_images(client) -> tuple[dict[str, str], dict[str, float], BaseChoice]:
    """Tags of the three service images, built where missing; and the build seconds spent."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = choose_base(client)
        spent: dict[str, float] = {}
        if base.offline and base.image == OFFLINE_BASE:
            spent["base"] = round(ensure_offline_base(client), 1)
        tags = {}
        for service in SERVICES:
            tag = content_tag(service, base)
            tags[service] = tag
            if _exists(client, tag):
                continue
            t0 = time.monotonic()
            _build(client, service, tag, base)
            spent[service] = round(time.monotonic() - t0, 1)
        return tags, spent, base


def _exists(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build(client, service: str, tag: str, base: BaseChoice) -> None:
    """Build through the engine's API, streaming its log: each Dockerfile step is a progress line."""
    import docker

    log: list[str] = []
    with step(f"image {tag}") as s:
        try:
            for chunk in client.api.build(
                path=str(_context()),
                tag=tag,
                dockerfile=str((project().services_dir / service / "Dockerfile").relative_to(_context())),
                buildargs={"BASE_IMAGE": base.image, "PIP_OFFLINE": "1" if base.offline else "0"},
                rm=True,
                labels={"harness.image": service},
                decode=True,
            ):
                if "error" in chunk:
                    raise HarnessError(
                        f"image {tag} to build from services/{service}/Dockerfile",
                        f"{chunk['error']}\n{''.join(log)[-1500:]}",
                        f"base image {base.image} ({base.why})",
                    )
                text = str(chunk.get("stream", ""))
                log.append(text)
                if text.strip():
                    s.update(text, new=text.startswith("Step "))
        except docker.errors.APIError as exc:
            raise HarnessError(
                f"image {tag} to build from services/{service}/Dockerfile",
                str(exc),
                f"base image {base.image} ({base.why})",
            ) from exc


def sizes_mb(client, tags: dict[str, str]) -> dict[str, float]:
    """Each image's size as the engine reports it (MB): what a task pulls before it can start."""
    return {name: round(client.images.get(tag).attrs["Size"] / 1e6, 1) for name, tag in tags.items()}
