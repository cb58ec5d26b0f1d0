"""The backend through a real uvicorn server on loopback, spoken to as an OHTTP client would.

The client side is made from :mod:`hushbrief.ohttp` right here (the bot's own
httpx transport is tested elsewhere): fetch the key configuration, encode a
binary HTTP request, encapsulate it, POST it, open the answer. Every test reads
as a clause of RFC 9458 / RFC 9540 or of DESIGN.md and names it.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import logging
import os
import pickle
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hushbrief.backend import create_app
from hushbrief.backend.evidence import dev_measurement
from hushbrief.backend.gateway import DATE_PROBLEM, OHTTP_KEY_PROBLEM, PAD_BUCKETS
from hushbrief.backend.keys import KeyRing
from hushbrief.backend.replay import DateCheck, ReplayRegister, http_date, parse_http_date
from hushbrief.backend.schema import MAX_TEXT_CHARS
from hushbrief.backend.server import build_server, parse_listen
from hushbrief.backend.settings import (
    BackendSettings,
    load_backend_settings,
    parse_rotate_every,
)
from hushbrief.engines.base import Summary, SummaryOptions, Turn
from hushbrief.evidence.bundle import EvidenceBundle
from hushbrief.evidence.dev import parse_dev_statement
from hushbrief.ohttp import bhttp
from hushbrief.ohttp.encapsulation import (
    KEYS_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    ClientResponseContext,
    encapsulate_request,
)
from hushbrief.ohttp.keyconfig import KeyConfig, choose_config, decode_key_configs
from hushbrief.tomlconfig import ConfigError
from tests.conftest import Clock
from tests.servers import serve, serve_server

GATEWAY = "/.well-known/ohttp-gateway"
SETTINGS = BackendSettings(replay_window=60, key_grace=300, bundle_ttl=3600,
                           max_messages=50, concurrency=2, queue_limit=4)

THREAD = [
    ("P1", "Shall we move the release to Friday? The migration is not done."),
    ("P2", "Friday works for me. I will finish the migration by Thursday noon."),
    ("P3", "Agreed. Let's also freeze the API on Wednesday."),
    ("P1", "Decision: release Friday, API freeze Wednesday. P2 owns the migration."),
]


def summarize_doc(thread: Sequence[tuple[str, str]] = THREAD, **options: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "messages": [{"speaker": s, "text": t, "t": 60 * i, "reply_to": (i - 1) if i else None}
                     for i, (s, t) in enumerate(thread)],
        "options": {"engine": "extractive", "max_words": 60, "language": "auto",
                    "style": "bullets", **options},
    }


# --- an OHTTP client made of hushbrief.ohttp ---------------------------------------------


class _Default:
    pass


NOW = _Default()


@dataclass
class Answer:
    outer: httpx.Response
    inner: bhttp.Response | None
    padded_length: int = 0

    def json(self) -> Any:
        assert self.inner is not None
        return json.loads(self.inner.content)

    def header(self, name: bytes) -> bytes | None:
        assert self.inner is not None
        return next((v for k, v in self.inner.fields if k == name), None)


class OhttpClient:
    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self.http = http
        self.clock = clock
        self.config: KeyConfig | None = None

    async def fetch_config(self) -> KeyConfig:
        r = await self.http.get(GATEWAY)
        assert r.status_code == 200
        self.config, _ = choose_config(decode_key_configs(r.content))
        return self.config

    async def seal(self, method: bytes, path: bytes, body: bytes = b"", *,
                   date: str | _Default | None = NOW,
                   content_type: bytes | None = b"application/json",
                   config: KeyConfig | None = None) -> tuple[bytes, ClientResponseContext]:
        config = config or self.config or await self.fetch_config()
        fields: list[tuple[bytes, bytes]] = []
        if content_type is not None:
            fields.append((b"content-type", content_type))
        if isinstance(date, _Default):
            date = http_date(self.clock.now)
        if date is not None:
            fields.append((b"date", date.encode()))
        request = bhttp.Request(method=method, scheme=b"https", authority=b"backend",
                                path=path, fields=tuple(fields), content=body)
        raw = bhttp.encode_request(request)
        pad = bhttp.padded_length(len(raw), [1024]) - len(raw)
        raw = bhttp.encode_request(request, padding=pad)
        return encapsulate_request(config, config.suites[0], raw,
                                   ephemeral_ikm=_random(32))

    async def post(self, data: bytes, content_type: str = REQUEST_MEDIA_TYPE) -> httpx.Response:
        return await self.http.post(GATEWAY, content=data, headers={"content-type": content_type})

    def open(self, ctx: ClientResponseContext, outer: httpx.Response) -> Answer:
        assert outer.status_code == 200, outer.status_code
        assert outer.headers["content-type"] == RESPONSE_MEDIA_TYPE
        assert outer.headers["cache-control"] == "private, no-store"
        plain = ctx.open_response(outer.content)
        return Answer(outer, bhttp.decode_response(plain), len(plain))

    async def call(self, method: bytes, path: bytes, body: bytes = b"", **kw: Any) -> Answer:
        data, ctx = await self.seal(method, path, body, **kw)
        return self.open(ctx, await self.post(data))

    async def summarize(self, doc: Any, **kw: Any) -> Answer:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return await self.call(b"POST", b"/v1/summarize", body, **kw)


def _random(n: int) -> bytes:
    return os.urandom(n)


@pytest.fixture
def settings() -> BackendSettings:
    return SETTINGS


@pytest.fixture
def keyring(settings: BackendSettings, clock: Clock) -> KeyRing:
    return KeyRing(key_grace=settings.key_grace, rotate_every=settings.rotate_every,
                   clock=clock)


@pytest.fixture
def app(settings: BackendSettings, clock: Clock, keyring: KeyRing) -> Any:
    return create_app(settings, clock=clock, keyring=keyring)


@pytest.fixture
def base_url(app: Any) -> Iterator[str]:
    with serve(app, server_header=False) as url:
        yield url


@pytest.fixture
async def client(base_url: str, clock: Clock) -> AsyncIterator[OhttpClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        yield OhttpClient(http, clock)


# --- RFC 9540 §3: key configurations ----------------------------------------------------


async def test_key_configs_are_served_as_application_ohttp_keys(
        client: OhttpClient, keyring: KeyRing) -> None:
    r = await client.http.get(GATEWAY)
    assert r.status_code == 200
    assert r.headers["content-type"] == KEYS_MEDIA_TYPE
    assert r.headers["cache-control"] == "public, max-age=60"
    assert "server" not in r.headers
    configs = decode_key_configs(r.content)
    assert [c.key_id for c in configs] == [keyring.current.key_id]
    assert configs[0].kem.name == "X25519_SHA256"
    assert r.content == keyring.key_configs()


async def test_healthz(client: OhttpClient) -> None:
    r = await client.http.get("/healthz")
    assert r.status_code == 200


# --- a whole summary ----------------------------------------------------------------------


async def test_summarize_round_trip(client: OhttpClient) -> None:
    answer = await client.summarize(summarize_doc())
    assert answer.inner is not None and answer.inner.status == 200
    assert answer.header(b"content-type") == b"application/json"
    doc = answer.json()
    assert set(doc) == {"version", "summary", "engine", "measurement"}
    assert doc["version"] == 1 and doc["engine"] == "extractive"
    assert "P2" in doc["summary"] and len(doc["summary"].split()) <= 60
    bundle = (await client.http.get("/attestation")).json()
    assert doc["measurement"] == bundle["measurement"]


async def test_options_may_be_left_out(client: OhttpClient) -> None:
    doc = summarize_doc()
    del doc["options"]
    answer = await client.summarize(doc)
    assert answer.inner is not None and answer.inner.status == 200
    assert answer.json()["engine"] == "extractive"


# --- inner errors travel encapsulated (RFC 9458 §5.2) -------------------------------------


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    target: Any = doc
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return doc


_DELETE = object()
CANARY_NAME = "Zebulon Quaxworth"


@pytest.mark.parametrize(("path", "value"), [
    ("messages.0.speaker", CANARY_NAME),                       # a real name
    ("messages.0.speaker", "@zebulon:matrix.org"),             # a user ID
    ("messages.0.speaker", "P123456"),                         # too many digits
    ("messages.0.speaker", "p1"),
    ("messages.0.speaker", 1),
    ("messages.0.display_name", CANARY_NAME),                  # unknown key
    ("messages.0.text", None),
    ("messages.0.text", "x" * (MAX_TEXT_CHARS + 1)),
    ("messages.0.t", -1),
    ("messages.0.t", True),
    ("messages.1.reply_to", 1),                                 # itself
    ("messages.1.reply_to", 3),                                 # a later message
    ("messages.1.reply_to", -1),
    ("messages", []),
    ("messages", [{"speaker": "P1", "text": "hi"}] * 51),       # max_messages = 50
    ("version", 2),
    ("version", True),
    ("chat_id", -100123456),                                    # unknown top-level key
    ("options.engine", "openai"),                               # not configured
    ("options.max_words", 0),
    ("options.max_words", 12.5),
    ("options.style", "haiku"),
    ("options.language", "english please"),
    ("options.user", CANARY_NAME),
    ("options", []),
])
async def test_schema_violations_are_inner_422(client: OhttpClient, path: str,
                                               value: Any) -> None:
    answer = await client.summarize(_with(summarize_doc(), path, value))
    assert answer.inner is not None and answer.inner.status == 422
    error = answer.json()
    assert set(error) == {"error"} and error["error"].endswith(".")
    assert CANARY_NAME not in error["error"] and "zebulon" not in error["error"]


async def test_a_missing_required_key_is_422(client: OhttpClient) -> None:
    answer = await client.summarize(_with(summarize_doc(), "messages.0.text", _DELETE))
    assert answer.inner is not None and answer.inner.status == 422


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status"), [
    (b"POST", b"/v1/summarize", b"{not json", b"application/json", 400),
    (b"POST", b"/v1/summarize", b"\xff\xfe", b"application/json", 400),
    (b"POST", b"/v1/summarize", b'{"version": NaN}', b"application/json", 400),
    (b"POST", b"/v1/summarize", b"{}", b"text/plain", 415),
    (b"POST", b"/v1/nothing", b"{}", b"application/json", 404),
    (b"GET", b"/v1/summarize", b"", None, 405),
])
async def test_inner_http_errors_are_encapsulated(
        client: OhttpClient, method: bytes, path: bytes, body: bytes,
        content_type: bytes | None, status: int) -> None:
    answer = await client.call(method, path, body, content_type=content_type)
    assert answer.inner is not None and answer.inner.status == status
    assert set(answer.json()) == {"error"}
    if status == 405:
        assert answer.header(b"allow") == b"POST"


async def test_inner_request_that_is_not_binary_http_is_inner_400(client: OhttpClient) -> None:
    config = await client.fetch_config()
    data, ctx = encapsulate_request(config, config.suites[0], b"\x07garbage",
                                    ephemeral_ikm=_random(32))
    answer = client.open(ctx, await client.post(data))
    assert answer.inner is not None and answer.inner.status == 400


async def test_engine_with_nothing_to_summarize_is_422(client: OhttpClient) -> None:
    answer = await client.summarize(summarize_doc([("P1", "   "), ("P2", "")]))
    assert answer.inner is not None and answer.inner.status == 422


# --- errors before decryption answer in clear (RFC 9458 §5.3, §8; DESIGN.md §4) --------


async def test_unknown_key_id_is_the_ohttp_key_problem(client: OhttpClient) -> None:
    data, _ = await client.seal(b"POST", b"/v1/summarize", json.dumps(summarize_doc()).encode())
    wrong = bytes([(data[0] + 1) % 256]) + data[1:]
    r = await client.post(wrong)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == OHTTP_KEY_PROBLEM == {
        "type": "https://iana.org/assignments/http-problem-types#ohttp-key",
        "title": "key identifier unknown",
    }


async def test_unsupported_suite_for_a_known_key_is_the_ohttp_key_problem(
        client: OhttpClient) -> None:
    data, _ = await client.seal(b"POST", b"/v1/summarize", b"{}")
    wrong = data[:5] + (0x0099).to_bytes(2, "big") + data[7:]   # an unknown AEAD
    r = await client.post(wrong)
    assert r.status_code == 400 and r.json() == OHTTP_KEY_PROBLEM


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("damage", [
    pytest.param(lambda d: b"", id="empty"),
    pytest.param(lambda d: d[:5], id="truncated-header"),
    pytest.param(lambda d: d[:20], id="truncated-enc"),
    pytest.param(lambda d: d[:-1], id="truncated-tag"),
    pytest.param(lambda d: d[:7 + 32 + 10], id="truncated-ciphertext"),
    pytest.param(lambda d: _flip(d, 10), id="bit-flip-enc"),
    pytest.param(lambda d: _flip(d, 60), id="bit-flip-ciphertext"),
    pytest.param(lambda d: _flip(d, len(d) - 1), id="bit-flip-tag"),
    pytest.param(lambda d: d + b"\x00", id="trailing-byte"),
])
async def test_damaged_requests_get_a_generic_400(client: OhttpClient, damage: Any) -> None:
    data, _ = await client.seal(b"POST", b"/v1/summarize", json.dumps(summarize_doc()).encode())
    r = await client.post(damage(data))
    assert r.status_code == 400
    assert r.content == b""
    assert "content-type" not in r.headers or "problem" not in r.headers["content-type"]


@pytest.mark.parametrize("content_type", [
    "application/octet-stream", "message/ohttp-res", "message/ohttp-req; charset=utf-8",
    "message/bhttp", "",
])
async def test_wrong_media_type_is_415(client: OhttpClient, content_type: str) -> None:
    data, _ = await client.seal(b"POST", b"/v1/summarize", b"{}")
    r = await client.post(data, content_type=content_type)
    assert r.status_code == 415


async def test_media_type_is_case_insensitive(client: OhttpClient) -> None:
    data, ctx = await client.seal(b"POST", b"/v1/summarize", json.dumps(summarize_doc()).encode())
    answer = client.open(ctx, await client.post(data, content_type="Message/OHTTP-Req"))
    assert answer.inner is not None and answer.inner.status == 200


async def test_other_methods_on_the_gateway_are_405(client: OhttpClient) -> None:
    r = await client.http.put(GATEWAY, content=b"x")
    assert r.status_code == 405


@pytest.mark.parametrize("settings", [replace(SETTINGS, max_request_bytes=4096)])
async def test_oversized_requests_are_413(client: OhttpClient) -> None:
    big = summarize_doc([("P1", "word " * 1000)])
    data, _ = await client.seal(b"POST", b"/v1/summarize", json.dumps(big).encode())
    assert len(data) > 4096
    r = await client.post(data)
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:   # no Content-Length: streamed, counted
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    r = await client.http.post(GATEWAY, content=chunks(),
                               headers={"content-type": REQUEST_MEDIA_TYPE})
    assert r.status_code == 413


# --- replay protection (RFC 9458 §6.5) ------------------------------------------------------


async def test_a_replayed_request_is_refused(client: OhttpClient) -> None:
    data, ctx = await client.seal(b"POST", b"/v1/summarize", json.dumps(summarize_doc()).encode())
    first = client.open(ctx, await client.post(data))
    assert first.inner is not None and first.inner.status == 200
    again = await client.post(data)
    assert again.status_code == 400 and again.content == b""


async def test_concurrent_copies_are_processed_once(client: OhttpClient) -> None:
    data, _ = await client.seal(b"POST", b"/v1/summarize", json.dumps(summarize_doc()).encode())
    answers = await asyncio.gather(*(client.post(data) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 7


async def test_a_request_refused_for_its_date_is_not_remembered(
        client: OhttpClient, clock: Clock) -> None:
    """Refused means never processed: the same bytes, once current, are a first processing."""
    future = http_date(clock.now + 120)
    data, ctx = await client.seal(b"POST", b"/v1/summarize", json.dumps(summarize_doc()).encode(),
                                  date=future)
    assert client.open(ctx, await client.post(data)).inner.status == 400  # type: ignore[union-attr]
    clock.advance(120)
    assert client.open(ctx, await client.post(data)).inner.status == 200  # type: ignore[union-attr]
    assert (await client.post(data)).status_code == 400


@pytest.mark.parametrize(("date", "why"), [
    (None, "missing"),
    ("yesterday at noon", "unparseable"),
    ("Tue, 14 Nov 2023 22:11:20", "no zone"),
    (-61, "too old"),
    (+61, "in the future"),
])
async def test_date_outside_the_window_gets_the_date_problem_and_our_date(
        client: OhttpClient, clock: Clock, date: Any, why: str) -> None:
    if isinstance(date, int):
        date = http_date(clock.now + date)
    answer = await client.summarize(summarize_doc(), date=date)
    assert answer.inner is not None and answer.inner.status == 400, why
    assert answer.header(b"content-type") == b"application/problem+json"
    assert answer.json() == DATE_PROBLEM
    assert answer.header(b"date") == http_date(clock.now).encode()
    # The client corrects its clock from that Date and succeeds.
    retry = await client.summarize(summarize_doc(), date=answer.header(b"date").decode())  # type: ignore[union-attr]
    assert retry.inner is not None and retry.inner.status == 200


@pytest.mark.parametrize("skew", [-60, -59, 0, 59, 60])
async def test_dates_inside_the_window_are_accepted(
        client: OhttpClient, clock: Clock, skew: int) -> None:
    answer = await client.summarize(summarize_doc(), date=http_date(clock.now + skew))
    assert answer.inner is not None and answer.inner.status == 200


def test_replay_register_is_bounded_and_raises_its_floor_when_evicting() -> None:
    register = ReplayRegister(window=60, capacity=3)
    now = 1000.0
    for i in range(3):
        assert register.add(bytes([i]) * 32, date=now + i, now=now)
    assert not register.add(bytes([0]) * 32, date=now, now=now)
    assert register.floor == float("-inf")
    assert register.add(b"\x09" * 32, date=now + 3, now=now)   # evicts enc 0, date 1000
    assert len(register) == 3 and register.floor == now
    check = DateCheck(60)
    # A copy of the evicted request is refused by the floor, not by the register.
    assert not register.seen(bytes([0]) * 32, now)
    assert not check.fresh(now, now, register.floor)
    assert check.fresh(now + 0.5, now, register.floor)
    # Expired entries go by themselves.
    register.expire(now + 200)
    assert len(register) == 0


def test_http_dates() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date(b"Sun Nov  6 08:49:37 1994") is None     # asctime: no zone
    assert parse_http_date(b"\xff") is None and parse_http_date(b"") is None


# --- keys: in memory only, rotation with grace --------------------------------------------


def test_keyring_never_leaves_memory(keyring: KeyRing) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(keyring)
    import copy
    with pytest.raises(TypeError):
        copy.deepcopy(keyring)
    text = repr(keyring)
    gateway_key = keyring.gateway()
    assert "private" not in text.lower() and str(keyring.current.key_id) in text
    assert "private" not in repr(gateway_key).lower()


def test_key_ids_skip_those_still_in_use(clock: Clock) -> None:
    ring = KeyRing(key_grace=1000, clock=clock, entropy=lambda n: b"\xfe" * n)
    assert ring.current.key_id == 254
    ids = [ring.rotate().key_id for _ in range(3)]
    assert ids == [255, 0, 1]
    assert ring.accepted_ids() == (1, 0, 255, 254)
    clock.advance(1001)
    assert ring.accepted_ids() == (1,)


def test_keyring_refuses_more_than_256_keys_by_dropping_the_oldest(clock: Clock) -> None:
    ring = KeyRing(key_grace=10**6, clock=clock)
    for _ in range(300):
        ring.rotate()
    ids = ring.accepted_ids()
    assert len(ids) == len(set(ids)) == 256


def test_retired_keys_are_dropped_from_memory(clock: Clock) -> None:
    ring = KeyRing(key_grace=10, clock=clock)
    ring.gateway()
    old_private = ring._current.private_key
    old_id = ring.current.key_id
    ring.rotate()
    ring.gateway()
    assert old_private in _reachable_bytes(ring)        # accepted during grace
    clock.advance(11)
    ring.gateway()
    assert ring.accepted_ids() == ((old_id + 1) % 256,)
    assert old_private not in _reachable_bytes(ring)    # dropped, with its Gateway


def _reachable_bytes(root: object) -> list[bytes]:
    gc.collect()
    skip = _module_dicts()
    seen: set[int] = set()
    stack, out = [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes):
            out.append(obj)
        elif not isinstance(obj, str | type | types.ModuleType | types.CodeType) and (
                id(obj) not in skip):
            stack.extend(gc.get_referents(obj))
    return out


def test_maintain_reports_when_the_next_key_event_is_due(clock: Clock) -> None:
    ring = KeyRing(key_grace=30, rotate_every=3600, clock=clock)
    first = ring.current.key_id
    assert ring.maintain() == 3600
    clock.advance(3600)
    assert ring.maintain() == 30                 # the retired key's grace ends first
    assert ring.current.key_id != first and len(ring.accepted_ids()) == 2
    clock.advance(30)
    assert ring.maintain() == 3600 - 30 and len(ring.accepted_ids()) == 1
    assert KeyRing(key_grace=30, clock=clock).maintain() is None


async def test_the_rotation_task_lives_with_the_server(clock: Clock) -> None:
    app = create_app(replace(SETTINGS, rotate_every=3600), clock=clock)
    state = app.state.backend
    with serve(app):
        assert [t.get_name() for t in state.tasks] == ["hushbrief-key-rotation"]
        task = state.tasks[0]
        assert not task.done()
    assert state.tasks == [] and task.cancelled()


async def test_rotation_advertises_the_new_key_and_accepts_the_old_during_grace(
        client: OhttpClient, keyring: KeyRing, clock: Clock) -> None:
    old = await client.fetch_config()
    new = keyring.rotate()
    assert new.key_id == (old.key_id + 1) % 256 and new.public_key != old.public_key
    advertised = decode_key_configs((await client.http.get(GATEWAY)).content)
    assert [c.key_id for c in advertised] == [new.key_id]     # the current key only

    body = json.dumps(summarize_doc()).encode()
    for config in (old, new):
        answer = await client.summarize(summarize_doc(), config=config)
        assert answer.inner is not None and answer.inner.status == 200

    clock.advance(SETTINGS.key_grace + 1)
    data, _ = await client.seal(b"POST", b"/v1/summarize", body, config=old)
    r = await client.post(data)
    assert r.status_code == 400 and r.json() == OHTTP_KEY_PROBLEM
    answer = await client.summarize(summarize_doc(), config=new)
    assert answer.inner is not None and answer.inner.status == 200


@pytest.mark.parametrize("settings", [replace(SETTINGS, rotate_every=3600, key_grace=120,
                                               bundle_ttl=86400)])
async def test_rotation_follows_the_clock(client: OhttpClient, keyring: KeyRing,
                                          clock: Clock) -> None:
    first = await client.fetch_config()
    r = await client.http.get(GATEWAY)
    assert r.headers["cache-control"] == "public, max-age=60"
    bundle = (await client.http.get("/attestation")).json()
    assert bundle["expires_at"] == int(clock.now + 3600 + 120)   # rotation + grace
    clock.advance(3600)
    second = await client.fetch_config()
    assert second.key_id != first.key_id
    answer = await client.summarize(summarize_doc(), config=first)
    assert answer.inner is not None and answer.inner.status == 200
    clock.advance(121)
    data, _ = await client.seal(b"POST", b"/v1/summarize", b"{}", config=first)
    assert (await client.post(data)).status_code == 400


# --- the evidence bundle (DESIGN.md §5) ---------------------------------------------------


async def test_attestation_bundle_binds_the_advertised_key_configs(
        client: OhttpClient, keyring: KeyRing, clock: Clock) -> None:
    r = await client.http.get("/attestation")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    bundle = r.json()
    assert set(bundle) == {"version", "platform", "key_configs", "measurement", "issued_at",
                           "expires_at", "binding", "evidence", "endorsements", "transparency"}
    parsed = EvidenceBundle.from_json(bundle)
    statement = parse_dev_statement(parsed.evidence)
    assert statement.report_data == hashlib.sha512(parsed.key_configs).digest()
    assert statement.measurement == bundle["measurement"]
    Ed25519PublicKey.from_public_bytes(statement.public_key).verify(
        base64.b64decode(bundle["endorsements"]["signature"]), parsed.evidence)
    assert bundle["version"] == 1 and bundle["platform"] == "dev"
    key_configs = base64.b64decode(bundle["key_configs"])
    assert key_configs == (await client.http.get(GATEWAY)).content
    assert bundle["binding"] == hashlib.sha512(key_configs).hexdigest()
    assert bundle["issued_at"] == int(clock.now)
    assert bundle["expires_at"] == int(clock.now) + SETTINGS.bundle_ttl
    assert len(bundle["measurement"]) == 64 and int(bundle["measurement"], 16) >= 0

    keyring.rotate()
    rotated = (await client.http.get("/attestation")).json()
    assert rotated["key_configs"] != bundle["key_configs"]
    assert rotated["binding"] == hashlib.sha512(
        base64.b64decode(rotated["key_configs"])).hexdigest() != bundle["binding"]
    assert rotated["measurement"] == bundle["measurement"]


def test_dev_measurement_covers_code_and_engine_settings(tmp_path: Path) -> None:
    (tmp_path / "backend").mkdir()
    a = tmp_path / "backend" / "a.py"
    a.write_text("x = 1\n")
    files = [a]
    base = dev_measurement({"engine": "extractive"}, files=files, root=tmp_path)
    assert base == dev_measurement({"engine": "extractive"}, files=files, root=tmp_path)
    assert base != dev_measurement({"engine": "openai"}, files=files, root=tmp_path)
    a.write_text("x = 2\n")
    assert base != dev_measurement({"engine": "extractive"}, files=files, root=tmp_path)


def test_measurement_has_no_secrets() -> None:
    s = BackendSettings(engine="openai", openai_base_url="http://127.0.0.1:1/v1",
                        openai_model="m", openai_api_key="sk-secret")
    assert "sk-secret" not in json.dumps(s.public_engine_settings())
    assert "sk-secret" not in repr(s)
    assert create_app(s).state.backend.evidence.measurement != create_app(
        BackendSettings()).state.backend.evidence.measurement


# --- padding ---------------------------------------------------------------------------------


async def test_responses_are_padded_to_buckets(client: OhttpClient) -> None:
    sizes = set()
    outer_sizes = set()
    for words, thread in [(10, THREAD), (60, THREAD), (200, THREAD * 5),
                          (60, [("P1", "short")])]:
        answer = await client.summarize(summarize_doc(thread, max_words=words))
        assert answer.inner is not None and answer.inner.status == 200
        assert answer.padded_length in PAD_BUCKETS
        sizes.add(len(answer.inner.content))
        outer_sizes.add(len(answer.outer.content))
        assert len(answer.outer.content) == answer.padded_length + 16 + 16  # nonce, tag
    for error in (b"{", b"[]"):
        answer = await client.summarize(error)
        assert answer.padded_length in PAD_BUCKETS
        outer_sizes.add(len(answer.outer.content))
    assert len(sizes) > 1 and len(outer_sizes) < len(sizes) + 2


# --- admission: bounded concurrency, then 503 ---------------------------------------------


class BlockingEngine:
    """A sync engine that waits until released (it runs in a worker thread)."""

    name = "extractive"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> Summary:
        self.entered.set()
        assert self.release.wait(10)
        return Summary(text="- P1: done", engine=self.name)


async def test_overload_is_an_encapsulated_503(clock: Clock) -> None:
    settings = replace(SETTINGS, concurrency=1, queue_limit=1)
    engine = BlockingEngine()
    app = create_app(settings, clock=clock, engines={"extractive": engine})
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            client = OhttpClient(http, clock)
            await client.fetch_config()
            running = asyncio.create_task(client.summarize(summarize_doc()))
            assert await asyncio.to_thread(engine.entered.wait, 10)
            queued = asyncio.create_task(client.summarize(summarize_doc()))
            state = app.state.backend
            for _ in range(500):
                if state.engines["extractive"].admission.waiting == 1:
                    break
                await asyncio.sleep(0.01)
            refused = await client.summarize(summarize_doc())
            assert refused.inner is not None and refused.inner.status == 503
            assert refused.header(b"retry-after") == b"5"
            assert set(refused.json()) == {"error"}
            engine.release.set()
            for task in (running, queued):
                answer = await task
                assert answer.inner is not None and answer.inner.status == 200


# --- invariant 9: nothing of a finished request stays in the backend's memory -------------


def _module_dicts() -> set[int]:
    return {id(vars(m)) for m in list(sys.modules.values()) if m is not None}


def live_strings_containing(roots: Sequence[object], needles: Sequence[str]) -> list[str]:
    """Walk everything reachable from ``roots`` and return the str/bytes holding a needle.

    Modules, module dictionaries (a function's globals), classes and code
    objects are not entered: they hold the program, not its data, and lead to
    everything in the interpreter (the test's own constants included).
    """
    gc.collect()
    skip = _module_dicts()
    encoded = [n.encode() for n in needles]
    seen: set[int] = set()
    stack: list[object] = list(roots)
    found: list[str] = []
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            if any(n in obj for n in needles):
                found.append(obj[:80])
            continue
        if isinstance(obj, bytes | bytearray | memoryview):
            data = bytes(obj)
            if any(n in data for n in encoded):
                found.append(repr(data[:80]))
            continue
        if isinstance(obj, type | types.ModuleType | types.CodeType) or id(obj) in skip:
            continue
        stack.extend(gc.get_referents(obj))
    return found


def canary_holders(needles: Sequence[str]) -> list[str]:
    """Every live container in the interpreter that holds a str/bytes with a needle.

    The stronger check: not only the app's graph but the whole process (the
    server threads, uvicorn, httpx, the thread pool). ``needles`` itself is
    left out.
    """
    gc.collect()
    encoded = [n.encode() for n in needles]
    holders: list[str] = []
    for obj in gc.get_objects():
        if obj is needles or obj is encoded:
            continue
        for ref in gc.get_referents(obj):
            if (isinstance(ref, str) and any(n in ref for n in needles)) or (
                    isinstance(ref, bytes | bytearray) and any(n in ref for n in encoded)):
                holders.append(f"{type(obj).__module__}.{type(obj).__qualname__}")
    return holders


async def settled(check: Callable[[], list[str]], timeout: float = 2.0) -> list[str]:
    """``check()`` once it comes back empty, or its last answer after ``timeout``.

    The server thread may still be unwinding a request for a moment after the
    client has read the response.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def state_roots(app: Any) -> list[object]:
    state = app.state.backend
    return [app, state, *(getattr(state, s) for s in state.__slots__)]


CANARIES = ["CANARY-MARMALADE-7f3a", "CANARY-ZEPPELIN-91c2", "CANARY-QUOKKA-55e0"]


def canary_thread(canary: str) -> list[tuple[str, str]]:
    return [("P1", f"Shall we ship the {canary} build on Friday?"),
            ("P2", f"Yes, I will prepare {canary} release notes by Thursday."),
            ("P3", f"Agreed, {canary} goes out Friday.")]


def test_the_walker_finds_what_is_planted(app: Any) -> None:
    """The invariant test below is only worth something if this one can fail."""
    entries = app.state.backend.replay._entries
    entries[b"enc " + CANARIES[0].encode()] = (0.0, 0.0)
    assert live_strings_containing(state_roots(app), CANARIES)
    entries.clear()
    assert not live_strings_containing(state_roots(app), CANARIES)


async def test_invariant_9_nothing_of_a_request_outlives_its_response(
        app: Any, client: OhttpClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def requests_with_canaries() -> None:
        # In a function of its own, so that the test's own copies die with its frame.
        for canary in CANARIES:
            answer = await client.summarize(summarize_doc(canary_thread(canary)))
            assert answer.inner is not None and answer.inner.status == 200
            assert canary in answer.json()["summary"]        # it was really processed
            bad = _with(summarize_doc(canary_thread(canary)), "messages.0.speaker", canary)
            assert (await client.summarize(bad)).inner.status == 422  # type: ignore[union-attr]
            await client.summarize(json.dumps({"version": 1, canary: 1}).encode())
            await client.summarize(summarize_doc(canary_thread(canary)), date=None)

    await requests_with_canaries()
    assert await settled(lambda: live_strings_containing(state_roots(app), CANARIES)) == []
    assert await settled(lambda: canary_holders(CANARIES)) == []
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}"
                       for r in caplog.records)
    assert caplog.records, "the backend logs events"
    assert not any(c in logged for c in CANARIES)


# --- settings ---------------------------------------------------------------------------------


def test_settings_from_toml_and_environment(tmp_path: Path) -> None:
    file = tmp_path / "hushbrief.toml"
    file.write_text(
        '[storage]\ndata_dir = "x"\n\n'           # the bot's section: not ours, skipped
        '[backend]\nengine = "openai"\nopenai_base_url = "http://127.0.0.1:8000/v1/"\n'
        'openai_model = "llama"\nrotate_every = "6h"\nkey_grace = "15m"\nreplay_window = 30\n'
    )
    s = load_backend_settings(file, {"HUSHBRIEF_BACKEND_OPENAI_API_KEY": "sk-x",
                                     "HUSHBRIEF_BACKEND_BUNDLE_TTL": "2h",
                                     "HUSHBRIEF_BACKEND_MAX_MESSAGES": "500"})
    assert s.engine == "openai" and s.openai_base_url == "http://127.0.0.1:8000/v1"
    assert (s.rotate_every, s.key_grace, s.replay_window, s.bundle_ttl) == (21600, 900, 30, 7200)
    assert s.openai_api_key == "sk-x" and s.max_messages == 500
    assert s.engines == ("extractive", "openai")
    assert load_backend_settings(None, {}) == BackendSettings()


@pytest.mark.parametrize(("toml", "env", "message"), [
    ('[backend]\nengin = "openai"\n', {}, "unknown key [backend] engin"),
    ('[backend]\nengine = "gpt"\n', {}, "[backend] engine must be one of"),
    ('[backend]\nengine = "openai"\n', {}, "needs openai_base_url"),
    ('[backend]\nrotate_every = "10s"\n', {}, "rotate_every must be 0 (never)"),
    ('[backend]\nreplay_window = true\n', {}, "replay_window must be"),
    ("", {"HUSHBRIEF_BACKEND_MAX_REQUEST_BYTES": "12"}, "HUSHBRIEF_BACKEND_MAX_REQUEST_BYTES"),
])
def test_settings_errors_are_one_line(tmp_path: Path, toml: str, env: dict[str, str],
                                      message: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_backend_settings(file, env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_rotate_every_flag_follows_the_config_rule() -> None:
    assert parse_rotate_every("6h") == 21600 and parse_rotate_every("0") == 0
    assert parse_rotate_every("3600") == 3600
    for bad in ("10s", "soon", "-5m"):
        with pytest.raises(ValueError, match="duration"):
            parse_rotate_every(bad)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("8443", "host:", "host:99999", ":80"):
        with pytest.raises(ValueError):
            parse_listen(bad)


async def test_production_server_configuration(clock: Clock) -> None:
    """build_server: no access log, no Server header, lifespan on; it serves the app."""
    server = build_server(BackendSettings(), host="127.0.0.1", port=0)
    assert server.config.access_log is False and server.config.server_header is False
    assert server.config.proxy_headers is False
    with serve_server(server) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.get("/healthz")
            assert r.status_code == 200 and "server" not in r.headers
            assert (await http.get(GATEWAY)).headers["content-type"] == KEYS_MEDIA_TYPE
