"""How long a task takes from start to answering its health path on Fargate: an estimate from
what this machine measured, and the budget the plan declares.

    estimate = image size / pull rate                       (the image pull)
             + measured start x max(1, cores here / task vCPUs) x fargate factor

The measured start is the worst time to ready of ``reports/timings.json`` (local runtime first:
it measures the app; docker adds the container check's interval), else a documented default.
Image sizes come from the built images (``reports/images.json``), else documented sizes. The
rules judge the planned timings against max(declared budget, estimate), and a separate rule fails
when the estimate exceeds the budget: the budget is a promise the measurement must keep.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("api", "mlflow")
# Seconds to ready on a 2-core machine when nothing was measured (docs/timings.md, docs/mlflow.md).
DEFAULT_START = {"api": 1.5, "mlflow": 19.0}
# Image sizes (MB) built here from the offline Debian base (docs/timings.md), when no image was built.
DEFAULT_IMAGE_MB = {"api": 554.0, "mlflow": 1340.0}
# A stated pull rate (MB of image per second, download and extraction): an assumption, not a
# measurement; docs/timings.md says why, and --pull-rate changes it.
DEFAULT_PULL_MB_S = 40.0


@dataclass(frozen=True)
class BootInputs:
    """What the estimate is made of, each with where it came from."""

    start_s: dict[str, float]  # measured (or default) seconds to ready here
    start_source: dict[str, str]
    image_mb: dict[str, float]
    image_source: dict[str, str]
    pull_mb_s: float = DEFAULT_PULL_MB_S
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    fargate_factor: float = 1.0  # a Fargate vCPU against one core here (1: as fast)

    def estimate(self, service: str, task_cpu_units: int) -> BootEstimate:
        vcpus = task_cpu_units / 1024
        cpu_factor = max(1.0, self.cores / vcpus)
        return BootEstimate(
            service,
            round(self.image_mb[service] / self.pull_mb_s, 1),
            self.image_mb[service],
            self.image_source[service],
            self.pull_mb_s,
            self.start_s[service],
            self.start_source[service],
            round(cpu_factor, 2),
            self.cores,
            vcpus,
            self.fargate_factor,
        )


@dataclass(frozen=True)
class BootEstimate:
    service: str
    pull_s: float
    image_mb: float
    image_source: str
    pull_mb_s: float
    start_s: float
    start_source: str
    cpu_factor: float
    cores: int
    vcpus: float
    fargate_factor: float

    @property
    def total(self) -> float:
        return round(self.pull_s + self.start_s * self.cpu_factor * self.fargate_factor, 1)

    def terms(self) -> str:
        """Where the number comes from, in one line."""
        factor = f" x fargate factor {self.fargate_factor:g}" if self.fargate_factor != 1 else ""
        return (
            f"pull {self.image_mb:.0f} MB / {self.pull_mb_s:g} MB/s = {self.pull_s:g}s ({self.image_source}) + "
            f"start {self.start_s:g}s ({self.start_source}) x {self.cpu_factor:g} ({self.cores} cores here / "
            f"{self.vcpus:g} vCPU){factor} = {self.total:g}s"
        )


def measured_starts(timings_json: Path | None) -> tuple[dict[str, float], dict[str, str]]:
    """Worst measured seconds to ready per service: the local runtime's first (it measures the app),
    then docker's and the rehearsal's (both add the container check's interval, and the rehearsal
    dbinit too: they would be scaled by the CPU share twice over); else the defaults."""
    try:
        data = json.loads(timings_json.read_text()) if timings_json else {}
    except (OSError, ValueError):
        data = {}
    starts, sources = {}, {}
    for name in SERVICES:
        for runtime in ("local", "docker", "rehearsal"):
            entry = data.get(runtime, {}).get(name)
            if entry:
                starts[name] = float(entry.get("max_s", entry["ready_s"]))
                sources[name] = f"{runtime} max of {len(entry.get('samples', [1]))} in {timings_json}"
                break
        else:
            starts[name] = DEFAULT_START[name]
            sources[name] = "default: nothing measured"
    return starts, sources


def image_sizes(images_json: Path | None) -> tuple[dict[str, float], dict[str, str]]:
    """Image sizes (MB) of the built images, else the documented ones."""
    try:
        data = json.loads(images_json.read_text()) if images_json else {}
    except (OSError, ValueError):
        data = {}
    built = data.get("size_mb") or {}
    sizes, sources = {}, {}
    for name in SERVICES:
        if built.get(name):
            sizes[name], sources[name] = float(built[name]), f"built {data.get('tags', {}).get(name, name)}"
        else:
            sizes[name], sources[name] = DEFAULT_IMAGE_MB[name], "documented size: no image built here"
    return sizes, sources


def inputs(
    timings_json: Path | None,
    images_json: Path | None,
    pull_mb_s: float = DEFAULT_PULL_MB_S,
    fargate_factor: float = 1.0,
    cores: int | None = None,
) -> BootInputs:
    starts, start_sources = measured_starts(timings_json)
    sizes, size_sources = image_sizes(images_json)
    return BootInputs(
        starts, start_sources, sizes, size_sources, pull_mb_s, cores or os.cpu_count() or 1, fargate_factor
    )
