"""Shared fixtures: a real bot (real SQLite storage, real engine) driven like a chat."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from hushbrief.adapters.console.chat import ConsoleChat, ConsolePlatform
from hushbrief.bot.app import Bot, open_bot
from hushbrief.bot.config import Config
from hushbrief.bot.events import Outcome, Reply, ReplyKind
from hushbrief.bot.policy import Processing

pytest_plugins = ["tests.conftest_db", "tests.synapse"]


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ChatDriver:
    """Speak as members of one chat; read the bot's answers (errbot's push/pop, in spirit)."""

    chat: ConsoleChat
    clock: Clock
    outcomes: list[Outcome] = field(default_factory=list)

    async def say(self, member: str, text: str) -> list[Outcome]:
        self.clock.advance(1)
        got = await self.chat.say(member, text)
        self.outcomes.extend(got)
        return got

    async def ask(self, member: str, text: str) -> str:
        """Send a command and return the single reply's text."""
        got = await self.say(member, text)
        assert len(got) >= 1, f"no answer to {text!r}"
        return got[0].text

    async def refused(self, member: str, text: str) -> str:
        got = await self.say(member, text)
        assert len(got) == 1 and isinstance(got[0], Reply), got
        assert got[0].kind is ReplyKind.REFUSAL, got[0].text
        return got[0].text

    async def summary(self, member: str, text: str = "/summarize") -> str:
        got = await self.say(member, text)
        assert len(got) == 1 and isinstance(got[0], Reply), got
        assert got[0].kind is ReplyKind.SUMMARY, got[0].text
        return got[0].text


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Local processing: these tests exercise the core; the private path has its own."""
    base = Config()
    return replace(base, storage=replace(base.storage, data_dir=tmp_path / "data"),
                   processing=replace(base.processing, mode=Processing.LOCAL))


@pytest.fixture
def bot(config: Config, clock: Clock) -> Iterator[Bot]:
    b = open_bot(config, clock=clock)
    yield b
    b.close()


@pytest.fixture
def chat(bot: Bot, clock: Clock) -> ChatDriver:
    console = ConsoleChat(core=bot.core, out=io.StringIO(), platform=ConsolePlatform(),
                          clock=clock)
    return ChatDriver(console, clock)
