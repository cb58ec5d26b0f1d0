"""The relay's exception tree, and the fixed outcome names that metrics and logs use.

Two kinds of failure, kept apart as h11 does:

* ``SettingsError`` — the operator misconfigured the relay (a bad gateway URL, a bad
  ``--listen`` value). Raised at start-up, never while serving.
* ``RelayError`` — one request cannot be forwarded, because the client sent something the
  relay refuses (RFC 9458 §5: wrong media type, too large, wrong method) or because the
  gateway failed (unreachable, too slow, an answer the relay will not pass on). Each
  subclass carries the HTTP status the relay answers with and a fixed ``Outcome``.

Why exceptions for expected refusals: a refusal can arise deep inside body streaming
(the 413 when a chunked upload crosses the limit) and has to unwind to the one place that
answers the client, records metrics and writes the log line. The messages are fixed
sentences: nothing client-derived (no path, header or body byte) ever goes into one, so
they are safe to log and to send back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Outcome(StrEnum):
    """What happened to one request; a metric label, so the set is closed."""

    FORWARDED = "forwarded"  # the gateway's answer went back to the client
    SERVED = "served"  # answered by the relay itself (health, metrics)
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_LARGE = "too_large"
    BAD_REQUEST = "bad_request"
    OVERLOADED = "overloaded"
    GATEWAY_UNREACHABLE = "gateway_unreachable"
    GATEWAY_TIMEOUT = "gateway_timeout"
    BAD_GATEWAY_RESPONSE = "bad_gateway_response"
    CLIENT_GONE = "client_gone"  # the client disconnected before it could be answered
    INTERNAL_ERROR = "internal_error"


class SettingsError(ValueError):
    """The relay's configuration is unusable; the message says which value and why."""


class RelayError(Exception):
    """One request is answered by the relay itself instead of by the gateway."""

    status: ClassVar[int] = 500
    outcome: ClassVar[Outcome] = Outcome.INTERNAL_ERROR

    def __init__(self, message: str, *, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


# --- the client's request is refused (RFC 9458 §5, §6.2.2) ---------------------------

class RequestRefused(RelayError):
    """The client's request is not forwarded; nothing reaches the gateway."""


class NotFound(RequestRefused):
    status = 404
    outcome = Outcome.NOT_FOUND


class MethodNotAllowed(RequestRefused):
    status = 405
    outcome = Outcome.METHOD_NOT_ALLOWED


class UnsupportedMediaType(RequestRefused):
    status = 415
    outcome = Outcome.UNSUPPORTED_MEDIA_TYPE


class BodyTooLarge(RequestRefused):
    status = 413
    outcome = Outcome.TOO_LARGE


class BadRequest(RequestRefused):
    status = 400
    outcome = Outcome.BAD_REQUEST


class Overloaded(RequestRefused):
    status = 503
    outcome = Outcome.OVERLOADED


# --- the gateway failed ---------------------------------------------------------------

class GatewayError(RelayError):
    """The gateway could not be used; httpx's exceptions are translated into these once,
    in ``upstream.py``, where they enter."""


class GatewayUnreachable(GatewayError):
    """No connection could be made: the request never reached the gateway, so a client
    may safely retry."""

    status = 502
    outcome = Outcome.GATEWAY_UNREACHABLE


class GatewayTimeout(GatewayError):
    """The gateway got (part of) the request but did not answer in time; it may have
    processed it."""

    status = 504
    outcome = Outcome.GATEWAY_TIMEOUT


class BadGatewayResponse(GatewayError):
    """The gateway answered with something the relay will not pass on (too large, an
    unexpected status or media type, a broken connection mid-answer)."""

    status = 502
    outcome = Outcome.BAD_GATEWAY_RESPONSE


class ClientGone(Exception):
    """The client disconnected while its request was being read; there is no one to answer."""
