"""Pseudonyms and redaction: what an engine gets instead of people.

Before a thread goes to any engine, local or remote, each speaker becomes
``P1``, ``P2``, … in order of first appearance, and mentions of the speakers'
names and handles inside the texts are replaced the same way. The mapping
exists only in memory for the duration of one request; ``restore`` puts the
names back into the summary the user sees.

Redaction (a chat policy) replaces e-mail addresses, phone numbers and links
with ``[email]``, ``[phone]`` and ``[link]``. Those are not restored: what the
engine never saw cannot be in the summary anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hushbrief.engines.base import Turn

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Links with a scheme, and bare domains with a path or a well-known TLD.
_LINK = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|dev|app|me|de|uk|fr|ru|info|co)(?:/\S*)?\b",
    re.IGNORECASE,
)
# Eight or more digits with the usual separators, optionally international; ISO dates
# have eight digits too and are left alone (see _phone).
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\d(?:[\s./-]?\(?\d\)?){7,14}(?!\w)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}")
_PSEUDONYM = re.compile(r"\bP(\d+)\b")


def redact(text: str) -> str:
    """Replace e-mail addresses, links and phone numbers, in that order.

    E-mail addresses go first because their domain part would otherwise read as a link.
    """
    text = _EMAIL.sub("[email]", text)
    text = _LINK.sub("[link]", text)
    return _PHONE.sub(_phone, text)


def _phone(m: re.Match[str]) -> str:
    return m.group(0) if _DATE.fullmatch(m.group(0).strip()) else "[phone]"


@dataclass(frozen=True, slots=True)
class Speaker:
    """One message as the bot holds it before pseudonymization."""

    user_id: str
    display_name: str
    handle: str | None
    text: str
    timestamp: float
    message_id: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Pseudonymized:
    turns: list[Turn]
    names: dict[str, str]
    """Pseudonym → the name the summary reader knows, e.g. {"P1": "alice"}."""


def _display_names(messages: Sequence[Speaker]) -> dict[str, str]:
    """user_id → a display name unique within the request.

    Two members may share a display name; in the summary they must not collapse
    into one person, so the second becomes "name (2)".
    """
    names: dict[str, str] = {}
    taken: dict[str, int] = {}
    for m in messages:
        if m.user_id in names:
            continue
        base = m.display_name.strip() or "someone"
        n = taken.get(base.casefold(), 0) + 1
        taken[base.casefold()] = n
        names[m.user_id] = base if n == 1 else f"{base} ({n})"
    return names


def pseudonymize(messages: Sequence[Speaker], *, redact_pii: bool = False) -> Pseudonymized:
    """Replace speakers (and mentions of them) with P1…Pn; optionally redact."""
    pseudonym: dict[str, str] = {}
    for m in messages:
        if m.user_id not in pseudonym:
            pseudonym[m.user_id] = f"P{len(pseudonym) + 1}"
    shown = _display_names(messages)

    # Every way a speaker may be mentioned in text maps to their pseudonym.
    first_names: dict[str, set[str]] = {}
    for m in messages:
        first = m.display_name.strip().split(" ")[0].casefold()
        first_names.setdefault(first, set()).add(m.user_id)
    aliases: dict[str, str] = {}
    """casefolded alias → pseudonym"""
    patterns: dict[str, str] = {}
    """alias as spelled → pseudonym"""
    for m in messages:
        p = pseudonym[m.user_id]
        full = m.display_name.strip()
        first = full.split(" ")[0]
        handle = (m.handle or "").lstrip("@")
        # "Alice Smith" is often just "Alice" in chat; use the first name too unless
        # two speakers share it, when it would point at the wrong person.
        candidates = [full, handle, "@" + handle if handle else ""]
        if first != full and len(first) >= 3 and len(first_names[first.casefold()]) == 1:
            candidates.append(first)
        for alias in candidates:
            if len(alias.lstrip("@")) >= 2:
                aliases.setdefault(alias.casefold(), p)
                patterns.setdefault(alias, p)
    mention = None
    if patterns:
        # Longest first, so "Anna Lena" wins over "Anna"; (?<!\w) instead of \b so that
        # "@alice" and names ending in punctuation still match whole. The patterns keep
        # their original spelling: casefolding can change a string's length ("ŉ").
        alternation = "|".join(re.escape(a) for a in sorted(patterns, key=lambda a: (-len(a), a)))
        mention = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)

    index_of = {m.message_id: i for i, m in enumerate(messages) if m.message_id is not None}
    t0 = messages[0].timestamp if messages else 0.0
    turns: list[Turn] = []
    for m in messages:
        text = m.text
        if redact_pii:
            text = redact(text)
        if mention is not None:
            text = mention.sub(lambda mo: _pseudonym_for(mo.group(0), aliases, patterns), text)
        reply = index_of.get(m.reply_to) if m.reply_to is not None else None
        turns.append(
            Turn(speaker=pseudonym[m.user_id], text=text,
                 t=max(0.0, m.timestamp - t0), reply_to=reply)
        )
    return Pseudonymized(turns=turns, names={p: shown[u] for u, p in pseudonym.items()})


def _pseudonym_for(found: str, folded: dict[str, str], spelled: dict[str, str]) -> str:
    hit = folded.get(found.casefold())
    if hit is not None:
        return hit
    # The regex's case-insensitive match and casefold() disagree for a few letters;
    # ask the regex engine itself rather than leave a name in the text.
    for alias, p in spelled.items():
        if re.fullmatch(re.escape(alias), found, re.IGNORECASE):
            return p
    return "someone"


def restore(text: str, names: dict[str, str]) -> str:
    """Put names back where the summary says P1…Pn; unknown numbers stay as they are."""
    return _PSEUDONYM.sub(lambda m: names.get(m.group(0), m.group(0)), text)
