"""Platform-neutral events in, outcomes out.

Adapters translate what their platform delivers into these events and carry out
the outcomes the core returns. Nothing here knows Telegram or Matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ChatRef:
    platform: str
    """"telegram", "matrix", "console" — part of every stored identifier's hash input."""
    chat_id: str
    is_group: bool = True


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    display_name: str
    handle: str | None = None
    """A platform username (Telegram @name, Matrix localpart), pseudonymized like the name."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message someone sent in a chat (not a command to the bot)."""

    chat: ChatRef
    message_id: str
    sender: Member
    text: str
    timestamp: float
    thread_id: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class MessageEdited:
    chat: ChatRef
    message_id: str
    sender: Member
    text: str
    timestamp: float
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    chat: ChatRef
    message_id: str
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """``/name args…`` sent to the bot. ``reply_to`` is the message the command answers."""

    chat: ChatRef
    message_id: str
    sender: Member
    name: str
    args: tuple[str, ...]
    timestamp: float
    thread_id: str | None = None
    reply_to: str | None = None


Event = ChatMessage | MessageEdited | MessageDeleted | CommandReceived


class ReplyKind(StrEnum):
    INFO = "info"
    REFUSAL = "refusal"
    SUMMARY = "summary"


@dataclass(frozen=True, slots=True)
class Reply:
    """Post ``text`` in the chat (in ``thread_id``), answering ``reply_to`` if the platform can."""

    chat: ChatRef
    text: str
    kind: ReplyKind = ReplyKind.INFO
    thread_id: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """Send ``text`` to one member privately; ``fallback`` goes to the chat if that fails."""

    platform: str
    user_id: str
    text: str
    kind: ReplyKind = ReplyKind.SUMMARY
    fallback: Reply | None = None


Outcome = Reply | DirectMessage


def parse_command(text: str, bot_handle: str | None = None) -> tuple[str, tuple[str, ...]] | None:
    """Split ``/name@bot arg arg`` into ("name", ("arg", "arg")).

    Returns None when the text is not a command, or is a command addressed to a
    different bot (``/summarize@otherbot``), which in a group is none of our
    business.
    """
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2:
        return None
    head, *args = stripped.split()
    name, _, addressee = head[1:].partition("@")
    if addressee and (bot_handle is None or addressee.lower() != bot_handle.lower()):
        return None
    if not name or not all(c.isalnum() or c == "_" for c in name):
        return None
    return name.lower(), tuple(args)
