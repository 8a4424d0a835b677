"""What a load test leaves: a report folder of its own, the gate's ``summary.json`` completed with
what only the runner knows (the recovery verdict, the knee, the health cache, where and on which
commit it ran), and the per-request log (``requests.jsonl``), read while Locust still writes it."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness import slo
from harness.errors import ConfigurationError, HarnessError
from harness.load.config import LoadBalancerCheck, LoadTest
from harness.load.knee import ENDPOINT, knee, recovery
from harness.load.locust_csv import HISTORY

API_METRICS = "api_metrics.jsonl"  # the api's /metrics, sampled once a second for the knee
SUMMARY = "summary.json"


@dataclass
class LoadResult:
    exit_code: int
    report_dir: Path
    summary: dict = field(default_factory=dict)
    history_line: dict = field(default_factory=dict)
    previous: dict | None = None


@dataclass(frozen=True)
class RunFacts:
    """What the runner saw around Locust: where the api ran, the commit, and the Postgres checks the
    api's /health had run before and after (None: its /metrics could not be read)."""

    runtime: str
    commit: str
    checks_before: float | None
    checks_after: float | None
    seconds: float
    health_cache_ttl: float | None


def new_report_dir(root: Path, test: LoadTest) -> Path:
    """``test.report_dir`` if new or empty, else ``<root>/<profile>-<UTC timestamp>``; created."""
    if test.report_dir is not None:
        report_dir = test.report_dir.resolve()
        if report_dir.exists() and any(report_dir.iterdir()):
            raise ConfigurationError(
                "report_dir to be new or empty", str(report_dir), "the reports of two load tests never mix"
            )
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        report_dir, suffix = root / f"{test.profile}-{stamp}", 1
        while report_dir.exists():
            suffix += 1
            report_dir = root / f"{test.profile}-{stamp}-{suffix}"
    report_dir.mkdir(parents=True, exist_ok=True)
    return report_dir


def read_summary(report_dir: Path, code: int) -> dict:
    """The gate's summary; without one, the load test failed and Locust's logs say why."""
    path = report_dir / SUMMARY
    if not path.exists():
        log = "\n".join(
            (report_dir / f).read_text(errors="replace")[-3000:]
            for f in sorted(p.name for p in report_dir.glob("locust-*.log"))
        )
        raise HarnessError(f"Locust to write {path}", f"exit code {code}, no summary", f"its log:\n{log}")
    return json.loads(path.read_text())


def summarise(report_dir: Path, data: dict, test: LoadTest, lb: LoadBalancerCheck, code: int, facts: RunFacts) -> dict:
    """The gate's summary completed and written back; its ``exit_code`` is the load test's (1 when
    the profile's recovery after its peak broke what the gate alone passed)."""
    summary = read_summary(report_dir, code)
    back = data.get("recover_within")
    if back is not None:
        limit = slo.load(test.slo_file, None, {"alb_timeout": lb.timeout}).objectives.get(str(ENDPOINT), {})
        verdict = recovery(data, report_dir / HISTORY, back, limit.get("error_rate", 0.01), test.time_scale)
        summary["verdicts"] = [*summary.get("verdicts", []), verdict]
        if not verdict["ok"] and code == 0:
            code = 1
    summary.update(
        {
            "started_iso": datetime.fromtimestamp(summary["started"], UTC).isoformat(timespec="seconds"),
            "runtime": facts.runtime,
            "worker_count": test.workers,
            "commit": facts.commit,
            "exit_code": code,
            "passed": code == 0 and summary.get("passed", False),
        }
    )
    if data.get("find_knee"):
        limits = slo.load(test.slo_file, test.profile, {"alb_timeout": lb.timeout}).objectives.get(str(ENDPOINT), {})
        summary["knee"] = knee(data, report_dir / HISTORY, limits, report_dir / API_METRICS, test.time_scale)
    if facts.checks_before is not None and facts.checks_after is not None:
        checks = facts.checks_after - facts.checks_before
        summary["health_cache"] = {
            "checks": int(checks),
            "seconds": round(facts.seconds, 1),
            "per_second": round(checks / facts.seconds, 2),
            "ttl": facts.health_cache_ttl,
        }
    (report_dir / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
    return summary


class RequestLog:
    """Reads ``requests.jsonl`` (``--request-log``) while Locust still writes it: one dict per request
    with t (start, epoch s), name ("GET /runs/{id}"), status (0: no answer), ms and error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict] = []
        self._offset = 0

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.rows
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                self.rows.append(json.loads(line))
        return self.rows

    def select(
        self,
        names: set[str] | str,
        after: float = 0.0,
        before: float = float("inf"),
        ok: bool | None = None,
        status: int | None = None,
    ) -> list[dict]:
        """Requests of ``names`` that started in [after, before], optionally only (not) failed or of a status."""
        wanted = {names} if isinstance(names, str) else names
        return [
            r
            for r in self.read()
            if r["name"] in wanted
            and after <= r["t"] <= before
            and (ok is None or (r["error"] is None) == ok)
            and (status is None or r["status"] == status)
        ]
