"""Where summaries run: the async engine seam, worker threads, admission control.

The gateway awaits an :class:`AsyncEngine`. The embedded engines of
:mod:`hushbrief.engines` are synchronous and CPU-bound, so
:class:`ThreadedEngine` runs them in a worker thread and keeps the event loop
free for decapsulation and other requests; the ``openai`` engine is natively
async (it waits on a model server).

:class:`Admission` bounds the work: at most ``slots`` summaries run at once
(for the extractive engine: one per CPU), at most ``queue`` more wait, and the
next one is refused at once with :class:`~hushbrief.backend.errors.Overloaded`
(an inner 503) instead of piling up memory and latency. A refused client retries
later; a queue that only grows helps nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from hushbrief.backend.errors import Overloaded
from hushbrief.engines.base import Engine, Summary, SummaryOptions, Turn

__all__ = ["Admission", "AsyncEngine", "ThreadedEngine"]


class AsyncEngine(Protocol):
    """An engine the gateway can await. Errors are :class:`EngineError` or ``InnerError``."""

    @property
    def name(self) -> str: ...

    async def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> Summary: ...


class ThreadedEngine:
    """Runs a synchronous :class:`Engine` in the default thread pool."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"ThreadedEngine({self._engine.name!r})"

    @property
    def name(self) -> str:
        return self._engine.name

    async def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> Summary:
        return await asyncio.to_thread(self._engine.summarize, turns, options)


class Admission:
    """At most ``slots`` holders at once and ``queue`` waiters; anyone beyond is refused."""

    def __init__(self, slots: int, queue: int) -> None:
        if slots < 1 or queue < 0:
            raise ValueError("slots must be positive and queue non-negative")
        self.slots = slots
        self.queue = queue
        self._free = asyncio.Semaphore(slots)
        self._running = 0
        self._waiting = 0

    def __repr__(self) -> str:
        return (f"Admission(running={self._running}/{self.slots}, "
                f"waiting={self._waiting}/{self.queue})")

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the body of the ``async with``; raise Overloaded if none is near."""
        if self._running + self._waiting >= self.slots + self.queue:
            raise Overloaded
        self._waiting += 1
        try:
            await self._free.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._free.release()
