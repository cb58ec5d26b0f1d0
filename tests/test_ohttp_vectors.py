"""The RFCs' own examples, byte for byte (DESIGN.md §7.8).

* RFC 9458 Appendix A: the complete worked example of Oblivious HTTP, every
  intermediate value, from the client's side and from the gateway's.
* RFC 9292 §5: the binary HTTP examples, decoded to their meaning, re-encoded where
  the RFC fixes the bytes, and accepted in every truncated and padded form the RFC
  allows.

The values are copied here from the RFC text, as aioquic does, so that the tests
run in a fresh clone; when ../shared/vectors/rfc_vectors.json is present, one
test checks that both copies agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hushbrief.ohttp import (
    AeadId,
    ClientResponseContext,
    Gateway,
    InformationalResponse,
    KdfId,
    KemId,
    KeyConfig,
    MalformedMessage,
    Request,
    RequestHeader,
    Response,
    ServerKey,
    SymmetricSuite,
    TruncatedMessage,
    choose_config,
    decode_key_configs,
    decode_request,
    decode_response,
    encapsulate_request,
    encode_key_configs,
    encode_request,
    encode_response,
    server_key_from_private,
)
from hushbrief.ohttp.encapsulation import _derive_response_keys

h = bytes.fromhex

# --- RFC 9458 Appendix A -----------------------------------------------------------------

A = {
    "skR": "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a",
    "pkR": "31e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155",
    "key_config": "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001"
    "000100010003",
    "request_bhttp": "00034745540568747470730b6578616d706c652e636f6d012f",
    "skE": "bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73",
    "pkE": "4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472",
    "hpke_info": "6d6573736167652f626874747020726571756573740001002000010001",
    "encapsulated_request": "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad1"
    "9dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525",
    "response_bhttp": "0140c8",
    "response_secret_export": "62d87a6ba569ee81014c2641f52bea36",
    "response_nonce": "c789e7151fcba46158ca84b04464910d",
    "response_salt": "4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472c789e7151f"
    "cba46158ca84b04464910d",
    "response_prk": "979aaeae066cf211ab407b31ae49767f344e1501e475c84e8aff547cc5a683db",
    "response_aead_key": "5d0172a080e428b16d298c4ea0db620d",
    "response_aead_nonce": "f6bf1aeb88d6df87007fa263",
    "encapsulated_response": "c789e7151fcba46158ca84b04464910d"
    "86f9013e404feea014e7be4a441f234f857fbd",
}
AES128 = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
CHACHA = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305)


@pytest.fixture(scope="module")
def server_key() -> ServerKey:
    # Appendix A: key_id 1, DHKEM(X25519, HKDF-SHA256), offering (HKDF-SHA256,
    # AES-128-GCM) and (HKDF-SHA256, ChaCha20Poly1305).
    return server_key_from_private(1, KemId.X25519_SHA256, h(A["skR"]), [AES128, CHACHA])


def encapsulate() -> tuple[bytes, ClientResponseContext]:
    config = KeyConfig.decode(h(A["key_config"]))
    config, suite = choose_config([config])
    return encapsulate_request(config, suite, h(A["request_bhttp"]),
                               ephemeral_private_key=h(A["skE"]))


def test_rfc9458_appendix_a_key_config(server_key: ServerKey) -> None:
    assert server_key.config.public_key == h(A["pkR"])
    assert server_key.config.encode() == h(A["key_config"])
    decoded = KeyConfig.decode(h(A["key_config"]))
    assert decoded == server_key.config
    assert (decoded.key_id, decoded.kem, decoded.suites) == (1, KemId.X25519_SHA256,
                                                             (AES128, CHACHA))
    # The same configuration as an application/ohttp-keys list (RFC 9458 §3.2).
    keys = encode_key_configs([decoded])
    assert keys == b"\x00\x2d" + h(A["key_config"])  # 45 bytes
    assert decode_key_configs(keys) == [decoded]


def test_rfc9458_appendix_a_client_chooses_the_first_suite() -> None:
    config = KeyConfig.decode(h(A["key_config"]))
    assert choose_config([config]) == (config, AES128)


def test_rfc9458_appendix_a_request_bhttp() -> None:
    # GET https://example.com/, truncated right after the path (RFC 9292 §3.8).
    request = Request(b"GET", b"https", b"example.com", b"/")
    assert decode_request(h(A["request_bhttp"])) == request
    assert encode_request(request) == h(A["request_bhttp"])


def test_rfc9458_appendix_a_hpke_info() -> None:
    header = RequestHeader(1, KemId.X25519_SHA256, KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
    assert header.hpke_info() == h(A["hpke_info"])
    assert header.encode() == h(A["encapsulated_request"])[:7]


def test_rfc9458_appendix_a_client_encapsulates() -> None:
    encapsulated, ctx = encapsulate()
    assert encapsulated == h(A["encapsulated_request"])
    assert encapsulated[7:39] == h(A["pkE"])
    # The outer message printed in the RFC says Content-Length 78; it is 80.
    assert len(encapsulated) == 80
    assert ctx._secret == h(A["response_secret_export"])


def test_rfc9458_appendix_a_ephemeral_public_key() -> None:
    from hushbrief.ohttp.hpke import load_private_key

    assert load_private_key(KemId.X25519_SHA256, h(A["skE"])).public_key() == h(A["pkE"])


def test_rfc9458_appendix_a_gateway_decapsulates(server_key: ServerKey) -> None:
    request, ctx = Gateway([server_key]).decapsulate(h(A["encapsulated_request"]))
    assert request == h(A["request_bhttp"])
    assert ctx.enc == h(A["pkE"])
    assert ctx.key_id == 1
    assert ctx.nonce_length == 16
    assert ctx._secret == h(A["response_secret_export"])


def test_rfc9458_appendix_a_response_key_schedule() -> None:
    keys = _derive_response_keys(
        h(A["response_secret_export"]), h(A["pkE"]), h(A["response_nonce"]), AES128
    )
    assert keys.salt == h(A["response_salt"])
    assert keys.prk == h(A["response_prk"])
    assert keys.aead_key == h(A["response_aead_key"])
    assert keys.aead_nonce == h(A["response_aead_nonce"])


def test_rfc9458_appendix_a_gateway_seals_response(server_key: ServerKey) -> None:
    # A bare 200, truncated after the status (RFC 9292 §3.8).
    assert encode_response(Response(200)) == h(A["response_bhttp"])
    _, ctx = Gateway([server_key]).decapsulate(h(A["encapsulated_request"]))
    sealed = ctx.seal_response(h(A["response_bhttp"]), nonce=h(A["response_nonce"]))
    assert sealed == h(A["encapsulated_response"])
    # The outer message printed in the RFC says Content-Length 38; it is 35.
    assert len(sealed) == 35


def test_rfc9458_appendix_a_client_opens_response() -> None:
    _, ctx = encapsulate()
    response = ctx.open_response(h(A["encapsulated_response"]))
    assert response == h(A["response_bhttp"])
    assert decode_response(response) == Response(200)


# --- RFC 9292 §5 --------------------------------------------------------------------------

S5 = {
    # §5.1, Figure 2: known-length request.
    "request_known_length": "0003474554056874747073000a2f68656c6c6f2e747874406c0a757365722d6167656e"
    "74346375726c2f372e31362e33206c69626375726c2f372e31362e33204f70656e53534c2f302e392e376c207a6c69"
    "622f312e322e3304686f73740f7777772e6578616d706c652e636f6d0f6163636570742d6c616e677561676506656e"
    "2c206d690000",
    # §5.1, Figure 3: indeterminate-length request with 10 bytes of padding.
    "request_indeterminate_length_padded": "0203474554056874747073000a2f68656c6c6f2e7478740a7573"
    "65722d6167656e74346375726c2f372e31362e33206c69626375726c2f372e31362e33204f70656e53534c2f302e39"
    "2e376c207a6c69622f312e322e3304686f73740f7777772e6578616d706c652e636f6d0f6163636570742d6c616e67"
    "7561676506656e2c206d6900000000000000000000000000",
    # §5.2, Figure 5: indeterminate-length response with two informational responses.
    "response_indeterminate_length_with_interim": "0340660772756e6e696e670a22736c65657020313522"
    "004067046c696e6b233c2f7374796c652e6373733e3b2072656c3d7072656c6f61643b2061733d7374796c65046c69"
    "6e6b243c2f7363726970742e6a733e3b2072656c3d7072656c6f61643b2061733d7363726970740040c80464617465"
    "1d4d6f6e2c203237204a756c20323030392031323a32383a353320474d5406736572766572064170616368650d6c61"
    "73742d6d6f6469666965641d5765642c203232204a756c20323030392031393a31353a353620474d5404657461671422"
    "333461613338372d642d3135363865623030220d6163636570742d72616e6765730562797465730e636f6e74656e74"
    "2d6c656e67746802353104766172790f4163636570742d456e636f64696e670c636f6e74656e742d747970650a7465"
    "78742f706c61696e003348656c6c6f20576f726c6421204d7920636f6e74656e7420696e636c75646573206120747261"
    "696c696e672043524c462e0d0a0000",
    # §5.2, Figure 6: known-length response with content and a trailer.
    "response_chunked_known_length": "0140c8001d5468697320636f6e74656e7420636f6e7461696e732043524c"
    "462e0d0a0d07747261696c65720474657874",
}
# Not in the RFC: the indeterminate-length form of Figure 6, from martinthomson/ohttp's tests.
EXTRA_INDETERMINATE = (
    "0340c8001d5468697320636f6e74656e7420636f6e7461696e732043524c462e0d0a0007747261696c65720474657874"
    "00"
)

HELLO = Request(
    method=b"GET",
    scheme=b"https",
    authority=b"",  # §5.1: the Host field is not copied into :authority
    path=b"/hello.txt",
    fields=(
        (b"user-agent", b"curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3"),
        (b"host", b"www.example.com"),
        (b"accept-language", b"en, mi"),
    ),
)
HELLO_HTTP1 = (
    b"GET /hello.txt HTTP/1.1\r\n"
    b"User-Agent: curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3\r\n"
    b"Host: www.example.com\r\n"
    b"Accept-Language: en, mi\r\n\r\n"
)
INTERIM = Response(
    status=200,
    informational=(
        InformationalResponse(102, ((b"running", b'"sleep 15"'),)),
        InformationalResponse(103, (
            (b"link", b"</style.css>; rel=preload; as=style"),
            (b"link", b"</script.js>; rel=preload; as=script"),
        )),
    ),
    fields=(
        (b"date", b"Mon, 27 Jul 2009 12:28:53 GMT"),
        (b"server", b"Apache"),
        (b"last-modified", b"Wed, 22 Jul 2009 19:15:56 GMT"),
        (b"etag", b'"34aa387-d-1568eb00"'),
        (b"accept-ranges", b"bytes"),
        (b"content-length", b"51"),
        (b"vary", b"Accept-Encoding"),
        (b"content-type", b"text/plain"),
    ),
    content=b"Hello World! My content includes a trailing CRLF.\r\n",
)
CHUNKED = Response(
    200, content=b"This content contains CRLF.\r\n", trailers=((b"trailer", b"text"),)
)


def test_rfc9292_s5_1_request_matches_its_http1_form() -> None:
    # Figure 1 is the same request as HTTP/1.1; binary HTTP lowercases field names.
    head, _ = HELLO_HTTP1.split(b"\r\n\r\n")
    request_line, *lines = head.split(b"\r\n")
    method, target, _ = request_line.split(b" ")
    assert (HELLO.method, HELLO.path) == (method, target)
    assert HELLO.fields == tuple(
        (name.lower(), value) for name, value in (line.split(b": ", 1) for line in lines)
    )


def test_rfc9292_s5_1_known_length_request() -> None:
    data = h(S5["request_known_length"])
    assert decode_request(data) == HELLO
    assert len(decode_request(data).content) == 0
    assert encode_request(HELLO, truncate=False) == data


def test_rfc9292_s5_1_known_length_request_truncated() -> None:
    # "the last two bytes - corresponding to content and a trailer section - can
    # each be removed without altering the semantics of the message."
    data = h(S5["request_known_length"])
    assert decode_request(data[:-1]) == HELLO
    assert decode_request(data[:-2]) == HELLO
    assert encode_request(HELLO) == data[:-2]
    with pytest.raises(TruncatedMessage):
        decode_request(data[:-3])  # inside the header section


def test_rfc9292_s5_1_indeterminate_length_request_with_padding() -> None:
    data = h(S5["request_indeterminate_length_padded"])
    assert decode_request(data) == HELLO
    assert encode_request(HELLO, indeterminate=True, truncate=False, padding=10) == data


def test_rfc9292_s5_1_indeterminate_length_request_up_to_12_bytes_removed() -> None:
    # "anything up to 12 bytes can be removed from this message without affecting
    # its meaning": the 10 padding bytes, the trailer and content terminators.
    data = h(S5["request_indeterminate_length_padded"])
    for removed in range(13):
        assert decode_request(data[:len(data) - removed]) == HELLO
    assert encode_request(HELLO, indeterminate=True) == data[:-12]
    with pytest.raises(TruncatedMessage):
        decode_request(data[:-13])  # the header section's terminator is gone


def test_rfc9292_s5_2_response_with_informational_responses() -> None:
    data = h(S5["response_indeterminate_length_with_interim"])
    response = decode_response(data)
    assert response == INTERIM
    assert [i.status for i in response.informational] == [102, 103]
    assert len(response.content) == 51 == int(dict(response.fields)[b"content-length"])
    # The reason phrases ("Processing", "Early Hints", "OK") are not retained.
    assert b"Processing" not in data and b"Early Hints" not in data
    assert encode_response(INTERIM, indeterminate=True, truncate=False) == data
    # The final zero (empty trailers) may be truncated away (RFC 9292 §3.8).
    assert decode_response(data[:-1]) == INTERIM
    assert encode_response(INTERIM, indeterminate=True) == data[:-1]


def test_rfc9292_s5_2_known_length_response_with_trailer() -> None:
    data = h(S5["response_chunked_known_length"])
    response = decode_response(data)
    assert response == CHUNKED
    assert response.fields == () and response.informational == ()
    assert len(response.content) == 29
    assert encode_response(CHUNKED) == data
    assert encode_response(CHUNKED, truncate=False) == data  # trailers present: nothing to cut


def test_extra_non_rfc_indeterminate_length_response_with_trailer() -> None:
    data = h(EXTRA_INDETERMINATE)
    assert decode_response(data) == CHUNKED
    assert encode_response(CHUNKED, indeterminate=True) == data


def test_rfc9292_s5_same_meaning_across_framings() -> None:
    # Two valid encodings of one message: compare meaning, not bytes.
    assert decode_response(h(EXTRA_INDETERMINATE)) == decode_response(
        h(S5["response_chunked_known_length"])
    )
    assert decode_request(h(S5["request_known_length"])) == decode_request(
        h(S5["request_indeterminate_length_padded"])
    )


ALL_MESSAGES = [
    (decode_request, A["request_bhttp"]),
    (decode_response, A["response_bhttp"]),
    (decode_request, S5["request_known_length"]),
    (decode_request, S5["request_indeterminate_length_padded"]),
    (decode_response, S5["response_indeterminate_length_with_interim"]),
    (decode_response, S5["response_chunked_known_length"]),
    (decode_response, EXTRA_INDETERMINATE),
]


@pytest.mark.parametrize(("decode", "hex_data"), ALL_MESSAGES)
def test_rfc9292_s3_8_truncated_at_every_byte(decode: object, hex_data: str) -> None:
    # Every prefix either is a valid truncated message or raises MalformedMessage
    # (TruncatedMessage, mostly); nothing else may escape.
    assert callable(decode)
    data = h(hex_data)
    full = decode(data)
    for length in range(len(data)):
        try:
            partial = decode(data[:length])
        except MalformedMessage:
            continue
        # A prefix that decodes ends after a complete section: control data and
        # informational responses are intact, every later section is either the
        # full message's or absent (empty).
        assert _is_truncation_of(partial, full), length


def _is_truncation_of(partial: Request | Response, full: Request | Response) -> bool:
    if isinstance(partial, Request) and isinstance(full, Request):
        same_start = (partial.method, partial.scheme, partial.authority, partial.path) == (
            full.method, full.scheme, full.authority, full.path)
    elif isinstance(partial, Response) and isinstance(full, Response):
        same_start = (partial.status, partial.informational) == (full.status, full.informational)
    else:
        return False
    sections = [(partial.fields, full.fields), (partial.content, full.content),
                (partial.trailers, full.trailers)]
    kept = [mine == theirs for mine, theirs in sections]
    # Once a section is cut, every later one is cut too (and reads as empty).
    first_cut = kept.index(False) if False in kept else len(kept)
    return same_start and all(not mine for mine, _ in sections[first_cut:]) and all(
        kept[:first_cut])


@pytest.mark.parametrize(("decode", "hex_data"), ALL_MESSAGES)
def test_rfc9292_s3_8_padding_accepted_after_every_example(decode: object, hex_data: str) -> None:
    assert callable(decode)
    data = h(hex_data)
    assert decode(data + bytes(31)) == decode(data)


def test_vectors_agree_with_the_shared_copy() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "rfc_vectors.json"
    if not shared.exists():
        pytest.skip("../shared/vectors is not checked out next to this repository")
    vectors = json.loads(shared.read_text())
    for name, value in A.items():
        assert vectors["rfc9458_appendix_a"][name] == value, name
    for name, value in S5.items():
        assert vectors["rfc9292_section5"][name] == value, name
    assert vectors["extra_non_rfc"]["response_chunked_indeterminate_length"] == EXTRA_INDETERMINATE
    assert vectors["rfc9292_section5"]["request_http1"].encode() == HELLO_HTTP1
