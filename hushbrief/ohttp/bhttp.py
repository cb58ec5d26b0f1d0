"""Binary HTTP messages (RFC 9292): the plaintext inside every OHTTP request and response.

This module owns the ``message/bhttp`` encoding: requests and responses, in
known-length and indeterminate-length form, with informational (1xx) responses,
trailers, zero padding and truncation, and the validation that RFC 9292 §3.6 and
§4 ask of a recipient. It does no I/O: bytes in, frozen dataclasses out, and back.

Decoding is strict where the RFC says "invalid" (RFC 9292 §4: an invalid message is
not processed, only logged and answered with an error) and tolerant where the RFC
allows variation: non-minimal varints (RFC 9000 §16), truncation after any complete
section (§3.8), and any amount of zero padding (§3.8). Every declared length is
checked against :class:`Limits` before anything of that size is touched, so that a
hostile length prefix costs nothing.

Things deliberately not checked here, because they belong to whoever interprets
the request: whether ``content-length`` matches the content, connection-specific
fields (RFC 9113 §8.2.2), and ``expect: 100-continue``, which the gateway must
refuse (RFC 9458 §5.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from hushbrief.ohttp.errors import (
    LimitExceeded,
    MalformedMessage,
    TrailingData,
    TruncatedMessage,
)
from hushbrief.ohttp.varint import decode_varint, encode_varint

__all__ = [
    "Field",
    "FramingIndicator",
    "InformationalResponse",
    "Limits",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "padded_length",
]

Field = tuple[bytes, bytes]
"""One field line: ``(name, value)``; the name in lower case (RFC 9292 §3.6)."""


class FramingIndicator(IntEnum):
    """The first varint of every binary HTTP message (RFC 9292 §3.3)."""

    KNOWN_LENGTH_REQUEST = 0
    KNOWN_LENGTH_RESPONSE = 1
    INDETERMINATE_LENGTH_REQUEST = 2
    INDETERMINATE_LENGTH_RESPONSE = 3


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """An interim response (status 100–199) that precedes the final one (RFC 9292 §3.5.1)."""

    status: int
    fields: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """A binary HTTP request (RFC 9292 §3.4).

    ``authority`` may be empty: RFC 9292 §3.4 encodes an absent ``:authority`` as a
    zero-length value, and the target host then travels in a ``host`` field.
    """

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    fields: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class Response:
    """A binary HTTP response (RFC 9292 §3.5): a final status 200–599 and its 1xx forerunners."""

    status: int
    fields: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()
    informational: tuple[InformationalResponse, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits for decoding; exceeding one raises :class:`LimitExceeded`.

    The defaults are generous for a chat-summary request (a few hundred KiB at most)
    and still bound the work a hostile peer can cause.
    """

    max_message: int = 16 * 1024 * 1024
    """Largest input accepted, padding included, in bytes."""
    max_fields: int = 256
    """Most field lines in one field section (header or trailer, final or 1xx)."""
    max_field_section: int = 64 * 1024
    """Largest field section, and largest single control-data item, in bytes."""
    max_informational: int = 16
    """Most informational (1xx) responses before the final one."""
    max_chunks: int = 100_000
    """Most content chunks in an indeterminate-length message."""

    def __post_init__(self) -> None:
        for name in ("max_message", "max_fields", "max_field_section", "max_informational",
                     "max_chunks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Limits.{name} must be a non-negative int")


_DEFAULT_LIMITS = Limits()

# Character classes. ``bytes.translate(None, allowed)`` deletes every allowed byte,
# so the result is empty exactly when the input holds nothing else.
_DIGIT = b"0123456789"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
# RFC 9110 §5.6.2: tchar.
_TCHAR = b"!#$%&'*+-.^_`|~" + _DIGIT + _LOWER + _UPPER
# RFC 9113 §8.2.1: field names are tokens without upper case (binary HTTP lowercases
# names like HTTP/2 and HTTP/3, RFC 9292 §3.6).
_FIELD_NAME = b"!#$%&'*+-.^_`|~" + _DIGIT + _LOWER
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
_SCHEME_REST = _LOWER + _UPPER + _DIGIT + b"+-."
# RFC 3986 §3.2: unreserved, pct-encoded, sub-delims, ":", "@" and the IP-literal brackets.
_AUTHORITY = _LOWER + _UPPER + _DIGIT + b"-._~%!$&'()*+,;=:@[]"
# Visible ASCII without "#": a request target never carries a fragment (RFC 9110 §7.1).
# Anything else (space, controls, non-ASCII) would let a request split when a gateway
# writes it out as HTTP/1.1.
_PATH = bytes(c for c in range(0x21, 0x7F) if c != ord("#"))
_FORBIDDEN_IN_VALUE = (b"\x00", b"\r", b"\n")


def _only(value: bytes, allowed: bytes) -> bool:
    return not value.translate(None, allowed)


def _field_problem(name: bytes, value: bytes) -> str | None:
    """Why a field line is invalid under RFC 9292 §3.6 / RFC 9113 §8.2.1, or None."""
    if not name:
        return "empty field name"
    if name[:1] == b":":
        # Binary HTTP carries control data in its own fields; pseudo-fields in a
        # field section would smuggle a second method or path (RFC 9292 §3.6).
        return "pseudo-header field in a field section"
    if not _only(name, _FIELD_NAME):
        if not _only(name, _TCHAR):
            return "field name is not a token"
        return "field name contains upper case"
    for forbidden in _FORBIDDEN_IN_VALUE:
        if forbidden in value:
            return "field value contains NUL, CR or LF"
    if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
        return "field value starts or ends with whitespace"
    return None


def _control_problem(method: bytes, scheme: bytes, authority: bytes, path: bytes) -> str | None:
    """Why request control data is invalid (RFC 9292 §3.4, RFC 9113 §8.3.1, §8.5), or None."""
    if not method or not _only(method, _TCHAR):
        return "method is not a token"
    if authority and not _only(authority, _AUTHORITY):
        return "authority contains characters outside RFC 3986"
    if method == b"CONNECT":
        # RFC 9113 §8.5: CONNECT names only host and port; scheme and path are absent,
        # which binary HTTP encodes as zero-length values.
        if scheme or path:
            return "CONNECT with a scheme or path"
        if not authority:
            return "CONNECT without an authority"
        return None
    if not scheme or scheme[0] not in _LOWER + _UPPER or not _only(scheme, _SCHEME_REST):
        return "scheme is empty or not an RFC 3986 scheme"
    if not path:
        return "empty path"
    if not _only(path, _PATH):
        return "path contains characters outside visible ASCII"
    if scheme.lower() in (b"http", b"https"):
        # RFC 9113 §8.3.1: origin-form, or "*" for a server-wide OPTIONS.
        if path == b"*":
            if method != b"OPTIONS":
                return "asterisk path with a method other than OPTIONS"
        elif path[:1] != b"/":
            return "http(s) path does not start with '/'"
    return None


# --- encoding ----------------------------------------------------------------------


def _require_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    return value


def _require_fields(fields: object, what: str) -> Sequence[Field]:
    if not isinstance(fields, tuple | list):
        raise TypeError(f"{what} must be a tuple of (name, value) pairs")
    for line in fields:
        if not isinstance(line, tuple | list) or len(line) != 2:
            raise TypeError(f"each line of {what} must be a (name, value) pair")
        name = _require_bytes(line[0], f"a field name in {what}")
        value = _require_bytes(line[1], f"a field value in {what}")
        problem = _field_problem(name, value)
        if problem is not None:
            raise ValueError(f"{what}: {problem}")
    return fields


def _require_padding(padding: object) -> int:
    if isinstance(padding, bool) or not isinstance(padding, int):
        raise TypeError("padding must be an int")
    if padding < 0:
        raise ValueError("padding must not be negative")
    return padding


def _put_bytes(out: bytearray, value: bytes) -> None:
    out += encode_varint(len(value))
    out += value


def _put_field_lines(out: bytearray, fields: Sequence[Field]) -> None:
    for name, value in fields:
        _put_bytes(out, name)
        _put_bytes(out, value)


def _put_field_section(out: bytearray, fields: Sequence[Field], indeterminate: bool) -> None:
    if indeterminate:
        # RFC 9292 §3.2: field lines, then a zero where the next name length would be.
        _put_field_lines(out, fields)
        out += b"\x00"
    else:
        # RFC 9292 §3.1: one length prefix for the whole section.
        body = bytearray()
        _put_field_lines(body, fields)
        _put_bytes(out, bytes(body))


def _put_content(out: bytearray, content: bytes, indeterminate: bool) -> None:
    if indeterminate:
        # RFC 9292 §3.2: non-empty chunks, then a zero-length terminator. The whole
        # content is known here, so one chunk serves.
        if content:
            _put_bytes(out, content)
        out += b"\x00"
    else:
        _put_bytes(out, content)


def _put_tail(
    out: bytearray,
    fields: Sequence[Field],
    content: bytes,
    trailers: Sequence[Field],
    indeterminate: bool,
    truncate: bool,
) -> None:
    """Header section, content and trailer section, truncated where RFC 9292 §3.8 allows."""
    if not truncate or trailers:
        sections = 3
    elif content:
        sections = 2
    elif fields:
        sections = 1
    else:
        sections = 0
    if sections >= 1:
        _put_field_section(out, fields, indeterminate)
    if sections >= 2:
        _put_content(out, content, indeterminate)
    if sections >= 3:
        _put_field_section(out, trailers, indeterminate)


def encode_request(
    req: Request, *, indeterminate: bool = False, padding: int = 0, truncate: bool = True
) -> bytes:
    """Encode ``req`` as ``message/bhttp`` (RFC 9292 §3).

    ``indeterminate`` selects the indeterminate-length form (framing indicator 2)
    instead of the known-length form (0). ``padding`` appends that many zero bytes
    (§3.8); see :func:`padded_length` for choosing it. With ``truncate`` (the
    default) empty trailing sections are left out, as §3.8 allows and as the
    RFC 9458 Appendix A request does; ``truncate=False`` writes every section.

    Raises ``TypeError``/``ValueError`` when ``req`` is not a valid request: the
    encoder never produces a message that :func:`decode_request` would refuse.
    """
    if not isinstance(req, Request):
        raise TypeError("encode_request takes a Request")
    for what in ("method", "scheme", "authority", "path", "content"):
        _require_bytes(getattr(req, what), f"Request.{what}")
    problem = _control_problem(req.method, req.scheme, req.authority, req.path)
    if problem is not None:
        raise ValueError(f"invalid request control data: {problem}")
    fields = _require_fields(req.fields, "Request.fields")
    trailers = _require_fields(req.trailers, "Request.trailers")
    pad = _require_padding(padding)

    out = bytearray()
    out += encode_varint(
        FramingIndicator.INDETERMINATE_LENGTH_REQUEST
        if indeterminate
        else FramingIndicator.KNOWN_LENGTH_REQUEST
    )
    # RFC 9292 §3.4: method, scheme, authority, path, each length-prefixed.
    for part in (req.method, req.scheme, req.authority, req.path):
        _put_bytes(out, part)
    _put_tail(out, fields, req.content, trailers, indeterminate, truncate)
    out += bytes(pad)
    return bytes(out)


def encode_response(
    resp: Response, *, indeterminate: bool = False, padding: int = 0, truncate: bool = True
) -> bytes:
    """Encode ``resp`` as ``message/bhttp`` (RFC 9292 §3).

    Informational responses come first, each a status and a header section
    (§3.5.1); then the final status, header section, content and trailers.
    ``indeterminate``, ``padding`` and ``truncate`` work as in :func:`encode_request`;
    truncation never touches the informational responses, which cannot be left out.
    """
    if not isinstance(resp, Response):
        raise TypeError("encode_response takes a Response")
    _require_status(resp.status, 200, 599, "Response.status")
    _require_bytes(resp.content, "Response.content")
    fields = _require_fields(resp.fields, "Response.fields")
    trailers = _require_fields(resp.trailers, "Response.trailers")
    if not isinstance(resp.informational, tuple | list):
        raise TypeError("Response.informational must be a tuple of InformationalResponse")
    interim: list[tuple[int, Sequence[Field]]] = []
    for info in resp.informational:
        if not isinstance(info, InformationalResponse):
            raise TypeError("Response.informational must hold InformationalResponse")
        _require_status(info.status, 100, 199, "InformationalResponse.status")
        interim.append((info.status, _require_fields(info.fields, "InformationalResponse.fields")))
    pad = _require_padding(padding)

    out = bytearray()
    out += encode_varint(
        FramingIndicator.INDETERMINATE_LENGTH_RESPONSE
        if indeterminate
        else FramingIndicator.KNOWN_LENGTH_RESPONSE
    )
    for status, info_fields in interim:
        out += encode_varint(status)
        _put_field_section(out, info_fields, indeterminate)
    out += encode_varint(resp.status)
    _put_tail(out, fields, resp.content, trailers, indeterminate, truncate)
    out += bytes(pad)
    return bytes(out)


def _require_status(status: object, low: int, high: int, what: str) -> None:
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"{what} must be an int")
    if not low <= status <= high:
        raise ValueError(f"{what} must be in {low}..{high}")


def padded_length(n: int, buckets: Sequence[int]) -> int:
    """The size to pad an ``n``-byte message to: the smallest bucket ≥ ``n``.

    Above the largest bucket, ``n`` is rounded up to a multiple of the largest one,
    so that big messages still fall into a few size classes. The padding to pass to
    the encoders is ``padded_length(n, buckets) - n``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError("n must be a non-negative int")
    if not buckets:
        raise ValueError("buckets must not be empty")
    if any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in buckets):
        raise ValueError("buckets must be positive ints")
    fitting = [b for b in buckets if b >= n]
    if fitting:
        return min(fitting)
    largest = max(buckets)
    return -(-n // largest) * largest


# --- decoding ----------------------------------------------------------------------


class _Reader:
    """A cursor over ``data[pos:end]``.

    ``short`` is what running out of input means: at the top level the message is
    truncated (:class:`TruncatedMessage`); inside a known-length field section the
    section's own length was wrong (:class:`MalformedMessage`).
    """

    __slots__ = ("data", "end", "pos", "short")

    def __init__(self, data: bytes, pos: int, end: int, short: type[MalformedMessage]) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.short = short

    def at_end(self) -> bool:
        return self.pos >= self.end

    def varint(self) -> int:
        try:
            value, self.pos = decode_varint(self.data, self.pos, self.end)
        except TruncatedMessage:
            if self.short is TruncatedMessage:
                raise
            raise self.short("a varint runs past the end of its section") from None
        return value

    def skip(self, n: int, limit: int, what: str) -> int:
        """Step over ``n`` bytes; return where they start."""
        # The limit comes first: a hostile 2^62 length is refused as such, not
        # reported as "truncated" after looking for that many bytes.
        if n > limit:
            raise LimitExceeded(f"{what} of {n} bytes exceeds the limit of {limit}")
        start = self.pos
        if n > self.end - start:
            raise self.short(f"{what} runs past the end of its input")
        self.pos = start + n
        return start

    def take(self, n: int, limit: int, what: str) -> bytes:
        start = self.skip(n, limit, what)
        return self.data[start:self.pos]


def _field_line(r: _Reader, name_length: int, limits: Limits) -> Field:
    if name_length == 0:
        raise MalformedMessage("empty field name")
    name = r.take(name_length, limits.max_field_section, "field name")
    value = r.take(r.varint(), limits.max_field_section, "field value")
    problem = _field_problem(name, value)
    if problem is not None:
        raise MalformedMessage(problem)
    return name, value


def _known_length_fields(r: _Reader, limits: Limits) -> tuple[Field, ...]:
    start = r.skip(r.varint(), limits.max_field_section, "field section")
    # Inside the section, running out of bytes means the section's length prefix
    # and its field lines disagree: malformed, not truncated.
    section = _Reader(r.data, start, r.pos, MalformedMessage)
    fields: list[Field] = []
    while not section.at_end():
        if len(fields) >= limits.max_fields:
            raise LimitExceeded(f"more than {limits.max_fields} fields in a section")
        fields.append(_field_line(section, section.varint(), limits))
    return tuple(fields)


def _indeterminate_fields(r: _Reader, limits: Limits) -> tuple[Field, ...]:
    start = r.pos
    fields: list[Field] = []
    while True:
        # RFC 9292 §3.2: a zero where a name length would be ends the section; a
        # field line never has an empty name, so the two cannot be confused.
        name_length = r.varint()
        if name_length == 0:
            return tuple(fields)
        if len(fields) >= limits.max_fields:
            raise LimitExceeded(f"more than {limits.max_fields} fields in a section")
        fields.append(_field_line(r, name_length, limits))
        if r.pos - start > limits.max_field_section:
            raise LimitExceeded(f"field section exceeds {limits.max_field_section} bytes")


def _fields(r: _Reader, indeterminate: bool, limits: Limits) -> tuple[Field, ...]:
    if indeterminate:
        return _indeterminate_fields(r, limits)
    return _known_length_fields(r, limits)


def _content(r: _Reader, indeterminate: bool, limits: Limits) -> bytes:
    if not indeterminate:
        return r.take(r.varint(), limits.max_message, "content")
    chunks: list[bytes] = []
    while True:
        length = r.varint()
        if length == 0:
            return b"".join(chunks)
        if len(chunks) >= limits.max_chunks:
            raise LimitExceeded(f"more than {limits.max_chunks} content chunks")
        chunks.append(r.take(length, limits.max_message, "content chunk"))


def _tail(
    r: _Reader, indeterminate: bool, limits: Limits
) -> tuple[tuple[Field, ...], bytes, tuple[Field, ...]]:
    """Header section, content, trailers, and the padding after them.

    RFC 9292 §3.8: a message may end after the control data or after any complete
    section, and the missing sections are empty. Zero padding reads as empty
    sections too, so padding and truncation need no special case.
    """
    if r.at_end():
        return (), b"", ()
    fields = _fields(r, indeterminate, limits)
    if r.at_end():
        return fields, b"", ()
    content = _content(r, indeterminate, limits)
    if r.at_end():
        return fields, content, ()
    trailers = _fields(r, indeterminate, limits)
    padding = r.data[r.pos:r.end]
    if padding.count(0) != len(padding):
        raise TrailingData(f"non-zero byte in the {len(padding)} bytes after the message")
    return fields, content, trailers


def _start(data: bytes, limits: Limits, request: bool) -> tuple[_Reader, bool]:
    """Check size and framing indicator; return the reader and whether indeterminate."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("binary HTTP decodes bytes")
    if not isinstance(limits, Limits):
        raise TypeError("limits must be a Limits")
    if len(data) > limits.max_message:
        raise LimitExceeded(f"message of {len(data)} bytes exceeds {limits.max_message}")
    r = _Reader(data, 0, len(data), TruncatedMessage)
    framing = r.varint()
    # RFC 9292 §3.3: four values; the low bit says response, the high bit indeterminate.
    if framing > FramingIndicator.INDETERMINATE_LENGTH_RESPONSE:
        raise MalformedMessage(f"unknown framing indicator {framing}")
    if bool(framing & 1) == request:
        raise MalformedMessage("a response where a request was expected" if request
                               else "a request where a response was expected")
    return r, bool(framing & 2)


def decode_request(data: bytes, limits: Limits = _DEFAULT_LIMITS) -> Request:
    """Decode a ``message/bhttp`` request (RFC 9292 §3), either framing.

    Accepts truncation after any complete section and trailing zero padding
    (§3.8). Raises :class:`MalformedMessage` or one of its subclasses for anything
    invalid: :class:`TruncatedMessage` if the input stops mid-section,
    :class:`TrailingData` for non-zero bytes after the message,
    :class:`LimitExceeded` when ``limits`` are exceeded.
    """
    r, indeterminate = _start(data, limits, request=True)
    cap = limits.max_field_section
    method = r.take(r.varint(), cap, "method")
    scheme = r.take(r.varint(), cap, "scheme")
    authority = r.take(r.varint(), cap, "authority")
    path = r.take(r.varint(), cap, "path")
    problem = _control_problem(method, scheme, authority, path)
    if problem is not None:
        raise MalformedMessage(f"invalid request control data: {problem}")
    fields, content, trailers = _tail(r, indeterminate, limits)
    return Request(method, scheme, authority, path, fields, content, trailers)


def decode_response(data: bytes, limits: Limits = _DEFAULT_LIMITS) -> Response:
    """Decode a ``message/bhttp`` response (RFC 9292 §3), either framing.

    Informational (1xx) responses before the final status are returned in
    ``Response.informational``. Errors as for :func:`decode_request`; a status
    outside 100–599 is a :class:`MalformedMessage`.
    """
    r, indeterminate = _start(data, limits, request=False)
    informational: list[InformationalResponse] = []
    while True:
        status = r.varint()
        if 200 <= status <= 599:
            break
        if not 100 <= status <= 199:
            raise MalformedMessage(f"status code {status} outside 100..599")
        if len(informational) >= limits.max_informational:
            raise LimitExceeded(f"more than {limits.max_informational} informational responses")
        # RFC 9292 §3.5.1: an informational response is its status and a header
        # section; it cannot be truncated, because the final response follows.
        informational.append(InformationalResponse(status, _fields(r, indeterminate, limits)))
    fields, content, trailers = _tail(r, indeterminate, limits)
    return Response(status, fields, content, trailers, tuple(informational))
