"""Bounded, logged retry used by the service entrypoints to wait for a dependency.

Services cannot import the harness, so they carry this one small helper. It polls
a probe with exponential backoff until it succeeds or the budget runs out, logs
every failed attempt, and on timeout raises with what it last saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DependencyTimeout(RuntimeError):
    """A dependency did not become reachable within the startup budget."""


def retry_until_ready(
    probe: Callable[[], T],
    *,
    what: str,
    timeout: float,
    log: Callable[[str, dict[str, Any]], None],
    initial_delay: float = 0.2,
    max_delay: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until it returns without raising; bounded by ``timeout`` seconds."""
    start = clock()
    delay = initial_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            elapsed = clock() - start
            last = f"{type(exc).__name__}: {exc}".strip()
            if elapsed + delay > timeout:
                raise DependencyTimeout(
                    f"{what}: not reachable after {attempt} attempts in {elapsed:.1f}s "
                    f"(budget {timeout:.1f}s); last error: {last}"
                ) from exc
            log(
                "waiting for dependency",
                {
                    "dependency": what,
                    "attempt": attempt,
                    "elapsed_s": round(elapsed, 2),
                    "budget_s": timeout,
                    "next_retry_s": round(delay, 2),
                    "error": last,
                },
            )
            pause(delay)
            delay = min(delay * 2, max_delay)
            continue
        log("dependency ready", {"dependency": what, "attempt": attempt, "elapsed_s": round(clock() - start, 2)})
        return value
