"""The private path end to end: bot → relay → backend, through real uvicorn servers on loopback.

Also DESIGN.md section 7, invariants 3 and 4:

3. The relay only ever handles ciphertext: everything it received and sent is
   captured, and no canary (message text, names, chat or user IDs) is in it.
4. The backend never sees chat IDs, user IDs or display names: every request it
   received is captured, decapsulated here with its own key, and searched.
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from hushbrief.adapters.console.chat import ConsoleChat, ConsolePlatform
from hushbrief.backend import BackendSettings
from hushbrief.backend import create_app as backend_app
from hushbrief.bot.app import Bot, open_bot
from hushbrief.bot.config import Config
from hushbrief.bot.events import Reply, ReplyKind
from hushbrief.bot.policy import Processing
from hushbrief.bot.private import build_private_processor, unattested
from hushbrief.engines.base import SummaryOptions, Turn
from hushbrief.ohttp.bhttp import decode_request
from hushbrief.relay import RelaySettings
from hushbrief.relay import create_app as relay_app
from tests.conftest import ChatDriver, Clock
from tests.servers import free_port, serve

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


@dataclass
class Capture:
    """An ASGI wrapper that records every byte a service received and sent."""

    app: Any
    received: list[bytes] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    posts: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        self.received.append(repr(scope.get("headers", [])).encode()
                             + scope.get("path", "").encode()
                             + scope.get("query_string", b""))

        async def recv() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    self.received.append(bytes(body))
                    if scope["method"] == "POST":
                        self.posts.append(bytes(body))
            return message

        async def snd(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.sent.append(repr(message.get("headers", [])).encode())
            elif message["type"] == "http.response.body":
                self.sent.append(message.get("body", b""))
            await send(message)

        await self.app(scope, recv, snd)

    def everything(self) -> bytes:
        return b"\n".join(self.received + self.sent)


@dataclass
class PrivatePath:
    relay_url: str
    backend_url: str
    relay: Capture
    backend: Capture
    backend_app: Starlette

    def plaintexts(self) -> list[bytes]:
        """What the backend decrypted: every captured request, opened with its own keys."""
        gateway = self.backend_app.state.backend.keyring.gateway()
        out = []
        for enc in self.backend.posts:
            inner, _ = gateway.decapsulate(enc)
            request = decode_request(inner)
            out.append(repr(request.fields).encode() + request.path + request.content)
        return out


@pytest.fixture
def private_path() -> Iterator[PrivatePath]:
    app = backend_app(BackendSettings(), platform="dev")
    backend = Capture(app)
    with serve(backend) as backend_url:
        relay = Capture(relay_app(RelaySettings(gateway_url=backend_url)))
        with serve(relay) as relay_url:
            yield PrivatePath(relay_url, backend_url, relay, backend, app)


@pytest.fixture
def private_config(config: Config, private_path: PrivatePath) -> Config:
    """Private processing through the loopback relay; the dev backend is allowed (these
    tests are about the OHTTP path; tests/test_attestation.py covers the checks)."""
    return replace(
        config,
        processing=replace(config.processing, mode=Processing.PRIVATE,
                           relay_url=private_path.relay_url),
        attestation=replace(config.attestation, allow_dev=True))


@pytest.fixture
async def private_bot(private_config: Config, clock: Clock) -> Any:
    # The backend stamps its evidence with the real time; the bot's clock must agree.
    clock.now = time.time()
    bot = open_bot(private_config, clock=clock)
    yield bot
    await bot.aclose()


@pytest.fixture
def pchat(private_bot: Bot, clock: Clock) -> ChatDriver:
    console = ConsoleChat(core=private_bot.core, out=io.StringIO(),
                          platform=ConsolePlatform(), clock=clock)
    return ChatDriver(console, clock)


def canary(tag: str) -> str:
    return f"canary{tag}{secrets.token_hex(6)}"


async def test_demo_scenario_through_relay_and_backend(
    pchat: ChatDriver, private_path: PrivatePath
) -> None:
    await pchat.say("alice", "/optin")
    await pchat.say("bob", "/optin")
    await pchat.say("alice", "Shall we move the release to Friday?")
    await pchat.say("bob", "Friday works for me, I will update the changelog tonight.")
    await pchat.say("carol", "my locker code is 4711")
    text = await pchat.summary("alice")
    assert "alice: Shall we move the release to Friday?" in text
    assert "bob: Friday works for me, I will update the changelog tonight." in text
    assert "1 message was left out" in text and "4711" not in text
    assert "through the relay" in text
    assert len(private_path.backend.posts) == 1 and len(private_path.relay.posts) == 1
    assert private_path.relay.posts == private_path.backend.posts  # forwarded unchanged
    captured = private_path.relay.everything()
    for canary_text in ("Shall we move", "changelog", "Friday", "locker", "4711", "alice",
                        "bob", "carol", "demo-group"):
        assert canary_text.encode() not in captured


async def test_invariants_3_and_4_relay_sees_ciphertext_backend_sees_no_identities(
    private_bot: Bot, clock: Clock, private_path: PrivatePath
) -> None:
    from hushbrief.bot.events import ChatMessage, ChatRef, CommandReceived, Member

    chat_id = canary("chat")
    chat = ChatRef("console", chat_id)
    people = [Member(canary("uid"), f"Zyx{secrets.token_hex(3)} Quorble", canary("handle"))
              for _ in range(3)]
    texts = [canary("text") for _ in range(6)]
    platform = ConsolePlatform()
    core = private_bot.core
    for i, person in enumerate(people):
        await core.handle(CommandReceived(chat, f"o{i}", person, "optin", (), clock()), platform)
    for i, text in enumerate(texts):
        speaker = people[i % 3]
        other = people[(i + 1) % 3]
        clock.advance(5)
        await core.handle(ChatMessage(chat, f"m{i}", speaker,
                                      f"{other.display_name}, {text} decided we will ship it",
                                      clock()), platform)
    out = await core.handle(CommandReceived(chat, "s", people[0], "summarize", (), clock()),
                            platform)
    assert out[0].kind is ReplyKind.SUMMARY, out[0].text
    assert any(t in out[0].text for t in texts)  # the summary really carries the content

    identities = [chat_id, *(p.user_id for p in people), *(p.handle or "" for p in people),
                  *(p.display_name for p in people), *(p.display_name.split()[0] for p in people)]
    relay_bytes = private_path.relay.everything()
    assert private_path.relay.posts, "nothing went through the relay"
    for needle in [*texts, *identities]:
        assert needle.encode() not in relay_bytes, "the relay handled plaintext"
    plaintexts = b"\n".join(private_path.plaintexts())
    assert all(t.encode() in plaintexts for t in texts)  # the capture really decrypts
    for needle in identities:
        assert needle.encode() not in plaintexts, "the backend received an identity"
    assert b"user-agent" not in plaintexts.lower()


async def test_inner_requests_are_padded_to_buckets(
    pchat: ChatDriver, private_path: PrivatePath
) -> None:
    await pchat.say("alice", "/optin")
    for i in range(3):
        await pchat.say("alice", f"Message {i} about the quarterly planning session {'x' * i}.")
        await pchat.say("alice", "/summarize")
    sizes = {len(p) for p in private_path.relay.posts}
    # Three different threads, one padded size: header + enc + 1 KiB bucket + tag.
    assert sizes == {7 + 32 + 1024 + 16}


async def test_unreachable_relay_is_one_sentence_and_the_bot_keeps_running(
    config: Config, clock: Clock
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    bot = open_bot(replace(config, processing=replace(
        config.processing, mode=Processing.PRIVATE, relay_url=dead),
        attestation=replace(config.attestation, allow_dev=True)), clock=clock)
    try:
        chat = ChatDriver(ConsoleChat(core=bot.core, out=io.StringIO(), clock=clock), clock)
        await chat.say("alice", "/optin")
        await chat.say("alice", "Something worth a summary about the budget.")
        text = await chat.refused("alice", "/summarize")
        assert text == "The relay cannot be reached right now, so nothing was sent."
        assert "You have opted in" in await chat.ask("alice", "/status")
        await chat.say("alice", "/policy processing local")
        assert "budget" in await chat.summary("alice")
    finally:
        await bot.aclose()


async def test_backend_down_behind_the_relay(config: Config, clock: Clock) -> None:
    relay = relay_app(RelaySettings(gateway_url=f"http://127.0.0.1:{free_port()}"))
    with serve(relay) as relay_url:
        bot = open_bot(replace(config, processing=replace(
            config.processing, mode=Processing.PRIVATE, relay_url=relay_url),
            attestation=replace(config.attestation, allow_dev=True)), clock=clock)
        try:
            chat = ChatDriver(ConsoleChat(core=bot.core, out=io.StringIO(), clock=clock), clock)
            await chat.say("alice", "/optin")
            await chat.say("alice", "Text about the venue.")
            text = await chat.refused("alice", "/summarize")
            assert "nothing was sent" in text and "\n" not in text
        finally:
            await bot.aclose()


class _Tamper(httpx.AsyncBaseTransport):
    """Between bot and relay: flips one bit of every encapsulated response."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        body = await resp.aread()
        if resp.headers.get("content-type") == "message/ohttp-res":
            body = body[:-1] + bytes([body[-1] ^ 1])
        return httpx.Response(resp.status_code, headers=resp.headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_tampered_response_is_discarded(private_path: PrivatePath) -> None:
    processor = build_private_processor(private_path.relay_url, outer_transport=_Tamper(),
                                        keys=unattested(private_path.relay_url))
    try:
        from hushbrief.bot.processing import ProcessingError

        with pytest.raises(ProcessingError, match="failed its integrity check"):
            await processor.summarize([Turn("P1", "hello there")], SummaryOptions())
    finally:
        await processor.aclose()


async def test_key_rotation_is_followed(private_path: PrivatePath) -> None:
    processor = build_private_processor(private_path.relay_url,
                                        keys=unattested(private_path.relay_url))
    keyring = private_path.backend_app.state.backend.keyring
    try:
        first = await processor.summarize([Turn("P1", "first thread text")], SummaryOptions())
        keyring.rotate()
        keyring.rotate()  # two rotations: the key the client cached is gone entirely
        second = await processor.summarize([Turn("P1", "second thread text")], SummaryOptions())
        assert "first" in first.text and "second" in second.text
    finally:
        await processor.aclose()


async def test_measurement_reaches_the_summary_and_status(
    pchat: ChatDriver, private_path: PrivatePath
) -> None:
    bundle = httpx.get(f"{private_path.relay_url}/attestation").json()
    await pchat.say("alice", "/optin")
    await pchat.say("alice", "A topic for the private path.")
    got = await pchat.say("alice", "/summarize")
    assert isinstance(got[0], Reply)
    status = await pchat.ask("alice", "/status")
    assert bundle["measurement"][:12] in status


async def test_client_clock_skew_is_corrected_once(private_path: PrivatePath) -> None:
    import time

    from hushbrief.bot.private import OHTTPTransport, PrivateProcessor, RelayKeySource

    outer = httpx.AsyncClient()
    transport = OHTTPTransport(relay_url=private_path.relay_url,
                               keys=RelayKeySource(outer, private_path.relay_url), outer=outer,
                               clock=lambda: time.time() - 3600)  # our clock is an hour late
    processor = PrivateProcessor(transport)
    try:
        got = await processor.summarize([Turn("P1", "text despite a wrong clock")],
                                        SummaryOptions())
        assert "wrong clock" in got.text
        assert len(private_path.backend.posts) == 2  # refused once for its Date, then accepted
    finally:
        await processor.aclose()
