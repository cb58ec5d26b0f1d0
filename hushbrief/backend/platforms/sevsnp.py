"""The backend's SEV-SNP evidence provider: reports from configfs-tsm, served as bundles.

Each bundle carries an ATTESTATION_REPORT (SEV-SNP ABI, publication 56860, Table 22
in rev. 1.55) whose REPORT_DATA is SHA-512 of the key configurations
(``hushbrief.evidence.bundle.binding``), the VCEK (DER, base64) and the ASK+ARK chain
(PEM) when the host put them in the certificate table (GHCB spec §4.1.8.1, returned
in configfs-tsm's auxblob), and the launch MEASUREMENT as the bundle's measurement.

A report costs a round trip to the AMD secure processor through the hypervisor, and
the key configurations change only at rotation, so reports are cached per key
configuration. The measurement is whatever the hardware says: it is read from the
first report, made at construction when the key configurations are known then, or on
first use of :attr:`SnpEvidenceProvider.measurement` otherwise.

Some hosts put no certificates in the table (the VCEK is then fetched from AMD's KDS by
the operator); ``vcek`` and ``chain`` given at construction fill that gap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from hushbrief.backend.platforms.configfs_tsm import (
    TSM_REPORT_ROOT,
    TsmError,
    TsmFilesystem,
    get_report,
)
from hushbrief.evidence.bundle import EvidenceBundle, Platform, TransparencyProof, binding
from hushbrief.evidence.sevsnp import (
    ARK_GUID,
    ASK_GUID,
    VCEK_GUID,
    VLEK_GUID,
    SnpFormatError,
    parse_cert_table,
    parse_report,
)

__all__ = ["SnpEvidenceProvider", "TransparencyHook"]

log = logging.getLogger("hushbrief.backend.platforms.sevsnp")

TransparencyHook = Callable[[str, str], "TransparencyProof | Mapping[str, Any] | None"]
"""Called as ``hook(measurement, platform)``; returns the log proof for that build (a
:class:`TransparencyProof` or its JSON form) or None while there is none."""

_PROBE = hashlib.sha512(b"hushbrief sev-snp measurement probe").digest()
"""REPORT_DATA of the report made only to learn the measurement (which does not depend
on REPORT_DATA); never served, since it binds no key."""


def _pem(der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _der(cert: bytes) -> bytes:
    """DER from DER or a single PEM certificate (for operator-supplied VCEKs)."""
    text = cert.strip()
    if not text.startswith(b"-----BEGIN CERTIFICATE-----"):
        return cert
    body = text.split(b"-----END", 1)[0].splitlines()[1:]
    return base64.b64decode(b"".join(line.strip() for line in body), validate=True)


class SnpEvidenceProvider:
    """Implements the backend's ``EvidenceProvider`` protocol for ``sev-snp``."""

    def __init__(
        self,
        key_configs: bytes | None = None,
        *,
        fs: TsmFilesystem | None = None,
        root: str = TSM_REPORT_ROOT,
        vcek: bytes | None = None,
        chain: bytes | str | None = None,
        transparency: TransparencyHook | None = None,
        privlevel: int | None = None,
        cache_size: int = 4,
    ) -> None:
        self._fs = fs
        self._root = root
        self._vcek = None if vcek is None else _der(vcek)
        self._chain = chain.decode("ascii") if isinstance(chain, bytes) else chain
        self._transparency = transparency
        self._privlevel = privlevel
        self._cache_size = max(1, cache_size)
        self._cache: OrderedDict[bytes, tuple[bytes, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._measurement: str | None = None
        if key_configs is not None:
            self._report_for(key_configs)

    def __repr__(self) -> str:
        shown = "unknown" if self._measurement is None else self._measurement[:16] + "…"
        return f"SnpEvidenceProvider(measurement={shown})"

    @property
    def platform(self) -> str:
        return Platform.SEV_SNP.value

    @property
    def measurement(self) -> str:
        """Hex of the report's MEASUREMENT (48 bytes)."""
        if self._measurement is None:
            with self._lock:
                if self._measurement is None:
                    self._request(_PROBE)
        if self._measurement is None:  # pragma: no cover - _request sets it or raises
            raise TsmError("no SEV-SNP measurement is known.")
        return self._measurement

    def bundle(self, key_configs: bytes, *, now: float, expires_at: float) -> dict[str, Any]:
        report, endorsements = self._report_for(key_configs)
        measurement = self.measurement
        return EvidenceBundle(
            platform=self.platform,
            key_configs=key_configs,
            evidence=report,
            measurement=measurement,
            issued_at=int(now),
            expires_at=int(expires_at),
            endorsements=dict(endorsements),
            transparency=self._proof(measurement),
        ).to_json()

    def _proof(self, measurement: str) -> TransparencyProof | None:
        # The seam for the transparency log: another component supplies the proof.
        if self._transparency is None:
            return None
        proof = self._transparency(measurement, self.platform)
        if proof is None or isinstance(proof, TransparencyProof):
            return proof
        return TransparencyProof.from_json(dict(proof))

    def _report_for(self, key_configs: bytes) -> tuple[bytes, dict[str, Any]]:
        with self._lock:
            cached = self._cache.get(key_configs)
            if cached is not None:
                self._cache.move_to_end(key_configs)
                return cached
            entry = self._request(binding(key_configs))
            self._cache[key_configs] = entry
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return entry

    def _request(self, report_data: bytes) -> tuple[bytes, dict[str, Any]]:
        """One report from the hardware; the caller holds the lock."""
        result = get_report(report_data, provider="sev_guest", fs=self._fs, root=self._root,
                            privlevel=self._privlevel)
        try:
            report = parse_report(result.outblob)
        except SnpFormatError as exc:
            raise TsmError(f"the kernel returned something that is not an SEV-SNP report: "
                           f"{exc}") from None
        if not hmac.compare_digest(report.report_data, report_data):
            raise TsmError("the SEV-SNP report does not carry the report data we wrote.")
        measurement = report.measurement.hex()
        if self._measurement is None:
            self._measurement = measurement
        elif measurement != self._measurement:
            # The launch measurement cannot change while the guest runs; if it does,
            # something is badly wrong and serving either value would mislead clients.
            raise TsmError("the SEV-SNP measurement changed between two reports.")
        return result.outblob, self._endorsements(result.auxblob)

    def _endorsements(self, auxblob: bytes) -> dict[str, Any]:
        try:
            table = parse_cert_table(auxblob)
        except SnpFormatError as exc:
            # The host builds the table and is not trusted; a broken one costs the client
            # a KDS lookup, not the service.
            log.warning("ignoring the host's SEV-SNP certificate table: %s", exc)
            table = {}
        endorsements: dict[str, Any] = {}
        vcek = table.get(VCEK_GUID, self._vcek)
        if vcek is not None:
            endorsements["vcek"] = base64.b64encode(vcek).decode("ascii")
        if VLEK_GUID in table:
            endorsements["vlek"] = base64.b64encode(table[VLEK_GUID]).decode("ascii")
        if ASK_GUID in table and ARK_GUID in table:
            # AMD KDS cert_chain order: the ASK first, then the ARK.
            endorsements["chain"] = _pem(table[ASK_GUID]) + _pem(table[ARK_GUID])
        elif self._chain is not None:
            endorsements["chain"] = self._chain
        return endorsements
