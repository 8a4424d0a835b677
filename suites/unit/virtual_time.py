"""An event loop in virtual time, for the health logic's tests: when the loop has nothing to run
before its next timer, its clock jumps to that timer instead of sleeping. The budgets, retries,
TTLs and backoffs are the api's real ones; a test takes no wall time for them, and a loaded
machine cannot stretch them. Real I/O still works (it is polled without waiting); a loop with no
timer and nothing to do blocks as a real one would.

Ours, not a library's: looptime (the maintained one) installs a pytest plugin that breaks every
pytest session without pytest-asyncio, this repository's and any a user runs beside it."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any


class _Selector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list:
        ready = super().select(0)  # what I/O is ready now, without waiting for it
        if not ready and self.loop is not None:
            if timeout is None:
                return super().select(None)  # nothing scheduled: wait as a real loop would
            self.loop.advance(timeout)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """``coro`` to its end on a loop in virtual time (what ``asyncio.run`` does on a real one)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)
