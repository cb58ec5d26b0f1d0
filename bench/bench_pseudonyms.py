"""Pseudonymization time for large selections with many speakers.

Prints numbers; asserts nothing. Target on a 2-core machine: 10,000 messages with
2,000 distinct speakers under 0.2 s. Side by side, in the same run:

* ``split+join``: only splitting every text into words and joining it again,
  the floor any one-pass matcher pays;
* ``alternation``: one case-insensitive regex alternation of every alias per
  request, the approach the matcher replaced (run on a smaller selection, since
  it grows with messages times speakers).

    python bench/bench_pseudonyms.py [--messages N] [--speakers N]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time

from bench.bench_window import WORDS
from hushbrief.bot.pseudonyms import Person, Speaker, pseudonymize

FIRST = ("Anna Ben Carla Dmitri Elif Farid Grace Hiro Ines Jonas Kemal Lena Malik Nora Omar "
         "Priya Quinn Rosa Sven Tariq Uma Viktor Wanda Xia Yusuf Zofia").split()
LAST = ("Berg Costa Dubois Eriksen Fischer Garcia Horvat Ivanova Jensen Kowalski Larsen "
        "Moreau Novak Okafor Petrov Rossi Schmidt Tanaka Urban Vargas Weber Yilmaz").split()


def make_thread(messages: int, speakers: int, seed: int = 11) -> list[Speaker]:
    rng = random.Random(seed)
    people = [(f"u{i}", f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}", f"user{i}")
              for i in range(speakers)]
    out = []
    for i in range(messages):
        uid, name, handle = people[i % speakers] if i < speakers else rng.choice(people)
        words = [rng.choice(WORDS) for _ in range(max(1, int(rng.lognormvariate(2.2, 0.7))))]
        if rng.random() < 0.3:
            other = rng.choice(people)
            words.insert(rng.randrange(len(words) + 1),
                         rng.choice((other[1], "@" + other[2], other[1].split()[0])))
        out.append(Speaker(uid, name, handle, " ".join(words), 1_700_000_000.0 + i, str(i)))
    return out


def alternation(messages: list[Speaker]) -> list[str]:
    """The replaced approach: one alternation of every alias, longest first."""
    aliases: dict[str, str] = {}
    for m in messages:
        for alias in (m.display_name, m.handle or "", "@" + (m.handle or "")):
            if len(alias.lstrip("@")) >= 2:
                aliases.setdefault(alias.casefold(), m.user_id)
    pattern = re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True))
        + r")(?!\w)", re.IGNORECASE)
    return [pattern.sub(lambda mo: aliases.get(mo.group(0).casefold(), "P?"), m.text)
            for m in messages]


def split_join(messages: list[Speaker]) -> list[str]:
    split = re.compile(r"(\w+)").split
    return ["".join(split(m.text)) for m in messages]


def timed(fn: object, *args: object, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--speakers", type=int, default=2_000)
    args = parser.parse_args()

    thread = make_thread(args.messages, args.speakers)
    roster = [Person(f"x{i}", f"{FIRST[i % len(FIRST)]} Lurker {i}", f"lurker{i}")
              for i in range(args.speakers)]
    ours = timed(pseudonymize, thread, repeat=5)
    with_roster = timed(lambda: pseudonymize(thread, people=roster), repeat=5)
    floor = timed(split_join, thread, repeat=5)
    print(f"{args.messages} messages x {args.speakers} speakers")
    print(f"  pseudonymize           {ours * 1000:8.1f} ms   (target < 200 ms)")
    print(f"  + {args.speakers} more members {with_roster * 1000:8.1f} ms")
    print(f"  split+join floor       {floor * 1000:8.1f} ms   ratio {ours / floor:5.2f}x")

    small = make_thread(args.messages // 10, args.speakers // 10)
    new_small = timed(pseudonymize, small, repeat=5)
    old_small = timed(alternation, small, repeat=1)
    print(f"{len(small)} messages x {args.speakers // 10} speakers")
    print(f"  pseudonymize           {new_small * 1000:8.1f} ms")
    print(f"  alternation (replaced) {old_small * 1000:8.1f} ms   ratio "
          f"{old_small / new_small:5.1f}x slower")


if __name__ == "__main__":
    main()
