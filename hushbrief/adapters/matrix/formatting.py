"""Plain text from the core → ``m.room.message`` contents the Matrix way.

The core speaks plain text and names its commands with ``/`` (Telegram's
convention). On Matrix the documented prefix is ``!`` (see ``commands``), so the
bot's own sentences — help, refusals, confirmations — have ``/optin`` and friends
rewritten to ``!optin``. Summaries are left exactly as they are: their body is
what members wrote, and rewriting a member's words is not the bot's business.

Each message carries ``body`` (plain) and ``formatted_body`` (``org.matrix.custom.html``)
in which everything the core wrote is HTML-escaped — a summary quotes members, and
a member's ``<b>`` or ``<a href=…>`` must arrive as text, not as markup — and only
the bot's own markup is added: ``<br>`` for line breaks and, for a summary, its
header line in ``<strong>``.

A homeserver refuses events over 65,536 bytes, so a long text is split into
several messages, at line breaks where possible, each far below that limit even
after escaping.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from hushbrief.adapters.matrix.commands import KNOWN_COMMANDS

HTML_FORMAT = "org.matrix.custom.html"
PART_BYTES = 24_000
"""Budget for ``body`` plus ``formatted_body`` of one message, in UTF-8 bytes."""

MATRIX_HELP_NOTE = (
    "On Matrix, start commands with ! (Element rejects unknown /commands), or mention me "
    "first, for example: Hushbrief: summarize 3h."
)

_COMMAND = re.compile(
    r"(?<![\w/:.])/(" + "|".join(sorted(KNOWN_COMMANDS, key=len, reverse=True)) + r")\b")


def to_bang(text: str) -> str:
    """``/optin`` → ``!optin`` for the core's known commands; URLs and paths untouched."""
    return _COMMAND.sub(r"!\1", text)


@dataclass(frozen=True, slots=True)
class Part:
    plain: str
    html: str


def render(text: str, *, bold_first_line: bool = False) -> list[Part]:
    """The core's plain ``text`` as one or more messages' plain and HTML bodies."""
    parts = []
    for index, chunk in enumerate(split(text)):
        escaped = [html.escape(line, quote=False) for line in chunk.split("\n")]
        if bold_first_line and index == 0 and escaped and escaped[0].strip():
            escaped[0] = f"<strong>{escaped[0]}</strong>"
        parts.append(Part(chunk, "<br>".join(escaped)))
    return parts


def message_content(part: Part, *, msgtype: str = "m.notice") -> dict[str, Any]:
    return {"msgtype": msgtype, "body": part.plain, "format": HTML_FORMAT,
            "formatted_body": part.html}


def _cost(text: str) -> int:
    # plain + escaped HTML; "<br>" for each newline is covered by escape's worst case.
    return len(text.encode()) + len(html.escape(text, quote=False).encode()) + 4 * text.count("\n")


def split(text: str, budget: int = PART_BYTES) -> list[str]:
    """Split at line breaks (then anywhere) so each part's cost fits ``budget``."""
    if _cost(text) <= budget:
        return [text] if text.strip() else []
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for line in text.split("\n"):
        while _cost(line) > budget:
            if current:
                parts.append("\n".join(current))
                current, used = [], 0
            cut = _fit(line, budget)
            parts.append(line[:cut])
            line = line[cut:]
        cost = _cost(line) + (5 if current else 0)
        if used + cost > budget and current:
            parts.append("\n".join(current))
            current, used = [], 0
            cost = _cost(line)
        current.append(line)
        used += cost
    if current:
        parts.append("\n".join(current))
    return [p for p in parts if p.strip()]


def _fit(line: str, budget: int) -> int:
    """The longest prefix of ``line`` within ``budget``, at a space if one is near."""
    used = 0
    end = len(line)
    for index, ch in enumerate(line):
        used += _cost(ch)
        if used > budget:
            end = index
            break
    space = line.rfind(" ", 0, end)
    return space if space > end // 2 else max(end, 1)
