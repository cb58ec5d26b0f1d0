"""The relay's only way out: one exchange with the one configured gateway.

RFC 9458 §6.2 asks the Oblivious Relay Resource not to forward what could identify the
client; the simplest way to be sure is to build every upstream request from nothing.
``Gateway.exchange`` takes a method, one of two fixed URLs (chosen at start-up from
``RelaySettings``), an optional content type and the body bytes, and constructs the
``httpx.Request`` itself, so the gateway receives exactly ``Host`` (its own authority),
``Content-Type`` and ``Content-Length``, and nothing else.

The request goes straight to an ``httpx.AsyncBaseTransport`` rather than through
``httpx.AsyncClient``, on purpose: a client would add default headers (``User-Agent``,
``Accept-Encoding``), keep a cookie jar shared by every user of the relay, follow
redirects, and (with ``trust_env``) read proxy settings and ``.netrc`` from the
environment. A bare transport does none of that. Connections to the gateway are pooled
and reused across clients, which is fine — requests from many clients mixing on the same
connections is the point of a relay. (The default is several small pools; see
``Gateway.__init__`` for why.)

httpx's exceptions are translated here, where they enter, into the ``GatewayError`` tree:
no connection → 502 ``GatewayUnreachable`` (the gateway never saw the request), no answer in
time → 504 ``GatewayTimeout``, anything broken in the answer → 502 ``BadGatewayResponse``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import httpx

from hushbrief.relay.errors import BadGatewayResponse, GatewayTimeout, GatewayUnreachable
from hushbrief.relay.settings import ATTESTATION_PATH, OHTTP_GATEWAY_PATH, RelaySettings


@dataclass(frozen=True, slots=True)
class GatewayReply:
    """The parts of a gateway response the relay may pass on, with the body read in full."""

    status: int
    content_type: bytes | None
    cache_control: bytes | None
    body: bytes


#: Connections per httpcore pool; see ``Gateway.__init__``.
POOL_STRIPE = 16


class Gateway:
    """The configured gateway, reached through transports that this object owns."""

    def __init__(self, settings: RelaySettings,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.ohttp_url = httpx.URL(settings.gateway_endpoint(OHTTP_GATEWAY_PATH))
        self.attestation_url = httpx.URL(settings.gateway_endpoint(ATTESTATION_PATH))
        self._max_response = settings.max_response
        self._deadline = settings.timeout
        # httpx's read/write timeouts are per operation; the overall deadline in exchange()
        # bounds a gateway that trickles its answer byte by byte.
        self._timeouts = httpx.Timeout(settings.timeout,
                                       connect=settings.connect_timeout).as_dict()
        if transport is not None:
            self._transports = [transport]
        else:
            # Several small pools instead of one large one. httpcore's pool re-scans every
            # connection for each queued request, and all of them again for each idle one:
            # quadratic in its size (encode/httpx#3215). One pool of 260 connections cost
            # the relay ~6 ms of CPU per request at 50 concurrent; stripes of 16 keep the
            # scans short. A few connections beyond the concurrency limit serve /readyz.
            stripes = math.ceil((settings.max_concurrency + 4) / POOL_STRIPE)
            tls = httpx.create_ssl_context()  # one context: loading the CA bundle is slow
            self._transports = [
                httpx.AsyncHTTPTransport(
                    verify=tls,
                    retries=0,  # a retried POST could reach the gateway twice
                    limits=httpx.Limits(max_connections=POOL_STRIPE,
                                        max_keepalive_connections=POOL_STRIPE),
                )
                for _ in range(stripes)
            ]
        # Exchanges in flight per transport; each exchange goes to the least busy one.
        self._busy = [0] * len(self._transports)

    async def exchange(self, method: str, url: httpx.URL, *, content_type: str | None = None,
                       body: bytes | None = None, deadline: float | None = None) -> GatewayReply:
        """Send one request to the gateway and read its answer, bounded in size and time.

        ``url`` must be ``ohttp_url`` or ``attestation_url``; callers never build URLs.
        """
        assert url in (self.ohttp_url, self.attestation_url)
        headers = [("content-type", content_type)] if content_type is not None else []
        request = httpx.Request(method, url, headers=headers, content=body,
                                extensions={"timeout": self._timeouts})
        stripe = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[stripe] += 1
        try:
            async with asyncio.timeout(self._deadline if deadline is None else deadline):
                response = await self._transports[stripe].handle_async_request(request)
                try:
                    content = await self._read_bounded(response)
                finally:
                    await response.aclose()
        # ConnectTimeout is a TimeoutException: it has to be caught first, as "unreachable".
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnreachable("The gateway cannot be reached.") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise GatewayTimeout("The gateway did not answer in time.") from exc
        except httpx.TransportError as exc:
            raise BadGatewayResponse("The gateway's answer was broken off.") from exc
        finally:
            self._busy[stripe] -= 1
        # Raw bytes, so that values pass through unchanged whatever their encoding.
        content_types = _raw_values(response, b"content-type")
        if len(content_types) > 1:
            raise BadGatewayResponse("The gateway sent more than one content type.")
        cache_control = _raw_values(response, b"cache-control")
        return GatewayReply(
            status=response.status_code,
            content_type=content_types[0] if content_types else None,
            cache_control=b", ".join(cache_control) if cache_control else None,
            body=content,
        )

    async def _read_bounded(self, response: httpx.Response) -> bytes:
        # Only Content-Type, Content-Length and Cache-Control are passed on, so a
        # Content-Encoding would leave the client with bytes it cannot decode. The relay
        # sends no Accept-Encoding; a gateway that encodes anyway is misbehaving.
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise BadGatewayResponse("The gateway sent an encoded answer.")
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_response:
            raise BadGatewayResponse("The gateway's answer is too large.")
        chunks: list[bytes] = []
        size = 0
        # The declared length can be absent (chunked) or wrong; count what actually arrives.
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self._max_response:
                raise BadGatewayResponse("The gateway's answer is too large.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


def _raw_values(response: httpx.Response, name: bytes) -> list[bytes]:
    return [value for key, value in response.headers.raw if key.lower() == name]
