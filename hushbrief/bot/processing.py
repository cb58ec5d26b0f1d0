"""Where summaries are made: the seam between the core and an engine.

The core hands a ``Processor`` pseudonymous turns and gets text back. The local
processor runs the embedded engine in a worker thread of this process. The
private processor (OHTTP through a relay to an attested backend) implements the
same protocol. The core never falls back from one to the other on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hushbrief.engines.base import Engine, EngineError, SummaryOptions, Turn


@dataclass(frozen=True, slots=True)
class ProcessedSummary:
    text: str
    engine: str
    where: str
    """One phrase for the reader: "on this bot's host", "in an attested backend …"."""
    measurement: str | None = None


class ProcessingError(Exception):
    """No summary could be made. ``str(exc)`` is one sentence for the user, with no content."""


class Processor(Protocol):
    @property
    def privacy_note(self) -> str | None:
        """A sentence /privacy adds about this processor, if any."""
        ...

    async def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> ProcessedSummary:
        ...


class LocalProcessor:
    """Runs an embedded engine in this process; nothing leaves the bot's host."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def privacy_note(self) -> str | None:
        return None

    async def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> ProcessedSummary:
        try:
            # A 10,000-message thread takes a noticeable fraction of a second: keep the
            # event loop (and every other chat) responsive meanwhile.
            summary = await asyncio.to_thread(self._engine.summarize, turns, options)
        except EngineError:
            raise ProcessingError(
                "The summarizer could not make a summary of these messages."
            ) from None
        return ProcessedSummary(summary.text, summary.engine, "on this bot's host")
