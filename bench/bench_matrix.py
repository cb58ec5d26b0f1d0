"""Matrix ``!summarize`` over N messages of encrypted history: where the time goes.

A real Synapse on loopback (``tests/synapse.py``), the real core on SQLite with local
processing, and the real ``MatrixAdapter``. Members join an encrypted room with the
bot, opt in, and send N messages *after* the bot joined (so every one is decryptable).
Then, for each run:

* ``handle``: the core's ``handle(CommandReceived("summarize", N))`` with the adapter
  as platform — everything from the command to the finished summary text. The
  adapter's ``on_history`` hook splits it into **fetch** (``/messages`` pagination:
  HTTP round trips and JSON), **decrypt** (Megolm decryption and nio's event parsing)
  and **summarize** (the rest: consent lookup, pseudonyms, the extractive engine);
* ``end to end``: a member sends ``!summarize N`` and waits for the encrypted answer
  (adds sync latency, encryption of the answer and its delivery).

Medians over the runs. Synapse runs in its own process on the same machine.
Prints numbers; asserts nothing.

    python bench/bench_matrix.py [--messages 500] [--runs 5] [--members 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: the repository root holds both hushbrief/ and tests/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nio

from bench.bench_window import WORDS
from hushbrief.adapters.matrix import FetchStats, MatrixAdapter
from hushbrief.bot.app import open_bot
from hushbrief.bot.config import Config, MatrixConfig, ProcessingConfig, StorageConfig
from hushbrief.bot.events import ChatRef, CommandReceived, Member
from hushbrief.bot.policy import Policy, Processing
from tests.synapse import SynapseServer, ensure_synapse, sync_once

MEGOLM = "m.megolm.v1.aes-sha2"
SYNC_FILTER = {"room": {"timeline": {"limit": 100}}}


def texts(n: int, seed: int = 7) -> list[str]:
    """Chat-like texts, mean about 70 bytes (as in bench_window.py)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(1, int(rng.lognormvariate(2.2, 0.8)))))
            for _ in range(n)]


async def send(client: Any, room_id: str, body: str) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                  ignore_unverified_devices=True)
    if not isinstance(resp, nio.RoomSendResponse):
        raise RuntimeError(f"send failed: {resp}")
    return str(resp.event_id)


async def wait_answer(client: Any, room_id: str, event_id: str, bot_id: str,
                      timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await sync_once(client, timeout_ms=200, sync_filter=SYNC_FILTER)
        room = resp.rooms.join.get(room_id)
        for event in room.timeline.events if room else []:
            rel = event.source.get("content", {}).get("m.relates_to", {})
            if event.sender == bot_id and rel.get("m.in_reply_to", {}).get("event_id") == event_id:
                return
    raise TimeoutError("no answer")


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms"


async def run(server: SynapseServer, work: Path, messages: int, runs: int, members: int) -> None:
    tag = secrets.token_hex(3)
    people = [await server.client(f"member{i}-{tag}") for i in range(members)]
    account = server.register_account(f"bot-{tag}")
    base = Config()
    config = replace(
        base, storage=StorageConfig(data_dir=work / "data"),
        processing=ProcessingConfig(mode=Processing.LOCAL),
        matrix=MatrixConfig(enabled=True, homeserver=server.base_url, user_id=account.user_id,
                            password=account.password,
                            allowed_inviters=(people[0].user_id,)),
        policy_defaults=replace(Policy(), chat_rate=10_000, member_rate=10_000,
                                max_messages=max(500, messages)))
    bot = open_bot(config)
    stats: list[FetchStats] = []
    adapter = MatrixAdapter(config.matrix, bot.core, data_dir=config.storage.data_dir,
                            poll_timeout=1.0, on_history=stats.append)
    await adapter.start()
    try:
        created = await people[0].room_create(
            invite=[account.user_id] + [p.user_id for p in people[1:]],
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": MEGOLM}}])
        room_id = created.room_id
        for person in people[1:]:
            await person.join(room_id)
        deadline = time.monotonic() + 30
        while account.user_id not in (people[0].rooms.get(room_id).users
                                      if room_id in people[0].rooms else {}):
            if time.monotonic() > deadline:
                raise RuntimeError("the bot did not join")
            await sync_once(people[0], timeout_ms=200, sync_filter=SYNC_FILTER)
        for person in people:
            await sync_once(person, sync_filter=SYNC_FILTER)
            await wait_answer(person, room_id, await send(person, room_id, "!optin"),
                              account.user_id)

        began = time.monotonic()
        for index, body in enumerate(texts(messages)):
            await send(people[index % members], room_id, body)
        print(f"sent {messages} encrypted messages from {members} members in "
              f"{time.monotonic() - began:.1f} s")

        chat = ChatRef("matrix", room_id)
        sender = Member(people[0].user_id, "member0", "member0")
        handle_s: list[float] = []
        for i in range(runs):
            command = CommandReceived(chat, f"$bench{i}", sender, "summarize", (str(messages),),
                                      time.time())
            started = time.perf_counter()
            outcomes = await bot.core.handle(command, adapter)
            handle_s.append(time.perf_counter() - started)
            if not outcomes or not outcomes[0].text.startswith("Summary"):
                raise RuntimeError("the core did not summarize")
        direct = stats[-runs:]
        e2e_s: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            event_id = await send(people[0], room_id, f"!summarize {messages}")
            await wait_answer(people[0], room_id, event_id, account.user_id)
            e2e_s.append(time.perf_counter() - started)

        fetch = [s.fetch_seconds for s in direct]
        decrypt = [s.decrypt_seconds for s in direct]
        summarize = [h - s.fetch_seconds - s.decrypt_seconds for h, s in zip(handle_s, direct,
                                                                              strict=True)]
        last = direct[-1]
        print(f"\n!summarize {messages} in an encrypted room, median of {runs} runs "
              f"({last.pages} pages, {last.events} events, {last.decrypted} decrypted, "
              f"{last.undecryptable} undecryptable):")
        print(f"  fetch (HTTP pagination)   {ms(fetch)}")
        print(f"  decrypt (Megolm + parse)  {ms(decrypt)}   "
              f"({statistics.median(decrypt) / max(1, last.decrypted) * 1e6:.0f} µs/event)")
        print(f"  summarize (core + engine) {ms(summarize)}")
        print(f"  handle, total             {ms(handle_s)}")
        print(f"  end to end via the room   {ms(e2e_s)}")
    finally:
        await adapter.stop()
        await bot.aclose()
        for person in people:
            await person.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--members", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("nio").setLevel(logging.ERROR)  # members' clients: missing-session noise
    python = ensure_synapse()
    with tempfile.TemporaryDirectory(prefix="hushbrief-bench-matrix-") as tmp:
        work = Path(tmp)
        server = SynapseServer.start(python, work / "synapse")
        try:
            asyncio.run(run(server, work, args.messages, args.runs, args.members))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
