"""The contract between the bot (or the backend) and a summarization engine.

An engine sees only pseudonymous turns: speakers are labels such as ``P1``,
times are seconds since the first turn, replies are indices into the same
sequence. It never sees chat IDs, user IDs or display names, so the same
engine can run in the bot's process (local mode) or inside the attested
backend (private mode) without knowing which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Style(StrEnum):
    BULLETS = "bullets"
    PARAGRAPH = "paragraph"


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the thread, as an engine may see it."""

    speaker: str
    text: str
    t: float = 0.0
    """Seconds since the first turn of the thread."""
    reply_to: int | None = None
    """Index of the turn this one answers, or None."""


@dataclass(frozen=True, slots=True)
class SummaryOptions:
    max_words: int = 120
    language: str = "auto"
    style: Style = Style.BULLETS


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    engine: str
    picked: tuple[int, ...] = field(default=())
    """Indices of the turns an extractive engine kept; empty for abstractive ones."""


class EngineError(Exception):
    """An engine could not produce a summary. The message never contains turn text."""


class Engine(Protocol):
    name: str

    def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> Summary:
        """Summarize ``turns`` within ``options.max_words`` words."""
        ...
