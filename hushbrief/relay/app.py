"""The Oblivious Relay Resource (RFC 9458 §5, §6.2) as a plain ASGI application.

The relay sees the bot's address, ciphertext, sizes and timing, never plaintext or keys
(DESIGN.md §1). Its duties, and where each is kept:

* Accept only what RFC 9458 §5 defines: ``POST /.well-known/ohttp-gateway`` with content
  type ``message/ohttp-req`` (else 415), a bounded body (else 413, checked against the
  declared Content-Length before reading and again while reading, so a chunked or lying
  upload cannot get around it), and the two public GETs the bot needs before it encrypts:
  the key configurations (RFC 9540 §3) and the evidence bundle, relayed too so that the
  backend never sees the bot's address (DESIGN.md §4).
* Forward to the one configured gateway and nowhere else: the upstream URL is fixed at
  start-up; nothing from the client's request target, ``Host`` header or query is ever
  used to choose it (``upstream.py``).
* Add nothing that identifies the client (§6.2): the gateway receives only Content-Type
  and Content-Length; no Via, Forwarded, X-Forwarded-For, cookie, user agent or address.
  The Content-Type forwarded is always the canonical lowercase string, so not even the
  spelling a client chose can act as a marker.
* Pass back only status, Content-Type, Content-Length and Cache-Control (a gateway 4xx such
  as the §5.3 ``ohttp-key`` problem is passed through as it is). A 200 must carry the media
  type its route defines, or the client gets 502.
* Bound its resources (§6.2.2): at most ``max_concurrency`` forwarded requests in flight,
  then 503 with Retry-After; one deadline for each gateway exchange.
* Treat bodies as opaque bytes: it cannot decrypt (an import contract forbids key-handling
  code here), and it never logs or measures anything but sizes, timings and outcomes.

Status codes it produces itself: 400 malformed Content-Length, 404 unknown path, 405 wrong
method (with Allow), 413 body too large, 415 wrong media type, 502 gateway unreachable or
its answer unusable, 503 too many requests in flight, 504 gateway too slow. It is written
as a bare ASGI callable rather than on a framework because it has five routes and must
control every header it sends.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from hushbrief.relay.errors import (
    BadGatewayResponse,
    BadRequest,
    BodyTooLarge,
    ClientGone,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    Outcome,
    Overloaded,
    RelayError,
    UnsupportedMediaType,
)
from hushbrief.relay.metrics import RelayMetrics, RequestRecord, Route
from hushbrief.relay.settings import ATTESTATION_PATH, OHTTP_GATEWAY_PATH, RelaySettings
from hushbrief.relay.upstream import Gateway, GatewayReply

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

#: RFC 9458 §4.5 and §3.2 media types.
OHTTP_REQUEST = "message/ohttp-req"
OHTTP_RESPONSE = "message/ohttp-res"
OHTTP_KEYS = "application/ohttp-keys"
JSON = "application/json"

_TEXT = b"text/plain; charset=utf-8"
# With an unread body still arriving, closing is the only way to stop reading it: without
# this, the server would keep draining (and discarding) an upload of any length.
_CLOSE = (("connection", "close"),)
_log = logging.getLogger("hushbrief.relay")

# What a 200 from the gateway must be, per route; anything else is not passed on.
_EXPECTED_MEDIA_TYPE = {
    Route.REQUEST: OHTTP_RESPONSE,
    Route.KEYS: OHTTP_KEYS,
    Route.ATTESTATION: JSON,
}
# Probes and scrapes come every few seconds; their log lines would drown the rest.
_QUIET_ROUTES = frozenset({Route.HEALTHZ, Route.READYZ, Route.METRICS})


def create_app(settings: RelaySettings, *,
               transport: httpx.AsyncBaseTransport | None = None) -> RelayApp:
    """The relay as an ASGI application, forwarding to ``settings.gateway_url``.

    ``transport`` replaces the default ``httpx.AsyncHTTPTransport`` (tests, or a custom TLS
    setup). As with ``httpx.AsyncClient``, the app owns the transport it is given and closes
    it at lifespan shutdown.
    """
    return RelayApp(settings, transport)


class RelayApp:
    """An ASGI 3 application; use ``create_app`` to make one."""

    def __init__(self, settings: RelaySettings,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.metrics = RelayMetrics()
        self._gateway = Gateway(settings, transport)
        self._in_flight = 0
        # path → method → route. Matching is exact on the decoded path: no normalization,
        # so "/x/../attestation" or "//attestation" are simply unknown (404).
        self._routes: dict[str, dict[str, Route]] = {
            OHTTP_GATEWAY_PATH: {"POST": Route.REQUEST, "GET": Route.KEYS},
            ATTESTATION_PATH: {"GET": Route.ATTESTATION},
            "/healthz": {"GET": Route.HEALTHZ},
            "/readyz": {"GET": Route.READYZ},
        }
        if settings.expose_metrics:
            self._routes["/metrics"] = {"GET": Route.METRICS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # the server runs with WebSockets disabled; nothing else is served
        started = time.perf_counter()
        record = RequestRecord()
        try:
            await self._dispatch(scope, receive, send, record)
        except RelayError as exc:
            record.outcome = exc.outcome
            await _send_response(send, record, exc.status, (exc.message + "\n").encode(),
                                 [(b"content-type", _TEXT),
                                  *((k.encode(), v.encode()) for k, v in exc.headers)])
        except ClientGone:
            record.outcome = Outcome.CLIENT_GONE
        except Exception as exc:
            record.outcome = Outcome.INTERNAL_ERROR
            # Only the type and the stack: an exception's message is not vetted and could,
            # in principle, quote bytes it was handed.
            _log.error("internal error %s\n%s", type(exc).__name__,
                       "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            if record.status is None:
                await _send_response(send, record, 500, b"Internal relay error.\n",
                                     [(b"content-type", _TEXT)])
        duration = time.perf_counter() - started
        self.metrics.observe(record, duration)
        _log.log(
            logging.DEBUG if record.route in _QUIET_ROUTES else logging.INFO,
            "route=%s status=%s outcome=%s request_bytes=%d response_bytes=%d "
            "upstream_ms=%s duration_ms=%.1f",
            record.route.value, record.status if record.status is not None else "-",
            record.outcome.value, record.request_bytes, record.response_bytes,
            f"{record.upstream_seconds * 1000:.1f}" if record.upstream_seconds is not None
            else "-",
            duration * 1000,
        )

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send,
                        record: RequestRecord) -> None:
        methods = self._routes.get(scope["path"])
        if methods is None:
            raise NotFound("Not found.")
        route = methods.get(scope["method"])
        if route is None:
            record.route = next(iter(methods.values()))
            raise MethodNotAllowed("Method not allowed.",
                                   headers=(("allow", ", ".join(sorted(methods))),))
        record.route = route
        if route is Route.REQUEST:
            await self._forward_request(scope, receive, send, record)
        elif route is Route.KEYS:
            await self._forward_get(self._gateway.ohttp_url, send, record)
        elif route is Route.ATTESTATION:
            await self._forward_get(self._gateway.attestation_url, send, record)
        elif route is Route.HEALTHZ:
            record.outcome = Outcome.SERVED
            await _send_response(send, record, 200, b"ok\n", [(b"content-type", _TEXT)])
        elif route is Route.READYZ:
            await self._ready(send, record)
        elif route is Route.METRICS:
            record.outcome = Outcome.SERVED
            body, content_type = self.metrics.exposition()
            await _send_response(send, record, 200, body,
                                 [(b"content-type", content_type.encode())])

    async def _forward_request(self, scope: Scope, receive: Receive, send: Send,
                               record: RequestRecord) -> None:
        headers: Headers = scope["headers"]
        content_types = [v for k, v in headers if k == b"content-type"]
        if len(content_types) != 1 or not _is_ohttp_request(content_types[0]):
            raise UnsupportedMediaType("The content type must be exactly message/ohttp-req.")
        # Refuse an over-long declared body before reading a byte of it. h11 has already
        # rejected malformed or conflicting Content-Length values; stay defensive anyway.
        lengths = [v for k, v in headers if k == b"content-length"]
        if lengths:
            if not lengths[0].isdigit():
                raise BadRequest("The Content-Length is not a number.")
            if int(lengths[0]) > self.settings.max_body:
                raise BodyTooLarge(f"The body is larger than {self.settings.max_body} bytes.",
                                   headers=_CLOSE)
        async with self._slot():
            body = await _read_body(receive, self.settings.max_body)
            record.request_bytes = len(body)
            reply = await self._exchange(record, "POST", self._gateway.ohttp_url,
                                         content_type=OHTTP_REQUEST, body=body)
            await self._pass_back(send, record, reply)

    async def _forward_get(self, url: httpx.URL, send: Send, record: RequestRecord) -> None:
        # A body on a GET is ignored, not forwarded: the upstream request is built from nothing.
        async with self._slot():
            reply = await self._exchange(record, "GET", url)
            await self._pass_back(send, record, reply)

    async def _exchange(self, record: RequestRecord, method: str, url: httpx.URL, *,
                        content_type: str | None = None, body: bytes | None = None,
                        deadline: float | None = None) -> GatewayReply:
        started = time.perf_counter()
        try:
            reply = await self._gateway.exchange(method, url, content_type=content_type,
                                                 body=body, deadline=deadline)
        finally:
            record.upstream_seconds = time.perf_counter() - started
        record.upstream_status = reply.status
        return reply

    async def _pass_back(self, send: Send, record: RequestRecord, reply: GatewayReply) -> None:
        # 200 is the only success any of the gateway's resources defines. Redirects are not
        # followed (the relay goes nowhere else) and cannot be passed on without Location;
        # other 2xx and 1xx have no meaning here. 4xx/5xx travel back as they are
        # (RFC 9458 §5.2: errors before decapsulation are sent in the clear).
        if reply.status == 200:
            if _media_type(reply.content_type) != _EXPECTED_MEDIA_TYPE[record.route]:
                raise BadGatewayResponse("The gateway answered with an unexpected content type.")
        elif not 400 <= reply.status <= 599:
            raise BadGatewayResponse("The gateway answered with an unexpected status.")
        headers: Headers = []
        if reply.content_type is not None:
            headers.append((b"content-type", reply.content_type))
        if reply.cache_control is not None:
            headers.append((b"cache-control", reply.cache_control))
        record.outcome = Outcome.FORWARDED
        await _send_response(send, record, reply.status, reply.body, headers)

    async def _ready(self, send: Send, record: RequestRecord) -> None:
        """200 when the gateway answers a key-configuration fetch at all (any status < 500)."""
        record.outcome = Outcome.SERVED
        deadline = min(self.settings.timeout, self.settings.connect_timeout + 5.0)
        try:
            reply = await self._exchange(record, "GET", self._gateway.ohttp_url,
                                         deadline=deadline)
        except GatewayError:
            ready = False
        else:
            ready = reply.status < 500
        body = b"ready\n" if ready else b"The gateway is not reachable.\n"
        await _send_response(send, record, 200 if ready else 503, body,
                             [(b"content-type", _TEXT)])

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        # Refuse at once rather than queue: a queue would hold bodies in memory and add
        # latency a client cannot see the end of; Retry-After tells it when to come back.
        # One event loop, so a plain counter is race-free.
        if self._in_flight >= self.settings.max_concurrency:
            raise Overloaded("The relay is busy; try again shortly.",
                             headers=(("retry-after", str(self.settings.retry_after)),))
        self._in_flight += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self._in_flight -= 1
            self.metrics.in_flight.dec()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _log.info("relay started, forwarding to %s", self.settings.gateway_url)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._gateway.aclose()
                _log.info("relay stopped")
                await send({"type": "lifespan.shutdown.complete"})
                return


def _is_ohttp_request(value: bytes) -> bool:
    # "Exactly message/ohttp-req": RFC 9458 §4.5 defines the type with no parameters, so
    # any parameter (even "; charset=x") is refused. Type and subtype are compared
    # case-insensitively, as RFC 9110 §8.3.1 requires; the canonical spelling is what
    # the gateway receives. h11 has already stripped surrounding whitespace.
    return value.lower() == OHTTP_REQUEST.encode()


def _media_type(value: bytes | None) -> str | None:
    """The type/subtype of a Content-Type value, lowercased, without parameters."""
    if value is None:
        return None
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or ``BodyTooLarge`` as soon as it passes ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The body is larger than {limit} bytes.", headers=_CLOSE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_response(send: Send, record: RequestRecord, status: int, body: bytes,
                         headers: Headers) -> None:
    # The record is updated first: if sending fails half-way, nothing tries to answer twice.
    record.status = status
    record.response_bytes = len(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
