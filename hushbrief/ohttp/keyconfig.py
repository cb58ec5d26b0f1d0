"""OHTTP key configurations (RFC 9458 §3): what a gateway publishes, what a client picks.

This module owns the key configuration encoding (§3.1), the
``application/ohttp-keys`` list (§3.2), the client's choice among configurations,
and the gateway's key material (:class:`ServerKey`).

Decisions where the RFC leaves room:

* Unsupported entries are skipped, malformed ones are fatal. The two-byte length
  prefix of §3.2 exists so that a client can step over configurations for KEMs it
  does not know; those are skipped, as are KDF/AEAD pairs it does not know. But
  §3.2 also says that clients MUST discard incorrectly encoded collections, because
  lenient recovery could be used to segregate clients: any encoding error fails
  the whole list with :class:`KeyConfigError`.
* The evidence bundle binds the *bytes* of the key configurations. Hash the bytes
  as received; never re-encode a decoded list for that purpose (unknown entries
  are gone after decoding).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from hushbrief.ohttp.errors import KeyConfigError, UnsupportedSuite
from hushbrief.ohttp.hpke import (
    MIN_IKM_LENGTH,
    AeadId,
    KdfId,
    KemId,
    PrivateKey,
    derive_private_key,
    kem_params,
    load_private_key,
    load_public_key,
)

__all__ = [
    "DEFAULT_SUITES",
    "MIN_IKM_LENGTH",
    "SUPPORTED_KEMS",
    "SUPPORTED_SUITES",
    "AeadId",
    "KdfId",
    "KemId",
    "KeyConfig",
    "ServerKey",
    "SymmetricSuite",
    "choose_config",
    "decode_key_configs",
    "encode_key_configs",
    "generate_server_key",
    "server_key_from_private",
]


@dataclass(frozen=True, slots=True)
class SymmetricSuite:
    """One "HPKE Symmetric Algorithms" entry: a KDF and an AEAD (RFC 9458 §3.1)."""

    kdf: KdfId
    aead: AeadId

    def __post_init__(self) -> None:
        if not isinstance(self.kdf, KdfId) or not isinstance(self.aead, AeadId):
            raise TypeError("SymmetricSuite takes a KdfId and an AeadId")

    def encode(self) -> bytes:
        """``HPKE KDF ID (16), HPKE AEAD ID (16)``."""
        return struct.pack(">HH", self.kdf, self.aead)


SUPPORTED_KEMS: tuple[KemId, ...] = tuple(KemId)
"""Every KEM of RFC 9180 §7.1: pyhpke implements all five."""

SUPPORTED_SUITES: tuple[SymmetricSuite, ...] = tuple(
    SymmetricSuite(kdf, aead) for kdf in KdfId for aead in AeadId
)
"""Every KDF × AEAD combination of RFC 9180 §7.2–7.3 except export-only."""

DEFAULT_SUITES: tuple[SymmetricSuite, ...] = (
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_128_GCM),
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.CHACHA20_POLY1305),
    SymmetricSuite(KdfId.HKDF_SHA256, AeadId.AES_256_GCM),
)
"""What a gateway offers unless told otherwise, in order of its preference."""

# "HPKE Symmetric Algorithms Length (16) = 4..65532" (RFC 9458 §3.1).
_MAX_SUITES = 65532 // 4
_MAX_CONFIG = 0xFFFF  # the two-byte length prefix of §3.2


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One key configuration (RFC 9458 §3.1).

    Constructing one checks types and sizes (``TypeError``/``ValueError``); the
    public key is checked to be a valid point by :meth:`decode` and before use.
    """

    key_id: int
    kem: KemId
    public_key: bytes
    suites: tuple[SymmetricSuite, ...]

    def __post_init__(self) -> None:
        if isinstance(self.key_id, bool) or not isinstance(self.key_id, int):
            raise TypeError("key_id is an int")
        if not 0 <= self.key_id <= 0xFF:
            raise ValueError("key_id is one byte: 0..255")
        if not isinstance(self.kem, KemId):
            raise TypeError("kem is a KemId")
        if not isinstance(self.public_key, bytes):
            raise TypeError("public_key is bytes")
        if len(self.public_key) != kem_params(self.kem).n_pk:
            raise ValueError(f"a {self.kem.name} public key has {kem_params(self.kem).n_pk} bytes")
        if not isinstance(self.suites, tuple):
            raise TypeError("suites is a tuple of SymmetricSuite")
        if not self.suites or len(self.suites) > _MAX_SUITES:
            raise ValueError(f"a key configuration offers 1..{_MAX_SUITES} suites")
        if not all(isinstance(s, SymmetricSuite) for s in self.suites):
            raise TypeError("suites is a tuple of SymmetricSuite")

    def offers(self, suite: SymmetricSuite) -> bool:
        """Whether this configuration lists ``suite``."""
        return suite in self.suites

    def encode(self) -> bytes:
        """The RFC 9458 §3.1 encoding of this configuration."""
        return b"".join((
            struct.pack(">BH", self.key_id, self.kem),
            self.public_key,
            struct.pack(">H", 4 * len(self.suites)),
            *(s.encode() for s in self.suites),
        ))

    @classmethod
    def decode(cls, data: bytes) -> KeyConfig:
        """Decode exactly one configuration (RFC 9458 §3.1), with no bytes after it.

        Raises :class:`KeyConfigError` if it is malformed, :class:`UnsupportedSuite`
        if its KEM is unknown here (its length cannot even be checked then) or if it
        offers no KDF/AEAD pair known here. Unknown pairs among known ones are
        dropped.
        """
        config = _parse_config(_as_bytes(data))
        if config is None:
            raise UnsupportedSuite("key configuration has no supported KEM or suite")
        return config


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("key configurations are bytes")
    return data


def _parse_config(data: bytes) -> KeyConfig | None:
    """One configuration filling all of ``data``; None if valid but unsupported."""
    if len(data) < 3:
        raise KeyConfigError("key configuration shorter than its fixed header")
    key_id, kem_code = struct.unpack_from(">BH", data)
    try:
        kem = KemId(kem_code)
    except ValueError:
        return None
    n_pk = kem_params(kem).n_pk
    suites_at = 3 + n_pk + 2
    if len(data) < suites_at:
        raise KeyConfigError("key configuration ends inside its public key")
    public_key = data[3:3 + n_pk]
    (suites_length,) = struct.unpack_from(">H", data, 3 + n_pk)
    if suites_length < 4 or suites_length % 4:
        raise KeyConfigError("symmetric algorithms length is not a positive multiple of 4")
    if len(data) != suites_at + suites_length:
        raise KeyConfigError("key configuration length disagrees with its contents")
    suites: list[SymmetricSuite] = []
    for at in range(suites_at, len(data), 4):
        kdf_code, aead_code = struct.unpack_from(">HH", data, at)
        try:
            suites.append(SymmetricSuite(KdfId(kdf_code), AeadId(aead_code)))
        except ValueError:
            continue  # a pair this implementation does not know: skip it
    try:
        load_public_key(kem, public_key)
    except ValueError:
        raise KeyConfigError("public key is not a valid point for its KEM") from None
    if not suites:
        return None
    return KeyConfig(key_id, kem, public_key, tuple(suites))


def encode_key_configs(configs: Sequence[KeyConfig]) -> bytes:
    """The ``application/ohttp-keys`` body: each configuration behind a 2-byte length (§3.2)."""
    if not configs:
        raise ValueError("application/ohttp-keys holds one or more configurations")
    out = bytearray()
    for config in configs:
        if not isinstance(config, KeyConfig):
            raise TypeError("encode_key_configs takes KeyConfig objects")
        encoded = config.encode()
        if len(encoded) > _MAX_CONFIG:
            raise ValueError("key configuration too long for its two-byte length prefix")
        out += struct.pack(">H", len(encoded))
        out += encoded
    return bytes(out)


def decode_key_configs(data: bytes) -> list[KeyConfig]:
    """Decode an ``application/ohttp-keys`` body (RFC 9458 §3.2).

    Returns the configurations this implementation can use, in the server's order;
    configurations with an unknown KEM, and unknown KDF/AEAD pairs, are skipped, so
    the list may be empty (:func:`choose_config` then raises). Any encoding error,
    an empty body included, raises :class:`KeyConfigError` for the whole list, as
    §3.2 requires.
    """
    data = _as_bytes(data)
    if not data:
        raise KeyConfigError("empty key configuration list")
    configs: list[KeyConfig] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            raise KeyConfigError("key configuration list ends inside a length prefix")
        (length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if length == 0:
            raise KeyConfigError("zero-length key configuration")
        if length > len(data) - pos:
            raise KeyConfigError("key configuration runs past the end of the list")
        config = _parse_config(data[pos:pos + length])
        pos += length
        if config is not None:
            configs.append(config)
    return configs


def choose_config(
    configs: Sequence[KeyConfig],
    *,
    kems: Sequence[KemId] = SUPPORTED_KEMS,
    suites: Sequence[SymmetricSuite] = SUPPORTED_SUITES,
) -> tuple[KeyConfig, SymmetricSuite]:
    """Pick the first configuration with a KEM in ``kems`` and its first suite in ``suites``.

    The server's order decides (RFC 9458 §3 leaves the choice to the client; the
    server lists what it prefers first). ``kems`` and ``suites`` only filter.
    Raises :class:`UnsupportedSuite` if nothing fits.
    """
    for config in configs:
        if config.kem not in kems:
            continue
        for suite in config.suites:
            if suite in suites:
                return config, suite
    raise UnsupportedSuite("no key configuration with a supported KEM and suite")


@dataclass(frozen=True, slots=True)
class ServerKey:
    """A gateway key: its public configuration and the serialized private key.

    The private key never appears in ``repr``. Constructing one checks that the
    private key belongs to the configuration's public key (``ValueError`` if not).
    """

    config: KeyConfig
    private_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.config, KeyConfig):
            raise TypeError("config is a KeyConfig")
        loaded = load_private_key(self.config.kem, self.private_key)
        if loaded.public_key() != self.config.public_key:
            raise ValueError("private key does not match the configuration's public key")


def _server_key(key_id: int, private: PrivateKey, suites: Sequence[SymmetricSuite]) -> ServerKey:
    config = KeyConfig(key_id, private.kem, private.public_key(), tuple(suites))
    return ServerKey(config, private.to_bytes())


def generate_server_key(
    key_id: int,
    *,
    ikm: bytes,
    kem: KemId = KemId.X25519_SHA256,
    suites: Sequence[SymmetricSuite] = DEFAULT_SUITES,
) -> ServerKey:
    """A new gateway key, derived deterministically from ``ikm`` (RFC 9180 §7.1.3).

    The caller supplies the randomness: ``ikm=os.urandom(32)`` or more
    (``ValueError`` below :data:`MIN_IKM_LENGTH` bytes).
    """
    if not isinstance(kem, KemId):
        raise TypeError("kem is a KemId")
    return _server_key(key_id, derive_private_key(kem, ikm), suites)


def server_key_from_private(
    key_id: int,
    kem: KemId,
    private_key: bytes,
    suites: Sequence[SymmetricSuite] = DEFAULT_SUITES,
) -> ServerKey:
    """A gateway key from a serialized private key, such as RFC 9458 Appendix A's ``skR``."""
    if not isinstance(kem, KemId):
        raise TypeError("kem is a KemId")
    return _server_key(key_id, load_private_key(kem, private_key), suites)
