"""DESIGN.md section 7, invariants 1, 2, 6 and 7: each test fails if its invariant breaks.

1. No message text reaches disk, logs or metrics.
2. A non-opted-in member's message never leaves the bot.
6. /optout takes effect at once, also for messages already buffered.
7. Only admins change policy.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from hushbrief.adapters.console.chat import ConsoleChat, ConsolePlatform
from hushbrief.bot.app import Bot, open_bot
from hushbrief.bot.config import Config
from hushbrief.bot.events import ChatRef, CommandReceived, Member
from hushbrief.bot.policy import POLICY_KEYS, Policy, Processing
from hushbrief.bot.processing import LocalProcessor, ProcessedSummary
from hushbrief.engines.base import SummaryOptions, Turn
from hushbrief.engines.extractive import ExtractiveEngine
from tests.conftest import ChatDriver, Clock


def canary(tag: str) -> str:
    return f"canary-{tag}-{secrets.token_hex(8)}"


@dataclass
class RecordingProcessor:
    """The real local processor, plus a record of exactly what it was handed."""

    inner: LocalProcessor = field(default_factory=lambda: LocalProcessor(ExtractiveEngine()))
    seen: list[list[Turn]] = field(default_factory=list)

    async def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> ProcessedSummary:
        self.seen.append(list(turns))
        return await self.inner.summarize(turns, options)

    @property
    def privacy_note(self) -> str | None:
        return None

    def everything(self) -> str:
        return "\n".join(f"{t.speaker}\x00{t.text}" for turns in self.seen for t in turns)


def files_containing(root: Path, needles: Sequence[str]) -> list[tuple[Path, str]]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [(path, n) for n in needles if n.encode() in data]
    return hits


def raw_window(bot: Bot) -> bytes:
    """Every byte the window holds, to prove text is gone rather than hidden."""
    return b"".join(
        rec for buf in bot.window._chats.values() for t in buf.threads.values() for rec in t)


@pytest.fixture
def recorder(bot: Bot) -> RecordingProcessor:
    rec = RecordingProcessor()
    bot.core._processors[Processing.LOCAL] = rec
    return rec


async def test_invariant_1_no_message_text_on_disk_or_in_logs(
    config: Config, clock: Clock, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # Everything at DEBUG, SQLAlchemy's statement log included, also into a real file.
    log_file = tmp_path / "bot.log"
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    texts = {who: canary(who) for who in ("alice", "bob", "carol", "edit", "gone")}
    names = {"Zorblatt Quentin": "u-zq", "Ximena Vorhees": "u-xv"}
    try:
        bot = open_bot(config, clock=clock)
        out = io.StringIO()
        chat = ChatDriver(ConsoleChat(core=bot.core, out=out, platform=ConsolePlatform(),
                                      clock=clock), clock)
        await chat.say("alice", "/optin")
        await chat.say("bob", "/optin")
        await chat.say("alice", f"Decision: {texts['alice']} ships Friday, bob will test.")
        await chat.say("bob", f"I will prepare {texts['bob']} and update the changelog.")
        await chat.say("carol", f"not opted in: {texts['carol']}")
        await chat.say("bob", f"to be edited {texts['gone']}")
        core, platform = bot.core, chat.chat.platform
        from hushbrief.bot.events import ChatMessage, MessageEdited
        for display, uid in names.items():
            member = Member(uid, display, handle=display.split()[0].lower())
            await core.handle(CommandReceived(ChatRef("console", "demo-group"), "n" + uid, member,
                                              "optin", (), clock()), platform)
            await core.handle(ChatMessage(ChatRef("console", "demo-group"), "m" + uid, member,
                                          f"{display} speaking about lunch plans", clock()),
                              platform)
        await core.handle(MessageEdited(ChatRef("console", "demo-group"), "6", Member("bob", "bob"),
                                        f"edited {texts['edit']}", clock()), platform)
        for command in ("/summarize", "/summarize private", "/status", "/privacy", "/policy",
                        "/policy redact on", "/summarize 3", "/optout", "/forgetme",
                        "/summarize", "/policy nonsense x"):
            await chat.say("alice", command)
        summaries = [o.text for o in chat.outcomes if "Summary" in o.text]
        assert summaries and texts["alice"] in summaries[0]  # the scenario really summarized
        bot.close()
    finally:
        root.removeHandler(handler)
        handler.close()
    needles = [*texts.values(), *names, "lunch plans", *summaries]
    assert files_containing(config.storage.data_dir, needles) == []
    logged = caplog.text + log_file.read_text()
    assert "INSERT INTO consent" in logged  # the statement log was really captured
    for needle in needles:
        assert needle not in logged, f"log output contains {needle[:20]}…"


async def test_invariant_2_non_opted_in_messages_never_reach_the_engine(
    chat: ChatDriver, recorder: RecordingProcessor
) -> None:
    secret = canary("carol")
    await chat.say("alice", "/optin")
    await chat.say("carol", f"carol writes {secret}")
    await chat.say("alice", "Alice writes about the roadmap and the next milestone.")
    await chat.say("carol", "/optin")  # opting in later does not release earlier messages
    for args in ("", " 10", " 1h", " private"):
        await chat.say("alice", "/summarize" + args)
    await chat.say("alice", "^2 /summarize")
    assert len(recorder.seen) == 5
    assert secret not in recorder.everything()
    assert "carol" not in recorder.everything()


async def test_invariant_2_holds_for_history_platforms(
    bot: Bot, recorder: RecordingProcessor, clock: Clock
) -> None:
    from hushbrief.bot.events import ChatMessage
    from tests.test_commands import _HistoryPlatform

    chat_ref = ChatRef("console", "h")
    secret = canary("dave")
    history = [ChatMessage(chat_ref, "1", Member("alice", "Alice"), "alice on topic", clock()),
               ChatMessage(chat_ref, "2", Member("dave", "Dave"), secret, clock())]
    platform = _HistoryPlatform(history)
    await bot.core.handle(CommandReceived(chat_ref, "3", Member("alice", "Alice"), "optin", (),
                                          clock()), platform)
    await bot.core.handle(CommandReceived(chat_ref, "4", Member("alice", "Alice"), "summarize",
                                          (), clock()), platform)
    assert recorder.seen and secret not in recorder.everything()


async def test_invariant_4_the_engine_never_sees_ids_or_names(
    chat: ChatDriver, recorder: RecordingProcessor
) -> None:
    await chat.say("alice", "/optin")
    await chat.say("bob", "/optin")
    await chat.say("alice", "bob, please review the draft; alice will merge it.")
    await chat.say("bob", "Sure alice, I will review it tonight.")
    await chat.say("alice", "/summarize")
    seen = recorder.everything().lower()
    assert "alice" not in seen and "bob" not in seen and "demo-group" not in seen
    assert "p1" in seen and "p2" in seen


async def test_invariant_6_optout_takes_effect_at_once(
    bot: Bot, chat: ChatDriver, recorder: RecordingProcessor
) -> None:
    secret = canary("bob")
    await chat.say("alice", "/optin")
    await chat.say("bob", "/optin")
    await chat.say("bob", f"bob writes {secret}")
    await chat.say("alice", "alice writes about the garden.")
    await chat.say("bob", "/optout")
    # Already gone from memory, not merely filtered later.
    assert secret.encode() not in raw_window(bot)
    await chat.say("alice", "/summarize")
    assert secret not in recorder.everything()
    await chat.say("bob", "/optin")
    await chat.say("alice", "/summarize")
    assert secret not in recorder.everything()


async def test_invariant_6_forgetme_purges_every_chat(
    bot: Bot, chat: ChatDriver, recorder: RecordingProcessor
) -> None:
    secret = canary("bob")
    other = ChatRef("console", "second")
    platform = chat.chat.platform
    bob = Member("bob", "bob")
    from hushbrief.bot.events import ChatMessage
    await bot.core.handle(CommandReceived(other, "1", bob, "optin", (), chat.clock()), platform)
    await bot.core.handle(ChatMessage(other, "2", bob, secret, chat.clock()), platform)
    await chat.say("bob", "/forgetme")
    assert bot.window.stats(("console", "second"))[0] == 1  # a placeholder, no text
    assert secret.encode() not in raw_window(bot)


@pytest.mark.parametrize("key", sorted(POLICY_KEYS))
async def test_invariant_7_only_admins_change_policy(
    bot: Bot, chat: ChatDriver, key: str
) -> None:
    value = {"summaries": "off", "who": "admins", "consent": "require-all",
             "delivery": "private", "processing": "private", "max_messages": "7",
             "max_span": "2h", "buffer_messages": "20", "buffer_ttl": "2h", "chat_rate": "2",
             "member_rate": "2", "redact": "on", "length": "30"}[key]
    await chat.say("bob", "/optin")
    text = await chat.refused("bob", f"/policy {key} {value}")
    assert "Only this chat's admins" in text
    text = await chat.refused("bob", "/policy reset")
    assert "Only this chat's admins" in text
    policies = bot.core._policies
    assert policies.overrides("console", "demo-group") == {}
    await chat.say("alice", f"/policy {key} {value}")
    assert key in policies.overrides("console", "demo-group")


def test_policy_defaults_match_the_documented_defaults() -> None:
    # The README and config.example.toml promise these; a silent change would mislead admins.
    p = Policy()
    assert (p.summaries, p.who, p.consent, p.delivery) == (True, "members", "skip", "chat")
    assert replace(p).redact is False
