"""RFC 9458 §3 key configurations: encoding, the ohttp-keys list, choice, server keys."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hushbrief.ohttp import (
    DEFAULT_SUITES,
    SUPPORTED_KEMS,
    SUPPORTED_SUITES,
    AeadId,
    KdfId,
    KemId,
    KeyConfig,
    KeyConfigError,
    OHTTPError,
    ServerKey,
    SymmetricSuite,
    UnsupportedSuite,
    choose_config,
    decode_key_configs,
    encode_key_configs,
    generate_server_key,
    server_key_from_private,
)
from hushbrief.ohttp.hpke import kem_params

# One real key per KEM, derived once: public keys must be valid points.
KEYS = {kem: generate_server_key(7, ikm=bytes([kem & 0xFF]) * 32, kem=kem) for kem in KemId}
X25519 = KEYS[KemId.X25519_SHA256]
AES128 = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM)
CHACHA = SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305)
AES256_384 = SymmetricSuite(KdfId.HKDF_SHA384, AeadId.AES_256_GCM)

key_configs = st.builds(
    lambda key_id, kem, suites: KeyConfig(key_id, kem, KEYS[kem].config.public_key, suites),
    key_id=st.integers(0, 255),
    kem=st.sampled_from(list(KemId)),
    suites=st.lists(st.sampled_from(SUPPORTED_SUITES), min_size=1, max_size=12).map(tuple),
)


def prefixed(*configs: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(c)) + c for c in configs)


# --- RFC 9458 §3.1: one configuration -------------------------------------------------


@given(key_configs)
def test_rfc9458_s3_1_round_trip(config: KeyConfig) -> None:
    encoded = config.encode()
    assert len(encoded) == 1 + 2 + kem_params(config.kem).n_pk + 2 + 4 * len(config.suites)
    assert KeyConfig.decode(encoded) == config


@settings(max_examples=50)
@given(st.lists(key_configs, min_size=1, max_size=5))
def test_rfc9458_s3_2_list_round_trip(configs: list[KeyConfig]) -> None:
    assert decode_key_configs(encode_key_configs(configs)) == configs


def test_rfc9458_s3_1_layout() -> None:
    config = KeyConfig(0x2A, KemId.X25519_SHA256, bytes(range(32)), (AES128, CHACHA))
    assert config.encode() == (
        b"\x2a\x00\x20" + bytes(range(32)) + b"\x00\x08" + b"\x00\x01\x00\x01\x00\x01\x00\x03"
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c[:2],  # shorter than the fixed header
        lambda c: c[:20],  # inside the public key
        lambda c: c[:36],  # inside the algorithms length
        lambda c: c[:-1],  # algorithms shorter than announced
        lambda c: c + b"\x00",  # trailing byte
        lambda c: c + b"\x00\x01\x00\x01",  # one more suite than announced
        lambda c: c[:35] + b"\x00\x00",  # algorithms length 0 (RFC: 4..65532)
        lambda c: c[:35] + b"\x00\x03" + c[37:40],  # not a multiple of 4
        lambda c: c[:35] + b"\x00\x06" + c[37:43],
        lambda c: c[:35] + b"\xff\xfc" + c[37:],  # announced far longer than present
    ],
)
def test_rfc9458_s3_1_bad_lengths(mutate: object) -> None:
    assert callable(mutate)
    data = mutate(X25519.config.encode())
    with pytest.raises(KeyConfigError):
        KeyConfig.decode(data)
    with pytest.raises(KeyConfigError):
        decode_key_configs(prefixed(data))


def test_rfc9458_s3_1_invalid_ec_point() -> None:
    config = KEYS[KemId.P256_SHA256].config.encode()
    broken = config[:3] + b"\x04" + b"\x01" * 64 + config[3 + 65:]
    with pytest.raises(KeyConfigError, match="point"):
        KeyConfig.decode(broken)


def test_rfc9458_s3_1_unknown_kem_is_unsupported_not_malformed() -> None:
    data = b"\x01\x00\x99" + bytes(40)
    with pytest.raises(UnsupportedSuite):
        KeyConfig.decode(data)


def test_rfc9458_s3_1_unknown_suites_are_dropped() -> None:
    encoded = X25519.config.encode()
    n = 3 + 32
    unknown = b"\x00\x01\xff\xff" + b"\x00\x09\x00\x01"
    body = encoded[n + 2:]
    data = encoded[:n] + struct.pack(">H", len(body) + 8) + unknown + body
    assert KeyConfig.decode(data).suites == X25519.config.suites
    only_unknown = encoded[:n] + b"\x00\x08" + unknown
    with pytest.raises(UnsupportedSuite):
        KeyConfig.decode(only_unknown)


def test_key_config_constructor_checks() -> None:
    pk = X25519.config.public_key
    with pytest.raises(ValueError):
        KeyConfig(256, KemId.X25519_SHA256, pk, (AES128,))
    with pytest.raises(ValueError):
        KeyConfig(1, KemId.X25519_SHA256, pk + b"\x00", (AES128,))
    with pytest.raises(ValueError):
        KeyConfig(1, KemId.X25519_SHA256, pk, ())
    with pytest.raises(TypeError):
        KeyConfig(1, 0x20, pk, (AES128,))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        KeyConfig(1, KemId.X25519_SHA256, pk, [AES128])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SymmetricSuite(1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        KeyConfig.decode("abc")  # type: ignore[arg-type]


# --- RFC 9458 §3.2: application/ohttp-keys ---------------------------------------------


def test_rfc9458_s3_2_empty_list_is_malformed() -> None:
    with pytest.raises(KeyConfigError, match="empty"):
        decode_key_configs(b"")
    with pytest.raises(ValueError):
        encode_key_configs([])


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # half a length prefix
        b"\x00\x00",  # zero-length configuration
        prefixed(X25519.config.encode()) + b"\x00",  # a dangling byte
        struct.pack(">H", 100) + X25519.config.encode(),  # prefix longer than the rest
        struct.pack(">H", 30) + X25519.config.encode(),  # prefix cuts the config short
    ],
)
def test_rfc9458_s3_2_bad_framing(data: bytes) -> None:
    with pytest.raises(KeyConfigError):
        decode_key_configs(data)


def test_rfc9458_s3_2_one_bad_config_fails_the_whole_list() -> None:
    # "Clients MUST discard incorrectly encoded key configuration collections."
    good = X25519.config.encode()
    bad = good[:35] + b"\x00\x03" + good[37:40]
    with pytest.raises(KeyConfigError):
        decode_key_configs(prefixed(good, bad))


def test_rfc9458_s3_2_unknown_kem_is_skipped() -> None:
    # The length prefix exists so that configurations for new KEMs can be stepped over.
    unknown = b"\x05\x00\x99" + bytes(50)
    p256 = KEYS[KemId.P256_SHA256].config
    assert decode_key_configs(prefixed(unknown, p256.encode())) == [p256]
    assert decode_key_configs(prefixed(unknown)) == []


def test_rfc9458_s3_2_prefix_must_match_config_length() -> None:
    config = X25519.config.encode()
    # A length prefix two bytes longer swallows the next prefix: config + junk.
    with pytest.raises(KeyConfigError):
        decode_key_configs(struct.pack(">H", len(config) + 2) + config + b"\x00\x00")


# --- choose_config ---------------------------------------------------------------------


def test_choose_config_prefers_the_servers_order() -> None:
    first = KeyConfig(1, KemId.X25519_SHA256, X25519.config.public_key, (CHACHA, AES128))
    second = KeyConfig(2, KemId.X25519_SHA256, X25519.config.public_key, (AES128,))
    assert choose_config([first, second]) == (first, CHACHA)
    assert choose_config([first, second], suites=[AES128]) == (first, AES128)
    p256 = KEYS[KemId.P256_SHA256].config
    assert choose_config([p256, first], kems=[KemId.X25519_SHA256]) == (first, CHACHA)


def test_choose_config_without_a_match() -> None:
    with pytest.raises(UnsupportedSuite):
        choose_config([])
    with pytest.raises(UnsupportedSuite):
        choose_config([X25519.config], suites=[AES256_384])
    with pytest.raises(UnsupportedSuite):
        choose_config([X25519.config], kems=[KemId.P256_SHA256])


def test_supported_sets() -> None:
    assert set(SUPPORTED_KEMS) == set(KemId)
    assert len(SUPPORTED_SUITES) == 9
    assert (
        AES128,
        CHACHA,
        SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_256_GCM),
    ) == DEFAULT_SUITES


# --- server keys --------------------------------------------------------------------------


def test_server_key_repr_hides_the_private_key() -> None:
    text = repr(X25519)
    assert "private_key" not in text
    assert X25519.private_key.hex() not in text
    assert repr(X25519.private_key) not in text


@pytest.mark.parametrize("kem", list(KemId))
def test_generate_server_key_is_deterministic_and_reloadable(kem: KemId) -> None:
    key = generate_server_key(3, ikm=b"k" * 32, kem=kem)
    assert key == generate_server_key(3, ikm=b"k" * 32, kem=kem)
    assert key != generate_server_key(3, ikm=b"l" * 32, kem=kem)
    assert len(key.private_key) == kem_params(kem).n_sk
    assert key.config.suites == DEFAULT_SUITES
    assert server_key_from_private(3, kem, key.private_key) == key


def test_generate_server_key_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="ikm"):
        generate_server_key(1, ikm=b"short")
    with pytest.raises(ValueError):
        generate_server_key(300, ikm=bytes(32))
    with pytest.raises(TypeError):
        generate_server_key(1, ikm=bytes(32), kem=0x20)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kem", "private_key"),
    [
        (KemId.X25519_SHA256, bytes(31)),
        (KemId.P256_SHA256, bytes(32)),  # zero scalar
        (KemId.P256_SHA256, b"\xff" * 32),  # above the group order
        (KemId.P521_SHA512, b"\xff" * 66),
    ],
)
def test_server_key_from_private_rejects_invalid_keys(kem: KemId, private_key: bytes) -> None:
    with pytest.raises(ValueError):
        server_key_from_private(1, kem, private_key)


def test_server_key_must_match_its_config() -> None:
    other = generate_server_key(7, ikm=b"o" * 32)
    with pytest.raises(ValueError, match="does not match"):
        ServerKey(X25519.config, other.private_key)


_VALID_LIST = encode_key_configs([k.config for k in KEYS.values()])


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out[:cut])


fuzz_inputs = st.one_of(
    st.binary(max_size=120),
    # a known KEM, so that parsing goes past the header
    st.builds(lambda kem, rest: b"\x01" + struct.pack(">H", kem) + rest,
              st.sampled_from(list(KemId)), st.binary(max_size=200)),
    st.builds(_mutate, st.just(_VALID_LIST),
              st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=3),
              st.integers(0, len(_VALID_LIST))),
)


@settings(max_examples=1000)
@given(fuzz_inputs)
def test_fuzz_key_config_decoders_raise_only_ohttp_errors(data: bytes) -> None:
    for decode in (KeyConfig.decode, decode_key_configs):
        with contextlib.suppress(OHTTPError):
            decode(data)
