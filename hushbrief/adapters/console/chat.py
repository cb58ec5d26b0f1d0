"""A group chat in the terminal, backed by the real core, storage and engine.

Several members share one chat; one of them (alice) is its admin. Each line is
``member: text``; a text starting with ``/`` is a command to the bot, and
``member: ^N text`` answers message number N (so ``bob: ^2 /summarize``
summarizes from message 2 on). Unknown names join the chat as ordinary members.

Two ways to drive it:

* scripted (standard input is not a terminal): read lines, print only the bot's
  replies, exit at the end of input. Lines starting with ``#`` are comments.
* interactive: play a short scene, then let the person at the keyboard speak as
  any member (``name: text``; a plain line speaks as the current member).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from hushbrief.bot.core import Hushbrief
from hushbrief.bot.events import (
    ChatMessage,
    ChatRef,
    CommandReceived,
    DirectMessage,
    Member,
    Outcome,
    Reply,
    ReplyKind,
    parse_command,
)

CHAT = ChatRef(platform="console", chat_id="demo-group", is_group=True)
ADMIN = "alice"
MEMBERS = ("alice", "bob", "carol", "dave")
_LINE = re.compile(r"^\s*([A-Za-z][\w.-]{0,31})\s*:\s?(.*)$")
_REPLY = re.compile(r"^\^(\d+)\s+")

INTRO = [
    ("alice", "/optin"),
    ("bob", "/optin"),
    ("alice", "Shall we move the release to Friday? The migration needs another day."),
    ("bob", "Friday works for me, I will update the changelog tonight."),
    ("carol", "my locker code is 4711"),
    ("alice", "Great. Bob, can you also ping the translators about the new strings?"),
    ("bob", "Sure, I'll ask them tomorrow morning."),
    ("alice", "/summarize"),
]


class ConsolePlatform:
    """The console's answers to what the core may ask of a platform."""

    def __init__(self, admins: Iterable[str] = (ADMIN,)) -> None:
        self._admins = set(admins)

    @property
    def name(self) -> str:
        return "console"

    async def is_admin(self, chat: ChatRef, user_id: str) -> bool:
        return user_id in self._admins

    async def can_message_directly(self, user_id: str) -> bool:
        return True


@dataclass
class ConsoleChat:
    """Turns ``member: text`` lines into events and prints the outcomes."""

    core: Hushbrief
    out: TextIO = field(default_factory=lambda: sys.stdout)
    platform: ConsolePlatform = field(default_factory=ConsolePlatform)
    clock: Callable[[], float] = time.time
    color: bool = False
    echo: bool = False
    """Print the members' lines too (the interactive scene); scripts print replies only."""
    _next_id: int = 0

    def parse(self, line: str) -> tuple[str, str] | None:
        """("member", "text"), or None for blank lines and comments."""
        if not line.strip() or line.lstrip().startswith("#"):
            return None
        m = _LINE.match(line)
        if m is None:
            raise ValueError("a line must look like 'member: text', for example 'bob: hello'")
        return m.group(1).lower(), m.group(2)

    async def say(self, member: str, text: str) -> list[Outcome]:
        """One member sends one line to the chat; returns (and prints) the bot's outcomes."""
        self._next_id += 1
        mid = str(self._next_id)
        reply_to = None
        if (m := _REPLY.match(text)) is not None:
            reply_to, text = m.group(1), text[m.end():]
        if self.echo:
            self._print(f"#{mid} {member}: {text}", dim=True)
        sender = Member(user_id=member, display_name=member)
        now = self.clock()
        command = parse_command(text)
        if command is not None:
            name, args = command
            event: CommandReceived | ChatMessage = CommandReceived(
                chat=CHAT, message_id=mid, sender=sender, name=name, args=args,
                timestamp=now, reply_to=reply_to)
        else:
            event = ChatMessage(chat=CHAT, message_id=mid, sender=sender, text=text,
                                timestamp=now, reply_to=reply_to)
        outcomes = await self.core.handle(event, self.platform)
        for outcome in outcomes:
            self.show(outcome)
        return outcomes

    def show(self, outcome: Outcome) -> None:
        if isinstance(outcome, Reply):
            prefix = "hushbrief"
        elif isinstance(outcome, DirectMessage):
            prefix = f"hushbrief (privately to {outcome.user_id})"
        lines = outcome.text.splitlines() or [""]
        body = "\n".join([lines[0], *("    " + line for line in lines[1:])])
        refusal = isinstance(outcome, Reply) and outcome.kind is ReplyKind.REFUSAL
        self._print(f"{prefix}: {body}", bold=not refusal)

    def _print(self, text: str, *, dim: bool = False, bold: bool = False) -> None:
        if self.color and (dim or bold):
            text = f"\033[{'2' if dim else '1'}m{text}\033[0m"
        print(text, file=self.out, flush=True)


async def run_script(chat: ConsoleChat, lines: Iterable[str], err: TextIO) -> int:
    """Feed scripted lines; returns the number of lines that could not be read."""
    bad = 0
    for number, line in enumerate(lines, start=1):
        try:
            parsed = chat.parse(line)
        except ValueError as exc:
            print(f"line {number}: {exc}; skipped", file=err)
            bad += 1
            continue
        if parsed is not None:
            await chat.say(*parsed)
    return bad


async def run_interactive(chat: ConsoleChat, *, intro: bool, pause: float = 0.8) -> None:
    """Play the scene, then read the keyboard until end of input or ``!quit``."""
    chat.echo = True
    if intro:
        chat._print("A short scene first: alice and bob opt in, carol does not.", dim=True)
        for member, text in INTRO:
            await asyncio.sleep(pause)
            await chat.say(member, text)
    chat._print(
        "\nYour turn. Speak as a member with 'bob: hello' (a plain line speaks as the last "
        "member); commands start with '/', '^N' answers message N; !members, !quit.",
        dim=True,
    )
    current = "alice"
    loop = asyncio.get_running_loop()
    while True:
        try:
            line = await loop.run_in_executor(None, input, f"{current}> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        stripped = line.strip()
        if stripped in ("!quit", "!exit"):
            return
        if stripped == "!members":
            chat._print("members: " + ", ".join(MEMBERS) + f" (admin: {ADMIN})", dim=True)
            continue
        if not stripped:
            continue
        m = _LINE.match(line)
        if m is not None:
            current, text = m.group(1).lower(), m.group(2)
        else:
            text = line
        chat.echo = False
        try:
            await chat.say(current, text)
        finally:
            chat.echo = True
