"""RFC 9458 §4 encapsulation: every suite end to end, and every way it must fail."""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hushbrief.ohttp import (
    SUPPORTED_SUITES,
    AeadId,
    ClientResponseContext,
    DecryptionFailed,
    Gateway,
    KdfId,
    KemId,
    KeyConfig,
    KeyConfigError,
    OHTTPError,
    Request,
    RequestHeader,
    ServerKey,
    SymmetricSuite,
    TruncatedMessage,
    UnknownKeyId,
    UnsupportedSuite,
    decode_request,
    encapsulate_request,
    encode_request,
    generate_server_key,
    parse_request_header,
)
from hushbrief.ohttp.hpke import aead_params, kem_params

# One gateway key per KEM, offering every suite; derived once (P-521 is slow-ish).
KEYS: dict[KemId, ServerKey] = {
    kem: generate_server_key(int(kem) & 0xFF, ikm=bytes([kem & 0xFF]) * 32, kem=kem,
                             suites=SUPPORTED_SUITES)
    for kem in KemId
}
GATEWAY = Gateway(list(KEYS.values()))
X25519 = KEYS[KemId.X25519_SHA256]
AES128 = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
COMBINATIONS = [(kem, suite) for kem in KemId for suite in SUPPORTED_SUITES]
IKM = b"\x01" * 32


def client(
    request: bytes = b"hello", key: ServerKey = X25519, suite: SymmetricSuite = AES128
) -> tuple[bytes, ClientResponseContext]:
    return encapsulate_request(key.config, suite, request, ephemeral_ikm=IKM)


# --- round trips for every supported combination --------------------------------------


@pytest.mark.parametrize(
    ("kem", "suite"),
    COMBINATIONS,
    ids=[f"{k.name}-{s.kdf.name}-{s.aead.name}" for k, s in COMBINATIONS],
)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request=st.binary(max_size=3000),
    response=st.binary(max_size=3000),
    ikm=st.binary(min_size=32, max_size=64),
    data=st.data(),
)
def test_rfc9458_s4_round_trip_every_suite(
    kem: KemId, suite: SymmetricSuite, request: bytes, response: bytes, ikm: bytes,
    data: st.DataObject,
) -> None:
    key = KEYS[kem]
    encapsulated, client_ctx = encapsulate_request(key.config, suite, request, ephemeral_ikm=ikm)
    n_enc = kem_params(kem).n_enc
    n_t = aead_params(suite.aead).n_t
    assert len(encapsulated) == 7 + n_enc + len(request) + n_t
    assert parse_request_header(encapsulated) == RequestHeader(
        key.config.key_id, kem, suite.kdf, suite.aead
    )

    plaintext, server_ctx = GATEWAY.decapsulate(encapsulated)
    assert plaintext == request
    assert server_ctx.key_id == key.config.key_id
    assert server_ctx.enc == encapsulated[7:7 + n_enc]

    nonce = data.draw(st.binary(min_size=server_ctx.nonce_length,
                                max_size=server_ctx.nonce_length))
    assert server_ctx.nonce_length == client_ctx.nonce_length == max(
        aead_params(suite.aead).n_n, aead_params(suite.aead).n_k
    )
    sealed = server_ctx.seal_response(response, nonce=nonce)
    assert sealed[:len(nonce)] == nonce
    assert client_ctx.open_response(sealed) == response


@settings(max_examples=30, deadline=None)
@given(
    content=st.binary(max_size=500),
    padding=st.integers(0, 100),
    indeterminate=st.booleans(),
)
def test_binary_http_inside_ohttp(content: bytes, padding: int, indeterminate: bool) -> None:
    req = Request(b"POST", b"https", b"backend.invalid", b"/v1/summarize",
                  fields=((b"content-type", b"application/json"),), content=content)
    wire = encode_request(req, indeterminate=indeterminate, padding=padding)
    encapsulated, _ = client(wire)
    plaintext, _ = GATEWAY.decapsulate(encapsulated)
    assert decode_request(plaintext) == req


def test_ephemeral_key_is_deterministic_from_ikm() -> None:
    first, _ = client()
    second, _ = client()
    third, _ = encapsulate_request(X25519.config, AES128, b"hello", ephemeral_ikm=b"\x02" * 32)
    assert first == second
    assert first[7:39] != third[7:39]


def test_key_rotation_two_keys_one_gateway() -> None:
    old = generate_server_key(1, ikm=b"old" * 11)
    new = generate_server_key(2, ikm=b"new" * 11, kem=KemId.P256_SHA256)
    gateway = Gateway([new, old])
    assert gateway.key_configs() == [new.config, old.config]
    for key in (old, new):
        encapsulated, ctx = encapsulate_request(key.config, AES128, b"x", ephemeral_ikm=IKM)
        request, server_ctx = gateway.decapsulate(encapsulated)
        assert request == b"x"
        assert server_ctx.key_id == key.config.key_id
        sealed = server_ctx.seal_response(b"y", nonce=bytes(16))
        assert ctx.open_response(sealed) == b"y"


# --- RFC 9458 §4.3: gateway errors before decryption ------------------------------------


def test_unknown_key_id() -> None:
    encapsulated, _ = client()
    gateway = Gateway([generate_server_key(9, ikm=bytes(32))])
    with pytest.raises(UnknownKeyId):
        gateway.decapsulate(encapsulated)


def test_unknown_key_id_wins_over_unknown_algorithms() -> None:
    # The more useful answer first: an unknown key means "refetch the configuration".
    with pytest.raises(UnknownKeyId):
        GATEWAY.decapsulate(b"\xee\x99\x99\x99\x99\x99\x99" + bytes(64))


@pytest.mark.parametrize(
    "header",
    [
        b"\x20\x00\x10\x00\x01\x00\x01",  # RFC 9458 §4.3 step 1a: KEM not the key's
        b"\x20\x00\x20\x00\x01\xff\xff",  # unknown AEAD (export-only)
        b"\x20\x00\x20\x00\x09\x00\x01",  # unknown KDF
    ],
)
def test_unsupported_suite_in_header(header: bytes) -> None:
    with pytest.raises(UnsupportedSuite):
        GATEWAY.decapsulate(header + bytes(64))


def test_suite_not_offered_by_that_key() -> None:
    # RFC 9458 §4.3 step 1b: a known pair the key does not offer.
    key = generate_server_key(4, ikm=bytes(32), suites=[AES128])
    other = KeyConfig(4, KemId.X25519_SHA256, key.config.public_key, (AES128, SymmetricSuite(
        KdfId.HKDF_SHA512, AeadId.CHACHA20_POLY1305)))
    encapsulated, _ = encapsulate_request(other, other.suites[1], b"x", ephemeral_ikm=IKM)
    with pytest.raises(UnsupportedSuite):
        Gateway([key]).decapsulate(encapsulated)


def test_parse_request_header() -> None:
    encapsulated, _ = client()
    header = parse_request_header(encapsulated)
    assert header == RequestHeader(0x20, KemId.X25519_SHA256, KdfId.HKDF_SHA256,
                                   AeadId.AES_128_GCM)
    assert header.encode() == encapsulated[:7]
    with pytest.raises(TruncatedMessage):
        parse_request_header(encapsulated[:6])
    with pytest.raises(UnsupportedSuite):
        parse_request_header(b"\x01\x00\x20\x00\x01\x00\x07")


# --- tampering: DecryptionFailed ----------------------------------------------------------


def test_flipped_bit_anywhere_in_enc_or_ciphertext() -> None:
    encapsulated, _ = client(b"some request bytes")
    for position in range(7, len(encapsulated)):
        for bit in (0x01, 0x80):
            tampered = bytearray(encapsulated)
            tampered[position] ^= bit
            with pytest.raises(DecryptionFailed):
                GATEWAY.decapsulate(bytes(tampered))


@pytest.mark.parametrize("kem", [KemId.P256_SHA256, KemId.P384_SHA384, KemId.P521_SHA512])
def test_invalid_ec_point_as_enc(kem: KemId) -> None:
    encapsulated, _ = client(key=KEYS[kem])
    tampered = bytearray(encapsulated)
    tampered[8] ^= 0x01  # the point is off the curve now
    with pytest.raises(DecryptionFailed):
        GATEWAY.decapsulate(bytes(tampered))


def test_low_order_x25519_enc() -> None:
    encapsulated, _ = client()
    zero_point = encapsulated[:7] + bytes(32) + encapsulated[39:]
    with pytest.raises(DecryptionFailed):
        GATEWAY.decapsulate(zero_point)


def test_flipped_bit_in_response_nonce_ciphertext_or_tag() -> None:
    encapsulated, ctx = client()
    _, server_ctx = GATEWAY.decapsulate(encapsulated)
    sealed = server_ctx.seal_response(b"a response", nonce=bytes(range(16)))
    for position in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x04
        with pytest.raises(DecryptionFailed):
            ctx.open_response(bytes(tampered))


def test_response_for_another_request_does_not_open() -> None:
    _, first_ctx = client(b"one")
    second, _ = encapsulate_request(X25519.config, AES128, b"two", ephemeral_ikm=b"\x07" * 32)
    _, second_server = GATEWAY.decapsulate(second)
    sealed = second_server.seal_response(b"answer", nonce=bytes(16))
    with pytest.raises(DecryptionFailed):
        first_ctx.open_response(sealed)


# --- truncation ---------------------------------------------------------------------------


def test_truncated_encapsulated_request_at_every_length() -> None:
    encapsulated, _ = client(b"0123456789")
    shortest = 7 + 32 + 16
    for length in range(len(encapsulated)):
        expected = TruncatedMessage if length < shortest else DecryptionFailed
        with pytest.raises(expected):
            GATEWAY.decapsulate(encapsulated[:length])


def test_truncated_encapsulated_response_at_every_length() -> None:
    encapsulated, ctx = client()
    _, server_ctx = GATEWAY.decapsulate(encapsulated)
    sealed = server_ctx.seal_response(b"0123456789", nonce=bytes(16))
    for length in range(len(sealed)):
        expected = TruncatedMessage if length < 16 + 16 else DecryptionFailed
        with pytest.raises(expected):
            ctx.open_response(sealed[:length])


def test_empty_request_and_response_are_fine() -> None:
    encapsulated, ctx = client(b"")
    request, server_ctx = GATEWAY.decapsulate(encapsulated)
    assert request == b""
    assert ctx.open_response(server_ctx.seal_response(b"", nonce=bytes(16))) == b""


# --- API misuse: ValueError / TypeError ------------------------------------------------------


@pytest.mark.parametrize("length", [0, 12, 15, 17, 32])
def test_response_nonce_of_the_wrong_length(length: int) -> None:
    _, server_ctx = GATEWAY.decapsulate(client()[0])
    assert server_ctx.nonce_length == 16
    with pytest.raises(ValueError, match="nonce"):
        server_ctx.seal_response(b"x", nonce=bytes(length))


def test_chacha_response_nonce_is_32_bytes() -> None:
    chacha = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305)
    _, server_ctx = GATEWAY.decapsulate(client(suite=chacha)[0])
    assert server_ctx.nonce_length == 32
    with pytest.raises(ValueError):
        server_ctx.seal_response(b"x", nonce=bytes(16))


def test_exactly_one_ephemeral_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        encapsulate_request(X25519.config, AES128, b"x")
    with pytest.raises(ValueError, match="exactly one"):
        encapsulate_request(X25519.config, AES128, b"x", ephemeral_ikm=IKM,
                            ephemeral_private_key=bytes(32))
    with pytest.raises(ValueError, match="ikm"):
        encapsulate_request(X25519.config, AES128, b"x", ephemeral_ikm=b"short")
    with pytest.raises(ValueError):
        encapsulate_request(X25519.config, AES128, b"x", ephemeral_private_key=bytes(31))


def test_suite_must_be_offered_by_the_config() -> None:
    key = generate_server_key(1, ikm=bytes(32), suites=[AES128])
    with pytest.raises(ValueError, match="does not offer"):
        encapsulate_request(key.config, SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_256_GCM),
                            b"x", ephemeral_ikm=IKM)


def test_invalid_public_key_in_config() -> None:
    config = KeyConfig(1, KemId.P256_SHA256, b"\x04" + b"\x01" * 64, (AES128,))
    with pytest.raises(KeyConfigError):
        encapsulate_request(config, AES128, b"x", ephemeral_ikm=IKM)


def test_gateway_construction() -> None:
    with pytest.raises(ValueError):
        Gateway([])
    with pytest.raises(ValueError, match="key_id"):
        Gateway([generate_server_key(1, ikm=bytes(32)), generate_server_key(1, ikm=b"x" * 32)])
    with pytest.raises(TypeError):
        Gateway([X25519.config])  # type: ignore[list-item]


def test_type_errors() -> None:
    with pytest.raises(TypeError):
        encapsulate_request(X25519.config, AES128, "text", ephemeral_ikm=IKM)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        GATEWAY.decapsulate("text")  # type: ignore[arg-type]
    _, ctx = client()
    with pytest.raises(TypeError):
        ctx.open_response("text")  # type: ignore[arg-type]


# --- secrets stay out of reprs ---------------------------------------------------------------


def test_contexts_and_gateway_hide_secrets() -> None:
    encapsulated, client_ctx = client()
    _, server_ctx = GATEWAY.decapsulate(encapsulated)
    for obj in (client_ctx, server_ctx, GATEWAY):
        text = repr(obj)
        assert X25519.private_key.hex() not in text
        assert repr(X25519.private_key) not in text
    assert "<secret>" in repr(client_ctx) and "<secret>" in repr(server_ctx)
    assert client_ctx._secret.hex() not in repr(client_ctx)


# --- fuzzing --------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=120),
        # a valid header for a known key, so that parsing reaches the HPKE step
        st.binary(max_size=120).map(lambda b: b"\x20\x00\x20\x00\x01\x00\x01" + b),
    )
)
def test_fuzz_gateway_raises_only_ohttp_errors(data: bytes) -> None:
    with contextlib.suppress(OHTTPError):
        GATEWAY.decapsulate(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_fuzz_open_response_raises_only_ohttp_errors(data: bytes) -> None:
    _, ctx = client()
    with pytest.raises(OHTTPError):
        ctx.open_response(data)


# --- sans-I/O -------------------------------------------------------------------------------

OHTTP = Path(__file__).resolve().parent.parent / "hushbrief" / "ohttp"


def test_no_clock_no_randomness_no_io_in_the_source() -> None:
    # Randomness and time come in as arguments (DESIGN.md §2); the import-linter
    # contract covers asyncio and HTTP clients, this covers the standard library.
    forbidden = {"os", "time", "datetime", "random", "secrets", "socket", "asyncio", "uuid"}
    for path in OHTTP.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {names & forbidden}"


def test_importing_ohttp_loads_no_network_or_event_loop() -> None:
    code = (
        "import sys, hushbrief.ohttp; "
        "print(sorted(m for m in ('asyncio', 'socket', 'httpx', 'starlette', 'uvicorn') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=OHTTP.parent.parent)
    assert result.stdout.strip() == "[]"
