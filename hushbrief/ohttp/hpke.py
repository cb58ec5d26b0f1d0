"""HPKE (RFC 9180) as Oblivious HTTP uses it, and the one place that talks to pyhpke.

This module owns the HPKE code points (RFC 9180 §7), their sizes, key
serialization, and the translation between our types and exceptions and those of
pyhpke and ``cryptography``. Nothing else in ``hushbrief.ohttp`` imports pyhpke,
so a library exception never escapes untranslated and a change of library
touches one file.

Randomness never originates here: ephemeral and server keys are derived from
input keying material the caller passes in (RFC 9180 §7.1.3 ``DeriveKeyPair``),
or loaded from serialized private keys (the RFC test vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Any

import pyhpke
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from hushbrief.ohttp.errors import DecryptionFailed

__all__ = [
    "MIN_IKM_LENGTH",
    "AeadId",
    "AeadParams",
    "KdfId",
    "KemId",
    "KemParams",
    "PrivateKey",
    "aead_open",
    "aead_params",
    "aead_seal",
    "derive_private_key",
    "expand",
    "export",
    "extract",
    "kem_params",
    "load_private_key",
    "load_public_key",
    "open_",
    "seal",
    "setup_receiver",
    "setup_sender",
]


class KemId(IntEnum):
    """HPKE KEM identifiers (RFC 9180 §7.1)."""

    P256_SHA256 = 0x0010
    P384_SHA384 = 0x0011
    P521_SHA512 = 0x0012
    X25519_SHA256 = 0x0020
    X448_SHA512 = 0x0021


class KdfId(IntEnum):
    """HPKE KDF identifiers (RFC 9180 §7.2)."""

    HKDF_SHA256 = 0x0001
    HKDF_SHA384 = 0x0002
    HKDF_SHA512 = 0x0003


class AeadId(IntEnum):
    """HPKE AEAD identifiers (RFC 9180 §7.3); export-only (0xFFFF) cannot carry OHTTP."""

    AES_128_GCM = 0x0001
    AES_256_GCM = 0x0002
    CHACHA20_POLY1305 = 0x0003


@dataclass(frozen=True, slots=True)
class KemParams:
    """Sizes of a KEM in bytes (RFC 9180 §7.1, table 2)."""

    n_secret: int
    n_enc: int
    n_pk: int
    n_sk: int


@dataclass(frozen=True, slots=True)
class AeadParams:
    """Sizes of an AEAD in bytes (RFC 9180 §7.3, table 5)."""

    n_k: int
    n_n: int
    n_t: int


_KEMS: dict[KemId, KemParams] = {
    KemId.P256_SHA256: KemParams(32, 65, 65, 32),
    KemId.P384_SHA384: KemParams(48, 97, 97, 48),
    KemId.P521_SHA512: KemParams(64, 133, 133, 66),
    KemId.X25519_SHA256: KemParams(32, 32, 32, 32),
    KemId.X448_SHA512: KemParams(64, 56, 56, 56),
}
_AEADS: dict[AeadId, AeadParams] = {
    AeadId.AES_128_GCM: AeadParams(16, 12, 16),
    AeadId.AES_256_GCM: AeadParams(32, 12, 16),
    AeadId.CHACHA20_POLY1305: AeadParams(32, 12, 16),
}
_HASHES: dict[KdfId, type[hashes.HashAlgorithm]] = {
    KdfId.HKDF_SHA256: hashes.SHA256,
    KdfId.HKDF_SHA384: hashes.SHA384,
    KdfId.HKDF_SHA512: hashes.SHA512,
}
_EC_KEMS = frozenset({KemId.P256_SHA256, KemId.P384_SHA384, KemId.P521_SHA512})

MIN_IKM_LENGTH = 32
"""Least input keying material accepted for deriving a key pair, in bytes.

RFC 9180 §7.1.3 asks for at least Nsk bytes of entropy; 32 bytes (256 bits) meet
or exceed the security level of every KEM here, so one ``os.urandom(32)`` serves
all of them.
"""


def kem_params(kem: KemId) -> KemParams:
    """Sizes of ``kem``."""
    return _KEMS[kem]


def aead_params(aead: AeadId) -> AeadParams:
    """Sizes of ``aead``."""
    return _AEADS[aead]


# --- KDF and AEAD for the response (RFC 9458 §4.4) ---------------------------------


def extract(kdf: KdfId, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with the hash of ``kdf`` (RFC 5869 §2.2), unlabeled as RFC 9458 §4.4 uses it."""
    return HKDF.extract(_HASHES[kdf](), salt, ikm)


def expand(kdf: KdfId, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with the hash of ``kdf`` (RFC 5869 §2.3), unlabeled."""
    return HKDFExpand(_HASHES[kdf](), length, info).derive(prk)


def _aead(aead: AeadId, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if aead is AeadId.CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    return AESGCM(key)


def aead_seal(aead: AeadId, key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """AEAD seal with empty associated data (RFC 9458 §4.4 step 6)."""
    return _aead(aead, key).encrypt(nonce, plaintext, None)


def aead_open(aead: AeadId, key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """AEAD open with empty associated data; :class:`DecryptionFailed` if the tag is wrong."""
    try:
        return _aead(aead, key).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise DecryptionFailed("response AEAD open failed") from None


# --- pyhpke adapter ----------------------------------------------------------------

_PYHPKE_KEM = {
    KemId.P256_SHA256: pyhpke.KEMId.DHKEM_P256_HKDF_SHA256,
    KemId.P384_SHA384: pyhpke.KEMId.DHKEM_P384_HKDF_SHA384,
    KemId.P521_SHA512: pyhpke.KEMId.DHKEM_P521_HKDF_SHA512,
    KemId.X25519_SHA256: pyhpke.KEMId.DHKEM_X25519_HKDF_SHA256,
    KemId.X448_SHA512: pyhpke.KEMId.DHKEM_X448_HKDF_SHA512,
}
_PYHPKE_KDF = {
    KdfId.HKDF_SHA256: pyhpke.KDFId.HKDF_SHA256,
    KdfId.HKDF_SHA384: pyhpke.KDFId.HKDF_SHA384,
    KdfId.HKDF_SHA512: pyhpke.KDFId.HKDF_SHA512,
}
_PYHPKE_AEAD = {
    AeadId.AES_128_GCM: pyhpke.AEADId.AES128_GCM,
    AeadId.AES_256_GCM: pyhpke.AEADId.AES256_GCM,
    AeadId.CHACHA20_POLY1305: pyhpke.AEADId.CHACHA20_POLY1305,
}


@lru_cache(maxsize=64)
def _suite(kem: KemId, kdf: KdfId, aead: AeadId) -> pyhpke.CipherSuite:
    # A pyhpke CipherSuite holds only algorithm objects, no keys or state, so one
    # instance per combination can serve every request.
    return pyhpke.CipherSuite.new(_PYHPKE_KEM[kem], _PYHPKE_KDF[kdf], _PYHPKE_AEAD[aead])


def _kem(kem: KemId) -> pyhpke.KEMInterface:
    return _suite(kem, KdfId.HKDF_SHA256, AeadId.AES_128_GCM).kem


class PrivateKey:
    """A loaded KEM private key: parsed once, used for many decapsulations."""

    __slots__ = ("_key", "_public", "kem")

    def __init__(
        self, kem: KemId, key: pyhpke.KEMKeyInterface,
        public: pyhpke.KEMKeyInterface | None = None,
    ) -> None:
        self.kem = kem
        self._key = key
        # The public key costs a scalar multiplication; keep it once computed.
        self._public = public

    def __repr__(self) -> str:
        return f"PrivateKey(kem={self.kem.name}, <secret>)"

    def to_bytes(self) -> bytes:
        """The serialized private key (RFC 9180 §7.1.2 ``SerializePrivateKey``)."""
        raw: Any = self._key.raw
        if self.kem in _EC_KEMS:
            # pyhpke's own EC serialization sizes the output in bits, not bytes;
            # RFC 9180 §7.1.2 wants the scalar as exactly Nsk big-endian bytes.
            scalar: int = raw.private_numbers().private_value
            return scalar.to_bytes(_KEMS[self.kem].n_sk, "big")
        return bytes(raw.private_bytes_raw())

    def _public_key(self) -> pyhpke.KEMKeyInterface:
        if self._public is None:
            self._public = pyhpke.KEMKey.from_pyca_cryptography_key(self._key.raw.public_key())
        return self._public

    def public_key(self) -> bytes:
        """The serialized public key (RFC 9180 §7.1.1 ``SerializePublicKey``)."""
        return self._public_key().to_public_bytes()

    def key_pair(self) -> pyhpke.KEMKeyPair:
        """The key and its public half, as pyhpke takes an ephemeral key."""
        return pyhpke.KEMKeyPair(self._key, self._public_key())

    @property
    def hpke_key(self) -> pyhpke.KEMKeyInterface:
        """The pyhpke key object, for :func:`setup_receiver`."""
        return self._key


def load_private_key(kem: KemId, private_key: bytes) -> PrivateKey:
    """Parse a serialized private key (RFC 9180 §7.1.2); ``ValueError`` if it is not one."""
    if not isinstance(private_key, bytes):
        raise TypeError("a private key is bytes")
    if len(private_key) != _KEMS[kem].n_sk:
        raise ValueError(f"a {kem.name} private key has {_KEMS[kem].n_sk} bytes")
    try:
        key = _kem(kem).deserialize_private_key(private_key)
    except ValueError:
        # cryptography refuses zero and scalars at or above the group order.
        raise ValueError(f"not a valid {kem.name} private key") from None
    return PrivateKey(kem, key)


def derive_private_key(kem: KemId, ikm: bytes) -> PrivateKey:
    """``DeriveKeyPair(ikm)`` (RFC 9180 §7.1.3): a deterministic key from caller randomness."""
    if not isinstance(ikm, bytes):
        raise TypeError("ikm is bytes")
    if len(ikm) < MIN_IKM_LENGTH:
        raise ValueError(f"ikm needs at least {MIN_IKM_LENGTH} bytes")
    pair = _kem(kem).derive_key_pair(ikm)
    return PrivateKey(kem, pair.private_key, pair.public_key)


def load_public_key(kem: KemId, public_key: bytes) -> pyhpke.KEMKeyInterface:
    """Parse a serialized public key; ``ValueError`` if it is not a valid one for ``kem``."""
    if len(public_key) != _KEMS[kem].n_pk:
        raise ValueError(f"a {kem.name} public key has {_KEMS[kem].n_pk} bytes")
    try:
        return _kem(kem).deserialize_public_key(public_key)
    except ValueError:
        # cryptography checks that an EC point is on the curve.
        raise ValueError(f"not a valid {kem.name} public key") from None


def setup_sender(
    kem: KemId,
    kdf: KdfId,
    aead: AeadId,
    public_key: pyhpke.KEMKeyInterface,
    info: bytes,
    ephemeral: PrivateKey,
) -> tuple[bytes, pyhpke.ContextInterface]:
    """``SetupBaseS(pkR, info)`` (RFC 9180 §5.1.1) with the given ephemeral key."""
    return _suite(kem, kdf, aead).create_sender_context(
        public_key, info, eks=ephemeral.key_pair()
    )


def setup_receiver(
    kem: KemId,
    kdf: KdfId,
    aead: AeadId,
    enc: bytes,
    private_key: PrivateKey,
    info: bytes,
) -> pyhpke.ContextInterface:
    """``SetupBaseR(enc, skR, info)`` (RFC 9180 §5.1.1).

    An ``enc`` that is not a valid public key, or that yields an all-zero shared
    secret (RFC 9180 §7.1.4), fails like a wrong tag: :class:`DecryptionFailed`.
    """
    try:
        return _suite(kem, kdf, aead).create_recipient_context(enc, private_key.hpke_key, info)
    except ValueError:
        raise DecryptionFailed("encapsulated key rejected") from None


def seal(context: pyhpke.ContextInterface, plaintext: bytes) -> bytes:
    """``context.Seal(aad="", pt)`` (RFC 9180 §5.2)."""
    return context.seal(plaintext, b"")


def open_(context: pyhpke.ContextInterface, ciphertext: bytes) -> bytes:
    """``context.Open(aad="", ct)``; :class:`DecryptionFailed` when it does not open."""
    try:
        return context.open(ciphertext, b"")
    except pyhpke.OpenError:
        raise DecryptionFailed("request AEAD open failed") from None


def export(context: pyhpke.ContextInterface, exporter_context: bytes, length: int) -> bytes:
    """``context.Export(exporter_context, L)`` (RFC 9180 §5.3)."""
    return context.export(exporter_context, length)
