"""Bounded concurrent work per dependency, with fast shedding.

A saturated dependency answers slower the more calls queue on it; callers that wait for it run
into their deadlines together and nothing gets done. A bulkhead lets at most ``limit`` requests
work on one dependency at once; a request that finds no free slot within ``queue_wait`` seconds is
shed at once (the api answers 503 with Retry-After), so the admitted ones finish in time and the
rest learn quickly to come back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class Overloaded(Exception):
    """No slot came free within the queue wait: the request is shed."""


class Bulkhead:
    def __init__(
        self,
        name: str,
        limit: int,
        queue_wait: float,
        on_change: Callable[[str, int], None] | None = None,
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self.name, self.limit, self.queue_wait = name, limit, queue_wait
        self.in_flight = 0
        self.waiting = 0  # requests queued for a slot now
        self._slots = asyncio.Semaphore(limit)
        self._on_change, self._on_shed = on_change, on_shed

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_wait):
                await self._slots.acquire()
        except TimeoutError:
            if self._on_shed is not None:
                self._on_shed(self.name)
            raise Overloaded(
                f"{self.name}: {self.limit} requests at work on it, none finished within {self.queue_wait:g}s"
            ) from None
        finally:
            self.waiting -= 1
        self._moved(+1)
        try:
            yield
        finally:
            self._moved(-1)
            self._slots.release()

    def _moved(self, by: int) -> None:
        self.in_flight += by
        if self._on_change is not None:
            self._on_change(self.name, self.in_flight)
