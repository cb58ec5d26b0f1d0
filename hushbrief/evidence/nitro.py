"""AWS Nitro Enclaves attestation documents: parsing only, no trust decisions.

References:

* AWS Nitro Enclaves User Guide, "Verifying the root of trust", and
  aws-nitro-enclaves-nsm-api ``docs/attestation_process.md`` §2.2 (the
  ``AttestationDocument`` CDDL) and §3.2.2 (syntactic validation rules).
* RFC 9052 (COSE) §4.2 ``COSE_Sign1`` and §4.4 ``Sig_structure``; RFC 9053 §2.1
  (ECDSA, algorithm ``ES384`` = -35, signature = ``r || s``, each 48 bytes).

The Nitro Secure Module returns a ``COSE_Sign1`` (tagged with CBOR tag 18 or
untagged; real documents are untagged)::

    [ protected: bstr .cbor {1: -35}, unprotected: {}, payload: bstr, signature: bstr ]

whose payload is the CBOR map::

    {module_id: tstr, digest: "SHA384", timestamp: uint (ms since the Unix epoch),
     pcrs: {index 0..31 => bstr of 32/48/64 bytes}, certificate: bstr (DER),
     cabundle: [bstr (DER)], ? public_key: bstr, ? user_data: bstr, ? nonce: bstr}

``cabundle[0]`` is the root; each certificate signs the next and the last signs
``certificate``, whose P-384 key signs the ``Sig_structure``
``["Signature1", protected, h'', payload]``.

Strictness. Every CBOR item must be in the preferred (shortest, definite-length)
encoding, maps must not repeat keys, and nothing may follow the structure:
the parser decodes and re-encodes and insists on getting the same bytes back.
The NSM's encoder (ciborium) writes exactly that form, and the check rules out
the parser differentials that make signed CBOR dangerous (two readers seeing
different values for the same signed bytes). ``user_data``, ``nonce`` and
``public_key`` may be absent or CBOR ``null`` (the NSM encodes an absent
``Option`` as ``null``) and hold at most 1024 bytes, the CDDL bound (the guide's
prose says 512, but real documents carry 1024).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import cbor2

__all__ = [
    "COSE_SIGN1_TAG",
    "ES384",
    "MAX_DOCUMENT_BYTES",
    "NitroDocument",
    "NitroFormatError",
    "parse_attestation_document",
    "sig_structure",
]

COSE_SIGN1_TAG = 18
"""RFC 9052 §2: the CBOR tag of a tagged ``COSE_Sign1``."""
ES384 = -35
"""RFC 9053 §2.1: ECDSA with SHA-384."""
ES384_SIGNATURE_BYTES = 96
MAX_PAYLOAD_BYTES = 16 * 1024
"""``bstr .size (1..16384)`` in the nsm-api attestation process document, §3.1."""
MAX_DOCUMENT_BYTES = MAX_PAYLOAD_BYTES + 1024
"""Payload plus the COSE envelope; the NSM's own response buffer is 12 KiB."""
MAX_FIELD_BYTES = 1024
"""``cert`` and ``user_data`` in the CDDL are at most 1024 bytes."""
PCR_SIZES = frozenset({32, 48, 64})
MAX_PCRS = 32
DIGEST = "SHA384"
"""The only PCR bank digest Nitro Enclaves documents use (§3.2.2.2)."""

_REQUIRED = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_OPTIONAL = ("public_key", "user_data", "nonce")
_MAX_TIMESTAMP_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a ``datetime`` can hold."""
_MAX_DEPTH = 8
"""The deepest a well-formed document nests (COSE array → payload map → pcrs map)."""


class NitroFormatError(ValueError):
    """The attestation document is malformed; the message is one sentence naming the problem."""


@dataclass(frozen=True, slots=True)
class NitroDocument:
    """A syntactically valid attestation document. Nothing here is verified yet."""

    protected: bytes
    """The serialized protected header, exactly as signed."""
    payload: bytes
    """The serialized attestation document, exactly as signed."""
    signature: bytes
    """The raw ``r || s`` ECDSA signature (96 bytes)."""
    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: Mapping[int, bytes]
    certificate: bytes
    """DER of the certificate whose key signed the document."""
    cabundle: tuple[bytes, ...]
    """DER certificates, root first."""
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    tagged: bool
    """Whether the envelope carried CBOR tag 18."""

    @property
    def timestamp(self) -> datetime:
        """When the NSM made the document (UTC, millisecond precision)."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    def sig_structure(self) -> bytes:
        """The bytes the signature covers (RFC 9052 §4.4)."""
        return sig_structure(self.protected, self.payload)


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """``Sig_structure = ["Signature1", body_protected, external_aad, payload]`` (RFC 9052 §4.4).

    Nitro uses no external additional data, hence the empty default.
    """
    return cbor2.dumps(["Signature1", protected, external_aad, payload])


def parse_attestation_document(cose: bytes) -> NitroDocument:
    """Parse a ``COSE_Sign1`` attestation document; raise NitroFormatError if malformed."""
    if not isinstance(cose, bytes | bytearray | memoryview):
        raise NitroFormatError("The Nitro attestation document must be bytes.")
    cose = bytes(cose)
    if not 0 < len(cose) <= MAX_DOCUMENT_BYTES:
        raise NitroFormatError(
            f"The Nitro attestation document is {len(cose)} bytes; "
            f"at most {MAX_DOCUMENT_BYTES} are allowed.")
    envelope = _strict_cbor(cose, "The Nitro attestation document")
    tagged = False
    if isinstance(envelope, cbor2.CBORTag):
        if envelope.tag != COSE_SIGN1_TAG:
            raise NitroFormatError(
                f"The Nitro attestation document carries CBOR tag {envelope.tag}, "
                f"not {COSE_SIGN1_TAG} (COSE_Sign1).")
        envelope, tagged = envelope.value, True
    if not isinstance(envelope, list | tuple) or len(envelope) != 4:
        raise NitroFormatError("The Nitro attestation document is not a four-element COSE_Sign1.")
    protected, unprotected, payload, signature = envelope
    if not isinstance(protected, bytes):
        raise NitroFormatError("The COSE_Sign1 protected header is not a byte string.")
    if not isinstance(unprotected, Mapping):  # a cbor2 frozendict inside tag 18
        raise NitroFormatError("The COSE_Sign1 unprotected header is not a map.")
    if not isinstance(payload, bytes) or not 0 < len(payload) <= MAX_PAYLOAD_BYTES:
        raise NitroFormatError(
            f"The COSE_Sign1 payload must be a byte string of 1 to {MAX_PAYLOAD_BYTES} bytes.")
    if not isinstance(signature, bytes) or len(signature) != ES384_SIGNATURE_BYTES:
        raise NitroFormatError(
            f"The COSE_Sign1 signature must be {ES384_SIGNATURE_BYTES} bytes (ES384 r || s).")
    _check_headers(protected, unprotected)
    fields = _payload_fields(payload)
    return NitroDocument(protected=protected, payload=payload, signature=signature,
                         tagged=tagged, **fields)


def _strict_cbor(data: bytes, what: str) -> Any:
    """Decode one CBOR item that must be in preferred encoding with nothing after it."""
    try:
        value = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False,
                            max_depth=_MAX_DEPTH)
    except (cbor2.CBORError, ValueError, TypeError, RecursionError):
        raise NitroFormatError(f"{what} is not well-formed CBOR.") from None
    try:
        again = cbor2.dumps(value)
    except (cbor2.CBORError, ValueError, TypeError):
        again = b""
    if again != data:
        # Trailing bytes, over-long heads, bignum-tagged integers or other non-preferred
        # forms: all valid CBOR, none produced by the NSM, all room for differentials.
        raise NitroFormatError(
            f"{what} is not in the preferred CBOR encoding or has trailing bytes.")
    return value


def _check_headers(protected: bytes, unprotected: Mapping[Any, Any]) -> None:
    header = _strict_cbor(protected, "The COSE_Sign1 protected header") if protected else {}
    if not isinstance(header, dict):
        raise NitroFormatError("The COSE_Sign1 protected header is not a CBOR map.")
    if header.get(1) != ES384:
        raise NitroFormatError(
            f"The COSE_Sign1 algorithm is {header.get(1)!r}, not ES384 ({ES384}).")
    if 2 in header:
        # RFC 9052 §3.1: a recipient must reject critical headers it does not understand,
        # and this parser understands none beyond alg.
        raise NitroFormatError("The COSE_Sign1 protected header lists critical parameters.")
    if 1 in unprotected:
        # RFC 9052 §3: a label must not appear in both buckets; an unprotected alg
        # could only serve to confuse.
        raise NitroFormatError("The COSE_Sign1 unprotected header repeats the algorithm.")


def _payload_fields(payload: bytes) -> dict[str, Any]:
    doc = _strict_cbor(payload, "The Nitro attestation payload")
    if not isinstance(doc, dict):
        raise NitroFormatError("The Nitro attestation payload is not a CBOR map.")
    unknown = [k for k in doc if k not in _REQUIRED + _OPTIONAL]
    if unknown:
        raise NitroFormatError(
            f"The Nitro attestation payload has an unknown field {unknown[0]!r}.")
    for name in _REQUIRED:
        if doc.get(name) is None:
            raise NitroFormatError(f"The Nitro attestation payload lacks {name}.")

    module_id = doc["module_id"]
    if not isinstance(module_id, str) or not module_id:
        raise NitroFormatError("The Nitro attestation module_id must be a non-empty text string.")
    digest = doc["digest"]
    if digest != DIGEST:
        raise NitroFormatError(f"The Nitro attestation digest is {digest!r}, not {DIGEST!r}.")
    timestamp = doc["timestamp"]
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) \
            or not 0 < timestamp <= _MAX_TIMESTAMP_MS:
        raise NitroFormatError("The Nitro attestation timestamp must be a positive number "
                               "of milliseconds before the year 10000.")

    return {
        "module_id": module_id,
        "digest": digest,
        "timestamp_ms": timestamp,
        "pcrs": _pcrs(doc["pcrs"]),
        "certificate": _bstr(doc["certificate"], "certificate", minimum=1),
        "cabundle": _cabundle(doc["cabundle"]),
        **{name: None if doc.get(name) is None
           else _bstr(doc[name], name, minimum=1 if name == "public_key" else 0)
           for name in _OPTIONAL},
    }


def _bstr(value: Any, name: str, *, minimum: int) -> bytes:
    if not isinstance(value, bytes) or not minimum <= len(value) <= MAX_FIELD_BYTES:
        raise NitroFormatError(
            f"The Nitro attestation {name} must be a byte string of "
            f"{minimum} to {MAX_FIELD_BYTES} bytes.")
    return value


def _pcrs(value: Any) -> Mapping[int, bytes]:
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_PCRS:
        raise NitroFormatError(f"The Nitro attestation pcrs must be a map of 1 to {MAX_PCRS} PCRs.")
    pcrs: dict[int, bytes] = {}
    for index, pcr in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_PCRS:
            raise NitroFormatError(f"The Nitro attestation has an invalid PCR index {index!r}.")
        if not isinstance(pcr, bytes) or len(pcr) not in PCR_SIZES:
            raise NitroFormatError(f"PCR{index} must be a byte string of 32, 48 or 64 bytes.")
        pcrs[index] = pcr
    return MappingProxyType(pcrs)


def _cabundle(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise NitroFormatError("The Nitro attestation cabundle must be a non-empty array.")
    return tuple(_bstr(cert, f"cabundle[{i}]", minimum=1) for i, cert in enumerate(value))
