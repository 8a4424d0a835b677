"""Progress lines while waiting: which service, elapsed against budget, at most once a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO = sys.stderr, every: float = 1.0) -> None:
        self.stream, self.every = stream, every
        self._last: dict[str, float] = {}

    def __call__(self, what: str, elapsed: float, budget: float) -> None:
        now = time.monotonic()
        if now - self._last.get(what, 0.0) >= self.every:
            self._last[what] = now
            print(f"waiting for {what}: {elapsed:5.1f}s of {budget:.0f}s", file=self.stream, flush=True)
