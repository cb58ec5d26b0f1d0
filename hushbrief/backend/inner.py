"""The HTTP service *inside* the encapsulation: a small router and ``POST /v1/summarize``.

Decapsulated requests are RFC 9292 binary HTTP messages, already in memory as
:class:`~hushbrief.ohttp.bhttp.Request` values, so they are dispatched by
this router directly instead of being replayed through a second ASGI app. A
handler takes a request and returns a :class:`~hushbrief.ohttp.bhttp.Response`;
anything it raises as :class:`~hushbrief.backend.errors.InnerError` becomes
an inner error response (``{"error": "<one sentence>"}``), anything else an
inner 500 whose details go nowhere. The gateway encapsulates whatever comes
back, so only the client reads these statuses (RFC 9458 §5.2).

Nothing here keeps a request: handlers get the request, return the response,
and the summarize handler's only state is its engines and their admission
limits (DESIGN.md §7, invariant 9). Logs carry route, status, sizes, engine
and duration only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from hushbrief.backend import schema
from hushbrief.backend.errors import (
    InnerError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from hushbrief.backend.workers import Admission, AsyncEngine
from hushbrief.engines.base import EngineError
from hushbrief.ohttp.bhttp import Field, Request, Response

__all__ = [
    "InnerRouter",
    "SummarizeHandler",
    "error_response",
    "field_value",
    "json_response",
]

log = logging.getLogger("hushbrief.backend.inner")

Handler = Callable[[Request], Awaitable[Response]]

JSON = b"application/json"
PROBLEM_JSON = b"application/problem+json"
RETRY_AFTER_SECONDS = b"5"


def field_value(fields: Sequence[Field], name: bytes) -> bytes | None:
    """The first value of field ``name`` (case-insensitive), or None."""
    for key, value in fields:
        if key.lower() == name:
            return value
    return None


def json_response(status: int, body: bytes, *, extra: Sequence[Field] = (),
                  content_type: bytes = JSON) -> Response:
    fields: tuple[Field, ...] = ((b"content-type", content_type), *extra)
    return Response(status=status, fields=fields, content=body)


def error_response(error: InnerError, *, extra: Sequence[Field] = ()) -> Response:
    if error.status == 503:
        extra = (*extra, (b"retry-after", RETRY_AFTER_SECONDS))
    return json_response(error.status, schema.encode_error(error.message), extra=extra)


class InnerRouter:
    """Exact-path routing with 404 and 405 (with ``Allow``), errors mapped to responses."""

    def __init__(self) -> None:
        self._routes: dict[bytes, dict[bytes, Handler]] = {}

    def __repr__(self) -> str:
        return f"InnerRouter(paths={sorted(p.decode() for p in self._routes)})"

    def add(self, method: bytes, path: bytes, handler: Handler) -> None:
        self._routes.setdefault(path, {})[method.upper()] = handler

    async def dispatch(self, request: Request) -> Response:
        path = request.path.split(b"?", 1)[0]
        methods = self._routes.get(path)
        if methods is None:
            return error_response(NotFound())
        handler = methods.get(request.method.upper())
        if handler is None:
            allow = b", ".join(sorted(methods))
            return error_response(MethodNotAllowed(), extra=((b"allow", allow),))
        try:
            return await handler(request)
        except InnerError as exc:
            return error_response(exc)
        except Exception as exc:
            # The type name is safe to log; the message and traceback might
            # quote the request, so neither goes anywhere.
            log.error("inner handler failed: %s", type(exc).__name__)
            return error_response(InternalError())


@dataclass(frozen=True, slots=True)
class EngineSlot:
    """An engine and the admission limit in front of it."""

    engine: AsyncEngine
    admission: Admission


class SummarizeHandler:
    """``POST /v1/summarize``: validate, admit, summarize, answer (schema in :mod:`.schema`)."""

    def __init__(
        self,
        engines: Mapping[str, EngineSlot],
        *,
        default_engine: str,
        measurement: str,
        max_messages: int,
        max_body: int,
    ) -> None:
        if default_engine not in engines:
            raise ValueError("the default engine must be one of the engines")
        self._engines = dict(engines)
        self._names = tuple(engines)
        self._default = default_engine
        self._measurement = measurement
        self._max_messages = max_messages
        self._max_body = max_body

    def __repr__(self) -> str:
        return f"SummarizeHandler(engines={list(self._names)})"

    async def __call__(self, request: Request) -> Response:
        started = time.monotonic()
        content_type = field_value(request.fields, b"content-type")
        if content_type is not None and (
            content_type.split(b";", 1)[0].strip().lower() != JSON
        ):
            raise UnsupportedMediaType
        if len(request.content) > self._max_body:
            raise PayloadTooLarge
        parsed = schema.parse_request(
            request.content, max_messages=self._max_messages, engines=self._names,
            default_engine=self._default,
        )
        slot = self._engines[parsed.engine]
        async with slot.admission.slot():
            try:
                summary = await slot.engine.summarize(parsed.turns, parsed.options)
            except EngineError:
                # EngineError messages are content-free by contract, but the
                # client only needs to know the engine could not do it.
                raise InvalidRequest(
                    "The engine found nothing it could summarize in these messages.") from None
        body = schema.encode_response(summary.text, parsed.engine, self._measurement)
        log.info("summarize: engine=%s, %d messages, %d B in, %d B out, %.3fs",
                 parsed.engine, len(parsed.turns), len(request.content), len(body),
                 time.monotonic() - started)
        return json_response(200, body)
