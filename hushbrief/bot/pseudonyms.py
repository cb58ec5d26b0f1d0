"""Pseudonyms and redaction: what an engine gets instead of people.

Before a thread goes to any engine, local or remote, every person reference the
bot can know becomes a pseudonym ``P1``, ``P2``, …:

* each speaker, in order of first appearance;
* mentions of anyone the platform told the bot about — speakers, members seen in
  the chat who never opted in, people a message links (Telegram ``text_mention``
  and ``@username`` entities, Matrix pills and ``m.mentions``) — by display name,
  first name (when no two people share it), username, and the spelling a mention
  used; these get their pseudonyms in order of first mention, after the speakers;
* every Matrix user ID (``@user:server``, ``https://matrix.to/#/@user:server``,
  ``matrix:u/user:server``), known or not, server part included.

A name the platform never told the bot (a nickname typed in free text) cannot be
recognized; ``/privacy`` and the README say so.

Pseudonyms cannot collide with what members typed: a literal ``P7`` in a message
gets a pseudonym of its own that restores to ``P7``, so every ``P<n>`` an engine
sees was put there by this module, and ``restore`` turns each back into exactly
what it stood for. The mapping lives in memory for one request.

Matching is one pass over each text: the text is split into word and non-word
runs (``re.split``, in C), and each word is looked up in a dictionary of the
first words of all aliases. The cost is linear in the input and does not grow
with the number of people (the former one-regex-alternation-per-request grew
with both; ``bench/bench_pseudonyms.py`` measures it).

Redaction (a chat policy) replaces e-mail addresses, phone numbers and links
with ``[email]``, ``[phone]`` and ``[link]``. Those are not restored: what the
engine never saw cannot be in the summary anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from hushbrief.engines._text import STOPWORDS
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

# Matrix user IDs (spec: "User Identifiers"; historical localparts allow more than
# today's grammar, so any non-space run before the colon counts), as typed or inside
# matrix.to links and matrix: URIs (MSC2312), where they may be percent-encoded.
_SERVER = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::\d{1,5})?"
_MXREF = re.compile(
    r"https?://matrix\.to/#/(?P<to>(?:@|%40)[^\s/?#\"'<>]+?(?::|%3[Aa])" + _SERVER + r")"
    r"(?:\?[^\s\"'<>]*)?"
    r"|matrix:u/(?P<uri>[^\s/?#\"'<>:]+:" + _SERVER + r")(?:\?[^\s\"'<>]*)?"
    r"|(?<![\w@])(?P<id>@[^\s:@<>\"']+:" + _SERVER + r")"
)
_WORDS = re.compile(r"(\w+)")
_LITERAL = re.compile(r"\bP\d+\b")
_SPACE = re.compile(r"\s+")
_COMMON_WORDS = frozenset(w for words in STOPWORDS.values() for w in words)
"""One-word names that are also ordinary words ("Will", "May") match only as spelled."""


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
class Person:
    """Someone the text may mention who need not be a speaker.

    ``user_id`` is empty when the platform named only a username (a Telegram
    ``@username`` entity); ``spelled`` holds the texts that mentions of this person
    used (a ``text_mention``'s text, a Matrix pill's label).
    """

    user_id: str
    display_name: str = ""
    handle: str | None = None
    spelled: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pseudonymized:
    turns: list[Turn]
    names: dict[str, str]
    """Pseudonym → what the summary reader sees there, e.g. {"P1": "alice"}."""
    authors: list[str] = field(default_factory=list)
    """The user ID behind each turn, for the consent check right before processing."""


@dataclass(slots=True)
class _Identity:
    key: str
    shown: str
    aliases: list[str]
    pseudonym: str | None = None


@dataclass(slots=True)
class _Entry:
    """Every alias that starts with one (casefolded) word."""

    lengths: list[int] = field(default_factory=list)
    """Word counts of those aliases, longest first."""
    phrases: dict[str, tuple[_Identity, str | None]] = field(default_factory=dict)
    """Casefolded, space-normalized alias → (person, the only spelling allowed, if any)."""


def _phrase(parts: Sequence[str]) -> str:
    return _SPACE.sub(" ", "".join(parts)).casefold()


def _key_for(user_id: str, handle: str | None) -> str:
    return user_id if user_id else "@" + (handle or "").lstrip("@").casefold()


class _Directory:
    """Everyone a request may refer to, and the pseudonyms handed out so far."""

    def __init__(self) -> None:
        self.by_key: dict[str, _Identity] = {}
        self.index: dict[str, _Entry] = {}
        self.first_words: frozenset[str] = frozenset()
        self.names: dict[str, str] = {}
        self._literals: dict[str, str] = {}
        self._shown_taken: dict[str, int] = {}

    def identity(self, key: str, shown: str) -> _Identity:
        ident = self.by_key.get(key)
        if ident is None:
            ident = self.by_key[key] = _Identity(key, shown, [])
        return ident

    def pseudonym(self, ident: _Identity) -> str:
        if ident.pseudonym is None:
            ident.pseudonym = self._fresh(self._unique_shown(ident.shown))
        return ident.pseudonym

    def literal(self, typed: str) -> str:
        """A pseudonym for a ``P<n>`` a member typed, restoring to exactly that."""
        found = self._literals.get(typed)
        if found is None:
            found = self._literals[typed] = self._fresh(typed)
        return found

    def _fresh(self, shown: str) -> str:
        p = f"P{len(self.names) + 1}"
        self.names[p] = shown
        return p

    def _unique_shown(self, base: str) -> str:
        # Two people may share a display name; in the summary they must not collapse
        # into one person, so the second becomes "name (2)".
        n = self._shown_taken.get(base.casefold(), 0) + 1
        self._shown_taken[base.casefold()] = n
        return base if n == 1 else f"{base} ({n})"

    def build_index(self) -> None:
        # "Alice Smith" is often just "Alice" in chat; use the first name too unless
        # two people share it, when it would point at the wrong person.
        firsts: dict[str, int] = {}
        for ident in self.by_key.values():
            for first in {a.split(" ")[0].casefold() for a in ident.aliases if " " in a}:
                firsts[first] = firsts.get(first, 0) + 1
        for ident in self.by_key.values():
            candidates = list(ident.aliases)
            for alias in ident.aliases:
                first = alias.split(" ")[0]
                if (first != alias and len(first) >= 3 and firsts.get(first.casefold()) == 1
                        and all(first.casefold() != a.casefold() for a in ident.aliases)):
                    candidates.append(first)
            for alias in candidates:
                parts = _WORDS.split(alias.strip().lstrip("@"))[1:-1]
                words = parts[::2]
                if not words or sum(len(w) for w in words) < 2:
                    continue
                entry = self.index.setdefault(words[0].casefold(), _Entry())
                phrase = _phrase(parts)
                if phrase in entry.phrases:
                    continue  # the first person to claim an alias keeps it
                # A one-word name that is also an ordinary word ("Will") only as spelled.
                exact = words[0] if len(words) == 1 and phrase in _COMMON_WORDS else None
                entry.phrases[phrase] = (ident, exact)
                if len(words) not in entry.lengths:
                    entry.lengths.append(len(words))
                    entry.lengths.sort(reverse=True)
        # Casefolding can split a word ("İ" becomes "i" and a combining dot), so the
        # quick filter looks for every word piece of every key.
        self.first_words = frozenset(w for key in self.index for w in _WORDS.findall(key))


def _aliases(display_name: str, handle: str | None, spelled: Iterable[str] = ()) -> list[str]:
    out = [display_name.strip()]
    h = (handle or "").strip().lstrip("@")
    if h:
        out.append(h)
    out.extend(s.strip() for s in spelled if s.strip())
    return [a for a in out if a]


def pseudonymize(
    messages: Sequence[Speaker], *, people: Iterable[Person] = (), redact_pii: bool = False
) -> Pseudonymized:
    """Replace speakers and every person reference with P1…Pn; optionally redact."""
    d = _Directory()
    for m in messages:
        ident = d.identity(m.user_id, m.display_name.strip() or m.handle or "someone")
        if ident.pseudonym is None:
            d.pseudonym(ident)
            ident.aliases.extend(_aliases(m.display_name, m.handle))
    for person in people:
        key = _key_for(person.user_id, person.handle)
        if key == "@":
            continue
        shown = person.display_name.strip() or (
            "@" + person.handle.lstrip("@") if person.handle else person.user_id)
        ident = d.identity(key, shown)
        ident.aliases.extend(_aliases(person.display_name, person.handle, person.spelled))
        if person.user_id.startswith("@") and ":" in person.user_id:
            ident.aliases.append(person.user_id[1:].split(":", 1)[0])  # the Matrix localpart
    d.build_index()

    index_of = {m.message_id: i for i, m in enumerate(messages) if m.message_id is not None}
    t0 = messages[0].timestamp if messages else 0.0
    turns: list[Turn] = []
    for m in messages:
        text = redact(m.text) if redact_pii else m.text
        reply = index_of.get(m.reply_to) if m.reply_to is not None else None
        speaker = d.by_key[m.user_id].pseudonym
        assert speaker is not None
        turns.append(Turn(speaker=speaker, text=_replace(text, d),
                          t=max(0.0, m.timestamp - t0), reply_to=reply))
    return Pseudonymized(turns=turns, names=d.names, authors=[m.user_id for m in messages])


def _replace(text: str, d: _Directory) -> str:
    """``text`` with every Matrix ID and every known alias replaced, in one pass."""
    if "@" not in text and "matrix" not in text:
        return _replace_words(text, d)  # no Matrix ID can be in it
    out: list[str] = []
    pos = 0
    for m in _MXREF.finditer(text):
        out.append(_replace_words(text[pos:m.start()], d))
        user_id = m.group("id") or ("@" + m.group("uri") if m.group("uri") else
                                    unquote(m.group("to")))
        ident = d.by_key.get(user_id) or d.identity(user_id, user_id)
        out.append(d.pseudonym(ident))
        pos = m.end()
    out.append(_replace_words(text[pos:], d))
    return "".join(out)


def _replace_words(text: str, d: _Directory) -> str:
    if not text:
        return text
    # Most messages mention nobody: one C-speed look at their words decides that.
    if d.first_words.isdisjoint(_WORDS.findall(text.casefold())) and not _LITERAL.search(text):
        return text
    parts = _WORDS.split(text)  # separator, word, separator, word, …, separator
    index = d.index
    n = len(parts)
    i = 1
    while i < n:
        word = parts[i]
        if word[0] == "P" and word[1:].isdigit() and word[1:].isascii():
            parts[i] = d.literal(word)
            i += 2
            continue
        entry = index.get(word.casefold())
        if entry is None:
            i += 2
            continue
        for k in entry.lengths:
            end = i + 2 * k - 1
            if end > n:
                continue
            hit = entry.phrases.get(word.casefold() if k == 1 else _phrase(parts[i:end]))
            if hit is None or (hit[1] is not None and hit[1] != word):
                continue
            # "@alice" is the same mention as "alice": the at-sign goes with the name.
            if parts[i - 1].endswith("@"):
                parts[i - 1] = parts[i - 1][:-1]
            parts[i] = d.pseudonym(hit[0])
            for j in range(i + 1, end):
                parts[j] = ""
            i = end - 1
            break
        i += 2
    return "".join(parts)


def without(pseudo: Pseudonymized, authors: set[str]) -> Pseudonymized:
    """``pseudo`` less every turn by one of ``authors``; replies to them point nowhere."""
    keep = [i for i, a in enumerate(pseudo.authors) if a not in authors]
    if len(keep) == len(pseudo.authors):
        return pseudo
    renumber = {old: new for new, old in enumerate(keep)}
    turns = []
    for i in keep:
        t = pseudo.turns[i]
        reply = renumber.get(t.reply_to) if t.reply_to is not None else None
        turns.append(Turn(speaker=t.speaker, text=t.text, t=t.t, reply_to=reply))
    return Pseudonymized(turns=turns, names=pseudo.names,
                         authors=[pseudo.authors[i] for i in keep])


def restore(text: str, names: dict[str, str]) -> str:
    """Put back what each P1…Pn stands for; numbers this request never gave out stay."""
    return _PSEUDONYM.sub(lambda m: names.get(m.group(0), m.group(0)), text)
