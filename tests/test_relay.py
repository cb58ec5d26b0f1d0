"""The Oblivious HTTP relay (RFC 9458 §5, §6.2), tested through real servers on loopback.

    client (httpx, or a raw socket) → relay (uvicorn, the production build_server config)
                                    → stand-in gateway (uvicorn; records what it receives)

There is no real gateway here, and the relay does not need one: it treats bodies as opaque
bytes, so the stand-in answers with recognisable bytes and records every request it gets
(method, path, headers, body). A second stand-in plays an "evil" host that must never be
contacted, and a recording transport lists every URL the relay connects to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hushbrief.loopback import serve_on_loopback
from hushbrief.relay import (
    RelaySettings,
    SettingsError,
    build_server,
    create_app,
    parse_listen,
)
from tests.servers import free_port, serve, serve_server

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_PATH = "/.well-known/ohttp-gateway"
OHTTP_REQ = {"content-type": "message/ohttp-req"}
CANARY = b"CANARY-relay-7f3a9c-must-never-be-logged"
PROBLEM = (b'{"type": "https://iana.org/assignments/http-problem-types#ohttp-key", '
           b'"title": "key identifier unknown"}')

Headers = list[tuple[bytes, bytes]]
# Chunks (a list, or an async iterator for a slow trickle) are sent without a length.
Reply = tuple[int, Headers, bytes | list[bytes] | AsyncIterator[bytes]]


# --- the stand-in gateway -------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """One request as the gateway received it."""

    method: str
    path: str
    query: bytes
    headers: Headers
    body: bytes
    client: tuple[str, int] | None

    def names(self) -> set[bytes]:
        return {k for k, _ in self.headers}

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


class StandInGateway:
    """An ASGI app that records every request and answers like an OHTTP gateway would."""

    KEYS = bytes.fromhex("0029") + bytes(range(41))  # opaque "key configurations"
    EVIDENCE = b'{"platform": "stand-in", "evidence": "opaque"}'

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.respond: Callable[[Seen], Awaitable[Reply]] = self.default
        self.release = threading.Event()

    def reset(self) -> None:
        self.release.set()  # let go of anything a previous test left waiting
        self.release = threading.Event()
        self.seen = []
        self.respond = self.default

    async def default(self, seen: Seen) -> Reply:
        if seen.path == GATEWAY_PATH and seen.method == "POST":
            return 200, [(b"content-type", b"message/ohttp-res"),
                         (b"cache-control", b"private, no-store")], b"RES:" + seen.body[::-1]
        if seen.path == GATEWAY_PATH and seen.method == "GET":
            return 200, [(b"content-type", b"application/ohttp-keys"),
                         (b"cache-control", b"max-age=60")], self.KEYS
        if seen.path == "/attestation" and seen.method == "GET":
            return 200, [(b"content-type", b"application/json")], self.EVIDENCE
        return 404, [(b"content-type", b"text/plain")], b"no such resource"

    async def held(self, seen: Seen, *, at_most: float = 3.0) -> Reply:
        """Answer only once the test sets ``release`` (or after ``at_most`` seconds)."""
        event = self.release
        deadline = time.monotonic() + at_most
        while not event.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return await self.default(seen)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        seen = Seen(scope["method"], scope["path"], scope["query_string"],
                    list(scope["headers"]), body, scope.get("client"))
        self.seen.append(seen)
        status, headers, content = await self.respond(seen)
        if isinstance(content, list):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            for chunk in content:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif not isinstance(content, bytes):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            async for chunk in content:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            headers = [*headers, (b"content-length", str(len(content)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})


class RecordingTransport(httpx.AsyncBaseTransport):
    """The relay's real transport, listing every request the relay sends out."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport(retries=0)
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- fixtures and helpers -------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway() -> StandInGateway:
    return StandInGateway()


@pytest.fixture(scope="module")
def gateway_url(gateway: StandInGateway) -> Iterator[str]:
    with serve(gateway) as url:
        yield url


@pytest.fixture(scope="module")
def evil() -> Iterator[tuple[StandInGateway, str]]:
    """A host the relay must never contact, whatever the client writes."""
    app = StandInGateway()
    with serve(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def outbound() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture(scope="module")
def relay(gateway_url: str, outbound: RecordingTransport) -> Iterator[str]:
    """A relay with the default settings, shared by the tests that need nothing special."""
    with running_relay(RelaySettings(gateway_url), transport=outbound) as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh(gateway: StandInGateway, evil: tuple[StandInGateway, str],
           outbound: RecordingTransport) -> Iterator[None]:
    gateway.reset()
    evil[0].reset()
    outbound.sent.clear()
    yield
    gateway.release.set()


@pytest.fixture
async def client(relay: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=relay, trust_env=False, timeout=10) as c:
        yield c


@contextlib.contextmanager
def running_relay(settings: RelaySettings, *,
                  transport: httpx.AsyncBaseTransport | None = None) -> Iterator[str]:
    server = build_server(settings, "127.0.0.1", 0, transport=transport, graceful_timeout=2)
    with serve_server(server) as url:
        yield url


@contextlib.asynccontextmanager
async def relay_client(settings: RelaySettings, *, transport: httpx.AsyncBaseTransport | None
                       = None) -> AsyncIterator[httpx.AsyncClient]:
    with running_relay(settings, transport=transport) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as c:
            yield c


def authority(url: str) -> bytes:
    return httpx.URL(url).netloc


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def raw_exchange(base: str, data: bytes, *,
                       on_connect: Callable[[tuple[str, int]], None] | None = None,
                       timeout: float = 5.0) -> RawResponse:
    """Send hand-written bytes (absolute-form targets, lies about lengths) and read one answer."""
    url = httpx.URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    if on_connect is not None:
        on_connect(writer.get_extra_info("sockname"))
    try:
        writer.write(data)
        await writer.drain()
        raw = b""
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                raw += chunk
                head, sep, body = raw.partition(b"\r\n\r\n")
                if sep:
                    lines = head.split(b"\r\n")
                    headers = {k.strip().lower(): v.strip()
                               for k, v in (line.split(b":", 1) for line in lines[1:])}
                    length = int(headers.get(b"content-length", b"-1"))
                    if 0 <= length <= len(body) or not chunk:
                        return RawResponse(int(lines[0].split()[1]), headers,
                                           body[:length] if length >= 0 else body)
                if not chunk:
                    raise ConnectionError("the connection closed before a response")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


# --- forwarding, byte for byte --------------------------------------------------------

async def test_post_is_forwarded_byte_exact_both_ways(
        client: httpx.AsyncClient, gateway: StandInGateway) -> None:
    body = bytes(range(256)) * 8 + CANARY + b"\r\n\r\n\x00"
    r = await client.post(GATEWAY_PATH, content=body, headers=OHTTP_REQ)
    assert r.status_code == 200
    assert r.headers["content-type"] == "message/ohttp-res"
    assert r.headers["cache-control"] == "private, no-store"
    assert r.content == b"RES:" + body[::-1]
    [seen] = gateway.seen
    assert (seen.method, seen.path, seen.body) == ("POST", GATEWAY_PATH, body)


async def test_key_configurations_and_evidence_are_forwarded_byte_exact(
        client: httpx.AsyncClient, gateway: StandInGateway) -> None:
    keys = await client.get(GATEWAY_PATH)
    assert keys.status_code == 200
    assert keys.headers["content-type"] == "application/ohttp-keys"
    assert keys.headers["cache-control"] == "max-age=60"
    assert keys.content == StandInGateway.KEYS
    evidence = await client.get("/attestation")
    assert evidence.status_code == 200
    assert evidence.headers["content-type"] == "application/json"
    assert evidence.content == StandInGateway.EVIDENCE
    assert [(s.method, s.path, s.body) for s in gateway.seen] == [
        ("GET", GATEWAY_PATH, b""), ("GET", "/attestation", b"")]


# --- RFC 9458 §6.2: nothing about the client reaches the gateway ---------------------------

IDENTIFYING = {
    "cookie": "session=alice",
    "authorization": "Bearer alice-token",
    "user-agent": "HushbriefBot/1.0 (alice's server)",
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-host": "evil.example",
    "x-real-ip": "203.0.113.7",
    "forwarded": "for=203.0.113.7;host=evil.example",
    "via": "1.1 alice-proxy",
    "origin": "https://alice.example",
    "referer": "https://alice.example/chat",
    "accept-language": "de-CH",
    "x-request-id": "alice-42",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
}


async def test_only_content_type_and_length_reach_the_gateway(
        client: httpx.AsyncClient, gateway: StandInGateway, gateway_url: str) -> None:
    body = b"\x01opaque ciphertext"
    r = await client.post(GATEWAY_PATH + "?user=alice", content=body,
                          headers={**OHTTP_REQ, **IDENTIFYING})
    assert r.status_code == 200
    await client.get(GATEWAY_PATH + "?user=alice", headers=IDENTIFYING)
    await client.get("/attestation", headers=IDENTIFYING)
    post, keys, evidence = gateway.seen
    # Host is the gateway's own authority, set by the relay; nothing else is added (no Via,
    # no Forwarded, no X-Forwarded-*), and nothing of the client's is copied.
    assert post.names() == {b"host", b"content-type", b"content-length"}
    assert post.header(b"host") == [authority(gateway_url)]
    assert post.header(b"content-type") == [b"message/ohttp-req"]
    assert post.header(b"content-length") == [str(len(body)).encode()]
    assert keys.names() == evidence.names() == {b"host"}
    assert keys.header(b"host") == [authority(gateway_url)]
    assert post.query == keys.query == b""  # the query is never forwarded
    everything = repr([s.headers for s in gateway.seen]).lower()
    for value in ["alice", "203.0.113.7", "evil.example", "python-httpx"]:
        assert value not in everything


async def test_content_type_spelling_is_canonicalised(
        client: httpx.AsyncClient, gateway: StandInGateway) -> None:
    # Media types are case-insensitive (RFC 9110 §8.3.1), so this is accepted; the gateway
    # gets the canonical spelling, so a client's choice of case cannot act as a marker.
    r = await client.post(GATEWAY_PATH, content=b"x",
                          headers={"content-type": "Message/OHTTP-Req"})
    assert r.status_code == 200
    assert gateway.seen[0].header(b"content-type") == [b"message/ohttp-req"]


async def test_only_status_type_length_and_cache_control_come_back(
        client: httpx.AsyncClient, gateway: StandInGateway) -> None:
    async def chatty(seen: Seen) -> Reply:
        return 200, [(b"content-type", b"message/ohttp-res"), (b"cache-control", b"no-store"),
                     (b"set-cookie", b"gw=node7"), (b"server", b"gateway/1.0"),
                     (b"x-gateway-node", b"node-7"), (b"alt-svc", b'h3=":443"')], b"res"
    gateway.respond = chatty
    r = await client.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
    assert r.status_code == 200 and r.content == b"res"
    # Date is the relay's own (uvicorn's); there is no Server header at all.
    assert set(r.headers) == {"content-type", "content-length", "cache-control", "date"}
    assert r.headers["cache-control"] == "no-store"


async def test_gateway_problem_is_passed_through(
        client: httpx.AsyncClient, gateway: StandInGateway) -> None:
    async def unknown_key(seen: Seen) -> Reply:  # RFC 9458 §5.3
        return 400, [(b"content-type", b"application/problem+json"),
                     (b"x-debug", b"key 7 not found")], PROBLEM
    gateway.respond = unknown_key
    r = await client.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.content == PROBLEM
    assert "x-debug" not in r.headers


@pytest.mark.parametrize("status", [404, 422, 500, 503])
async def test_other_gateway_errors_are_passed_through(
        client: httpx.AsyncClient, gateway: StandInGateway, status: int) -> None:
    async def failing(seen: Seen) -> Reply:
        return status, [(b"content-type", b"text/plain")], b"gateway says no"
    gateway.respond = failing
    r = await client.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
    assert (r.status_code, r.content) == (status, b"gateway says no")


# --- RFC 9458 §5: what the relay refuses ------------------------------------------------

@pytest.mark.parametrize("content_type", [
    None,
    "application/octet-stream",
    "message/ohttp-req; charset=utf-8",  # "exactly": the type defines no parameters
    "message/ohttp-req;",
    "message/ohttp-res",
    "message/ohttp-chunked-req",  # not supported (yet)
    "message/ohttp-req, text/plain",
    "message/ohttp-reqx",
])
async def test_wrong_media_type_is_415(client: httpx.AsyncClient, gateway: StandInGateway,
                                       content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    r = await client.post(GATEWAY_PATH, content=b"req", headers=headers)
    assert r.status_code == 415
    assert gateway.seen == []


async def test_two_content_type_fields_are_415(
        client: httpx.AsyncClient, gateway: StandInGateway) -> None:
    headers = [("content-type", "message/ohttp-req"), ("content-type", "message/ohttp-req")]
    r = await client.post(GATEWAY_PATH, content=b"req", headers=headers)
    assert r.status_code == 415
    assert gateway.seen == []


@pytest.fixture
def small_relay(gateway_url: str) -> Iterator[str]:
    with running_relay(RelaySettings(gateway_url, max_body=1024)) as url:
        yield url


async def test_body_limit_is_inclusive(small_relay: str, gateway: StandInGateway) -> None:
    async with httpx.AsyncClient(base_url=small_relay, trust_env=False) as c:
        ok = await c.post(GATEWAY_PATH, content=b"a" * 1024, headers=OHTTP_REQ)
        too_big = await c.post(GATEWAY_PATH, content=b"a" * 1025, headers=OHTTP_REQ)
    assert (ok.status_code, too_big.status_code) == (200, 413)
    assert [len(s.body) for s in gateway.seen] == [1024]


async def test_declared_oversize_is_refused_before_the_body_is_sent(
        small_relay: str, gateway: StandInGateway) -> None:
    # Only the head is sent: the 413 has to come from the Content-Length alone.
    head = (b"POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: relay\r\n"
            b"Content-Type: message/ohttp-req\r\nContent-Length: 104857600\r\n\r\n")
    r = await raw_exchange(small_relay, head, timeout=2.0)
    assert r.status == 413
    assert r.headers[b"connection"] == b"close"
    assert gateway.seen == []


async def test_chunked_upload_is_cut_off_at_the_limit(
        small_relay: str, gateway: StandInGateway) -> None:
    head = (b"POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: relay\r\n"
            b"Content-Type: message/ohttp-req\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n")
    r = await raw_exchange(small_relay, head + chunked(*[b"z" * 400] * 4))
    assert r.status == 413
    assert r.headers[b"connection"] == b"close"  # the rest of the upload is not read
    assert gateway.seen == []


async def test_chunked_upload_within_limit_reaches_gateway_with_a_length(
        small_relay: str, gateway: StandInGateway) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"defg", b"h" * 500):
            yield piece
    async with httpx.AsyncClient(base_url=small_relay, trust_env=False) as c:
        r = await c.post(GATEWAY_PATH, content=parts(), headers=OHTTP_REQ)
    assert r.status_code == 200
    [seen] = gateway.seen
    # Re-framed with a Content-Length: the client's chunk boundaries do not travel on.
    assert seen.body == b"abcdefg" + b"h" * 500
    assert seen.header(b"content-length") == [b"507"]
    assert b"transfer-encoding" not in seen.names()


async def test_a_lying_content_length_cannot_smuggle_more(
        small_relay: str, gateway: StandInGateway) -> None:
    # The declared length frames the body; the rest is not part of this request, and
    # never reaches the gateway as a body (nor as a second request, since it is garbage).
    data = (b"POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: relay\r\n"
            b"Content-Type: message/ohttp-req\r\nContent-Length: 16\r\n\r\n" + b"x" * 4096)
    r = await raw_exchange(small_relay, data)
    assert r.status in (200, 400)
    assert all(len(s.body) <= 16 for s in gateway.seen)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", GATEWAY_PATH, "GET, POST"),
    ("DELETE", GATEWAY_PATH, "GET, POST"),
    ("PATCH", GATEWAY_PATH, "GET, POST"),
    ("HEAD", GATEWAY_PATH, "GET, POST"),
    ("POST", "/attestation", "GET"),
    ("PUT", "/attestation", "GET"),
    ("POST", "/healthz", "GET"),
    ("POST", "/metrics", "GET"),
])
async def test_other_methods_are_405_with_allow(
        client: httpx.AsyncClient, gateway: StandInGateway,
        method: str, path: str, allow: str) -> None:
    r = await client.request(method, path, content=b"x", headers=OHTTP_REQ)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert gateway.seen == []


@pytest.mark.parametrize("path", [
    "/", "/v1/summarize", "/.well-known/ohttp-gateway/", "/.well-known/ohttp-gateway/x",
    "/.well-known/ohttp-gateway.", "/ATTESTATION", "/attestation/", "/.well-known/",
])
async def test_unknown_paths_are_404(client: httpx.AsyncClient, gateway: StandInGateway,
                                     path: str) -> None:
    r = await client.post(path, content=b"x", headers=OHTTP_REQ)
    assert r.status_code == 404
    assert (await client.get(path)).status_code == 404
    assert gateway.seen == []


# --- the relay goes to its gateway and nowhere else ------------------------------------

async def test_no_target_or_host_game_changes_where_the_relay_connects(
        relay: str, gateway: StandInGateway, gateway_url: str,
        evil: tuple[StandInGateway, str], outbound: RecordingTransport) -> None:
    evil_app, evil_url = evil
    e = authority(evil_url)
    post = b"Content-Type: message/ohttp-req\r\nContent-Length: 4\r\n"
    attempts = [
        # absolute-form request targets (RFC 9112 §3.2.2) naming another host
        b"POST http://" + e + b"/.well-known/ohttp-gateway HTTP/1.1\r\nHost: " + e + b"\r\n"
        + post,
        b"GET http://" + e + b"/attestation HTTP/1.1\r\nHost: " + e + b"\r\n",
        b"GET https://evil.example/.well-known/ohttp-gateway HTTP/1.1\r\nHost: evil.example\r\n",
        # a valid path with a foreign Host, and the proxy headers that name hosts
        b"POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: " + e + b"\r\n" + post,
        b"GET /attestation HTTP/1.1\r\nHost: " + e + b"\r\nX-Forwarded-Host: " + e
        + b"\r\nForwarded: host=" + e + b"\r\n",
        # network-path references and dot segments
        b"GET //" + e + b"/attestation HTTP/1.1\r\nHost: relay\r\n",
        b"POST //" + e + b"/.well-known/ohttp-gateway HTTP/1.1\r\nHost: relay\r\n" + post,
        b"GET /.well-known/../attestation HTTP/1.1\r\nHost: relay\r\n",
        b"GET /attestation/../../" + e + b"/attestation HTTP/1.1\r\nHost: relay\r\n",
        b"GET /%2e%2e/attestation HTTP/1.1\r\nHost: relay\r\n",
        b"GET /.well-known/ohttp-gateway/..%2f..%2fattestation HTTP/1.1\r\nHost: relay\r\n",
        # other request-target forms
        b"CONNECT " + e + b" HTTP/1.1\r\nHost: " + e + b"\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: relay\r\n",
    ]
    statuses: list[int] = []
    for head in attempts:
        body = b"ABCD" if b"Content-Length: 4" in head else b""
        try:
            r = await raw_exchange(relay, head + b"Connection: close\r\n\r\n" + body)
            statuses.append(r.status)
        except ConnectionError:
            statuses.append(0)  # a server may simply drop a request it cannot parse
    assert evil_app.seen == []
    allowed = {f"{gateway_url}{GATEWAY_PATH}", f"{gateway_url}/attestation"}
    assert {str(r.url) for r in outbound.sent} <= allowed
    assert all(s.header(b"host") == [authority(gateway_url)] for s in gateway.seen)
    assert {s.path for s in gateway.seen} <= {GATEWAY_PATH, "/attestation"}
    # The foreign-Host requests with valid paths were forwarded — to the gateway.
    assert 200 in statuses and 404 in statuses


async def test_a_gateway_redirect_is_not_followed(
        client: httpx.AsyncClient, gateway: StandInGateway,
        evil: tuple[StandInGateway, str], outbound: RecordingTransport) -> None:
    evil_app, evil_url = evil

    async def redirect(seen: Seen) -> Reply:
        return 307, [(b"location", (evil_url + GATEWAY_PATH).encode())], b""
    gateway.respond = redirect
    r = await client.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
    assert r.status_code == 502
    assert "location" not in r.headers
    assert evil_app.seen == [] and len(outbound.sent) == 1


# --- the gateway fails ------------------------------------------------------------------

async def test_gateway_down_is_502(gateway_url: str) -> None:
    async with relay_client(RelaySettings(f"http://127.0.0.1:{free_port()}")) as c:
        post = await c.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
        keys = await c.get(GATEWAY_PATH)
        health = await c.get("/healthz")
        ready = await c.get("/readyz")
    assert (post.status_code, keys.status_code) == (502, 502)
    assert (health.status_code, health.text) == (200, "ok\n")  # health never asks the gateway
    assert ready.status_code == 503


async def test_ready_when_the_gateway_answers(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert (r.status_code, r.text) == (200, "ready\n")


async def test_healthz_does_not_contact_the_gateway(
        client: httpx.AsyncClient, outbound: RecordingTransport) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")
    assert outbound.sent == []


async def test_gateway_timeout_is_504(gateway_url: str, gateway: StandInGateway) -> None:
    gateway.respond = lambda seen: gateway.held(seen, at_most=1.0)
    async with relay_client(RelaySettings(gateway_url, timeout=0.3)) as c:
        started = time.monotonic()
        r = await c.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
        elapsed = time.monotonic() - started
        gateway.release.set()
    assert r.status_code == 504
    assert elapsed < 0.9
    assert len(gateway.seen) == 1  # it did reach the gateway: hence 504, not 502


async def test_a_trickling_gateway_meets_the_overall_deadline(
        gateway_url: str, gateway: StandInGateway) -> None:
    # Each byte arrives well within any per-read timeout; only the deadline for the whole
    # exchange stops a gateway (or anyone in between) from holding the relay for ever.
    async def trickle(seen: Seen) -> Reply:
        async def drip() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"."
                await asyncio.sleep(0.05)
        return 200, [(b"content-type", b"message/ohttp-res")], drip()
    gateway.respond = trickle
    async with relay_client(RelaySettings(gateway_url, timeout=0.3)) as c:
        started = time.monotonic()
        r = await c.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
        elapsed = time.monotonic() - started
    assert r.status_code == 504
    assert elapsed < 0.9


async def test_too_many_in_flight_is_503_with_retry_after(
        gateway_url: str, gateway: StandInGateway) -> None:
    gateway.respond = gateway.held
    async with relay_client(RelaySettings(gateway_url, max_concurrency=2)) as c:
        first = [asyncio.create_task(c.post(GATEWAY_PATH, content=b"r%d" % i,
                                            headers=OHTTP_REQ)) for i in range(2)]
        await wait_until(lambda: len(gateway.seen) == 2)
        refused = await c.post(GATEWAY_PATH, content=b"r3", headers=OHTTP_REQ)
        refused_get = await c.get(GATEWAY_PATH)
        health = await c.get("/healthz")
        gateway.release.set()
        done = await asyncio.gather(*first)
        after = await c.post(GATEWAY_PATH, content=b"r4", headers=OHTTP_REQ)
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert refused_get.status_code == 503
    assert health.status_code == 200
    assert [r.status_code for r in done] == [200, 200]
    assert after.status_code == 200
    assert len(gateway.seen) == 3  # r3 never reached the gateway


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_oversized_gateway_answer_is_502(
        gateway_url: str, gateway: StandInGateway, framing: str) -> None:
    async def big(seen: Seen) -> Reply:
        n = 1025 if seen.body == b"big" else 1024
        content = b"r" * n
        headers: Headers = [(b"content-type", b"message/ohttp-res")]
        return 200, headers, [content[:500], content[500:]] if framing == "chunked" else content
    gateway.respond = big
    async with relay_client(RelaySettings(gateway_url, max_response=1024)) as c:
        refused = await c.post(GATEWAY_PATH, content=b"big", headers=OHTTP_REQ)
        fits = await c.post(GATEWAY_PATH, content=b"fits", headers=OHTTP_REQ)
    assert refused.status_code == 502
    assert (fits.status_code, fits.content) == (200, b"r" * 1024)


@pytest.mark.parametrize(("status", "headers"), [
    (200, [(b"content-type", b"text/html")]),
    (200, []),
    (200, [(b"content-type", b"message/ohttp-res"), (b"content-encoding", b"gzip")]),
    (204, [(b"content-type", b"message/ohttp-res")]),
    (302, [(b"content-type", b"message/ohttp-res")]),
])
async def test_unusable_gateway_answers_are_502(
        client: httpx.AsyncClient, gateway: StandInGateway,
        status: int, headers: Headers) -> None:
    async def odd(seen: Seen) -> Reply:
        return status, headers, b"" if status == 204 else b"res"
    gateway.respond = odd
    r = await client.post(GATEWAY_PATH, content=b"req", headers=OHTTP_REQ)
    assert r.status_code == 502


# --- sizes, timings and outcomes only: metrics and logs ---------------------------------

async def send_canaries(c: httpx.AsyncClient) -> None:
    """Put the canary everywhere a client can: body, path, query and headers."""
    assert (await c.post(GATEWAY_PATH + "?" + CANARY.decode(), content=b"\x00" + CANARY,
                         headers={**OHTTP_REQ, "x-note": CANARY.decode(),
                                  "user-agent": CANARY.decode()})).status_code == 200
    assert (await c.post(GATEWAY_PATH, content=CANARY,
                         headers={"content-type": "text/" + CANARY.decode()})).status_code == 415
    assert (await c.get("/" + CANARY.decode())).status_code == 404
    assert (await c.get("/attestation", headers={"cookie": CANARY.decode()})).status_code == 200


async def test_metrics_count_sizes_and_latencies_and_nothing_else(gateway_url: str) -> None:
    async with relay_client(RelaySettings(gateway_url)) as c:
        await send_canaries(c)
        r = await c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert CANARY.decode() not in text and CANARY.decode().lower() not in text.lower()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["route"], s.labels["status_class"], s.labels["outcome"]): s.value
                for s in families["hushbrief_relay_requests"].samples
                if s.name.endswith("_total")}
    assert requests == {
        ("request", "2xx", "forwarded"): 1.0,
        ("request", "4xx", "unsupported_media_type"): 1.0,
        ("unmatched", "4xx", "not_found"): 1.0,
        ("attestation", "2xx", "forwarded"): 1.0,
    }
    body_sizes = [s for s in families["hushbrief_relay_request_body_bytes"].samples
                  if s.name.endswith("_bucket")]
    assert body_sizes and all(s.labels["route"] == "request" for s in body_sizes)
    assert any(s.labels["le"] == "256.0" and s.value == 1.0 for s in body_sizes)
    upstream = [s for s in families["hushbrief_relay_upstream_duration_seconds"].samples
                if s.name.endswith("_count")]
    assert {(s.labels["route"], s.labels["status_class"]): s.value for s in upstream} == {
        ("request", "2xx"): 1.0, ("attestation", "2xx"): 1.0}
    assert "hushbrief_relay_response_body_bytes_bucket" in text
    assert [s.value for s in families["hushbrief_relay_in_flight"].samples] == [0.0]
    # Every label value comes from a closed set: no path, address or header made it in.
    labels = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    assert labels <= {"request", "keys", "attestation", "healthz", "readyz", "metrics",
                      "unmatched", "2xx", "3xx", "4xx", "5xx", "none", "forwarded",
                      "served", "unsupported_media_type", "not_found"} | {
        s.labels["le"] for f in families.values() for s in f.samples if "le" in s.labels}


async def test_metrics_can_be_switched_off(gateway_url: str) -> None:
    async with relay_client(RelaySettings(gateway_url, expose_metrics=False)) as c:
        assert (await c.get("/metrics")).status_code == 404


async def test_logs_carry_no_content_and_no_client_address(
        relay: str, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await send_canaries(client)
    peers: list[tuple[str, int]] = []
    r = await raw_exchange(relay, b"POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: relay\r\n"
                           b"Content-Type: message/ohttp-req\r\nContent-Length: %d\r\n"
                           b"Connection: close\r\n\r\n%s" % (len(CANARY), CANARY),
                           on_connect=peers.append)
    assert r.status == 200
    # Everything the relay's server thread logged (the test's own client logs its URLs).
    # The relay writes its line once the response is out, so wait for the last one.
    thread = f"uvicorn-{httpx.URL(relay).port}"

    def relay_lines() -> list[str]:
        return [rec.getMessage() for rec in caplog.records
                if rec.threadName == thread and rec.name == "hushbrief.relay"]
    await wait_until(lambda: sum("outcome=forwarded" in line for line in relay_lines()) == 3)
    mine = [rec for rec in caplog.records if rec.threadName == thread]
    text = "\n".join(f"{rec.name} {rec.getMessage()} {rec.args!r}" for rec in mine)
    assert CANARY.decode() not in text and CANARY.decode().lower() not in text.lower()
    host, port = peers[0]
    assert f"{host}:{port}" not in text and f"'{host}', {port}" not in text
    assert not [rec for rec in caplog.records if rec.name.startswith("uvicorn.access")]
    lines = relay_lines()
    assert sum("route=request status=200 outcome=forwarded" in line for line in lines) == 2
    assert sum("route=attestation status=200 outcome=forwarded" in line for line in lines) == 1
    assert any("route=unmatched status=404" in line for line in lines)
    assert all("request_bytes=" in line and "duration_ms=" in line for line in lines)


# --- running it --------------------------------------------------------------------------

def test_server_configuration_keeps_client_addresses_out() -> None:
    server = build_server(RelaySettings("http://127.0.0.1:8081"), "127.0.0.1", 8080)
    config = server.config
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.server_header is False
    assert config.log_config is None
    assert config.timeout_graceful_shutdown == 60


async def test_the_app_also_runs_on_the_tests_own_event_loop(
        gateway_url: str, gateway: StandInGateway) -> None:
    # The relay (and its lifespan) on this loop, as the demo runs it.
    async with serve_on_loopback(create_app(RelaySettings(gateway_url))) as url, \
            httpx.AsyncClient(base_url=url, trust_env=False) as c:
        r = await c.get(GATEWAY_PATH)
    assert (r.status_code, r.content) == (200, StandInGateway.KEYS)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_gracefully_after_requests_in_flight(
        gateway_url: str, gateway: StandInGateway, sig: signal.Signals) -> None:
    port = free_port()
    code = ("import logging, sys\n"
            "from hushbrief.relay import RelaySettings, run\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
            "run(RelaySettings(sys.argv[1]), '127.0.0.1', int(sys.argv[2]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, gateway_url, str(port)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as c:
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if c.get("/healthz").status_code == 200:
                        break
                assert time.monotonic() < deadline and proc.poll() is None, "relay did not start"
                time.sleep(0.05)
            gateway.respond = gateway.held
            result: list[httpx.Response] = []
            inflight = threading.Thread(target=lambda: result.append(
                c.post(GATEWAY_PATH, content=b"late", headers=OHTTP_REQ)))
            inflight.start()
            deadline = time.monotonic() + 5
            while not gateway.seen:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            proc.send_signal(sig)
            time.sleep(0.3)  # the relay is now draining; the request is still in flight
            gateway.release.set()
            inflight.join(timeout=10)
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
        assert result and result[0].status_code == 200
        assert result[0].content == b"RES:" + b"late"[::-1]
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert "relay stopped" in stderr  # the lifespan shutdown ran: gateway connections closed


# --- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("localhost:8443", ("localhost", 8443)),
    ("relay.example.org:65535", ("relay.example.org", 65535)),
    ("[::1]:8080", ("::1", 8080)),
    ("[::]:1", ("::", 1)),
    (" 127.0.0.1:9000 ", ("127.0.0.1", 9000)),
])
def test_parse_listen_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", [
    "", "8080", ":8080", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:0",
    "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:٨٠", "::1:8080", "[::1]8080", "[::1",
    "[::1]:", "[relay.example]:80", "bad host:80", "http://127.0.0.1:80",
])
def test_parse_listen_refuses_with_one_sentence(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_listen(text)
    message = str(info.value)
    assert message.startswith("Listen address") and message.endswith(".")
    assert "\n" not in message


@pytest.mark.parametrize(("url", "fields"), [
    ("127.0.0.1:8081", {}),
    ("ftp://gateway.example", {}),
    ("http://", {}),
    ("http://user:pw@gateway.example", {}),
    ("http://gateway.example/?next=evil", {}),
    ("http://gateway.example/#x", {}),
    ("http://gateway.example:99999", {}),
    ("http://gateway.example", {"max_body": 0}),
    ("http://gateway.example", {"timeout": 0.0}),
    ("http://gateway.example", {"max_concurrency": 0}),
])
def test_settings_refuse_unusable_values(url: str, fields: dict[str, Any]) -> None:
    with pytest.raises(SettingsError):
        RelaySettings(url, **fields)


def test_gateway_url_may_carry_a_path_prefix() -> None:
    settings = RelaySettings("https://gw.example/hushbrief/")
    assert settings.gateway_endpoint(GATEWAY_PATH) == (
        "https://gw.example/hushbrief/.well-known/ohttp-gateway")
