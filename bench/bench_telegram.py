"""Telegram adapter ingest: updates per second across busy chats, memory per buffered message.

The real adapter (python-telegram-bot polling over HTTP), the real core and SQLite
storage, against the Bot API emulator of ``tests/fake_telegram.py`` on loopback.
Members of every chat opt in first; then N group messages are queued at once and
the adapter takes them as fast as getUpdates hands them out (100 per call). The
clock runs from the first queued update to the last one handled, so it includes
HTTP, PTB's parsing, translation, the consent lookup and the window.

Memory is measured in a second run under tracemalloc: what is still allocated
by ``hushbrief/bot/window.py`` once everything is handled, against the UTF-8
bytes of the texts. The emulator runs in the same process (its own thread), so
it competes for the same interpreter: the rate is a lower bound.

Prints numbers; asserts nothing.

    python bench/bench_telegram.py [--messages N] [--chats C] [--members M]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: the repository root holds both hushbrief/ and tests/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_window import WORDS
from hushbrief.adapters.telegram import TelegramAdapter
from hushbrief.bot.app import open_bot
from hushbrief.bot.config import Config, TelegramConfig
from hushbrief.bot.events import ChatMessage, ChatRef, CommandReceived, Member
from hushbrief.bot.policy import Processing
from tests.fake_telegram import Chat, FakeTelegram, User


def texts(n: int, seed: int = 7) -> list[str]:
    """Chat-like texts, mean about 70 bytes (as in bench_window.py)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(1, int(rng.lognormvariate(2.2, 0.8)))))
            for _ in range(n)]


async def wait_handled(adapter: TelegramAdapter, target: int, timeout: float = 600) -> None:
    """Wait until the adapter has handled ``target`` updates since it started."""
    deadline = time.monotonic() + timeout
    while adapter.updates_handled < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {adapter.updates_handled} of {target} updates handled")
        await asyncio.sleep(0.002)


async def run(fake: FakeTelegram, n: int, chats: int, members: int, *,
              trace: bool) -> tuple[float, int, int, int]:
    """(seconds, window bytes or 0, raw text bytes, messages buffered)."""
    data = Path(tempfile.mkdtemp(prefix="hushbrief-bench-"))
    base = Config()
    config = replace(base, storage=replace(base.storage, data_dir=data),
                     processing=replace(base.processing, mode=Processing.LOCAL))
    bot = open_bot(config)
    adapter = TelegramAdapter(
        TelegramConfig(enabled=True, token=fake.token, api_base_url=fake.api_base_url),
        bot.core, poll_timeout=1)
    await adapter.start()
    # The emulator outlives this adapter: count from here.
    before, replies = fake.pushed, len(fake.sent)
    try:
        groups: list[tuple[Chat, list[User]]] = []
        for c in range(chats):
            group = fake.group(f"Busy {c}")
            people = [fake.user(f"Member {c}.{m}") for m in range(members)]
            groups.append((group, people))
            for person in people:
                fake.say(group, person, "/optin")
        await wait_handled(adapter, fake.pushed - before)
        await fake.wait_sent(replies + chats * members)

        rng = random.Random(11)
        bodies = texts(n)
        updates = []
        for text in bodies:
            group, people = rng.choice(groups)
            updates.append({"message": fake.message(group, rng.choice(people), text)})
        raw = sum(len(t.encode()) for t in bodies)
        target = fake.pushed - before + n
        if trace:
            gc.collect()
            tracemalloc.start()
        started = time.perf_counter()
        for update in updates:
            fake.push(update)
        await wait_handled(adapter, target)
        elapsed = time.perf_counter() - started
        held = 0
        if trace:
            gc.collect()
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, "*/hushbrief/bot/window.py")])
            held = sum(stat.size for stat in snapshot.statistics("filename"))
            tracemalloc.stop()
        buffered = len(bot.window)
    finally:
        await adapter.stop()
        await bot.aclose()
    return elapsed, held, raw, buffered


async def core_only(n: int, chats: int, members: int) -> float:
    """The same traffic handed straight to ``Hushbrief.handle``: the ceiling without Telegram."""
    data = Path(tempfile.mkdtemp(prefix="hushbrief-bench-"))
    base = Config()
    config = replace(base, storage=replace(base.storage, data_dir=data),
                     processing=replace(base.processing, mode=Processing.LOCAL))
    bot = open_bot(config)
    platform = TelegramAdapter(TelegramConfig(), bot.core)  # never started: answers isinstance
    groups = [ChatRef("telegram", f"-100{c}") for c in range(chats)]
    people = [Member(str(1000 + m), f"Member {m}") for m in range(members)]
    try:
        for group in groups:
            for person in people:
                await bot.core.handle(CommandReceived(group, "1", person, "optin", (),
                                                      time.time()), platform)
        rng = random.Random(11)
        events = [ChatMessage(rng.choice(groups), str(10 + i), rng.choice(people), text,
                              time.time()) for i, text in enumerate(texts(n))]
        lanes: dict[str, list[ChatMessage]] = {}
        for event in events:
            lanes.setdefault(event.chat.chat_id, []).append(event)

        async def lane(items: list[ChatMessage]) -> None:
            for item in items:
                await bot.core.handle(item, platform)

        started = time.perf_counter()
        await asyncio.gather(*(lane(items) for items in lanes.values()))
        return n / (time.perf_counter() - started)
    finally:
        await bot.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the adapter logs every reply at INFO; keep it quiet
    fake = FakeTelegram()
    with fake.running():
        elapsed, _, raw, buffered = await run(fake, args.messages, args.chats, args.members,
                                              trace=False)
        print(f"ingest: {args.messages} updates across {args.chats} chats in {elapsed:.2f} s "
              f"= {args.messages / elapsed:,.0f} updates/s ({buffered} buffered)")
        ceiling = await core_only(args.messages, args.chats, args.members)
        print(f"core alone (same events, no Telegram): {ceiling:,.0f} events/s")
        _, held, raw, buffered = await run(fake, args.messages, args.chats, args.members,
                                           trace=True)
        print(f"memory: window holds {held / buffered:,.0f} bytes per message "
              f"({held / 1e6:.2f} MB for {buffered} messages; raw text {raw / buffered:.0f} "
              f"bytes per message, ratio {held / raw:.2f})")


if __name__ == "__main__":
    asyncio.run(main())
