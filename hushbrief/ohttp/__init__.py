"""Sans-I/O Oblivious HTTP: RFC 9292 binary HTTP, RFC 9458 encapsulation, key configurations.

Bytes in, bytes out. Randomness (ephemeral key material, response nonces) is
passed in by the caller; nothing here reads the clock, opens a socket or imports
an event loop. Modules:

* :mod:`~hushbrief.ohttp.bhttp` — ``message/bhttp`` requests and responses (RFC 9292)
* :mod:`~hushbrief.ohttp.keyconfig` — key configurations, ``application/ohttp-keys`` (RFC 9458 §3)
* :mod:`~hushbrief.ohttp.encapsulation` — ``message/ohttp-req``/``-res`` (RFC 9458 §4)
* :mod:`~hushbrief.ohttp.hpke` — HPKE code points and sizes; the only pyhpke user
* :mod:`~hushbrief.ohttp.varint` — QUIC variable-length integers (RFC 9000 §16)
* :mod:`~hushbrief.ohttp.errors` — what a peer can do wrong
"""

from hushbrief.ohttp.bhttp import (
    Field,
    FramingIndicator,
    InformationalResponse,
    Limits,
    Request,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    padded_length,
)
from hushbrief.ohttp.encapsulation import (
    KEYS_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    ClientResponseContext,
    Gateway,
    RequestHeader,
    ServerResponseContext,
    encapsulate_request,
    parse_request_header,
)
from hushbrief.ohttp.errors import (
    DecryptionFailed,
    KeyConfigError,
    LimitExceeded,
    MalformedMessage,
    OHTTPError,
    TrailingData,
    TruncatedMessage,
    UnknownKeyId,
    UnsupportedSuite,
)
from hushbrief.ohttp.keyconfig import (
    DEFAULT_SUITES,
    MIN_IKM_LENGTH,
    SUPPORTED_KEMS,
    SUPPORTED_SUITES,
    AeadId,
    KdfId,
    KemId,
    KeyConfig,
    ServerKey,
    SymmetricSuite,
    choose_config,
    decode_key_configs,
    encode_key_configs,
    generate_server_key,
    server_key_from_private,
)

__all__ = [
    "DEFAULT_SUITES",
    "KEYS_MEDIA_TYPE",
    "MIN_IKM_LENGTH",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_MEDIA_TYPE",
    "SUPPORTED_KEMS",
    "SUPPORTED_SUITES",
    "AeadId",
    "ClientResponseContext",
    "DecryptionFailed",
    "Field",
    "FramingIndicator",
    "Gateway",
    "InformationalResponse",
    "KdfId",
    "KemId",
    "KeyConfig",
    "KeyConfigError",
    "LimitExceeded",
    "Limits",
    "MalformedMessage",
    "OHTTPError",
    "Request",
    "RequestHeader",
    "Response",
    "ServerKey",
    "ServerResponseContext",
    "SymmetricSuite",
    "TrailingData",
    "TruncatedMessage",
    "UnknownKeyId",
    "UnsupportedSuite",
    "choose_config",
    "decode_key_configs",
    "decode_request",
    "decode_response",
    "encapsulate_request",
    "encode_key_configs",
    "encode_request",
    "encode_response",
    "generate_server_key",
    "padded_length",
    "parse_request_header",
    "server_key_from_private",
]
