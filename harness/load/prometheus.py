"""The api's ``/metrics`` (Prometheus text), read one way for the whole wing: with
prometheus_client's own parser, never a pattern over the text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["Sample", "by_label", "samples", "total"]


def samples(text: str) -> list[Sample]:
    """Every sample of an exposition (a counter's as ``<name>_total``); ValueError if ``text`` is not one."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(found: list[Sample], name: str, **labels: str) -> float | None:
    """The sum of ``name``'s samples whose labels include ``labels``; None when there is none."""
    values = [s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(values) if values else None


def by_label(found: list[Sample], name: str, label: str) -> dict[str, float]:
    """``name``'s value per value of ``label`` (samples without that label are left out)."""
    return {s.labels[label]: s.value for s in found if s.name == name and s.labels.get(label)}
