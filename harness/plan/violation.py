"""A rule's finding: the rule, the file and field, the value, what was expected, a value that passes."""

from __future__ import annotations

from dataclasses import dataclass

from harness.plan.timing import TimingModel


@dataclass(frozen=True)
class Violation:
    rule: str
    where: str  # file and field
    value: object
    expected: str  # the rule, concretely
    passing: object

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where} = {self.value!r}: expected {self.expected}; would pass: {self.passing!r}"


def field_of(model: TimingModel, svc: str, field_name: str) -> str:
    return f"{model.source}: services.{svc}.{field_name}"
