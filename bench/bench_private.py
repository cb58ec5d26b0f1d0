"""The private path, measured side by side with what it replaces.

Prints ratios from one run; asserts nothing. Three measurements:

1. ``/summarize`` through relay and backend vs. the same engine in-process, for
   threads of 50, 500 and 5,000 messages (target: at most 1.15 at 500).
2. OHTTP per request: client encapsulation + gateway decapsulation + response
   sealing + client opening, for a typical 500-message request (target: < 1 ms).
3. Backend throughput under 50 concurrent clients, and the relay's throughput
   relative to the backend alone (target: at least 0.8).

The relay and the backend run as separate ``hushbrief`` processes on loopback,
as they would in a deployment, so the load generator does not share their
interpreter.

    python bench/bench_private.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx

from hushbrief.adapters.console.chat import ConsolePlatform
from hushbrief.bot.app import Bot, open_bot
from hushbrief.bot.config import Config
from hushbrief.bot.events import ChatMessage, ChatRef, CommandReceived, Member, ReplyKind
from hushbrief.bot.private import build_private_processor, unattested
from hushbrief.engines.base import SummaryOptions, Turn
from hushbrief.ohttp.bhttp import Request, Response, encode_request, encode_response
from hushbrief.ohttp.encapsulation import Gateway, encapsulate_request
from hushbrief.ohttp.keyconfig import choose_config, generate_server_key

WORDS = ("release friday changelog deploy review merge branch tests flaky runner budget venue "
         "lunch meeting tomorrow agenda notes bug fix ticket customer invoice design logo "
         "decided will can you should we migration schema database backup server").split()


def thread(n: int, seed: int = 3) -> list[Turn]:
    rng = random.Random(seed)
    turns = []
    for i in range(n):
        length = max(2, int(rng.lognormvariate(2.3, 0.6)))
        text = " ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + "."
        turns.append(Turn(f"P{rng.randrange(1, 9)}", text, float(i * 30),
                          i - 1 if i and rng.random() < 0.2 else None))
    return turns


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service(*args: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hushbrief.cli", *args, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{args[0]} did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def end_to_end(relay_url: str, rounds: int) -> None:
    """The whole ``/summarize`` command through the core, in two chats of one bot that
    differ only in their ``processing`` policy; runs alternate so drift hits both."""
    print("1. /summarize: private path (bot → relay → backend) vs. the same engine in-process")
    print(f"{'messages':>9} {'in-process ms':>14} {'private ms':>11} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Config()
        # The backend here is the dev platform; its evidence is verified like any other
        # (bench_attestation.py measures that), so the bot must allow dev attestation.
        config = replace(base, storage=replace(base.storage, data_dir=Path(tmp)),
                         processing=replace(base.processing, relay_url=relay_url),
                         attestation=replace(base.attestation, allow_dev=True))
        bot = open_bot(config)
        platform = ConsolePlatform()
        try:
            for n in (50, 500, 5000):
                chats = {mode: ChatRef("console", f"{mode}-{n}") for mode in ("local", "private")}
                for mode, chat in chats.items():
                    await _prepare(bot, platform, chat, mode, thread(n))
                times: dict[str, list[float]] = {"local": [], "private": []}
                for i in range(rounds + 1):
                    for mode, chat in chats.items():
                        t0 = time.perf_counter()
                        out = await bot.core.handle(CommandReceived(
                            chat, f"s{i}", ALICE, "summarize", (), time.time()), platform)
                        took = time.perf_counter() - t0
                        assert out[0].kind is ReplyKind.SUMMARY, out[0].text
                        if i:  # the first round warms connections and caches
                            times[mode].append(took)
                lt, pt = (statistics.median(times[m]) for m in ("local", "private"))
                print(f"{n:>9} {lt * 1000:>14.1f} {pt * 1000:>11.1f} {pt / lt:>6.2f}")
        finally:
            await bot.aclose()
    print("   target: ratio <= 1.15 at 500 messages")


ALICE = Member("alice", "alice")


async def _prepare(bot: Bot, platform: ConsolePlatform, chat: ChatRef, mode: str,
                   turns: list[Turn]) -> None:
    """Opt everyone in, lift the limits, fill the window with ``turns``."""
    core = bot.core
    speakers = {t.speaker for t in turns} | {"P0"}
    for i, speaker in enumerate(sorted(speakers)):
        member = ALICE if speaker == "P0" else Member(speaker, f"member {speaker}")
        await core.handle(CommandReceived(chat, f"o{i}", member, "optin", (), time.time()),
                          platform)
    for key, value in (("processing", mode), ("buffer_messages", "10000"),
                       ("max_messages", "10000"), ("chat_rate", "1000"),
                       ("member_rate", "1000")):
        await core.handle(CommandReceived(chat, "p", ALICE, "policy", (key, value),
                                          time.time()), platform)
    now = time.time() - len(turns)
    for i, t in enumerate(turns):
        await core.handle(ChatMessage(chat, f"m{i}", Member(t.speaker, f"member {t.speaker}"),
                                      t.text, now + i), platform)


def ohttp_cost(repeat: int = 2000) -> None:
    print("2. OHTTP per request (X25519, HKDF-SHA256, AES-128-GCM), 500-message request")
    import json

    body = json.dumps({"version": 1, "messages": [
        {"speaker": t.speaker, "text": t.text, "t": t.t, "reply_to": t.reply_to}
        for t in thread(500)]}).encode()
    request = encode_request(Request(b"POST", b"https", b"", b"/v1/summarize",
                                     ((b"content-type", b"application/json"),), body))
    response = encode_response(Response(200, ((b"content-type", b"application/json"),),
                                        b'{"summary": "' + b"x" * 800 + b'"}'))
    key = generate_server_key(1, ikm=os.urandom(32))
    gateway = Gateway([key])
    config, suite = choose_config(gateway.key_configs())
    client_t, server_t = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        enc, ctx = encapsulate_request(config, suite, request, ephemeral_ikm=os.urandom(32))
        t1 = time.perf_counter()
        _, sctx = gateway.decapsulate(enc)
        sealed = sctx.seal_response(response, nonce=os.urandom(sctx.nonce_length))
        t2 = time.perf_counter()
        ctx.open_response(sealed)
        t3 = time.perf_counter()
        client_t.append((t1 - t0) + (t3 - t2))
        server_t.append(t2 - t1)
    c, s = statistics.median(client_t) * 1e6, statistics.median(server_t) * 1e6
    print(f"   request {len(request):,} bytes: client {c:.0f} µs, gateway {s:.0f} µs, "
          f"total {c + s:.0f} µs per request (target < 1000 µs)")


async def throughput(url: str, seconds: float, clients: int = 50) -> float:
    """Summaries per second with ``clients`` concurrent OHTTP clients against ``url``."""
    # The bare OHTTP path: attestation is measured by bench_attestation.py.
    processors = [build_private_processor(url, keys=unattested(url)) for _ in range(clients)]
    turns, options = thread(50), SummaryOptions(max_words=60)
    done = 0
    stop = time.monotonic() + seconds

    async def worker(p) -> None:  # type: ignore[no-untyped-def]
        nonlocal done
        while time.monotonic() < stop:
            await p.summarize(turns, options)
            done += 1

    try:
        await asyncio.gather(*(p.summarize(turns, options) for p in processors))  # warm
        t0 = time.monotonic()
        await asyncio.gather(*(worker(p) for p in processors))
        return done / (time.monotonic() - t0)
    finally:
        await asyncio.gather(*(p.aclose() for p in processors))


async def load(backend_url: str, relay_url: str, seconds: float) -> None:
    print("3. Throughput with 50 concurrent clients, 50-message summaries")
    direct = await throughput(backend_url, seconds)
    relayed = await throughput(relay_url, seconds)
    print(f"   backend alone: {direct:.1f}/s; through the relay: {relayed:.1f}/s; "
          f"ratio {relayed / direct:.2f} (target >= 0.8)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    ohttp_cost()
    with service("backend", "--platform", "dev") as backend_url, \
            service("relay", "--gateway", backend_url) as relay_url:
        asyncio.run(end_to_end(relay_url, args.rounds))
        asyncio.run(load(backend_url, relay_url, args.seconds))


if __name__ == "__main__":
    main()
