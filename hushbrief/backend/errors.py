"""The backend's exceptions: what can go wrong *after* a request was decrypted.

Failures before decryption (wrong media type, too large, unknown key, a
ciphertext that does not open, a replay) are answered in clear by the gateway
itself and need no exception of ours: the OHTTP layer's own tree
(:mod:`hushbrief.ohttp.errors`) describes them.

Once a request is decrypted, every failure becomes an *inner* HTTP response
that travels encapsulated back to the client (RFC 9458 §5.2: only the client
can read it). Each class below carries that inner status code, and its message
is one generic sentence meant for the client. No message ever contains request
content: exceptions end up in logs, and the request is a private chat
(DESIGN.md §7, invariant 9).

::

    BackendError
    └── InnerError                 (status, one sentence)
        ├── BadRequest             400  not binary HTTP / not JSON
        ├── NotFound               404  no such inner path
        ├── MethodNotAllowed       405
        ├── PayloadTooLarge        413
        ├── UnsupportedMediaType   415  the inner body is not application/json
        ├── InvalidRequest         422  JSON that breaks the summarize schema
        ├── Overloaded             503  every worker busy and the queue full
        ├── UpstreamFailed         502  the model server failed (openai engine)
        │   └── UpstreamTimeout    504  the model server did not answer in time
        └── InternalError          500  a bug; details go nowhere
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BackendError",
    "BadRequest",
    "InnerError",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "UpstreamFailed",
    "UpstreamTimeout",
]


class BackendError(Exception):
    """Root of the backend's tree."""


class EvidenceUnavailable(BackendError, RuntimeError):
    """The platform's evidence source (configfs-tsm, /dev/nsm) cannot produce evidence."""


class InnerError(BackendError):
    """A failure answered with an encapsulated inner response of ``status``.

    ``str(exc)`` is the sentence the client receives as ``{"error": ...}``; it
    must never quote the request.
    """

    status: ClassVar[int] = 500
    default: ClassVar[str] = "The request failed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default)

    @property
    def message(self) -> str:
        return str(self.args[0])


class BadRequest(InnerError):
    status = 400
    default = "The request is not well-formed."


class NotFound(InnerError):
    status = 404
    default = "No such resource."


class MethodNotAllowed(InnerError):
    status = 405
    default = "Method not allowed for this resource."


class UnsupportedMediaType(InnerError):
    status = 415
    default = "The request body must be application/json."


class InvalidRequest(InnerError):
    status = 422
    default = "The request does not match the summarize schema."


class PayloadTooLarge(InnerError):
    status = 413
    default = "The request is too large."


class Overloaded(InnerError):
    status = 503
    default = "The backend is busy; try again shortly."


class UpstreamFailed(InnerError):
    status = 502
    default = "The summarization model failed to answer."


class UpstreamTimeout(UpstreamFailed):
    status = 504
    default = "The summarization model did not answer in time."


class InternalError(InnerError):
    status = 500
    default = "The backend failed to process the request."
