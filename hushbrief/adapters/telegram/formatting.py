"""Plain text from the core → Telegram HTML messages that fit Telegram's size limit.

The core speaks plain text. Telegram is asked to parse our messages as HTML
(``parse_mode=HTML``) so that a summary's header can be bold; everything else
is the core's text with ``&``, ``<`` and ``>`` escaped, because the Bot API
rejects a whole message whose HTML it cannot parse (and a member's message
quoted in a summary may contain anything).

Splitting happens on the *plain* text, before escaping, so a cut can never
land inside an entity such as ``&amp;`` or inside our ``<b>`` tag. The size of
each part is measured as its *escaped* length in UTF-16 code units, which is
at least what Telegram counts (it counts the text after entity parsing, in
UTF-16 units), so every part is accepted whichever way one reads the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

MESSAGE_LIMIT = 4096
"""Telegram's maximum length of one text message."""

_BOLD_OPEN, _BOLD_CLOSE = "<b>", "</b>"
_ESCAPED_COST = {"&": 5, "<": 4, ">": 4}  # len("&amp;"), len("&lt;"), len("&gt;")


def escape(text: str) -> str:
    """Escape the three characters Telegram's HTML parser treats specially.

    Quotes need no escaping outside attribute values, and leaving them keeps
    the message as short as the plain text allows.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _char_cost(ch: str) -> int:
    cost = _ESCAPED_COST.get(ch)
    if cost is not None:
        return cost
    # Characters outside the Basic Multilingual Plane are two UTF-16 code units.
    return 2 if ord(ch) > 0xFFFF else 1


def escaped_length(text: str) -> int:
    """The length of ``escape(text)`` in UTF-16 code units."""
    return sum(_char_cost(ch) for ch in text)


def _cut(line: str, budget: int) -> tuple[str, str]:
    """Split ``line`` so that the head's escaped length fits ``budget``; prefer a space."""
    used = 0
    for index, ch in enumerate(line):
        cost = _char_cost(ch)
        if used + cost > budget:
            end = index
            break
        used += cost
    else:
        return line, ""
    space = line.rfind(" ", 0, end + 1)
    # Only break at a space that keeps at least half the budget used; a single
    # 3000-character word is cut where it must be.
    if space > 0 and escaped_length(line[:space]) >= budget // 2:
        return line[:space], line[space + 1:]
    return line[:end], line[end:]


def split_plain(text: str, limit: int = MESSAGE_LIMIT, *, first_reserve: int = 0) -> list[str]:
    """Split plain ``text`` into parts whose escaped form fits ``limit`` UTF-16 units.

    Parts break at line boundaries where possible, then at spaces, and only as a
    last resort inside a word. ``first_reserve`` units of the first part are kept
    free for markup the caller adds (the ``<b></b>`` around a summary's header).
    Parts made only of whitespace are dropped: Telegram refuses empty messages.
    """
    if limit - first_reserve < max(_ESCAPED_COST.values()):
        raise ValueError("the limit leaves no room for even one escaped character")
    parts: list[str] = []
    current: list[str] = []
    used = 0

    def budget() -> int:
        return limit - (first_reserve if not parts else 0)

    def flush() -> None:
        nonlocal current, used
        parts.append("\n".join(current))
        current, used = [], 0

    for line in text.split("\n"):
        cost = escaped_length(line)
        joiner = 1 if current else 0
        if used + joiner + cost <= budget():
            current.append(line)
            used += joiner + cost
            continue
        if current:
            flush()
        # The line starts a fresh part; cut it while it is longer than a whole part.
        while escaped_length(line) > budget():
            head, line = _cut(line, budget())
            current = [head]
            flush()
        current, used = [line], escaped_length(line)
    if current:
        flush()
    return [p for p in parts if p.strip()]


@dataclass(frozen=True, slots=True)
class Part:
    """One Telegram message: its HTML, and the plain text it shows (a fallback to send as is)."""

    html: str
    plain: str


def render_html(text: str, *, bold_first_line: bool = False) -> list[Part]:
    """The core's plain ``text`` as one or more HTML messages, each within the limit."""
    reserve = len(_BOLD_OPEN) + len(_BOLD_CLOSE) if bold_first_line else 0
    parts = [Part(escape(p), p) for p in split_plain(text, first_reserve=reserve)]
    if bold_first_line and parts:
        head, sep, rest = parts[0].html.partition("\n")
        if head.strip():
            parts[0] = Part(f"{_BOLD_OPEN}{head}{_BOLD_CLOSE}{sep}{rest}", parts[0].plain)
    return parts
