"""The backend's ASGI app: an Oblivious Gateway Resource (RFC 9458) in front of the summarizer.

Routes (all the backend has; the relay forwards to them, so the backend never
learns who asks):

* ``GET /.well-known/ohttp-gateway`` — the key configurations as
  ``application/ohttp-keys`` (RFC 9540 §3; RFC 9458 §3), with a short
  ``Cache-Control`` max-age. Only the current key is listed (see
  :mod:`hushbrief.backend.keys`).
* ``POST /.well-known/ohttp-gateway`` — an encapsulated request
  (``message/ohttp-req``, RFC 9458 §4.3; RFC 9540 §3).
* ``GET /attestation`` — the evidence bundle (:mod:`hushbrief.backend.evidence`).
* ``GET /healthz`` — 200 while the process serves.

Answers to a POST, and who can read them:

* **Before decryption, in clear, generic.** Wrong media type: 415. Too large:
  413. A key identifier the gateway does not hold, or a KEM/KDF/AEAD that key
  does not offer: 400 ``application/problem+json`` of the ``ohttp-key`` type
  (RFC 9458 §5.3, §8), so that the client refetches the configuration. Anything
  else that keeps the request from opening (truncated, tampered, a replay): a
  bare 400 with no detail — an attacker learns nothing it did not know.
* **After decryption, encapsulated.** Everything else — success and inner
  errors alike (400 not binary HTTP or a stale Date, 404, 405, 413, 415, 422,
  503 busy, 502/504 model failures, 500) — is a 200 ``message/ohttp-res`` with
  ``Cache-Control: private, no-store`` (RFC 9458 §5.2, §6.9). The inner
  response is padded to a size bucket before sealing (:data:`PAD_BUCKETS`), so
  its length says little about the summary.

Replays (RFC 9458 §6.5) are refused in clear with the generic 400: a request
whose ``enc`` was already processed can only come from someone who captured it,
and telling them so reveals nothing. A request whose inner ``Date`` is missing
or outside the window is answered inside the encapsulation with a 400 of the
``date`` problem type carrying the gateway's ``Date`` (RFC 9458 §6.5.1), so the
client can correct its clock. Details in :mod:`hushbrief.backend.replay`.

Nothing of a request outlives its response (DESIGN.md §7, invariant 9): no
body is logged or stored; the replay register holds ``enc`` values and dates.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hushbrief.backend.errors import BadRequest, InternalError
from hushbrief.backend.evidence import EvidenceProvider, TransparencyHook, provider_for
from hushbrief.backend.inner import (
    PROBLEM_JSON,
    EngineSlot,
    InnerRouter,
    SummarizeHandler,
    error_response,
    field_value,
)
from hushbrief.backend.keys import KeyRing
from hushbrief.backend.replay import DateCheck, ReplayRegister, http_date, parse_http_date
from hushbrief.backend.settings import BackendSettings
from hushbrief.backend.transparency import FileTransparency, LogTransparency
from hushbrief.backend.workers import Admission, AsyncEngine, ThreadedEngine
from hushbrief.engines.base import Engine
from hushbrief.engines.extractive import ExtractiveEngine
from hushbrief.ohttp import bhttp
from hushbrief.ohttp.encapsulation import (
    HEADER_LENGTH,
    KEYS_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    ServerResponseContext,
)
from hushbrief.ohttp.errors import MalformedMessage, OHTTPError, UnknownKeyId, UnsupportedSuite
from hushbrief.ohttp.hpke import KemId, kem_params

__all__ = [
    "DATE_PROBLEM",
    "GATEWAY_PATH",
    "OHTTP_KEY_PROBLEM",
    "PAD_BUCKETS",
    "BackendState",
    "create_app",
]

log = logging.getLogger("hushbrief.backend")

GATEWAY_PATH = "/.well-known/ohttp-gateway"
SUMMARIZE_PATH = b"/v1/summarize"
PAD_BUCKETS: tuple[int, ...] = tuple(512 << i for i in range(8))
"""Inner responses are padded to 512 B, 1 KiB, … 64 KiB, then to multiples of 64 KiB."""
KEYS_MAX_AGE = 60
"""Seconds a client or the relay may cache the key configurations (at most ``key_grace``)."""

OHTTP_KEY_PROBLEM = {
    "type": "https://iana.org/assignments/http-problem-types#ohttp-key",
    "title": "key identifier unknown",
}
DATE_PROBLEM = {
    "type": "https://iana.org/assignments/http-problem-types#date",
    "title": "date field not acceptable",
}

Clock = Callable[[], float]
Entropy = Callable[[int], bytes]


@dataclass(slots=True)
class BackendState:
    """Everything the app holds between requests — and nothing of any request."""

    settings: BackendSettings
    platform: str
    clock: Clock
    entropy: Entropy
    keyring: KeyRing
    replay: ReplayRegister
    date_check: DateCheck
    evidence: EvidenceProvider
    engines: dict[str, EngineSlot]
    router: InnerRouter
    limits: bhttp.Limits
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def create_app(
    settings: BackendSettings,
    *,
    platform: str = "dev",
    clock: Clock = time.time,
    engines: Mapping[str, AsyncEngine | Engine] | None = None,
    keyring: KeyRing | None = None,
    evidence: EvidenceProvider | None = None,
    entropy: Entropy = os.urandom,
    rotate_every: float | None = None,
) -> Starlette:
    """The backend as an ASGI app (see the module docstring for its routes).

    ``clock`` (Unix seconds) drives Date checks, the replay register, key
    rotation and bundle times; ``entropy`` supplies key material and response
    nonces. ``engines`` replaces the engines built from ``settings`` (sync
    engines run in worker threads); request ``options.engine`` may name only
    these. ``rotate_every`` overrides ``settings.rotate_every`` (the CLI flag).
    ``keyring`` and ``evidence`` are for tests and future platforms.
    """
    every = settings.rotate_every if rotate_every is None else rotate_every
    if keyring is None:
        keyring = KeyRing(key_grace=settings.key_grace, rotate_every=every, clock=clock,
                          entropy=entropy)
    log_source: LogTransparency | None = None
    hook: TransparencyHook | None = None
    if settings.transparency_url:
        hook = log_source = LogTransparency(settings.transparency_url,
                                            refresh=settings.transparency_refresh)
    elif settings.transparency_file:
        hook = FileTransparency(Path(settings.transparency_file))
    if evidence is None:
        evidence = provider_for(platform, settings.public_engine_settings(), transparency=hook)
    built = _build_engines(settings) if engines is None else dict(engines)
    if not built:
        raise ValueError("at least one engine is needed")
    slots = {
        name: EngineSlot(_as_async(engine),
                         Admission(settings.effective_concurrency(), settings.queue_limit))
        for name, engine in built.items()
    }
    default_engine = settings.engine if settings.engine in slots else next(iter(slots))
    router = InnerRouter()
    router.add(b"POST", SUMMARIZE_PATH, SummarizeHandler(
        slots, default_engine=default_engine, measurement=evidence.measurement,
        max_messages=settings.max_messages, max_body=settings.max_request_bytes,
    ))
    state = BackendState(
        settings=settings, platform=platform, clock=clock, entropy=entropy, keyring=keyring,
        replay=ReplayRegister(settings.replay_window, settings.replay_entries),
        date_check=DateCheck(settings.replay_window), evidence=evidence, engines=slots,
        router=router, limits=bhttp.Limits(max_message=settings.max_request_bytes),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if state.keyring.rotate_every:
            state.tasks.append(asyncio.create_task(_keep_keys(state.keyring),
                                                   name="hushbrief-key-rotation"))
        if log_source is not None:
            # The first fetch completes before the app serves, so the first bundle a
            # client sees already carries the proof.
            await log_source.fetch(evidence.measurement, evidence.platform)
            state.tasks.append(asyncio.create_task(
                log_source.keep_fresh(evidence.measurement, evidence.platform),
                name="hushbrief-transparency"))
        log.info("backend up: platform=%s, engines=%s, measurement=%s",
                 platform, ",".join(slots), evidence.measurement[:16])
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
            for task in state.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.tasks.clear()
            for slot in slots.values():
                close = getattr(slot.engine, "aclose", None)
                if close is not None:
                    await close()

    gateway = _GatewayEndpoints(state)
    app = Starlette(
        routes=[
            Route(GATEWAY_PATH, gateway.dispatch, methods=["GET", "POST"]),
            Route("/attestation", gateway.attestation, methods=["GET"]),
            Route("/healthz", gateway.healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.backend = state
    return app


def _build_engines(settings: BackendSettings) -> dict[str, AsyncEngine | Engine]:
    # Imported here so the extractive-only backend never imports httpx.
    engines: dict[str, AsyncEngine | Engine] = {"extractive": ExtractiveEngine()}
    if "openai" in settings.engines:
        from hushbrief.backend.openai_engine import OpenAIEngine

        engines["openai"] = OpenAIEngine.from_settings(settings)
    return engines


def _as_async(engine: AsyncEngine | Engine) -> AsyncEngine:
    if inspect.iscoroutinefunction(engine.summarize):
        return engine  # type: ignore[return-value]
    return ThreadedEngine(engine)  # type: ignore[arg-type]


async def _keep_keys(keyring: KeyRing) -> None:
    """Rotate and expire keys on time even when no request comes to trigger it."""
    while True:
        wait = keyring.maintain()
        # Wake at the next event, and at least once a minute in case the
        # clock was moved (tests, or a suspended VM that resumed).
        await asyncio.sleep(min(60.0, wait if wait is not None else 60.0) + 0.01)


# --- the endpoints ------------------------------------------------------------------------


def _generic_400() -> Response:
    # No body, no reason: whatever failed, the sender learns only "no".
    return Response(status_code=400, headers={"cache-control": "no-store"})


class _GatewayEndpoints:
    def __init__(self, state: BackendState) -> None:
        self.s = state

    def __repr__(self) -> str:
        return "_GatewayEndpoints()"

    def _keys_max_age(self) -> int:
        return int(min(KEYS_MAX_AGE, self.s.keyring.key_grace)) if (
            self.s.keyring.rotate_every) else KEYS_MAX_AGE

    async def dispatch(self, request: HTTPRequest) -> Response:
        if request.method == "POST":
            return await self.post(request)
        return self.key_configs()

    def key_configs(self) -> Response:
        max_age = self._keys_max_age()
        cache = f"public, max-age={max_age}" if max_age else "no-cache"
        return Response(self.s.keyring.key_configs(), media_type=KEYS_MEDIA_TYPE,
                        headers={"cache-control": cache})

    async def attestation(self, request: HTTPRequest) -> Response:
        now = self.s.clock()
        key_configs = self.s.keyring.key_configs()
        expires = min(now + self.s.settings.bundle_ttl, self.s.keyring.valid_until())
        # Hardware providers talk to a device (configfs-tsm, /dev/nsm) the first time a
        # key configuration is seen: keep that off the event loop.
        bundle = await asyncio.to_thread(self.s.evidence.bundle, key_configs, now=now,
                                         expires_at=expires)
        return JSONResponse(bundle, headers={"cache-control": "no-cache"})

    async def healthz(self, request: HTTPRequest) -> Response:
        return PlainTextResponse("ok\n", headers={"cache-control": "no-store"})

    async def post(self, request: HTTPRequest) -> Response:
        started = time.monotonic()
        content_type = request.headers.get("content-type", "")
        if content_type.strip().lower() != REQUEST_MEDIA_TYPE:
            log.info("gateway: 415")
            return PlainTextResponse("", status_code=415, headers={"cache-control": "no-store"})
        limit = self.s.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            log.info("gateway: 413 (declared)")
            return PlainTextResponse("", status_code=413, headers={"cache-control": "no-store"})
        body = await _read_limited(request, limit)
        if body is None:
            log.info("gateway: 413")
            return PlainTextResponse("", status_code=413, headers={"cache-control": "no-store"})
        size_in = len(body)
        sealed = self._open_and_answer_sync(body)
        del body
        if isinstance(sealed, Response):
            return sealed
        ctx, inner = sealed
        if isinstance(inner, bhttp.Response):
            response = inner
        else:
            try:
                response = await self.s.router.dispatch(inner)
            except Exception as exc:
                # The router maps errors itself; this is a last resort.
                log.error("gateway: inner dispatch failed: %s", type(exc).__name__)
                response = error_response(InternalError())
            del inner
        payload = self._seal(ctx, response)
        log.info("gateway: 200, inner %d, %d B in, %d B out, %.3fs", response.status,
                 size_in, len(payload), time.monotonic() - started)
        del response
        return Response(payload, media_type=RESPONSE_MEDIA_TYPE,
                        headers={"cache-control": "private, no-store"})

    def _open_and_answer_sync(
        self, body: bytes
    ) -> Response | tuple[ServerResponseContext, bhttp.Request | bhttp.Response]:
        """Decapsulate, decode, check Date and replay: one step, no awaits.

        Returns a clear outer response (refused before decryption), or the
        response context with either the inner request to dispatch or an inner
        response already decided. Running without ``await`` keeps the replay
        check and the register update atomic on the event loop.
        """
        now = self.s.clock()
        enc = _enc_of(body)
        if enc is not None and self.s.replay.seen(enc, now):
            log.info("gateway: 400 (replayed request)")
            return _generic_400()
        try:
            inner_bytes, ctx = self.s.keyring.gateway().decapsulate(body)
        except (UnknownKeyId, UnsupportedSuite):
            log.info("gateway: 400 (key configuration)")
            return Response(json.dumps(OHTTP_KEY_PROBLEM).encode(), status_code=400,
                            media_type="application/problem+json",
                            headers={"cache-control": "no-store"})
        except OHTTPError as exc:
            log.info("gateway: 400 (%s)", type(exc).__name__)
            return _generic_400()
        try:
            inner = bhttp.decode_request(inner_bytes, self.s.limits)
        except MalformedMessage:
            # Decrypted, so the client is real: tell it, encapsulated.
            return ctx, error_response(BadRequest("The request is not valid binary HTTP."))
        finally:
            del inner_bytes
        date_value = field_value(inner.fields, b"date")
        date = parse_http_date(date_value) if date_value is not None else None
        if not self.s.date_check.fresh(date, now, self.s.replay.floor):
            log.info("gateway: inner 400 (date)")
            return ctx, bhttp.Response(
                status=400,
                fields=((b"content-type", PROBLEM_JSON), (b"date", http_date(now).encode())),
                content=json.dumps(DATE_PROBLEM).encode(),
            )
        assert date is not None
        if not self.s.replay.add(ctx.enc, date, now):
            log.info("gateway: 400 (replayed request)")
            return _generic_400()
        return ctx, inner

    def _seal(self, ctx: ServerResponseContext, response: bhttp.Response) -> bytes:
        try:
            plain = bhttp.encode_response(response)
        except (TypeError, ValueError) as exc:
            log.error("gateway: inner response not encodable: %s", type(exc).__name__)
            response = error_response(InternalError())
            plain = bhttp.encode_response(response)
        target = bhttp.padded_length(len(plain), PAD_BUCKETS)
        padded = bhttp.encode_response(response, padding=target - len(plain))
        return ctx.seal_response(padded, nonce=self.s.entropy(ctx.nonce_length))


def _enc_of(body: bytes) -> bytes | None:
    """The ``enc`` of an encapsulated request, if its header names a known KEM."""
    if len(body) < HEADER_LENGTH:
        return None
    try:
        kem = KemId(int.from_bytes(body[1:3], "big"))
    except ValueError:
        return None
    end = HEADER_LENGTH + kem_params(kem).n_enc
    return body[HEADER_LENGTH:end] if len(body) >= end else None


async def _read_limited(request: HTTPRequest, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)

