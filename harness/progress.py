"""Progress for every step that can take more than a few seconds (image builds, the base image
bootstrap, Terraform, checkov's environment, load runs, waits for services).

On a terminal a step's line is rewritten in place; elsewhere (CI logs, pipes) every update is a
line of its own, at most one every ``every`` seconds unless the step says something new, and no
carriage return is written. Each line carries the step's elapsed time:

    with step("image mlplatform-api:1a2b") as s:
        for line in build_log:
            s.update(line)                 # "image mlplatform-api:1a2b: 41s Step 7/12 : RUN pip install"
    # -> "image mlplatform-api:1a2b: done in 73s"

``Progress`` is the wait helper's callback (``wait_until(..., progress=Progress())``). Where the
output goes is ``WRITER``: the pytest plugin points it past pytest's output capture, so a session
start that builds images says so."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


def write_stderr(line: str, final: bool, stream: TextIO | None = None) -> None:
    """One progress line: rewritten in place on a terminal, a line of its own elsewhere."""
    out = stream or sys.stderr
    if out.isatty():
        out.write("\r\x1b[2K" + line + ("\n" if final else ""))
    else:
        out.write(line + "\n")
    out.flush()


WRITER: Callable[[str, bool], None] = write_stderr  # (line, final)


def default_every() -> float:
    """A terminal takes an update a second (it rewrites one line); a log one per 5 seconds."""
    stream = sys.__stderr__
    return 1.0 if stream is not None and stream.isatty() else 5.0


class Step:
    def __init__(
        self,
        what: str,
        every: float | None = None,
        write: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.every, self.clock = what, default_every() if every is None else every, clock
        self.write = write or WRITER
        self.started = clock()
        self.last_shown = -1e9
        self.last_detail = ""

    def elapsed(self) -> float:
        return self.clock() - self.started

    def update(self, detail: str, *, new: bool = False) -> None:
        """Say where the step is. ``new``: a new phase (a build step), shown even within ``every``."""
        detail = " ".join(detail.split())[:160]
        now = self.clock()
        # within ``every`` of the last line only a new phase is shown, and only once
        if not detail or (now - self.last_shown < self.every and (not new or detail == self.last_detail)):
            return
        self.last_shown, self.last_detail = now, detail
        self.write(f"{self.what}: {self.elapsed():4.0f}s {detail}", False)

    def finish(self, ok: bool, detail: str = "") -> None:
        word = "done" if ok else "FAILED"
        self.write(f"{self.what}: {word} in {self.elapsed():.0f}s{f' ({detail})' if detail else ''}", True)


@contextmanager
def step(what: str, every: float | None = None) -> Iterator[Step]:
    """A long step: its start, updates while it runs, and how it ended with its elapsed time."""
    s = Step(what, every)
    s.write(f"{what}: started", False)
    try:
        yield s
    except BaseException:
        s.finish(False)
        raise
    s.finish(True)


class Progress:
    """The wait helper's callback: which service, elapsed against budget, at most once a second."""

    def __init__(self, stream: TextIO | None = None, every: float = 1.0) -> None:
        self.stream, self.every = stream, every
        self._last: dict[str, float] = {}

    def __call__(self, what: str, elapsed: float, budget: float) -> None:
        now = time.monotonic()
        if now - self._last.get(what, 0.0) >= self.every:
            self._last[what] = now
            line = f"waiting for {what}: {elapsed:5.1f}s of {budget:.0f}s"
            if self.stream is not None:
                write_stderr(line, True, self.stream)
            else:
                WRITER(line, True)
