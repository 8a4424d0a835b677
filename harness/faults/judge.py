"""The judge: a recorded series against a scenario's expectations. Each verdict carries its
measured value and its budget, as the SLO gate's do, so a report shows both sides and a test
asserts on them. Pure functions over samples: the load suite judges its request log with the
same ``detected``/``recovered``.

    verdicts = judge(observation, names)        # names: what the scenario's budget expressions use
    failed = [str(v) for v in verdicts if not v.ok]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.faults.exercise import Observation
from harness.faults.sampler import Sample
from harness.pictures import Mark
from harness.rehearsal.balancer import NO_TARGET

Match = Callable[[Sample], bool]


@dataclass(frozen=True)
class Verdict:
    name: str  # detect, during /health, recover, max_latency, liveness, no_loss, applied
    ok: bool
    measured: float | int | None  # seconds, or a count
    budget: float | int | None
    detail: str = ""  # the deciding sample, or what was seen instead

    def __str__(self) -> str:
        figures = "" if self.measured is None else f" {self.measured:g}"
        figures += "" if self.budget is None else f" (budget {self.budget:g})"
        return f"{self.name}{figures}: {'ok' if self.ok else 'FAILED'}: {self.detail}"


def answered(status: int, health: str | None = None) -> Match:
    """A sample that answered ``status`` (and, when given, reported ``health``)."""
    return lambda s: s.status == status and (health is None or s.health == health)


def healthy(s: Sample) -> bool:
    """Recovered: 200, and ``pass`` where the answer says (a health+json body)."""
    return s.status == 200 and s.health in (None, "pass")


def _tail(samples: Sequence[Sample], n: int = 5) -> str:
    return "; ".join(str(s) for s in samples[-n:]) or "no samples"


def first_after(samples: Sequence[Sample], after: float, match: Match) -> Sample | None:
    return next((s for s in samples if s.t >= after and match(s)), None)


def by_source(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """The samples of each target that answered (one api: all under ""). Behind a fleet's listener,
    neither its own answers when it had no target ("(none)": an outage of the fleet, not a target)
    nor the sampler's requests that got no answer at all (no target named) are a target's."""
    fleet = any(s.source for s in samples)
    out: dict[str, list[Sample]] = {}
    for s in samples:
        if s.source != NO_TARGET and (s.source or not fleet):
            out.setdefault(s.source, []).append(s)
    return out


def detected(
    samples: Sequence[Sample],
    start: float,
    budget: float,
    match: Match,
    what: str = "detect",
    until: float = math.inf,
) -> Verdict:
    """The first matching sample sent after ``start`` must have answered within ``budget`` of it.
    Behind a fleet's listener, each target's own, the slowest deciding, counted from ``start`` or
    from the target's first answer if it joined later (up to ``until``, the end of what it
    detects; one that joined after it is not judged), except one no longer sampled when its
    budget ended (it left, drained)."""
    hits, late = [], []
    for source, series in by_source(samples).items():
        joined = max(start, series[0].t)
        if joined > until:
            continue
        hit = first_after(series, start, match)
        if hit is None and any(s.t >= joined + budget for s in series):  # it still answered, and never so
            by = f" from {source}" if source else ""
            return Verdict(what, False, None, round(budget, 2), f"never seen{by} after {joined:.2f}s: {_tail(series)}")
        if hit is not None:
            hits.append((hit, joined))
            # late: it was asked after its budget ended and still answered the old way
            late += [s for s in series if joined + budget <= s.t < hit.t and not match(s)][:1]
    if not hits:
        return Verdict(what, False, None, round(budget, 2), f"never seen after {start:.2f}s: {_tail(samples)}")
    hit, joined = max(hits, key=lambda h: h[0].t + h[0].latency - h[1])
    seconds = round(hit.t + hit.latency - joined, 2)
    if len(hits) == 1 and not any(s.source for s in samples):  # one api, sampled densely: as measured
        return Verdict(what, seconds <= budget, seconds, round(budget, 2), str(hit))
    # behind a listener a target is asked only as often as it is routed to (one green target of a
    # canary: one request in twenty), so the first answer seen bounds its detection from above;
    # what proves it late is an answer of the old state sent after its budget ended
    detail = f"{hit}" + (f"; late: {_tail(late)}" if late else "; no target answered the old state after its budget")
    return Verdict(what, not late, seconds, round(budget, 2), detail)


def recovered(
    samples: Sequence[Sample], end: float, budget: float, match: Match = healthy, what: str = "recover"
) -> Verdict:
    """After the fault ended at ``end``, the first healthy answer must come within ``budget``."""
    return detected(samples, end, budget, match, what)


def judge(obs: Observation, names: dict[str, float]) -> list[Verdict]:
    """Every expectation of the scenario, judged on the observation."""
    sc, start, end = obs.scenario, obs.fault_start, obs.fault_end
    health = obs.series("/health")
    during = sc.expect.get("during", {})
    recover = sc.budget("recover_within", names)
    out: list[Verdict] = []
    if sc.is_network:
        limit = sc.params.get("limit")
        ok = bool(obs.applied) and (not limit or obs.applied == limit)
        said = f"the {sc.kind} toxic on {sc.target} took effect {obs.applied} times"
        out.append(Verdict("applied", ok, obs.applied, limit, said + (f" (limit {limit})" if limit else "")))
    # detection: on the first endpoint the fault must change (the load balancer's /health, as a rule)
    detect_budget = sc.budget("detect_within", names)
    detect_on = next(((e, w) for e, w in during.items() if not w.get("always")), None)
    detected_at: dict[str, float] = {}  # each target's detection (one api: under "")
    if detect_on and detect_budget is not None:
        series, match = obs.series(detect_on[0]), answered(detect_on[1]["status"], detect_on[1].get("health"))
        out.append(detected(series, start, detect_budget, match, until=end))
        for source, own in by_source(series).items():
            # a target that never detected is held to it from the end of its budget
            hit = first_after(own, start, match)
            detected_at[source] = hit.t if hit is not None else min(end, max(start, own[0].t) + detect_budget)
    fallback = min(detected_at.values(), default=start if detect_budget is None else end)
    for endpoint, want in during.items():
        # from the detection on (itself held to its budget; each target's own) to the end of the
        # fault; "always": throughout, and through the recovery
        hi = end + (recover or 0) if want.get("always") else end
        window = [
            s
            for s in obs.series(endpoint)
            if (start if want.get("always") else detected_at.get(s.source, fallback)) <= s.t and s.t + s.latency <= hi
        ]
        wrong = [s for s in window if not answered(want["status"], want.get("health"))(s)]
        lo = start if want.get("always") else fallback
        detail = f"expected {want} from {lo:.2f}s to {hi:.2f}s; " + (
            f"got: {_tail(wrong)}" if wrong else "no samples" if not window else f"{len(window)} samples"
        )
        out.append(Verdict(f"during {endpoint}", bool(window) and not wrong, len(wrong), 0, detail))
    if recover is not None:
        out.append(recovered(health, end, recover))
    max_latency = sc.budget("max_latency", names)
    if max_latency is not None:
        unanswered = [s for s in health if s.status is None]
        slowest = max((s for s in health if s.status is not None), key=lambda s: s.latency, default=None)
        seconds = round(slowest.latency, 3) if slowest else None
        ok = slowest is not None and not unanswered and slowest.latency <= max_latency
        out.append(
            Verdict(
                "max_latency",
                ok,
                seconds,
                round(max_latency, 2),
                f"no answer at all: {_tail(unanswered)}" if unanswered else str(slowest),
            )
        )
    if sc.expect.get("liveness_unaffected"):
        live = obs.series("/health/live")
        bad = [s for s in live if s.status != 200]
        out.append(
            Verdict(
                "liveness", bool(live) and not bad, len(bad), 0, _tail(bad) if bad else f"{len(live)} samples, all 200"
            )
        )
    if sc.expect.get("no_loss"):
        w = obs.writer
        acknowledged = len(w.acknowledged) if w else 0
        unclear = w.unclear_failures if w else []
        out.append(
            Verdict(
                "writes acknowledged",
                acknowledged > 0,
                acknowledged,
                None,
                "at least one write succeeded" if acknowledged else "no write succeeded at all",
            )
        )
        out.append(
            Verdict(
                "unclear write failures",
                not unclear,
                len(unclear),
                0,
                "; ".join(str(vars(r)) for r in unclear[:5]) or "every failure was a clear 503",
            )
        )
        out.append(
            Verdict(
                "no_loss",
                not obs.missing,
                len(obs.missing),
                0,
                "; ".join(obs.missing[:5])
                or f"all {len([r for r in w.results if r.recorded_id]) if w else 0} writes recorded exactly once in "
                f"Postgres and MLflow ({acknowledged} at once, {len(w.retried) if w else 0} after a retry with "
                f"their Idempotency-Key)",
            )
        )
    return out


def figures(obs: Observation, verdicts: list[Verdict], runtime: str) -> dict:
    """The figures a report keeps per scenario (reports/faults.json, the JUnit properties)."""
    sc = obs.scenario
    out: dict = {
        "scenario": sc.name,
        "fault": f"{sc.kind} {sc.target}",
        "runtime": runtime,
        "duration_s": round(obs.fault_end - obs.fault_start, 2),
        "applying_s": round(obs.applying, 2),
        "applied": obs.applied,
    }
    keys = {
        "detect": ("detected_s", "detect_budget_s"),
        "recover": ("recovered_s", "recover_budget_s"),
        "max_latency": ("slowest_s", "slowest_budget_s"),
    }
    for v in verdicts:
        if v.name in keys:
            out[keys[v.name][0]], out[keys[v.name][1]] = v.measured, v.budget
    if obs.writer is not None and sc.expect.get("no_loss"):
        w = obs.writer
        out.update(
            {
                "writes": len(w.results),
                "acknowledged": len(w.acknowledged),
                "clear_503": len(w.clear_failures),
                "retried": len(w.retried),
                "unclear": len(w.unclear_failures),
                "missing": len(obs.missing),
            }
        )
    out["passed"] = all(v.ok for v in verdicts)
    out["verdicts"] = [str(v) for v in verdicts]
    return out


def mark(v: Verdict, origin: float, gid: str, what: str) -> Mark:
    """A timing verdict as a picture's mark: when it happened and its budget, both counted from
    ``origin`` (the moment the verdict measures from)."""
    said = "never" if v.measured is None else f"{v.measured:g} s"
    label = (
        f"{what} {said}" + (f" (budget {v.budget:g} s)" if v.budget is not None else "") + ("" if v.ok else ": FAILED")
    )
    return Mark(
        gid,
        None if v.measured is None else origin + v.measured,
        label,
        budget_at=None if v.budget is None else origin + v.budget,
        ok=v.ok,
    )


def draw(obs: Observation, verdicts: list[Verdict]) -> None:
    """Give the observation's sampler the verdicts' marks: detection against its budget (counted
    from the fault's start), recovery against its budget (from the fault's end), the latency limit."""
    if obs.sampler is None:
        return
    origin = {"detect": obs.fault_start, "recover": obs.fault_end}
    for v in verdicts:
        if v.name in origin:
            obs.sampler.marks.append(mark(v, origin[v.name], f"{v.name}ed", f"{v.name}ed"))
        elif v.name == "max_latency":
            obs.sampler.max_latency = v.budget
