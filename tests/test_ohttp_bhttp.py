"""RFC 9292 binary HTTP: round trips, every way a message can be invalid, and fuzzing.

The RFC's own examples live in test_ohttp_vectors.py; this file checks the rules
around them: QUIC varints (RFC 9000 §16), framing (RFC 9292 §3.3), control data
(§3.4, RFC 9113 §8.3.1), field lines (§3.6, RFC 9113 §8.2.1), informational
responses (§3.5.1), padding and truncation (§3.8), invalid messages (§4), and our
own :class:`Limits`.
"""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hushbrief.ohttp import (
    InformationalResponse,
    LimitExceeded,
    Limits,
    MalformedMessage,
    Request,
    Response,
    TrailingData,
    TruncatedMessage,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    padded_length,
)
from hushbrief.ohttp.varint import MAX_VARINT, decode_varint, encode_varint, varint_size

# --- strategies --------------------------------------------------------------------

_TCHAR_LOWER = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_TCHAR = _TCHAR_LOWER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PATH_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")

field_names = st.text(_TCHAR_LOWER, min_size=1, max_size=16).map(str.encode)
# RFC 9113 §8.2.1: no NUL, CR, LF; no leading or trailing SP/HTAB. Anything else goes,
# obs-text (0x80-0xff) and other controls included.
field_values = st.binary(max_size=40).map(
    lambda v: v.replace(b"\x00", b"").replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")
)
field_sections = st.lists(st.tuples(field_names, field_values), max_size=6).map(tuple)
methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD"]) | st.text(
    _TCHAR, min_size=1, max_size=10
).map(str.encode).filter(lambda m: m not in (b"CONNECT", b"OPTIONS"))
paths = st.text(_PATH_CHARS, max_size=30).map(lambda p: ("/" + p).encode())
authorities = st.sampled_from(
    [b"", b"example.com", b"example.com:8443", b"[2001:db8::1]:443", b"user@host", b"a.b-c_d~e"]
)
contents = st.binary(max_size=200)

requests = st.builds(
    Request,
    method=methods,
    scheme=st.sampled_from([b"https", b"http"]),
    authority=authorities,
    path=paths,
    fields=field_sections,
    content=contents,
    trailers=field_sections,
)
connect_requests = st.builds(
    Request,
    method=st.just(b"CONNECT"),
    scheme=st.just(b""),
    authority=st.sampled_from([b"example.com:443", b"[::1]:22"]),
    path=st.just(b""),
    fields=field_sections,
    content=contents,
    trailers=field_sections,
)
informationals = st.lists(
    st.builds(InformationalResponse, status=st.integers(100, 199), fields=field_sections),
    max_size=3,
).map(tuple)
responses = st.builds(
    Response,
    status=st.integers(200, 599),
    fields=field_sections,
    content=contents,
    trailers=field_sections,
    informational=informationals,
)
paddings = st.integers(0, 40)

GET = Request(b"GET", b"https", b"example.com", b"/")


def known_request(*tail: bytes) -> bytes:
    """Known-length GET https://example.com/ followed by ``tail``."""
    return b"\x00\x03GET\x05https\x0bexample.com\x01/" + b"".join(tail)


def indeterminate_request(*tail: bytes) -> bytes:
    return b"\x02\x03GET\x05https\x0bexample.com\x01/" + b"".join(tail)


# --- RFC 9000 §16: variable-length integers ------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        # RFC 9000 Appendix A.1, the sample decodings.
        ("c2197c5eff14e88c", 151_288_809_941_952_652),
        ("9d7f3e7d", 494_878_333),
        ("7bbd", 15_293),
        ("25", 37),
        ("4025", 37),  # not minimal, and still valid (RFC 9000 §16)
    ],
)
def test_varint_rfc9000_appendix_a1_samples(encoded: str, value: int) -> None:
    data = bytes.fromhex(encoded)
    assert decode_varint(data) == (value, len(data))


@given(st.integers(0, MAX_VARINT))
def test_varint_round_trip_is_minimal(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == varint_size(value)
    assert decode_varint(encoded) == (value, len(encoded))


def test_varint_range_and_truncation() -> None:
    with pytest.raises(ValueError):
        encode_varint(MAX_VARINT + 1)
    with pytest.raises(ValueError):
        encode_varint(-1)
    with pytest.raises(TypeError):
        encode_varint(True)
    with pytest.raises(TruncatedMessage):
        decode_varint(b"")
    with pytest.raises(TruncatedMessage):
        decode_varint(b"\x80\x00\x00")


# --- round trips (RFC 9292 §3) -------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(req=requests | connect_requests, indeterminate=st.booleans(), truncate=st.booleans(),
       padding=paddings)
def test_request_round_trip(
    req: Request, indeterminate: bool, truncate: bool, padding: int
) -> None:
    data = encode_request(req, indeterminate=indeterminate, truncate=truncate, padding=padding)
    assert decode_request(data) == req


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(resp=responses, indeterminate=st.booleans(), truncate=st.booleans(), padding=paddings)
def test_response_round_trip(
    resp: Response, indeterminate: bool, truncate: bool, padding: int
) -> None:
    data = encode_response(resp, indeterminate=indeterminate, truncate=truncate, padding=padding)
    assert decode_response(data) == resp


@given(req=requests, padding=st.integers(0, 64))
def test_rfc9292_s3_8_truncated_and_full_forms_mean_the_same(req: Request, padding: int) -> None:
    for indeterminate in (False, True):
        full = encode_request(req, indeterminate=indeterminate, truncate=False)
        short = encode_request(req, indeterminate=indeterminate)
        assert full.startswith(short)
        # Truncated sections are zero bytes, so padding makes both forms identical.
        assert full + bytes(padding) == short + bytes(len(full) - len(short) + padding)


def test_rfc9292_s3_2_content_in_several_chunks() -> None:
    # Our encoder writes one chunk; other encoders may write many.
    data = indeterminate_request(b"\x00", b"\x03abc\x01d\x02ef\x00", b"\x00")
    assert decode_request(data).content == b"abcdef"


def test_truncation_defaults() -> None:
    # RFC 9292 §3.8: empty trailing sections are left out by default.
    assert encode_request(GET) == known_request()
    assert encode_request(GET, truncate=False) == known_request(b"\x00\x00\x00")
    assert encode_request(GET, indeterminate=True, truncate=False) == indeterminate_request(
        b"\x00\x00\x00"
    )
    with_content = Request(b"POST", b"https", b"example.com", b"/", content=b"hi")
    assert encode_request(with_content).endswith(b"\x00\x02hi")
    assert encode_response(Response(204)) == b"\x01\x40\xcc"


# --- RFC 9292 §3.8: padding and truncation --------------------------------------------


@pytest.mark.parametrize("padding", [1, 7, 1000])
def test_rfc9292_s3_8_zero_padding_accepted(padding: int) -> None:
    assert decode_request(encode_request(GET, padding=padding)) == GET
    assert decode_request(known_request(b"\x00\x00\x00", bytes(padding))) == GET


@pytest.mark.parametrize(
    "data",
    [
        known_request(b"\x00\x00\x00\x01"),
        known_request(b"\x00\x00\x00", bytes(100), b"\x01"),
        known_request(b"\x00\x00\x00\x00\xff\x00"),
        indeterminate_request(b"\x00\x00\x00\x80"),
    ],
)
def test_rfc9292_s3_8_non_zero_trailing_bytes(data: bytes) -> None:
    with pytest.raises(TrailingData):
        decode_request(data)


def test_rfc9292_s3_8_trailing_bytes_in_response() -> None:
    with pytest.raises(TrailingData):
        decode_response(b"\x01\x40\xc8\x00\x00\x00\x07")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",  # framing only
        b"\x00\x03GE",  # inside the method
        b"\x00\x03GET\x05https\x0bexample.com",  # no path length
        known_request(b"\x05\x01a"),  # inside a known-length header section
        known_request(b"\x00\x05ab"),  # inside the content
        known_request(b"\x00\x00\x05\x01a"),  # inside the trailers
        indeterminate_request(b"\x01a\x01b"),  # header section without terminator
        indeterminate_request(b"\x00\x02ab"),  # content chunks without terminator
        indeterminate_request(b"\x00\x00\x01a\x00"),  # trailers without terminator
        indeterminate_request(b"\x01a"),  # field line without value
    ],
)
def test_rfc9292_s3_8_truncated_mid_section(data: bytes) -> None:
    with pytest.raises(TruncatedMessage):
        decode_request(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01",  # no status
        b"\x01\x40\x66",  # an informational response, then nothing
        b"\x01\x40\x66\x00",  # an informational response, no final status
        b"\x03\x40\x66\x00",
    ],
)
def test_rfc9292_s3_5_response_needs_a_final_status(data: bytes) -> None:
    with pytest.raises(TruncatedMessage):
        decode_response(data)


# --- RFC 9292 §3.3: framing indicator ------------------------------------------------


@pytest.mark.parametrize(
    "framing", [b"\x04", b"\x3f", b"\x40\x04", b"\xc0\x00\x00\x00\x00\x00\x00\x05"]
)
def test_rfc9292_s3_3_unknown_framing_indicator(framing: bytes) -> None:
    for decode in (decode_request, decode_response):
        with pytest.raises(MalformedMessage):
            decode(framing + b"\x00" * 20)


def test_rfc9292_s3_3_non_minimal_framing_indicator_is_valid() -> None:
    assert decode_request(b"\x40\x00" + known_request()[1:]) == GET


def test_rfc9292_s3_3_request_and_response_are_not_interchangeable() -> None:
    with pytest.raises(MalformedMessage, match="response where a request"):
        decode_request(b"\x01\x40\xc8")
    with pytest.raises(MalformedMessage, match="request where a response"):
        decode_response(known_request())


# --- RFC 9292 §3.4: request control data ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "scheme", "authority", "path"),
    [
        (b"", b"https", b"a", b"/"),  # empty method
        (b"G T", b"https", b"a", b"/"),  # method not a token
        (b"GET", b"", b"a", b"/"),  # empty scheme
        (b"GET", b"1http", b"a", b"/"),  # scheme must start with a letter
        (b"GET", b"ht tp", b"a", b"/"),
        (b"GET", b"https", b"a b", b"/"),  # space in authority
        (b"GET", b"https", b"a\r\nb", b"/"),
        (b"GET", b"https", b"a", b""),  # empty path outside CONNECT
        (b"GET", b"https", b"a", b"x"),  # http(s) path must be origin-form
        (b"GET", b"https", b"a", b"*"),  # asterisk only with OPTIONS
        (b"GET", b"https", b"a", b"/a b"),
        (b"GET", b"https", b"a", b"/a#frag"),
        (b"GET", b"https", b"a", b"/\xc3\xa9"),
        (b"CONNECT", b"https", b"a:443", b""),  # RFC 9113 §8.5: no scheme
        (b"CONNECT", b"", b"a:443", b"/"),  # ... and no path
        (b"CONNECT", b"", b"", b""),  # ... but an authority
    ],
)
def test_rfc9292_s3_4_invalid_control_data(
    method: bytes, scheme: bytes, authority: bytes, path: bytes
) -> None:
    req = Request(method, scheme, authority, path)
    with pytest.raises(ValueError, match="control data"):
        encode_request(req)
    wire = bytearray(b"\x00")
    for part in (method, scheme, authority, path):
        wire += encode_varint(len(part)) + part
    with pytest.raises(MalformedMessage, match="control data"):
        decode_request(bytes(wire))


@pytest.mark.parametrize(
    "req",
    [
        Request(b"OPTIONS", b"https", b"example.com", b"*"),
        Request(b"CONNECT", b"", b"example.com:443", b""),
        Request(b"GET", b"https", b"", b"/?q=1&r=%20"),  # RFC 9292 §3.4: empty authority
        Request(b"GET", b"coap+tcp", b"example.com", b"urn-ish:thing"),  # non-http schemes
    ],
)
def test_rfc9292_s3_4_valid_control_data(req: Request) -> None:
    assert decode_request(encode_request(req)) == req


# --- RFC 9292 §3.6 / RFC 9113 §8.2.1: field lines -------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        (b"Content-Type", b"x", "upper case"),
        (b"HOST", b"x", "upper case"),
        (b":path", b"/", "pseudo-header"),
        (b":authority", b"x", "pseudo-header"),
        (b"a b", b"x", "not a token"),
        (b"a:b", b"x", "not a token"),
        (b"caf\xc3\xa9", b"x", "not a token"),
        (b"x", b"a\rb", "NUL, CR or LF"),
        (b"x", b"a\nb", "NUL, CR or LF"),
        (b"x", b"a\x00b", "NUL, CR or LF"),
        (b"x", b" a", "whitespace"),
        (b"x", b"a\t", "whitespace"),
    ],
)
def test_rfc9292_s3_6_invalid_field_lines(name: bytes, value: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        encode_request(Request(b"GET", b"https", b"a", b"/", fields=((name, value),)))
    with pytest.raises(ValueError, match=reason):
        encode_response(Response(200, trailers=((name, value),)))
    line = encode_varint(len(name)) + name + encode_varint(len(value)) + value
    for data in (
        known_request(encode_varint(len(line)), line),
        indeterminate_request(line, b"\x00"),
        known_request(b"\x00\x00", encode_varint(len(line)), line),  # in the trailers
    ):
        with pytest.raises(MalformedMessage, match=reason):
            decode_request(data)
    with pytest.raises(MalformedMessage, match=reason):
        decode_response(b"\x03\x40\x67" + line + b"\x00\x40\xc8")  # in a 1xx


def test_rfc9292_s3_6_empty_name_in_known_length_section() -> None:
    with pytest.raises(MalformedMessage, match="empty field name"):
        decode_request(known_request(b"\x03\x00\x01x"))


def test_rfc9292_s3_6_empty_value_is_valid() -> None:
    req = Request(b"GET", b"https", b"a", b"/", fields=((b"x-empty", b""),))
    assert decode_request(encode_request(req)) == req


def test_rfc9292_s3_1_field_line_overrunning_its_section_is_malformed() -> None:
    # The section says 3 bytes, its one field line needs 4: the message is
    # inconsistent, not cut short, so this is not TruncatedMessage.
    with pytest.raises(MalformedMessage) as caught:
        decode_request(known_request(b"\x03\x01a\x01b", b"\x00\x00"))
    assert not isinstance(caught.value, TruncatedMessage)
    with pytest.raises(MalformedMessage) as caught:
        decode_request(known_request(b"\x02\x01a\x00\x40"))  # a varint crossing the end
    assert not isinstance(caught.value, TruncatedMessage)


# --- RFC 9292 §3.5: status codes -----------------------------------------------------


@pytest.mark.parametrize("status", [0, 99, 600, 999, 2**20])
def test_rfc9292_s3_5_bad_status_codes(status: int) -> None:
    with pytest.raises(MalformedMessage, match="status code"):
        decode_response(b"\x01" + encode_varint(status) + b"\x00\x00\x00")
    with pytest.raises(MalformedMessage, match="status code"):
        decode_response(b"\x01\x40\x64\x00" + encode_varint(status))  # after a 100


@pytest.mark.parametrize("status", [0, 99, 100, 199, 600])
def test_rfc9292_s3_5_encoder_refuses_bad_final_status(status: int) -> None:
    with pytest.raises(ValueError):
        encode_response(Response(status))


@pytest.mark.parametrize("status", [99, 200, 204])
def test_rfc9292_s3_5_1_encoder_refuses_bad_informational_status(status: int) -> None:
    with pytest.raises(ValueError):
        encode_response(Response(200, informational=(InformationalResponse(status),)))


# --- Limits: hostile lengths and counts ----------------------------------------------

_HUGE = encode_varint(MAX_VARINT)


@pytest.mark.parametrize(
    ("decode", "data"),
    [
        (decode_request, b"\x00" + _HUGE),  # method length
        (decode_request, known_request(_HUGE)),  # header section length
        (decode_request, known_request(b"\x00", _HUGE)),  # content length
        (decode_request, known_request(b"\x00\x00", _HUGE)),  # trailer section length
        (decode_request, indeterminate_request(_HUGE)),  # field name length
        (decode_request, indeterminate_request(b"\x01a", _HUGE)),  # field value length
        (decode_request, indeterminate_request(b"\x00", _HUGE)),  # chunk length
        (decode_response, b"\x01\x40\xc8\x00" + _HUGE),  # response content length
        (decode_response, b"\x01\x40\x64" + _HUGE),  # 1xx field section length
    ],
)
def test_oversized_varint_lengths_raise_limit_exceeded_without_allocating(
    decode: object, data: bytes
) -> None:
    assert callable(decode)
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_limit_max_message() -> None:
    data = encode_request(GET, padding=100)
    assert decode_request(data, Limits(max_message=len(data))) == GET
    with pytest.raises(LimitExceeded):
        decode_request(data, Limits(max_message=len(data) - 1))


@pytest.mark.parametrize("indeterminate", [False, True])
def test_limit_too_many_fields(indeterminate: bool) -> None:
    fields = tuple((f"x-{i}".encode(), b"v") for i in range(257))
    data = encode_request(
        Request(b"GET", b"https", b"a", b"/", fields=fields), indeterminate=indeterminate
    )
    with pytest.raises(LimitExceeded, match="fields"):
        decode_request(data)
    assert decode_request(data, Limits(max_fields=257)).fields == fields


@pytest.mark.parametrize("indeterminate", [False, True])
def test_limit_field_section_size(indeterminate: bool) -> None:
    fields = ((b"x-big", b"v" * 70_000),)
    data = encode_response(Response(200, fields=fields), indeterminate=indeterminate)
    with pytest.raises(LimitExceeded):
        decode_response(data)
    assert decode_response(data, Limits(max_field_section=80_000)).fields == fields


@pytest.mark.parametrize("indeterminate", [False, True])
def test_limit_too_many_informational_responses(indeterminate: bool) -> None:
    interim = tuple(InformationalResponse(103) for _ in range(17))
    data = encode_response(Response(200, informational=interim), indeterminate=indeterminate)
    with pytest.raises(LimitExceeded, match="informational"):
        decode_response(data)
    assert decode_response(data, Limits(max_informational=17)).informational == interim


def test_limit_too_many_chunks() -> None:
    data = indeterminate_request(b"\x00", b"\x01a" * 11, b"\x00")
    assert decode_request(data, Limits(max_chunks=11)).content == b"a" * 11
    with pytest.raises(LimitExceeded, match="chunks"):
        decode_request(data, Limits(max_chunks=10))


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        Limits(max_fields=-1)
    with pytest.raises(ValueError):
        Limits(max_message="big")  # type: ignore[arg-type]


# --- API misuse: TypeError / ValueError, never an OHTTPError ---------------------------


def test_encoder_misuse() -> None:
    with pytest.raises(TypeError):
        encode_request(Request("GET", b"https", b"a", b"/"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_request(Request(b"GET", b"https", b"a", b"/", fields=((b"a", "b"),)))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_request(Request(b"GET", b"https", b"a", b"/", content="x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_response(Request(b"GET", b"https", b"a", b"/"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_request(GET, padding=-1)
    with pytest.raises(TypeError):
        decode_request("\x00")  # type: ignore[arg-type]


def test_decoders_accept_bytearray_and_memoryview() -> None:
    data = encode_request(GET)
    assert decode_request(bytearray(data)) == GET  # type: ignore[arg-type]
    assert decode_request(memoryview(data)) == GET  # type: ignore[arg-type]


# --- padded_length --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 1024), (1, 1024), (1024, 1024), (1025, 4096), (4096, 4096), (16384, 16384),
     (16385, 32768), (40000, 49152)],
)
def test_padded_length(n: int, expected: int) -> None:
    assert padded_length(n, [1024, 4096, 16384]) == expected


def test_padded_length_unsorted_buckets_and_errors() -> None:
    assert padded_length(100, [4096, 256, 1024]) == 256
    with pytest.raises(ValueError):
        padded_length(1, [])
    with pytest.raises(ValueError):
        padded_length(1, [0])
    with pytest.raises(ValueError):
        padded_length(-1, [16])


@given(n=st.integers(0, 10**6), buckets=st.lists(st.integers(1, 10**5), min_size=1, max_size=5))
def test_padded_length_properties(n: int, buckets: list[int]) -> None:
    size = padded_length(n, buckets)
    assert size >= n
    assert size in buckets or size % max(buckets) == 0


def test_padding_to_a_bucket_round_trips() -> None:
    req = Request(b"POST", b"https", b"backend", b"/v1/summarize", content=b"{}" * 300)
    n = len(encode_request(req))
    data = encode_request(req, padding=padded_length(n, [1024, 4096]) - n)
    assert len(data) == 1024
    assert decode_request(data) == req


# --- fuzzing: arbitrary input raises only OHTTPError -----------------------------------


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_raise_only_malformed(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(MalformedMessage):
            decode(data)


_SEEDS = [
    encode_request(
        Request(b"POST", b"https", b"a", b"/x", fields=((b"a", b"b"),), content=b"hello",
                trailers=((b"t", b"v"),)),
        indeterminate=ind,
        truncate=False,
    )
    for ind in (False, True)
] + [
    encode_response(
        Response(200, fields=((b"a", b"b"),), content=b"hi",
                 informational=(InformationalResponse(103, ((b"link", b"x"),)),)),
        indeterminate=ind,
        truncate=False,
    )
    for ind in (False, True)
]


@settings(max_examples=2000)
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 100),
)
def test_fuzz_mutated_messages_raise_only_malformed(
    seed: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    mutated = bytes(data[: max(cut, 1)]) if cut < len(data) else bytes(data)
    for decode in (decode_request, decode_response):
        with contextlib.suppress(MalformedMessage):
            decode(mutated)
