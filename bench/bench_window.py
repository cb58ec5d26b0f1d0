"""Message-window ingest throughput and memory per buffered message.

Prints numbers; asserts nothing. Target on a 2-core machine: window memory under
twice the raw text size (the UTF-8 bytes of the buffered texts).

    python bench/bench_window.py [--messages N]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc

from hushbrief.bot.events import ChatMessage, ChatRef, Member
from hushbrief.bot.window import MessageWindow, Selection

WORDS = (
    "release friday changelog deploy review merge branch tests flaky runner budget venue "
    "lunch meeting tomorrow agenda notes bug fix ticket customer invoice design logo colour "
    "ok thanks sure great maybe later tonight morning weekend office printer coffee migration "
    "schema database backup server certificate expired renew password rotate key token"
).split()


def make_messages(n: int, chats: int, seed: int = 7) -> list[ChatMessage]:
    """Chat-like traffic: short and long messages (mean about 70 bytes), some threads."""
    rng = random.Random(seed)
    members = [Member(f"{100000 + i}", f"member {i}", f"user{i}") for i in range(40)]
    out = []
    for i in range(n):
        length = max(1, int(rng.lognormvariate(2.2, 0.8)))
        text = " ".join(rng.choice(WORDS) for _ in range(length))
        chat = ChatRef("telegram", f"-100{rng.randrange(chats)}")
        thread = None if rng.random() < 0.8 else str(rng.randrange(5))
        reply = str(i - rng.randrange(1, 20)) if rng.random() < 0.2 and i > 20 else None
        out.append(ChatMessage(chat, str(1_000_000 + i), rng.choice(members), text,
                               1_700_000_000.0 + i, thread_id=thread, reply_to=reply))
    return out


def measure(messages: list[ChatMessage]) -> tuple[float, int, int]:
    """(seconds to ingest, bytes the window holds per tracemalloc, raw UTF-8 text bytes)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    window = MessageWindow(max_bytes_per_chat=10**9, max_chats=10**6)
    t0 = time.perf_counter()
    for m in messages:
        window.add(m, opted_in=True, max_messages=10**6, ttl=10**9)
    elapsed = time.perf_counter() - t0
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    raw = sum(len(m.text.encode()) for m in messages)
    assert len(window) == len(messages)
    return elapsed, held, raw


def throughput(messages: list[ChatMessage], repeat: int = 5) -> float:
    """Messages per second without tracemalloc's overhead (median of runs)."""
    rates = []
    for _ in range(repeat):
        window = MessageWindow(max_bytes_per_chat=10**9, max_chats=10**6)
        t0 = time.perf_counter()
        for m in messages:
            window.add(m, opted_in=True, max_messages=10**6, ttl=10**9)
        rates.append(len(messages) / (time.perf_counter() - t0))
    return statistics.median(rates)


def select_time(messages: list[ChatMessage]) -> float:
    window = MessageWindow(max_bytes_per_chat=10**9, max_chats=10**6)
    for m in messages:
        window.add(m, opted_in=True, max_messages=10**6, ttl=10**9)
    chat = (messages[0].chat.platform, messages[0].chat.chat_id)
    t0 = time.perf_counter()
    got = window.select(chat, None, Selection(limit=1000), now=2e9)
    assert got.messages
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    print(f"{'messages':>9} {'chats':>6} {'ingest msg/s':>13} {'raw text':>10} "
          f"{'window':>10} {'per msg':>8} {'window/raw':>10}")
    for n, chats in ((1_000, 1), (args.messages, 50)):
        msgs = make_messages(n, chats)
        _, held, raw = measure(msgs)
        rate = throughput(msgs)
        print(f"{n:>9} {chats:>6} {rate:>13,.0f} {raw:>10,} {held:>10,} "
              f"{held / n:>8.1f} {held / raw:>10.2f}")
    took = select_time(make_messages(20_000, 1))
    print(f"select of the newest 1,000 messages: {took * 1000:.2f} ms")
    print("target: window/raw < 2.0")


if __name__ == "__main__":
    main()
