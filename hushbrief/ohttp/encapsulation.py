"""Encapsulated requests and responses (RFC 9458 §4): the client's and the gateway's side.

This module owns the ``message/ohttp-req`` and ``message/ohttp-res`` formats, the
HPKE ``info`` and exporter labels, the response key schedule (§4.4), and the
gateway's key lookup. It takes and returns bytes; the ephemeral key material and
the response nonce come from the caller (``os.urandom`` in the I/O layer, the
RFC's values in tests), and nothing here reads a clock.

Shape, after pyhpke: the client calls :func:`encapsulate_request` and gets the
bytes to send plus a :class:`ClientResponseContext` that opens the answer; the
gateway calls :meth:`Gateway.decapsulate` and gets the request plus a
:class:`ServerResponseContext` that seals the answer. The contexts hold only the
exported response secret, never the HPKE context itself, and hide it from
``repr``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from hushbrief.ohttp import hpke
from hushbrief.ohttp.errors import (
    KeyConfigError,
    TruncatedMessage,
    UnknownKeyId,
    UnsupportedSuite,
)
from hushbrief.ohttp.hpke import AeadId, KdfId, KemId
from hushbrief.ohttp.keyconfig import KeyConfig, ServerKey, SymmetricSuite

__all__ = [
    "HEADER_LENGTH",
    "KEYS_MEDIA_TYPE",
    "REQUEST_LABEL",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_LABEL",
    "RESPONSE_MEDIA_TYPE",
    "ClientResponseContext",
    "Gateway",
    "RequestHeader",
    "ServerResponseContext",
    "encapsulate_request",
    "parse_request_header",
]

REQUEST_MEDIA_TYPE = "message/ohttp-req"
RESPONSE_MEDIA_TYPE = "message/ohttp-res"
KEYS_MEDIA_TYPE = "application/ohttp-keys"

REQUEST_LABEL = b"message/bhttp request"
"""Start of the HPKE ``info`` of a request (RFC 9458 §4.3 step 2)."""
RESPONSE_LABEL = b"message/bhttp response"
"""The ``exporter_context`` of the response secret (RFC 9458 §4.4 step 1)."""

HEADER_LENGTH = 7
"""key_id (8) + kem_id (16) + kdf_id (16) + aead_id (16) bits (RFC 9458 §4.1)."""


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """The clear header of an encapsulated request (RFC 9458 §4.1)."""

    key_id: int
    kem: KemId
    kdf: KdfId
    aead: AeadId

    def encode(self) -> bytes:
        """``hdr`` of RFC 9458 §4.3 step 1, in network byte order."""
        return struct.pack(">BHHH", self.key_id, self.kem, self.kdf, self.aead)

    def hpke_info(self) -> bytes:
        """``info = "message/bhttp request" || 0x00 || hdr`` (RFC 9458 §4.3 step 2)."""
        return REQUEST_LABEL + b"\x00" + self.encode()

    @property
    def suite(self) -> SymmetricSuite:
        """The KDF/AEAD pair the client chose."""
        return SymmetricSuite(self.kdf, self.aead)


def _header_fields(encapsulated_request: bytes) -> tuple[int, int, int, int]:
    if not isinstance(encapsulated_request, bytes):
        raise TypeError("an encapsulated request is bytes")
    if len(encapsulated_request) < HEADER_LENGTH:
        raise TruncatedMessage("encapsulated request shorter than its header")
    key_id, kem, kdf, aead = struct.unpack_from(">BHHH", encapsulated_request)
    return key_id, kem, kdf, aead


def parse_request_header(encapsulated_request: bytes) -> RequestHeader:
    """Read the 7-byte header, before any cryptography.

    :class:`TruncatedMessage` if fewer than 7 bytes; :class:`UnsupportedSuite` if a
    KEM, KDF or AEAD identifier is unknown here.
    """
    key_id, kem, kdf, aead = _header_fields(encapsulated_request)
    try:
        return RequestHeader(key_id, KemId(kem), KdfId(kdf), AeadId(aead))
    except ValueError:
        raise UnsupportedSuite("unknown KEM, KDF or AEAD identifier") from None


# --- the response key schedule (RFC 9458 §4.4) -------------------------------------


def _response_secret_length(aead: AeadId) -> int:
    params = hpke.aead_params(aead)
    # max(Nn, Nk): the secret and the response nonce must each carry a full key's
    # worth of entropy even for AEADs whose nonce is shorter than their key.
    return max(params.n_n, params.n_k)


@dataclass(frozen=True, slots=True)
class _ResponseKeys:
    """Every intermediate value of RFC 9458 §4.4 steps 3–5 (the vectors check them all)."""

    salt: bytes
    prk: bytes
    aead_key: bytes
    aead_nonce: bytes

    def __repr__(self) -> str:
        return "_ResponseKeys(<secret>)"


def _derive_response_keys(
    secret: bytes, enc: bytes, response_nonce: bytes, suite: SymmetricSuite
) -> _ResponseKeys:
    """``salt = enc || response_nonce``, ``prk = Extract(salt, secret)``,
    ``aead_key = Expand(prk, "key", Nk)``, ``aead_nonce = Expand(prk, "nonce", Nn)``.
    """
    params = hpke.aead_params(suite.aead)
    salt = enc + response_nonce
    prk = hpke.extract(suite.kdf, salt, secret)
    return _ResponseKeys(
        salt=salt,
        prk=prk,
        aead_key=hpke.expand(suite.kdf, prk, b"key", params.n_k),
        aead_nonce=hpke.expand(suite.kdf, prk, b"nonce", params.n_n),
    )


class ClientResponseContext:
    """What the client keeps after sending a request: enough to open its response."""

    __slots__ = ("_enc", "_secret", "header")

    def __init__(self, header: RequestHeader, enc: bytes, secret: bytes) -> None:
        self.header = header
        self._enc = enc
        self._secret = secret

    def __repr__(self) -> str:
        return f"ClientResponseContext(header={self.header!r}, <secret>)"

    @property
    def nonce_length(self) -> int:
        """Length of the response nonce that starts an encapsulated response."""
        return _response_secret_length(self.header.aead)

    def open_response(self, encapsulated_response: bytes) -> bytes:
        """Decrypt ``response_nonce || ct`` (RFC 9458 §4.4) into the binary HTTP response.

        :class:`TruncatedMessage` if shorter than nonce and tag;
        :class:`DecryptionFailed` if it does not authenticate.
        """
        if not isinstance(encapsulated_response, bytes):
            raise TypeError("an encapsulated response is bytes")
        n = self.nonce_length
        if len(encapsulated_response) < n + hpke.aead_params(self.header.aead).n_t:
            raise TruncatedMessage("encapsulated response shorter than nonce and tag")
        keys = _derive_response_keys(
            self._secret, self._enc, encapsulated_response[:n], self.header.suite
        )
        return hpke.aead_open(
            self.header.aead, keys.aead_key, keys.aead_nonce, encapsulated_response[n:]
        )


class ServerResponseContext:
    """What the gateway keeps after decapsulating: enough to seal one response.

    ``enc`` (the client's encapsulated key, unique per request) is exposed for
    replay detection (RFC 9458 §6.5).
    """

    __slots__ = ("_secret", "enc", "header")

    def __init__(self, header: RequestHeader, enc: bytes, secret: bytes) -> None:
        self.header = header
        self.enc = enc
        self._secret = secret

    def __repr__(self) -> str:
        return f"ServerResponseContext(header={self.header!r}, <secret>)"

    @property
    def key_id(self) -> int:
        """The identifier of the gateway key the request was encrypted to."""
        return self.header.key_id

    @property
    def nonce_length(self) -> int:
        """The length :meth:`seal_response` wants for ``nonce``: ``max(Nn, Nk)``."""
        return _response_secret_length(self.header.aead)

    def seal_response(self, response: bytes, *, nonce: bytes) -> bytes:
        """Encrypt a binary HTTP response into ``response_nonce || ct`` (RFC 9458 §4.4).

        ``nonce`` is fresh randomness from the caller (``os.urandom(ctx.nonce_length)``);
        ``ValueError`` if its length is not :attr:`nonce_length`.
        """
        if not isinstance(response, bytes) or not isinstance(nonce, bytes):
            raise TypeError("response and nonce are bytes")
        if len(nonce) != self.nonce_length:
            raise ValueError(f"the response nonce has {self.nonce_length} bytes")
        keys = _derive_response_keys(self._secret, self.enc, nonce, self.header.suite)
        return nonce + hpke.aead_seal(self.header.aead, keys.aead_key, keys.aead_nonce, response)


# --- client ------------------------------------------------------------------------


def encapsulate_request(
    config: KeyConfig,
    suite: SymmetricSuite,
    request: bytes,
    *,
    ephemeral_ikm: bytes | None = None,
    ephemeral_private_key: bytes | None = None,
) -> tuple[bytes, ClientResponseContext]:
    """Encrypt a binary HTTP request to ``config`` (RFC 9458 §4.3).

    Exactly one source of the ephemeral key: ``ephemeral_ikm`` (fresh randomness,
    at least 32 bytes, from which the key is derived per RFC 9180 §7.1.3) or
    ``ephemeral_private_key`` (a serialized key, for test vectors); otherwise
    ``ValueError``. ``suite`` must be one that ``config`` offers (``ValueError``).
    A public key that is not a valid point raises :class:`KeyConfigError`.

    Returns ``hdr || enc || ct`` and the context that opens the response.
    """
    if not isinstance(config, KeyConfig) or not isinstance(suite, SymmetricSuite):
        raise TypeError("encapsulate_request takes a KeyConfig and a SymmetricSuite")
    if not isinstance(request, bytes):
        raise TypeError("the request is bytes (an encoded binary HTTP message)")
    if not config.offers(suite):
        raise ValueError("the key configuration does not offer that suite")
    if (ephemeral_ikm is None) == (ephemeral_private_key is None):
        raise ValueError("pass exactly one of ephemeral_ikm and ephemeral_private_key")
    if ephemeral_ikm is not None:
        ephemeral = hpke.derive_private_key(config.kem, ephemeral_ikm)
    else:
        assert ephemeral_private_key is not None
        ephemeral = hpke.load_private_key(config.kem, ephemeral_private_key)
    try:
        public_key = hpke.load_public_key(config.kem, config.public_key)
    except ValueError:
        raise KeyConfigError("public key is not a valid point for its KEM") from None

    header = RequestHeader(config.key_id, config.kem, suite.kdf, suite.aead)
    enc, context = hpke.setup_sender(
        config.kem, suite.kdf, suite.aead, public_key, header.hpke_info(), ephemeral
    )
    ct = hpke.seal(context, request)
    secret = hpke.export(context, RESPONSE_LABEL, _response_secret_length(suite.aead))
    return header.encode() + enc + ct, ClientResponseContext(header, enc, secret)


# --- gateway -----------------------------------------------------------------------


class Gateway:
    """The decapsulating side: a set of keys (several during rotation) by key_id."""

    __slots__ = ("_configs", "_keys")

    def __init__(self, keys: Sequence[ServerKey]) -> None:
        """Load ``keys``; ``ValueError`` if two share a key_id or none is given."""
        if not keys:
            raise ValueError("a gateway needs at least one key")
        self._keys: dict[int, tuple[KeyConfig, hpke.PrivateKey]] = {}
        self._configs: list[KeyConfig] = []
        for key in keys:
            if not isinstance(key, ServerKey):
                raise TypeError("Gateway takes ServerKey objects")
            key_id = key.config.key_id
            if key_id in self._keys:
                raise ValueError(f"two keys with key_id {key_id}")
            private = hpke.load_private_key(key.config.kem, key.private_key)
            self._keys[key_id] = (key.config, private)
            self._configs.append(key.config)

    def __repr__(self) -> str:
        return f"Gateway(key_ids={sorted(self._keys)})"

    def key_configs(self) -> list[KeyConfig]:
        """The public configurations, in the order the keys were given."""
        return list(self._configs)

    def decapsulate(self, encapsulated_request: bytes) -> tuple[bytes, ServerResponseContext]:
        """Decrypt an encapsulated request (RFC 9458 §4.3) into binary HTTP bytes.

        Raises, in the order checked: :class:`TruncatedMessage` (no full header),
        :class:`UnknownKeyId`, :class:`UnsupportedSuite` (KEM not that key's, or a
        KDF/AEAD pair it does not offer, §4.3 steps 1a–1b), :class:`TruncatedMessage`
        (shorter than ``enc`` and a tag), :class:`DecryptionFailed`. The first three
        are key configuration problems: answer them with the ``ohttp-key`` problem
        type (§5.3) so that the client refetches the configuration.
        """
        key_id, kem_code, kdf_code, aead_code = _header_fields(encapsulated_request)
        found = self._keys.get(key_id)
        if found is None:
            raise UnknownKeyId(f"no key with key_id {key_id}")
        config, private = found
        if kem_code != config.kem:
            raise UnsupportedSuite("KEM does not match the key")
        suite = next(
            (s for s in config.suites if s.kdf == kdf_code and s.aead == aead_code), None
        )
        if suite is None:
            raise UnsupportedSuite("KDF/AEAD pair not offered with this key")
        header = RequestHeader(key_id, config.kem, suite.kdf, suite.aead)

        n_enc = hpke.kem_params(config.kem).n_enc
        ct_at = HEADER_LENGTH + n_enc
        if len(encapsulated_request) < ct_at + hpke.aead_params(suite.aead).n_t:
            raise TruncatedMessage("encapsulated request shorter than enc and tag")
        enc = encapsulated_request[HEADER_LENGTH:ct_at]
        context = hpke.setup_receiver(
            config.kem, suite.kdf, suite.aead, enc, private, header.hpke_info()
        )
        request = hpke.open_(context, encapsulated_request[ct_at:])
        secret = hpke.export(context, RESPONSE_LABEL, _response_secret_length(suite.aead))
        return request, ServerResponseContext(header, enc, secret)
