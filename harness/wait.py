"""``wait_until``: the only way the harness waits for a state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from harness.errors import ServiceFailed, WaitTimeout

T = TypeVar("T")
_MISSING = object()


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


class ManualClock:
    """A clock for tests of code that takes ``clock``/``pause``: pausing advances it, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def wait_until(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool] = bool,
    timeout: float,
    interval: float = 0.1,
    what: str,
    fatal: tuple[type[BaseException], ...] = (ServiceFailed,),
    progress: Callable[[str, float, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> T:
    """Poll ``probe`` until ``until(value)`` holds; return that value.

    A probe that raises counts as "not yet" (the error is remembered), except for ``fatal``
    exception types, which propagate at once. On timeout raise WaitTimeout naming what was
    awaited, the budget, the elapsed time, the last observed value and the last error.
    """
    start = clock()
    deadline = start + timeout
    last_value: Any = _MISSING
    last_error: BaseException | None = None
    polls = 0
    while True:
        polls += 1
        try:
            value = probe()
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - remembered and reported on timeout
            last_error = exc
        else:
            last_value = value
            if until(value):
                return value
        now = clock()
        if progress is not None:
            progress(what, now - start, timeout)
        if now >= deadline:
            seen = "no value" if last_value is _MISSING else f"last value {_describe(last_value)}"
            if last_error is not None:
                seen += f", last error {type(last_error).__name__}: {last_error}"
            raise WaitTimeout(
                f"{what} within {timeout:.1f}s",
                f"{seen} after {now - start:.1f}s and {polls} polls",
                "raise the budget with --timeout-multiplier if the machine is slow, "
                "or read the service log attached to the report",
            ) from last_error
        pause(min(interval, max(0.0, deadline - now)))
