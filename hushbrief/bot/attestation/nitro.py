"""The AWS Nitro Enclaves verifier: an attestation document checked offline against the pinned root.

What is checked, following the AWS Nitro Enclaves User Guide ("Verifying the root
of trust") and aws-nitro-enclaves-nsm-api ``docs/attestation_process.md`` §3:

1. The document parses strictly (:mod:`hushbrief.evidence.nitro`).
2. Chain: ``cabundle[0]`` is the pinned AWS Nitro Enclaves Root-G1 (compared by
   SHA-256 fingerprint, so a look-alike root with the same name fails); each
   certificate signs the next and the last signs ``certificate``; CA certificates
   carry ``basicConstraints CA`` and ``keyCertSign`` and respect ``pathLen``; the
   signing certificate is not a CA, may sign (``digitalSignature``) and holds a
   P-384 key; every certificate, the root included, is valid at ``now`` (§3.2.3).
   No revocation check: AWS publishes none for this PKI and the guide says to
   disable it.
3. Signature: ES384 over the RFC 9052 §4.4 ``Sig_structure`` with the signing
   certificate's key (COSE carries ``r || s``; it is re-encoded as DER for
   ``cryptography``).
4. Debug: an enclave started with ``--debug-mode`` gets attestation documents
   whose PCRs are all zeros (and its console is readable from the parent), so
   PCR0 of zeros means debug and is refused unless ``allow_debug``.
5. PCRs equal ``expected_pcrs`` where given.

Which time. ``now`` defaults to the document's own timestamp. That only proves
the chain was valid when the NSM signed, which is what tests of recorded
documents need (the sample's leaf certificate lived three hours in 2024). The bot
passes its real clock: the leaf certificate lives a few hours and the
intermediates days, so verifying at the real time bounds how long a captured
document can be replayed.

Measurement = PCR0. PCR0 is the SHA-384 measurement of the whole enclave image
file (kernel, init, application, as ``nitro-cli build-enclave`` prints it), so it
covers what PCR1 (kernel and boot ramdisk) and PCR2 (application) cover and is
the one value a reproducible build publishes to the transparency log. PCR1, PCR2
and PCR8 (the image signing certificate, zero if unsigned) go in ``details``.

Report data = ``user_data``. Hushbrief's binding (SHA-512 of the key
configurations, 64 bytes) travels in ``user_data``; a document without exactly
64 bytes there binds no Hushbrief key and gets an error saying so. ``public_key``
and ``nonce`` are recorded in ``details`` but not interpreted.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hushbrief.bot.attestation.verdict import PlatformVerdict
from hushbrief.evidence.nitro import NitroDocument, NitroFormatError, parse_attestation_document

__all__ = [
    "AWS_NITRO_ROOT_G1_SHA256",
    "aws_nitro_root",
    "verify_nitro",
]

PLATFORM = "nitro"
AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
"""SHA-256 over the DER of ``CN=aws.nitro-enclaves`` (Root-G1, valid 2019-2049).

The package data file is checked against this constant when loaded, so editing
the file alone cannot move the trust anchor.
"""
_ROOT_RESOURCE = ("roots", "aws", "root.pem")
_REPORT_DATA_BYTES = 64
_DETAIL_PCRS = (0, 1, 2, 8)
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


@cache
def aws_nitro_root() -> bytes:
    """DER of the pinned AWS Nitro Enclaves Root-G1, from package data."""
    pem = resources.files("hushbrief.bot.attestation").joinpath(*_ROOT_RESOURCE).read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    if hashlib.sha256(der).hexdigest() != AWS_NITRO_ROOT_G1_SHA256:
        raise RuntimeError("The packaged AWS Nitro root is not the pinned Root-G1.")
    return der


def verify_nitro(
    document: bytes, *, now: datetime | None = None, root: bytes | None = None,
    expected_pcrs: Mapping[int, str] | None = None, allow_debug: bool = False,
) -> PlatformVerdict:
    """Verify a Nitro attestation document (COSE_Sign1) offline.

    ``now`` must be timezone-aware; it defaults to the document's timestamp (see the
    module docstring: callers other than tests pass their clock). ``root`` replaces
    the pinned root (PEM or DER; for tests and other AWS partitions). ``expected_pcrs``
    maps PCR index to hex. ``allow_debug`` only silences the debug error: a debug
    verdict is never ``ok``.
    """
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    anchor = _root_der(root)
    try:
        doc = parse_attestation_document(document)
    except NitroFormatError as exc:
        return PlatformVerdict(platform=PLATFORM, errors=(str(exc),))
    at = (doc.timestamp if now is None else now).astimezone(UTC)

    errors: list[str] = []
    leaf, chain_valid = _check_chain(doc, anchor, at, errors)
    signature_valid = None if leaf is None else _check_signature(doc, leaf, errors)

    pcr0 = doc.pcrs.get(0)
    measurement = None if pcr0 is None else pcr0.hex()
    debug: bool | None = None
    if pcr0 is None:
        errors.append("The Nitro document has no PCR0, so it measures no enclave image.")
    else:
        debug = not any(pcr0)
        if debug and not allow_debug:
            errors.append("The Nitro enclave runs in debug mode (PCR0 is all zeros): "
                          "nothing vouches for its code, and its console is open to the "
                          "parent instance.")
    errors.extend(_pcr_mismatches(doc, expected_pcrs))

    report_data = doc.user_data if doc.user_data is not None \
        and len(doc.user_data) == _REPORT_DATA_BYTES else None
    if report_data is None:
        size = "nothing" if doc.user_data is None else f"{len(doc.user_data)} bytes"
        errors.append(f"The Nitro document's user_data holds {size}, not the "
                      f"{_REPORT_DATA_BYTES}-byte binding of the key configurations.")

    return PlatformVerdict(
        platform=PLATFORM, chain_valid=chain_valid, signature_valid=signature_valid,
        measurement=measurement, report_data=report_data, debug=debug, tcb=None,
        errors=tuple(errors), details=_details(doc, leaf, at),
    )


def _root_der(root: bytes | None) -> bytes:
    if root is None:
        return aws_nitro_root()
    try:
        if root.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(root).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(root).public_bytes(Encoding.DER)
    except ValueError:
        raise ValueError("root must be one PEM or DER X.509 certificate") from None


def _name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _check_chain(doc: NitroDocument, anchor: bytes, now: datetime,
                 errors: list[str]) -> tuple[x509.Certificate | None, bool]:
    """Append one sentence per failed chain check; return the signing cert and validity."""
    certs: list[x509.Certificate] = []
    for index, der in enumerate((*doc.cabundle, doc.certificate)):
        try:
            certs.append(_load_certificate(der))
        except _CERT_ERRORS:
            where = "signing certificate" if index == len(doc.cabundle) \
                else f"cabundle[{index}]"
            errors.append(f"The Nitro document's {where} is not a DER X.509 certificate.")
            return None, False
    leaf, cas = certs[-1], certs[:-1]
    before = len(errors)

    if doc.cabundle[0] != anchor:  # same DER bytes = same SHA-256 fingerprint
        errors.append("The Nitro CA bundle does not start at the pinned AWS Nitro Enclaves root "
                      f"(cabundle[0] has SHA-256 {hashlib.sha256(doc.cabundle[0]).hexdigest()}).")
    for parent, child in itertools.pairwise(certs):
        try:
            child.verify_directly_issued_by(parent)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            errors.append(f"The certificate {_name(child)!r} is not signed by "
                          f"{_name(parent)!r}, the certificate before it in the bundle.")
    for depth, ca in enumerate(cas):
        # Intermediate CAs that follow this one, not counting the signing certificate.
        below = len(cas) - 1 - depth
        constraints = _extension(ca, x509.BasicConstraints)
        usage = _extension(ca, x509.KeyUsage)
        if constraints is None or not constraints.ca:
            errors.append(f"The certificate {_name(ca)!r} in the CA bundle is not a CA.")
        elif constraints.path_length is not None and below > constraints.path_length:
            errors.append(f"The certificate {_name(ca)!r} allows {constraints.path_length} "
                          f"CAs below it, but the bundle has {below}.")
        if usage is None or not usage.key_cert_sign:
            errors.append(f"The certificate {_name(ca)!r} may not sign certificates.")
    leaf_constraints = _extension(leaf, x509.BasicConstraints)
    leaf_usage = _extension(leaf, x509.KeyUsage)
    if leaf_constraints is not None and leaf_constraints.ca:
        errors.append(f"The signing certificate {_name(leaf)!r} is a CA certificate.")
    if leaf_usage is None or not leaf_usage.digital_signature:
        errors.append(f"The signing certificate {_name(leaf)!r} may not make signatures.")
    for cert in certs:
        # RFC 5280 §4.2: a critical extension the verifier does not know fails the certificate.
        if any(ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)
               for ext in cert.extensions):
            errors.append(f"The certificate {_name(cert)!r} has a critical extension "
                          "Hushbrief does not know.")
        if now < cert.not_valid_before_utc:
            errors.append(f"The certificate {_name(cert)!r} is not valid until "
                          f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC, after the "
                          f"verification time {now:%Y-%m-%d %H:%M:%S} UTC.")
        elif now > cert.not_valid_after_utc:
            errors.append(f"The certificate {_name(cert)!r} expired on "
                          f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC, before the "
                          f"verification time {now:%Y-%m-%d %H:%M:%S} UTC.")
    return leaf, len(errors) == before


_CERT_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
                x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType)


def _load_certificate(der: bytes) -> x509.Certificate:
    """Load and touch every part used later: cryptography parses some parts lazily."""
    cert = x509.load_der_x509_certificate(der)
    _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_before_utc,
         cert.not_valid_after_utc, cert.public_key(), cert.signature_hash_algorithm)
    return cert


def _extension(cert: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _check_signature(doc: NitroDocument, leaf: x509.Certificate, errors: list[str]) -> bool:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        errors.append("The Nitro signing certificate does not hold a P-384 key, as ES384 needs.")
        return False
    half = len(doc.signature) // 2
    r = int.from_bytes(doc.signature[:half], "big")
    s = int.from_bytes(doc.signature[half:], "big")
    try:
        key.verify(encode_dss_signature(r, s), doc.sig_structure(), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        errors.append("The Nitro document's COSE signature does not verify with the "
                      "signing certificate's key.")
        return False
    return True


def _pcr_mismatches(doc: NitroDocument, expected: Mapping[int, str] | None) -> list[str]:
    problems: list[str] = []
    for index, want in sorted((expected or {}).items()):
        have = doc.pcrs.get(index)
        if have is None:
            problems.append(f"The Nitro document has no PCR{index}, which is expected to be "
                            f"{want.lower()}.")
        elif have.hex() != want.strip().lower():
            problems.append(f"PCR{index} is {have.hex()}, not the expected {want.lower()}.")
    return problems


def _details(doc: NitroDocument, leaf: x509.Certificate | None, at: datetime) -> dict[str, Any]:
    details: dict[str, Any] = {
        "module_id": doc.module_id,
        "digest": doc.digest,
        "timestamp": doc.timestamp_ms,
        "time": doc.timestamp.isoformat(),
        "verified_at": at.isoformat(),
    }
    for index in _DETAIL_PCRS:
        pcr = doc.pcrs.get(index)
        details[f"pcr{index}"] = None if pcr is None else pcr.hex()
    details["public_key"] = None if doc.public_key is None else doc.public_key.hex()
    details["nonce"] = None if doc.nonce is None else doc.nonce.hex()
    details["user_data_bytes"] = None if doc.user_data is None else len(doc.user_data)
    if leaf is not None:
        details["certificate"] = _name(leaf)
        details["certificate_not_after"] = leaf.not_valid_after_utc.isoformat()
    return details
