"""Speed and peak memory of the ``extractive`` engine on synthetic chat.

Usage::

    python bench/bench_engine.py [--runs 5] [--seed 7]

Prints, for 100, 1,000 and 10,000 messages, the median wall time of several
runs and the peak memory traced by ``tracemalloc`` during one run, plus the
ratio to the 1 s target for 10,000 messages. Nothing is asserted: timings
depend on the machine.

The chat is synthetic but shaped like a real group thread: a few very active
speakers and a long tail, acknowledgements and emoji between real messages,
questions with answers, commitments, replies to recent messages, and now and
then a long multi-sentence message. A fixed seed makes it reproducible.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hushbrief.engines.base import SummaryOptions, Turn
from hushbrief.engines.extractive import ExtractiveEngine

_TOPICS = """release changelog deploy database migration invoice budget venue tickets flight
hotel dinner birthday gift server backup login password design mockup client contract meeting
agenda report slides survey results bug crash patch tests weekend hike weather train schedule
holiday payment refund pricing roadmap""".split()
_FILLER = ["ok", "lol", "thanks!", "haha", "👍", "😂😂", "sure", "ok thanks", "+1", "nice"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "tomorrow", "tonight"]
_TEMPLATES = [
    "I think the {a} is fine but the {b} still needs work.",
    "Did anyone check the {a} after the {b} change?",
    "Can you send me the {a} before {d}?",
    "I will update the {a} and ping you about the {b}.",
    "Let's move the {a} to {d}, the {b} is not ready.",
    "We decided to drop the {a} for now.",
    "The {a} broke again, probably because of the {b}.",
    "No idea about the {a}, ask about the {b} maybe.",
    "Deadline for the {a} is {d}.",
    "Has the {a} been paid yet?",
    "Yes, the {a} went out yesterday together with the {b}.",
    "I saw the {a} this morning, looks good to me.",
]


def synthetic_chat(n: int, seed: int) -> list[Turn]:
    """``n`` deterministic, realistic-looking turns."""
    rng = random.Random(seed)
    speakers = [f"P{i}" for i in range(1, 13)]
    activity = [1.0 / (i + 1) for i in range(len(speakers))]  # Zipf-like
    turns: list[Turn] = []
    t = 0.0
    for i in range(n):
        t += rng.expovariate(1 / 40)
        speaker = rng.choices(speakers, activity)[0]
        roll = rng.random()
        if roll < 0.2:
            text = rng.choice(_FILLER)
        elif roll < 0.93:
            text = _sentence(rng)
        else:
            text = " ".join(_sentence(rng) for _ in range(rng.randint(3, 12)))
        reply_to = None
        if i > 0 and rng.random() < 0.25:
            reply_to = max(0, i - rng.randint(1, 8))
        turns.append(Turn(speaker=speaker, text=text, t=round(t, 1), reply_to=reply_to))
    return turns


def _sentence(rng: random.Random) -> str:
    a, b = rng.sample(_TOPICS, 2)
    return rng.choice(_TEMPLATES).format(a=a, b=b, d=rng.choice(_DAYS))


def _median_time(turns: Sequence[Turn], runs: int) -> float:
    engine = ExtractiveEngine()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.summarize(turns, SummaryOptions(max_words=120))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_memory(turns: Sequence[Turn]) -> int:
    engine = ExtractiveEngine()
    gc.collect()
    tracemalloc.start()
    try:
        engine.summarize(turns, SummaryOptions(max_words=120))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="extractive engine speed and memory")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per size (median)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    print(f"Python {sys.version.split()[0]}, median of {args.runs} runs, max_words=120")
    print(f"{'messages':>9} {'words':>8} {'median ms':>10} {'peak MiB':>9}")
    last = 0.0
    for n in (100, 1_000, 10_000):
        turns = synthetic_chat(n, args.seed)
        words = sum(len(t.text.split()) for t in turns)
        _median_time(turns, 1)  # warm-up: regex compilation, caches
        median = _median_time(turns, args.runs)
        peak = _peak_memory(turns)
        print(f"{n:>9,} {words:>8,} {median * 1000:>10.1f} {peak / 2**20:>9.2f}")
        last = median
    print(f"10,000 messages: {last:.3f} s = {last / 1.0:.2f} x the 1 s target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
