"""The rules that size MLflow's tasks from what was measured of it (docs/mlflow.md, "Capacity
per worker"; ``bench/mlflow_capacity.py``): memory for its workers, and CPU for the write rate the
environment is planned for (``planned_writes_per_second``)."""

from __future__ import annotations

import math

from harness.plan.timing import TimingModel
from harness.plan.violation import Violation, field_of

# MLflow's measured resident memory (GB) by uvicorn workers, job execution off, after the api's write
# load (docs/mlflow.md, "Capacity per worker"; bench/mlflow_capacity.py).
MLFLOW_RSS_GB = {1: 0.51, 2: 0.80, 4: 1.27}
MLFLOW_RSS_JOBS_ON_GB = 3.0
# one MLflow worker on one core took about 22 of the api's writes per second (the write sequence of
# POST /runs); more workers than vCPUs add no throughput
MLFLOW_WRITES_PER_VCPU = 22.0
# headroom over the measured figures, as for memory: Fargate's vCPU is slower than a core here.
# It does not cover the loss of a task (one of two is half the fleet): desired_count is for that.
HEADROOM = 1.5
FARGATE_CPU_UNITS = (256, 512, 1024, 2048, 4096, 8192, 16384)


def r_mlflow_memory(m: TimingModel) -> list[Violation]:
    s = m.services["mlflow"]
    cfg = m.mlflow_settings()
    if cfg is None:
        return []
    workers, jobs = cfg["workers"], cfg["job_execution"]
    need_gb = MLFLOW_RSS_JOBS_ON_GB if jobs else MLFLOW_RSS_GB.get(workers, 0.3 * workers + 0.2)
    need_mb = math.ceil(need_gb * 1024 * 1.5)
    if s.memory < need_mb:
        return [
            Violation(
                "mlflow-memory-fits",
                field_of(m, "mlflow", "memory"),
                s.memory,
                f">= 1.5 x measured {need_gb} GB for {workers} workers (jobs {'on' if jobs else 'off'})",
                need_mb,
            )
        ]
    return []


def r_mlflow_cpu(m: TimingModel) -> list[Violation]:
    """MLflow's tasks take the planned write rate: ``desired_count`` tasks, each at
    ``MLFLOW_WRITES_PER_VCPU`` per vCPU it has and a worker to use it, with ``HEADROOM``."""
    s, cfg = m.services["mlflow"], m.mlflow_settings()
    rate = m.variables.get("planned_writes_per_second")
    where = f"{m.source}: planned_writes_per_second"
    if not isinstance(rate, int | float) or isinstance(rate, bool):
        return [
            Violation(
                "mlflow-cpu-fits-planned-writes",
                where,
                rate,
                "the write rate (POST /runs per second, all tasks) the environment is sized for",
                10,
            )
        ]
    if cfg is None or rate == 0:
        return []
    per_task = rate * HEADROOM / max(s.desired_count, 1)
    need_vcpus = per_task / MLFLOW_WRITES_PER_VCPU
    need_units = next((u for u in FARGATE_CPU_UNITS if u >= need_vcpus * 1024), FARGATE_CPU_UNITS[-1])
    basis = (
        f"{rate:g} writes/s x {HEADROOM:g} over {s.desired_count} tasks at {MLFLOW_WRITES_PER_VCPU:g} "
        "writes/s per vCPU (docs/mlflow.md)"
    )
    out = []
    if s.cpu < need_vcpus * 1024:
        out.append(
            Violation(
                "mlflow-cpu-fits-planned-writes",
                field_of(m, "mlflow", "cpu"),
                s.cpu,
                f">= {need_units}: {basis}",
                need_units,
            )
        )
    if cfg["workers"] < math.ceil(need_vcpus):
        out.append(
            Violation(
                "mlflow-cpu-fits-planned-writes",
                field_of(m, "mlflow", "environment.MLFLOW_WORKERS"),
                cfg["workers"],
                f">= {math.ceil(need_vcpus)}: one worker uses one vCPU; {basis}",
                math.ceil(need_vcpus),
            )
        )
    return out


RULES = {
    "mlflow-memory-fits": r_mlflow_memory,
    "mlflow-cpu-fits-planned-writes": r_mlflow_cpu,
}
