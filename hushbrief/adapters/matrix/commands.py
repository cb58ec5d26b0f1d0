"""Matrix message content → the core's commands and relations, with no I/O.

This module owns what a ``m.room.message`` *means* to the bot: whether it is a
command to us, which thread it belongs to, which message it answers, which one it
edits. It is pure, so it is tested without a homeserver.

Command forms
-------------
* ``!summarize 3h`` — the documented form. Element turns an unknown ``/command``
  into an error dialog ("Unknown command") instead of sending it, so ``/`` cannot
  be what the help text teaches on Matrix.
* ``/summarize 3h`` — accepted when it does arrive as text (other clients, or
  Element's "send as message").
* ``Hushbrief: summarize``, ``@hushbrief:example.org !summarize`` — a mention of
  the bot (its user ID, localpart or display name, as a pill or typed) followed by
  the command, with or without a prefix. A mention also counts when the message's
  ``m.mentions`` names the bot and the text starts with ``<pill text>:``.

In a group, an unaddressed ``!word`` the core does not know belongs to another bot
(many Matrix bots use ``!``) and is ignored; addressed or in a direct chat, any
command goes to the core, which answers unknown ones with a hint.

Replies and threads
-------------------
``m.in_reply_to`` is a reply *unless* the event is a thread message with
``is_falling_back: true``: then it only points at the thread's latest event for
clients that do not understand threads, and treating it as a reply would anchor
every ``!summarize`` sent in a thread at the message before it. The reply fallback
(``> <@alice:example.org> quoted text`` lines at the top of the body) is stripped
before parsing, and before a message is summarized — it quotes *another* member,
who may not have opted in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hushbrief.bot.events import parse_command

KNOWN_COMMANDS = frozenset({
    "help", "start", "optin", "optout", "forgetme", "status", "privacy", "summarize",
    "summary", "policy",
})
"""The names the core answers (``Hushbrief._command``)."""

PREFIXES = ("!", "/")
_MENTION_SEPARATORS = ":,"
_MAX_PILL = 64  # longer "name:" heads are sentences, not mentions


@dataclass(frozen=True, slots=True)
class Relations:
    """What ``m.relates_to`` says about one message."""

    thread_id: str | None = None
    """The thread root, if the message is in a thread (``rel_type: m.thread``)."""
    reply_to: str | None = None
    """The message it really answers (not a thread fallback)."""
    replaces: str | None = None
    """The message it edits (``rel_type: m.replace``)."""


@dataclass(frozen=True, slots=True)
class BotNames:
    """How members may address the bot in one room."""

    user_id: str
    display_names: tuple[str, ...] = ()

    @property
    def localpart(self) -> str:
        return localpart(self.user_id)

    def candidates(self) -> list[str]:
        """Every spelling, longest first, so "Hushbrief Bot" wins over "Hushbrief"."""
        names = {self.user_id, self.localpart, "@" + self.localpart}
        names.update(n for n in self.display_names if n.strip())
        return sorted(names, key=len, reverse=True)


def localpart(user_id: str) -> str:
    """``@alice:example.org`` → ``alice``."""
    return user_id.removeprefix("@").split(":", 1)[0]


def server_name(user_id: str) -> str:
    """``@alice:example.org:8448`` → ``example.org:8448``."""
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def relations(content: Mapping[str, Any]) -> Relations:
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping):
        return Relations()
    rel_type = rel.get("rel_type")
    target = rel.get("event_id") if isinstance(rel.get("event_id"), str) else None
    reply = rel.get("m.in_reply_to")
    reply_id = reply.get("event_id") if isinstance(reply, Mapping) else None
    reply_id = reply_id if isinstance(reply_id, str) and reply_id else None
    if rel_type == "m.thread" and target:
        if rel.get("is_falling_back") is True:
            reply_id = None
        return Relations(thread_id=target, reply_to=reply_id)
    if rel_type == "m.replace" and target:
        return Relations(replaces=target)
    return Relations(reply_to=reply_id)


def has_reply(content: Mapping[str, Any]) -> bool:
    rel = content.get("m.relates_to")
    return isinstance(rel, Mapping) and isinstance(rel.get("m.in_reply_to"), Mapping)


def strip_reply_fallback(body: str) -> str:
    """Remove the ``> …`` lines a reply quotes at the top, and the blank line after them."""
    lines = body.split("\n")
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index == 0:
        return body
    if index < len(lines) and not lines[index].strip():
        index += 1
    return "\n".join(lines[index:])


def message_text(content: Mapping[str, Any]) -> str | None:
    """The body a member wrote, without a reply fallback; None if there is no text body."""
    body = content.get("body")
    if not isinstance(body, str):
        return None
    return strip_reply_fallback(body) if has_reply(content) else body


def parse(
    content: Mapping[str, Any], names: BotNames, *, direct: bool
) -> tuple[str, tuple[str, ...]] | None:
    """``(name, args)`` if ``content`` is a command to this bot, else None.

    Only ``m.text`` messages are commands: notices are what bots send (answering
    them is how two bots end up talking forever), emotes are not addressed to anyone.
    """
    if content.get("msgtype") != "m.text":
        return None
    text = message_text(content)
    if text is None:
        return None
    text = text.strip()
    addressed, rest = _strip_mention(text, names)
    if not addressed and _mentions(content, names.user_id):
        head, sep, tail = text.partition(":")
        if sep and 0 < len(head) <= _MAX_PILL and "\n" not in head:
            addressed, rest = True, tail.strip()
    if rest[:1] in PREFIXES:
        parsed = parse_command("/" + rest[1:], names.localpart)
        if parsed is None:
            return None
        if parsed[0] in KNOWN_COMMANDS or addressed or direct:
            return parsed
        return None
    if addressed:
        parsed = parse_command("/" + rest, names.localpart)
        if parsed is not None and parsed[0] in KNOWN_COMMANDS:
            return parsed
    return None


def _strip_mention(text: str, names: BotNames) -> tuple[bool, str]:
    lowered = text.lower()
    for name in names.candidates():
        if not lowered.startswith(name.lower()):
            continue
        rest = text[len(name):]
        if not rest:
            return True, ""
        if rest[0] in _MENTION_SEPARATORS or rest[0].isspace():
            return True, rest.lstrip(_MENTION_SEPARATORS).strip()
    return False, text


def _mentions(content: Mapping[str, Any], user_id: str) -> bool:
    mentions = content.get("m.mentions")
    if not isinstance(mentions, Mapping):
        return False
    ids = mentions.get("user_ids")
    return isinstance(ids, list) and user_id in ids
