"""The backend's AWS Nitro Enclaves evidence provider: attestation documents from the NSM.

Inside an enclave the Nitro Secure Module is the character device ``/dev/nsm``. The
Linux driver (``include/uapi/linux/nsm.h``; aws-nitro-enclaves-nsm-api
``src/driver/mod.rs``) takes one ioctl, ``NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct
nsm_raw)``, where ``struct nsm_raw`` is two ``{u64 addr; u64 len}`` iovecs: the
CBOR request (at most 4 KiB) and a buffer for the CBOR response (12 KiB), whose
``len`` the driver overwrites with the bytes written. Requests and responses are
the nsm-api ``Request``/``Response`` enums as CBOR (``src/api/mod.rs``)::

    {"Attestation": {"user_data": bstr / null, "nonce": bstr / null, "public_key": bstr / null}}
    → {"Attestation": {"document": bstr}}   or   {"Error": "InvalidArgument" / …}

The document is a COSE_Sign1 (:mod:`hushbrief.evidence.nitro`). Hushbrief puts the
binding (SHA-512 of the key configurations, 64 bytes) in ``user_data``; ``nonce``
and ``public_key`` stay empty because a bundle is public and reused until the keys
rotate. The measurement is PCR0, the digest of the enclave image file. The
endorsements are empty: the document carries its own certificate chain.

The I/O is one method, :meth:`NsmDevice.request` (CBOR bytes in, CBOR bytes out),
so tests put a fake device behind it. Documents are cached per key configuration
and refreshed before their signing certificate (which lives about three hours)
expires; a bundle never claims to be valid after that certificate is.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import cbor2
from cryptography import x509

from hushbrief.backend.errors import EvidenceUnavailable
from hushbrief.evidence.bundle import EvidenceBundle, Platform, TransparencyProof, binding
from hushbrief.evidence.nitro import NitroDocument, NitroFormatError, parse_attestation_document

__all__ = [
    "NSM_DEVICE",
    "NSM_IOCTL_RAW",
    "LinuxNsmDevice",
    "NitroEvidenceProvider",
    "NsmDevice",
    "NsmError",
    "TransparencyHook",
    "attestation_request",
    "document_from_response",
    "request_attestation",
]

log = logging.getLogger("hushbrief.backend.platforms.nitro")

NSM_DEVICE = "/dev/nsm"
NSM_IOCTL_MAGIC = 0x0A
NSM_REQUEST_MAX_SIZE = 0x1000
NSM_RESPONSE_MAX_SIZE = 0x3000
_NSM_RAW = struct.Struct("=QQQQ")
"""``struct nsm_raw``: request iovec (addr, len), response iovec (addr, len)."""
_IOC_WRITE, _IOC_READ = 1, 2
NSM_IOCTL_RAW = ((_IOC_READ | _IOC_WRITE) << 30 | _NSM_RAW.size << 16
                 | NSM_IOCTL_MAGIC << 8 | 0)
"""``_IOWR(0x0A, 0, struct nsm_raw)`` = 0xC0200A00 (asm-generic encoding: x86-64 and arm64)."""

REFRESH_MARGIN = 15 * 60
"""Fetch a new document when the cached one's certificate has less than this left (s)."""

TransparencyHook = Callable[[str, str], "TransparencyProof | Mapping[str, Any] | None"]
"""Called as ``hook(measurement, platform)``; returns the log proof for that build (a
:class:`TransparencyProof` or its JSON form) or None while there is none."""

Ioctl = Callable[[int, int, bytearray, bool], Any]


class NsmError(EvidenceUnavailable):
    """The NSM could not produce an attestation document; the message says why."""


class NsmDevice(Protocol):
    """One request/response exchange with the Nitro Secure Module, CBOR in and out."""

    def request(self, message: bytes) -> bytes: ...


class LinuxNsmDevice:
    """``/dev/nsm`` through the driver's raw ioctl; opened per request (attestations are rare)."""

    def __init__(self, path: str = NSM_DEVICE, *, ioctl: Ioctl = fcntl.ioctl) -> None:
        self._path = path
        self._ioctl = ioctl

    def __repr__(self) -> str:
        return f"LinuxNsmDevice({self._path!r})"

    def request(self, message: bytes) -> bytes:
        if not 0 < len(message) <= NSM_REQUEST_MAX_SIZE:
            raise NsmError(f"An NSM request must be 1 to {NSM_REQUEST_MAX_SIZE} bytes.")
        # The driver reads and writes through these addresses, so both buffers must stay
        # alive (referenced here) until the ioctl returns.
        request = ctypes.create_string_buffer(message, len(message))
        response = ctypes.create_string_buffer(NSM_RESPONSE_MAX_SIZE)
        raw = bytearray(_NSM_RAW.pack(ctypes.addressof(request), len(message),
                                      ctypes.addressof(response), NSM_RESPONSE_MAX_SIZE))
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise NsmError(f"Cannot open the Nitro Secure Module at {self._path} "
                           f"({exc.strerror}); is this a Nitro Enclave?") from exc
        try:
            self._ioctl(fd, NSM_IOCTL_RAW, raw, True)
        except OSError as exc:
            raise NsmError(f"The NSM ioctl failed ({exc.strerror}).") from exc
        finally:
            os.close(fd)
        written = _NSM_RAW.unpack(raw)[3]
        if not 0 < written <= NSM_RESPONSE_MAX_SIZE:
            raise NsmError(f"The NSM reported a response of {written} bytes.")
        return response.raw[:written]


def attestation_request(user_data: bytes | None = None, nonce: bytes | None = None,
                        public_key: bytes | None = None) -> bytes:
    """The CBOR ``Request::Attestation`` message."""
    return cbor2.dumps({"Attestation": {"user_data": user_data, "nonce": nonce,
                                        "public_key": public_key}})


def document_from_response(response: bytes) -> bytes:
    """The COSE_Sign1 document from a CBOR ``Response``; NsmError for errors and surprises."""
    try:
        decoded = cbor2.loads(response, allow_indefinite=False, allow_duplicate_keys=False,
                              max_depth=4)
    except (cbor2.CBORError, ValueError, TypeError):
        raise NsmError("The NSM's response is not CBOR.") from None
    if isinstance(decoded, dict) and len(decoded) == 1:
        ((kind, body),) = decoded.items()
        if kind == "Attestation" and isinstance(body, dict) \
                and isinstance(body.get("document"), bytes):
            document: bytes = body["document"]
            return document
        if kind == "Error":
            raise NsmError(f"The NSM refused the attestation request ({body}).")
    raise NsmError("The NSM's response is not an attestation document.")


def request_attestation(device: NsmDevice, *, user_data: bytes | None) -> bytes:
    """Ask the NSM for an attestation document carrying ``user_data``."""
    return document_from_response(device.request(attestation_request(user_data)))


@dataclass(frozen=True, slots=True)
class _Cached:
    document: bytes
    not_after: float
    """Unix time at which the document's signing certificate expires."""


class NitroEvidenceProvider:
    """Implements the backend's ``EvidenceProvider`` protocol for ``nitro``."""

    def __init__(self, device: NsmDevice | None = None, *,
                 transparency: TransparencyHook | None = None, cache_size: int = 4) -> None:
        self._device: NsmDevice = LinuxNsmDevice() if device is None else device
        self._transparency = transparency
        self._cache_size = max(1, cache_size)
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self._measurement: str | None = None

    def __repr__(self) -> str:
        shown = "unknown" if self._measurement is None else self._measurement[:16] + "…"
        return f"NitroEvidenceProvider(measurement={shown})"

    @property
    def platform(self) -> str:
        return Platform.NITRO.value

    @property
    def measurement(self) -> str:
        """Hex of PCR0, read from a document made without user data on first use."""
        with self._lock:
            if self._measurement is None:
                self._fetch(None)
            assert self._measurement is not None  # _fetch sets it or raises
            return self._measurement

    def bundle(self, key_configs: bytes, *, now: float, expires_at: float) -> dict[str, Any]:
        with self._lock:
            cached = self._cache.get(key_configs)
            if cached is None or cached.not_after - now < REFRESH_MARGIN:
                document, parsed = self._fetch(binding(key_configs))
                cached = _Cached(document, _not_after(parsed))
                self._cache[key_configs] = cached
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key_configs)
            measurement = self._measurement
        assert measurement is not None
        return EvidenceBundle(
            platform=self.platform, key_configs=key_configs, evidence=cached.document,
            measurement=measurement, issued_at=int(now),
            # Past its signing certificate's expiry no verifier will accept the document.
            expires_at=int(min(expires_at, cached.not_after)),
            endorsements={}, transparency=self._proof(measurement),
        ).to_json()

    def _fetch(self, user_data: bytes | None) -> tuple[bytes, NitroDocument]:
        """A fresh document for ``user_data``, checked to say what was asked. Holds the lock."""
        document = request_attestation(self._device, user_data=user_data)
        try:
            parsed = parse_attestation_document(document)
        except NitroFormatError as exc:
            raise NsmError(f"The NSM returned a malformed document: {exc}") from None
        if parsed.user_data != user_data:
            raise NsmError("The NSM's document does not carry the requested user_data.")
        pcr0 = parsed.pcrs.get(0)
        if pcr0 is None:
            raise NsmError("The NSM's document has no PCR0.")
        if self._measurement is None:
            self._measurement = pcr0.hex()
            if not any(pcr0):
                log.warning("PCR0 is all zeros: this enclave runs in debug mode, "
                            "and bots will refuse it")
        elif pcr0.hex() != self._measurement:
            # PCR0 cannot change while an enclave runs; if it seems to, trust nothing.
            raise NsmError("The NSM reports a PCR0 different from the one it reported before.")
        return document, parsed

    def _proof(self, measurement: str) -> TransparencyProof | None:
        # The seam for the transparency log: another component supplies the proof.
        if self._transparency is None:
            return None
        proof = self._transparency(measurement, self.platform)
        if proof is None or isinstance(proof, TransparencyProof):
            return proof
        return TransparencyProof.from_json(dict(proof))


def _not_after(document: NitroDocument) -> float:
    try:
        expiry: datetime = x509.load_der_x509_certificate(document.certificate).not_valid_after_utc
    except ValueError:
        raise NsmError("The NSM's document holds an unreadable signing certificate.") from None
    return expiry.timestamp()
