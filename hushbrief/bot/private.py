"""The private processing path, seen from the bot: OHTTP as an httpx transport.

``OHTTPTransport`` turns every request of an ordinary ``httpx.AsyncClient``
into a binary HTTP message (RFC 9292), pads it to a size bucket, encapsulates
it to the gateway's key (RFC 9458 §4.3) and POSTs it to the relay; the answer
is decapsulated and decoded back into an ``httpx.Response``. The backend client
(``PrivateProcessor``) is therefore plain httpx code, and tests can swap the
outer transport for an in-process app.

Who learns what: the relay sees this host's address, the padded size and the
timing, never the content; the gateway sees the content (pseudonymous turns),
never this host's address. Only a whitelisted handful of inner headers travel,
so nothing about this bot's software or identity rides along inside either.

The key the transport encrypts to comes from a ``KeySource``; the bot's is
``AttestedKeySource``, which hands out only keys bound to verified evidence,
so nothing is sent without one.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from hushbrief.bot.processing import ProcessedSummary, ProcessingError
from hushbrief.engines.base import SummaryOptions, Turn
from hushbrief.ohttp.bhttp import Request as BinaryRequest
from hushbrief.ohttp.bhttp import decode_response, encode_request, padded_length
from hushbrief.ohttp.encapsulation import (
    KEYS_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    encapsulate_request,
)
from hushbrief.ohttp.errors import OHTTPError
from hushbrief.ohttp.keyconfig import KeyConfig, SymmetricSuite, choose_config, decode_key_configs

log = logging.getLogger("hushbrief.private")

GATEWAY_PATH = "/.well-known/ohttp-gateway"
INNER_BASE = "https://gateway.invalid"
"""The inner requests' origin. The gateway serves one origin, so this name
carries no information; ``.invalid`` can never resolve if it ever leaked."""

# Inner request sizes are padded up to one of these, so the relay learns only a
# coarse size class of the thread: powers of two from 1 KiB to 64 KiB, where most
# threads fall, then steps of a factor of about 1.19 (2^(1/4)) up to 16 MiB, so that
# large threads waste at most a fifth of their size and do not jump over the
# relay's and the backend's size limits.
PAD_BUCKETS: tuple[int, ...] = (
    *(1024 << i for i in range(7)),
    *(round(65536 * 2 ** (i / 4) / 1024) * 1024 for i in range(1, 33)),
)
_INNER_HEADERS = frozenset({"content-type", "accept", "date"})


# --- errors ---------------------------------------------------------------------------------

class PrivatePathError(Exception):
    """The private path failed. ``str(exc)`` is one sentence for a user, with no content."""


class RelayUnreachable(PrivatePathError):
    """The request never reached the relay: nothing was sent."""


class RelayRejected(PrivatePathError):
    """The relay or the gateway refused the encapsulated request."""


class KeyUnavailable(PrivatePathError):
    """No usable key configuration: nothing was sent."""


class KeyRejected(RelayRejected):
    """The gateway does not know the key we used (RFC 9458 §5.2 ``ohttp-key`` problem)."""


class ResponseInvalid(PrivatePathError):
    """The answer could not be decapsulated or decoded: tampered, truncated or foreign."""


class Timeout(PrivatePathError):
    """No answer in time."""


# --- keys -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GatewayKey:
    config: KeyConfig
    suite: SymmetricSuite
    measurement: str | None = None
    """The attested measurement behind this key, when an attesting source vouched for it."""
    dev: bool = False
    """Vouched for only by dev attestation: no hardware protects the backend."""


class KeySource(Protocol):
    async def current(self) -> GatewayKey:
        """The key to encrypt to; raises ``PrivatePathError`` if there is none to trust."""
        ...

    def invalidate(self) -> None:
        """Forget the cached key (the gateway rejected it, or it rotated)."""
        ...


class RelayKeySource:
    """Key configurations fetched through the relay (RFC 9540 discovery), UNVERIFIED.

    This source checks nothing about who holds the key. The bot never uses it:
    it uses ``hushbrief.bot.attestation.source.AttestedKeySource``. It exists for
    interoperability tests and benchmarks of the bare OHTTP path.
    """

    def __init__(self, client: httpx.AsyncClient, relay_url: str, *, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._url = relay_url.rstrip("/") + GATEWAY_PATH
        self._ttl = ttl
        self._clock = clock
        self._cached: tuple[float, GatewayKey] | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> GatewayKey:
        async with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] < self._ttl:
                return self._cached[1]
            try:
                resp = await self._client.get(self._url, headers={"accept": KEYS_MEDIA_TYPE})
            except httpx.TimeoutException:
                raise Timeout("The relay did not answer in time, so nothing was sent.") from None
            except httpx.HTTPError:
                raise RelayUnreachable("The relay cannot be reached right now, so nothing "
                                       "was sent.") from None
            if resp.status_code != 200 or _media_type(resp) != KEYS_MEDIA_TYPE:
                log.warning("key_fetch_failed status=%d", resp.status_code)
                raise KeyUnavailable("The private summarizer did not offer a usable key, so "
                                     "nothing was sent.")
            try:
                config, suite = choose_config(decode_key_configs(resp.content))
            except OHTTPError:
                raise KeyUnavailable("The private summarizer offered no key this bot can use, "
                                     "so nothing was sent.") from None
            key = GatewayKey(config, suite)
            self._cached = (self._clock(), key)
            return key

    def invalidate(self) -> None:
        self._cached = None


# --- the transport --------------------------------------------------------------------------

class OHTTPTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends every request obliviously through the relay."""

    def __init__(
        self,
        *,
        relay_url: str,
        keys: KeySource,
        outer: httpx.AsyncClient,
        random: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], float] = time.time,
        buckets: Sequence[int] = PAD_BUCKETS,
    ) -> None:
        self._url = relay_url.rstrip("/") + GATEWAY_PATH
        self._keys = keys
        self._outer = outer
        self._random = random
        self._clock = clock
        self._buckets = tuple(buckets)
        self.last_key: GatewayKey | None = None
        """The key the most recent successful request was encrypted to."""
        self._skew = 0.0
        """Seconds the gateway's clock is ahead of ours, learned from its date problem."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        response = await self._send(self._binary_request(request, body), retry_on_key_error=True)
        skew = _date_problem_skew(response, self._clock())
        if skew is None:
            return response
        # RFC 9458 §6.5: the gateway refused our Date and told us its own. Adopt the
        # offset and try once more; a second refusal goes back to the caller.
        self._skew = skew
        log.info("gateway_clock_skew seconds=%.0f", skew)
        return await self._send(self._binary_request(request, body), retry_on_key_error=True)

    async def aclose(self) -> None:
        await self._outer.aclose()

    def _binary_request(self, request: httpx.Request, body: bytes) -> BinaryRequest:
        url = request.url
        path = url.raw_path.decode("ascii")
        fields = [(k.lower().encode(), v.encode("latin-1"))
                  for k, v in request.headers.items() if k.lower() in _INNER_HEADERS]
        if not any(name == b"date" for name, _ in fields):
            # The gateway refuses requests whose Date is far from its clock (RFC 9458 §6.5),
            # which bounds how long a captured request could be replayed.
            now = self._clock() + self._skew
            fields.append((b"date", email.utils.formatdate(now, usegmt=True).encode()))
        return BinaryRequest(
            method=request.method.encode(), scheme=url.scheme.encode(), authority=b"",
            path=path.encode(), fields=tuple(fields), content=body,
        )

    async def _send(self, inner: BinaryRequest, *, retry_on_key_error: bool) -> httpx.Response:
        key = await self._keys.current()
        plain = encode_request(inner)
        # Padding is trailing zero bytes (RFC 9292 §3.8): append them, don't re-encode.
        encoded = plain.ljust(padded_length(len(plain), self._buckets), b"\0")
        try:
            enc_request, context = encapsulate_request(
                key.config, key.suite, encoded, ephemeral_ikm=self._random(32))
        except OHTTPError:
            raise KeyUnavailable("The private summarizer's key cannot be used, so nothing "
                                 "was sent.") from None
        try:
            resp = await self._outer.post(
                self._url, content=enc_request,
                headers={"content-type": REQUEST_MEDIA_TYPE, "accept": RESPONSE_MEDIA_TYPE})
        except httpx.ConnectError:
            raise RelayUnreachable("The relay cannot be reached right now, so nothing was "
                                   "sent.") from None
        except httpx.TimeoutException:
            raise Timeout("The private summarizer did not answer in time; no summary came "
                          "back.") from None
        except httpx.HTTPError:
            raise RelayUnreachable("The connection to the relay failed; no summary came "
                                   "back.") from None
        if resp.status_code == 400 and _is_key_problem(resp):
            self._keys.invalidate()
            if retry_on_key_error:
                # The gateway rotated its key: fetch the new one and try once more.
                return await self._send(inner, retry_on_key_error=False)
            raise KeyRejected("The private summarizer rejected its own advertised key, so "
                              "nothing was processed.")
        if resp.status_code != 200 or _media_type(resp) != RESPONSE_MEDIA_TYPE:
            log.warning("relay_rejected status=%d", resp.status_code)
            if resp.status_code == 413:
                raise RelayRejected("That thread is larger than the relay accepts, so nothing "
                                    "was processed; ask for fewer messages.")
            if resp.status_code in (502, 503, 504):
                raise RelayRejected("The relay could not reach the private summarizer; no "
                                    "summary came back.")
            raise RelayRejected("The relay or the private summarizer refused the request; no "
                                "summary came back.")
        try:
            answer = decode_response(context.open_response(resp.content))
        except OHTTPError:
            raise ResponseInvalid("The private summarizer's answer failed its integrity "
                                  "check and was discarded.") from None
        self.last_key = key
        headers = [(name.decode("latin-1"), value.decode("latin-1"))
                   for name, value in answer.fields]
        return httpx.Response(answer.status, headers=headers, content=answer.content)


def _media_type(resp: httpx.Response) -> str:
    value: str = resp.headers.get("content-type", "")
    return value.split(";", 1)[0].strip().lower()


def _problem_type(resp: httpx.Response) -> str:
    if _media_type(resp) != "application/problem+json":
        return ""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    return str(doc.get("type", "")) if isinstance(doc, dict) else ""


def _is_key_problem(resp: httpx.Response) -> bool:
    return _problem_type(resp).endswith("#ohttp-key")


def _date_problem_skew(resp: httpx.Response, now: float) -> float | None:
    """The gateway's clock minus ours, if ``resp`` is its ``date`` problem (RFC 9458 §6.5)."""
    if resp.status_code != 400 or not _problem_type(resp).endswith("#date"):
        return None
    try:
        gateway_now = email.utils.parsedate_to_datetime(resp.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return gateway_now - now


# --- the processor --------------------------------------------------------------------------

class PrivateProcessor:
    """Summaries made by the backend, reached only through the relay."""

    def __init__(self, transport: OHTTPTransport, *, engine: str = "extractive",
                 privacy_note: str | None = None) -> None:
        self._transport = transport
        self._privacy_note = privacy_note
        # Timeouts live on the outer client, where the waiting happens.
        self._client = httpx.AsyncClient(transport=transport, timeout=None)  # noqa: S113
        self._engine = engine

    @property
    def privacy_note(self) -> str | None:
        return self._privacy_note

    async def aclose(self) -> None:
        """Close the inner client, and with it the transport and the outer client."""
        await self._client.aclose()

    async def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> ProcessedSummary:
        body: dict[str, Any] = {
            "version": 1,
            "messages": [{"speaker": t.speaker, "text": t.text, "t": round(t.t, 3),
                          "reply_to": t.reply_to} for t in turns],
            "options": {"engine": self._engine, "max_words": options.max_words,
                        "language": options.language, "style": options.style.value},
        }
        # Compact UTF-8 (orjson's only form): the smallest encoding is the fastest to
        # pad, encrypt, relay and parse, and keeps more threads in a smaller size bucket.
        content = orjson.dumps(body)
        try:
            resp = await self._client.post(
                f"{INNER_BASE}/v1/summarize", content=content,
                headers={"content-type": "application/json", "accept": "application/json"})
        except PrivatePathError as exc:
            log.info("private_failed type=%s", type(exc).__name__)
            raise ProcessingError(str(exc)) from None
        if resp.status_code != 200:
            log.info("private_failed inner_status=%d", resp.status_code)
            raise ProcessingError(_inner_failure(resp.status_code))
        try:
            doc = resp.json()
            summary, engine = doc["summary"], doc["engine"]
            measurement = doc.get("measurement")
            if not isinstance(summary, str) or not isinstance(engine, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ProcessingError("The private summarizer's answer was not understood; no "
                                  "summary came back.") from None
        key = self._transport.last_key
        if not isinstance(measurement, str):
            measurement = key.measurement if key else None
        notes = []
        if measurement:
            notes.append(f"measurement {measurement[:12]}…")
        if key is not None and key.dev:
            notes.append("dev attestation")
        where = "in the private backend" + (f" ({', '.join(notes)})" if notes else "")
        return ProcessedSummary(text=summary, engine=engine,
                                where=where + ", reached through the relay",
                                measurement=measurement)


def _inner_failure(status: int) -> str:
    if status in (429, 503):
        return "The private summarizer is busy right now; please try again in a minute."
    if status == 413:
        return "That is more than the private summarizer accepts; ask for fewer messages."
    if status in (400, 422):
        return "The private summarizer refused the request as malformed; no summary came back."
    return "The private summarizer failed to make a summary; please try again later."


def unattested(relay_url: str) -> Callable[[httpx.AsyncClient], KeySource]:
    """A key-source factory that trusts whatever key the relay serves (tests, benchmarks)."""
    return lambda outer: RelayKeySource(outer, relay_url)


def build_private_processor(
    relay_url: str, *, keys: Callable[[httpx.AsyncClient], KeySource],
    timeout: float = 60.0, engine: str = "extractive",
    outer_transport: httpx.AsyncBaseTransport | None = None, privacy_note: str | None = None,
) -> PrivateProcessor:
    """Wire the outer client, the key source and the transport; ``aclose()`` the result.

    ``keys`` builds the key source from the outer client. The bot passes an
    attested source; only tests and benchmarks use the unverified
    :class:`RelayKeySource`, and must say so at the call site.
    """
    outer = httpx.AsyncClient(
        transport=outer_transport,
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        # No redirects and no proxy settings from the environment: the relay is the
        # only place these requests may go.
        follow_redirects=False, trust_env=False,
        headers={"user-agent": "hushbrief"},
    )
    source = keys(outer)
    transport = OHTTPTransport(relay_url=relay_url, keys=source, outer=outer)
    return PrivateProcessor(transport, engine=engine, privacy_note=privacy_note)
