"""A read-only HTTP view of a log directory (Starlette; served by ``hushbrief log serve``).

    GET /checkpoint                              text/plain: the signed checkpoint
                                                 (c2sp.org/tlog-checkpoint) for the current size
    GET /proof?measurement=HEX&platform=P[&size=N]
                                                 JSON TransparencyProof (the bundle's
                                                 "transparency" field): the newest record for
                                                 that measurement, RFC 9162 inclusion proof,
                                                 signed checkpoint of the proof's tree size
    GET /consistency?old=N&new=M                 JSON {"old": N, "new": M, "proof": [base64…]}
                                                 (RFC 9162 §2.1.4)
    GET /records?start=S[&end=E]                 JSON list of records [S, E), at most 1000
    GET /healthz                                 JSON {"status": "ok", "size": N}

Nothing here writes: records come from ``hushbrief log add`` (another process), picked up
on each request by re-reading what was appended. Proofs carry their own signed
checkpoint, so a client never needs a second request that could see a different size.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hushbrief.tlog.store import RECORDS_FILE, LogError, TransparencyLog, open_log

MAX_RECORDS_PER_PAGE = 1000
_NO_STORE = {"Cache-Control": "no-store"}
_MAX_INT_DIGITS = 20

log = logging.getLogger("hushbrief.tlog.server")

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class _BadRequest(Exception):
    pass


def _int_param(request: Request, name: str, default: int | None = None) -> int:
    value = request.query_params.get(name)
    if value is None:
        if default is None:
            raise _BadRequest(f"the query parameter {name!r} is required")
        return default
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_INT_DIGITS:
        raise _BadRequest(f"the query parameter {name!r} must be a non-negative integer")
    return int(value)


def _str_param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise _BadRequest(f"the query parameter {name!r} is required")
    return value


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)


def create_app(source: TransparencyLog | str | os.PathLike[str]) -> Starlette:
    """The read-only app over an open log or a log directory."""
    tlog = source if isinstance(source, TransparencyLog) else open_log(source)

    def endpoint(handler: Callable[[Request], Response]) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                tlog.refresh()
            except LogError as exc:
                # The directory went bad under us (truncated or rewritten file): say so
                # and keep serving nothing rather than proofs for a history that changed.
                log.error("transparency log unavailable: %s", exc)
                return _error(503, "the log is unavailable")
            try:
                return handler(request)
            except _BadRequest as exc:
                return _error(400, str(exc))
            except LogError as exc:
                # The message names the file; a client needs no server paths.
                where = str(tlog.directory / RECORDS_FILE)
                return _error(404, str(exc).replace(where, "the log"))
        return wrapped

    def checkpoint(_: Request) -> Response:
        return PlainTextResponse(tlog.checkpoint(), headers=_NO_STORE)

    def proof(request: Request) -> Response:
        measurement = _str_param(request, "measurement")
        platform = _str_param(request, "platform")
        size = _int_param(request, "size", tlog.size)
        return JSONResponse(tlog.prove(measurement, platform, size=size).to_json(),
                            headers=_NO_STORE)

    def consistency(request: Request) -> Response:
        old = _int_param(request, "old")
        new = _int_param(request, "new")
        hashes = tlog.consistency(old, new)
        return JSONResponse(
            {"old": old, "new": new,
             "proof": [base64.b64encode(h).decode("ascii") for h in hashes]},
            headers=_NO_STORE,
        )

    def records(request: Request) -> Response:
        start = _int_param(request, "start", 0)
        end = _int_param(request, "end", min(start + MAX_RECORDS_PER_PAGE, tlog.size))
        if start > tlog.size:
            raise _BadRequest(f"start {start} is beyond the log's {tlog.size} records")
        end = min(end, tlog.size, start + MAX_RECORDS_PER_PAGE)
        if end < start:
            raise _BadRequest("end is before start")
        return JSONResponse([r.to_json() for r in tlog.records(start, end)],
                            headers=_NO_STORE)

    def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "size": tlog.size}, headers=_NO_STORE)

    return Starlette(routes=[
        Route("/checkpoint", endpoint(checkpoint), methods=["GET"]),
        Route("/proof", endpoint(proof), methods=["GET"]),
        Route("/consistency", endpoint(consistency), methods=["GET"]),
        Route("/records", endpoint(records), methods=["GET"]),
        Route("/healthz", endpoint(healthz), methods=["GET"]),
    ])


def build_server(directory: str | os.PathLike[str], host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the log, not yet started; the log is opened now."""
    # access_log=False empties the access logger's handlers only; a level above CRITICAL
    # keeps client addresses out even if a handler is added later.
    logging.getLogger("uvicorn.access").setLevel(logging.CRITICAL + 1)
    config = uvicorn.Config(
        create_app(directory), host=host, port=port,
        access_log=False, server_header=False, proxy_headers=False,
        ws="none", lifespan="off", log_config=None,
    )
    return uvicorn.Server(config)


def serve(directory: str | os.PathLike[str], host: str, port: int) -> None:
    """Serve the log read-only on ``host:port`` until Ctrl-C or SIGTERM."""
    server = build_server(directory, host, port)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
