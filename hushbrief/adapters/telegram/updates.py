"""Telegram updates → the core's neutral events, with no I/O.

This module owns every decision about what an update *means*: which chats are
groups, who sent a message, which forum topic and which reply it belongs to,
which ``/commands`` are ours, and which service updates tell the bot that it
joined or left a chat. ``translate`` is a pure function of the update and the
bot's own identity, so it is tested without a network.

Sender identities
-----------------
A member is their numeric Telegram user ID. A message sent *on behalf of a
chat* has no person behind it that the bot can tell apart:

* an anonymous admin posts as the group itself (``sender_chat.id == chat.id``,
  ``from`` is GroupAnonymousBot);
* a channel posts into its discussion group, or a member posts "as" one of
  their channels.

Such senders become ``chat:<id>``. Every anonymous admin of a group shares the
one identity ``chat:<group id>``, so consent given under it would be consent
given for other people: the adapter refuses ``/optin`` and ``/summarize`` from
these identities with a sentence (see ``SHARED_IDENTITY_REFUSAL``) and their
messages are never kept (they count as "left out"). ``chat:<group id>`` is an
admin of its own group for ``/policy``, which is exactly what Telegram lets an
anonymous admin do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from telegram import Chat, ChatMember, Message, Update

from hushbrief.bot.events import (
    ChatMessage,
    ChatRef,
    CommandReceived,
    Event,
    Member,
    MessageEdited,
    parse_command,
)

PLATFORM = "telegram"

ALLOWED_UPDATES = ("message", "edited_message", "my_chat_member")
"""What the bot asks Telegram for; everything else is never even delivered."""

ANONYMOUS_ADMIN = "Anonymous admin"

GROUP_COMMANDS: tuple[tuple[str, str], ...] = (
    ("summarize", "Summarize: /summarize [N | 3h | private]"),
    ("optin", "Let your messages here be summarized"),
    ("optout", "Stop; drop your messages from memory"),
    ("status", "Your consent and this chat's settings"),
    ("privacy", "What is stored, where summaries are made"),
    ("policy", "Chat settings (admins change them)"),
    ("forgetme", "Opt out of every chat"),
    ("help", "What I do and how"),
)
"""The command menu shown in groups (``setMyCommands``), in the order shown."""

PRIVATE_COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "What this bot does"),
    ("help", "What I do and how"),
    ("privacy", "What is stored, where summaries are made"),
    ("forgetme", "Opt out of every chat"),
)

KNOWN_COMMANDS = frozenset(
    {name for name, _ in GROUP_COMMANDS} | {name for name, _ in PRIVATE_COMMANDS} | {"summary"}
)
"""Commands the core answers. In a group, other unaddressed commands belong to other bots."""

SHARED_IDENTITY_COMMANDS = frozenset({"optin", "summarize", "summary"})
SHARED_IDENTITY_REFUSAL = (
    "You are posting as the group or a channel, so I can't tell who you are, and consent "
    "and summaries are personal: send this command from your own account (admins: switch "
    "off \"Remain anonymous\" for a moment)."
)

_PRESENT = frozenset({ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER,
                      ChatMember.RESTRICTED})
_ADMIN = frozenset({ChatMember.OWNER, ChatMember.ADMINISTRATOR})


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is, from ``getMe``."""

    id: int
    username: str


@dataclass(frozen=True, slots=True)
class BotMembership:
    """The bot's own membership in a group changed (``my_chat_member``, or a migration)."""

    chat: ChatRef
    present: bool
    """False: removed, left, banned, or the group became a supergroup with a new ID."""
    admin: bool = False
    joined: bool = False
    """True only when the bot was just added (a hello is in order)."""


Translated = Event | BotMembership


def chat_ref(chat: Chat) -> ChatRef | None:
    """Groups and supergroups are group chats; private chats are not; channels are ignored."""
    if chat.type in (Chat.GROUP, Chat.SUPERGROUP):
        return ChatRef(PLATFORM, str(chat.id), is_group=True)
    if chat.type == Chat.PRIVATE:
        return ChatRef(PLATFORM, str(chat.id), is_group=False)
    return None


def is_shared_identity(user_id: str) -> bool:
    """Whether ``user_id`` stands for a chat (anonymous admins, channels), not a person."""
    return user_id.startswith("chat:")


def sender_of(msg: Message, me: BotIdentity) -> Member | None:
    """The member who sent ``msg``, or None for bots (this one included)."""
    if msg.sender_chat is not None:
        if msg.sender_chat.id == msg.chat.id:
            return Member(f"chat:{msg.chat.id}", ANONYMOUS_ADMIN)
        sc = msg.sender_chat
        return Member(f"chat:{sc.id}", sc.title or sc.effective_name or "Channel", sc.username)
    user = msg.from_user
    if user is None or user.is_bot or user.id == me.id:
        return None
    return Member(str(user.id), user.full_name, user.username)


def thread_of(msg: Message) -> str | None:
    """The forum topic; a reply thread in an ordinary group is not a topic."""
    if msg.is_topic_message and msg.message_thread_id is not None:
        return str(msg.message_thread_id)
    return None


def reply_of(msg: Message) -> str | None:
    """The message ``msg`` answers, ignoring a topic's implicit reply to its creation."""
    replied = msg.reply_to_message
    if replied is None:
        return None
    # Telegram sets reply_to_message on every message in a forum topic to the
    # topic's creation message, whose ID is the thread ID: that is no reply.
    if msg.is_topic_message and (replied.message_id == msg.message_thread_id
                                 or replied.forum_topic_created is not None):
        return None
    return str(replied.message_id)


def _command(
    text: str, me: BotIdentity, chat: ChatRef
) -> tuple[str, tuple[str, ...]] | Literal["foreign"] | None:
    """("name", args) for our command; "foreign" for another bot's; None if not a command."""
    if not text.startswith("/"):
        return None
    head = text.split(maxsplit=1)[0]
    parsed = parse_command(text, me.username)
    if parsed is None:
        # "/summarize@otherbot" is another bot's business; "/usr/bin" is just text.
        return "foreign" if "@" in head else None
    name, _ = parsed
    if chat.is_group and name not in KNOWN_COMMANDS and "@" not in head:
        return "foreign"  # an unaddressed command we don't have is probably another bot's
    return parsed


def translate(update: Update, me: BotIdentity) -> Translated | None:
    """The neutral event an update stands for, or None if the core has no business with it."""
    if update.my_chat_member is not None:
        return _membership(update, me)
    if update.message is not None:
        return _message(update.message, me)
    if update.edited_message is not None:
        return _edited(update.edited_message, me)
    return None


def _membership(update: Update, me: BotIdentity) -> BotMembership | None:
    change = update.my_chat_member
    assert change is not None
    chat = chat_ref(change.chat)
    if chat is None or not chat.is_group or change.new_chat_member.user.id != me.id:
        return None
    old, new = change.old_chat_member.status, change.new_chat_member.status
    present = new in _PRESENT
    if present and new == ChatMember.RESTRICTED:
        present = bool(getattr(change.new_chat_member, "is_member", True))
    return BotMembership(chat, present=present, admin=new in _ADMIN,
                         joined=present and old not in _PRESENT)


def _message(msg: Message, me: BotIdentity) -> Translated | None:
    chat = chat_ref(msg.chat)
    if chat is None:
        return None
    if msg.migrate_to_chat_id is not None and chat.is_group:
        # The group became a supergroup under a new ID; the old one is gone for good.
        return BotMembership(chat, present=False)
    sender = sender_of(msg, me)
    if sender is None:
        return None
    timestamp = msg.date.timestamp()
    if msg.text is not None:
        command = _command(msg.text, me, chat)
        if command == "foreign":
            return None
        if isinstance(command, tuple):
            name, args = command
            return CommandReceived(chat=chat, message_id=str(msg.message_id), sender=sender,
                                   name=name, args=args, timestamp=timestamp,
                                   thread_id=thread_of(msg), reply_to=reply_of(msg))
    text = msg.text if msg.text is not None else msg.caption
    if not text or not chat.is_group:
        return None  # stickers, service messages, media without a caption; private chatter
    return ChatMessage(chat=chat, message_id=str(msg.message_id), sender=sender, text=text,
                       timestamp=timestamp, thread_id=thread_of(msg), reply_to=reply_of(msg))


def _edited(msg: Message, me: BotIdentity) -> MessageEdited | None:
    chat = chat_ref(msg.chat)
    if chat is None or not chat.is_group:
        return None
    sender = sender_of(msg, me)
    text = msg.text if msg.text is not None else msg.caption
    if sender is None or not text:
        return None
    if msg.text is not None and _command(msg.text, me, chat) is not None:
        return None  # an edited command is not run again, nor kept as conversation
    when = msg.edit_date or msg.date
    return MessageEdited(chat=chat, message_id=str(msg.message_id), sender=sender, text=text,
                         timestamp=when.timestamp(), thread_id=thread_of(msg))
