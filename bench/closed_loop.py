"""The benchmarks' one load loop: N workers call an operation back to back for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def closed_loop(
    op: Callable[[], Awaitable[object]],
    concurrency: int,
    seconds: float,
    errors: tuple[type[BaseException], ...] = (Exception,),
) -> tuple[list[float], int]:
    """``concurrency`` workers call ``op()`` back to back until ``seconds`` have passed (bounded: each
    worker stops at the deadline). Returns the sorted latencies (seconds) of the calls that
    succeeded and how many raised one of ``errors``."""
    latencies: list[float] = []
    failed = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal failed
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                await op()
                latencies.append(time.perf_counter() - t0)
            except errors:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    return latencies, failed


def percentile_ms(latencies: list[float], q: float) -> float:
    """The ``q`` percentile (0-1) of sorted latencies in seconds, in milliseconds."""
    return latencies[max(0, int(len(latencies) * q) - 1)] * 1000 if latencies else float("nan")
