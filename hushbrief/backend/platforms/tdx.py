"""The backend's Intel TDX evidence provider: quotes from configfs-tsm, with collateral.

Inside a TD the kernel's configfs-tsm interface (provider ``tdx_guest``) turns 64
bytes of report data into a quote signed by the platform's quoting enclave
(:mod:`hushbrief.backend.platforms.configfs_tsm`). Hushbrief puts the binding
(SHA-512 of the key configurations) there. Clients verify offline, so the bundle
also carries the quote's collateral — TCB info, QE identity, CRLs and their
issuer chains — fetched from Intel's PCS (or a PCCS cache) as dcap-qvl's JSON.
Collateral is public and changes rarely; it is cached with the quote per key
configuration.

The measurement is :meth:`hushbrief.evidence.tdx.TdReport.measurement` (MRTD and
RTMR0-2), read from the first quote.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import dcap_qvl  # type: ignore[import-untyped,unused-ignore]

from hushbrief.backend.platforms.configfs_tsm import TSM_REPORT_ROOT, TsmFilesystem, get_report
from hushbrief.evidence.bundle import EvidenceBundle, Platform, TransparencyProof, binding
from hushbrief.evidence.tdx import parse_tdx_quote

log = logging.getLogger("hushbrief.backend.platforms.tdx")

CollateralSource = Callable[[bytes], dict[str, Any]]
TransparencyHook = Callable[[str, str], "TransparencyProof | Mapping[str, Any] | None"]
_PROBE = hashlib.sha512(b"hushbrief tdx measurement probe").digest()


def pcs_collateral(pccs_url: str = "") -> CollateralSource:
    """Collateral from Intel's PCS (default) or a PCCS at ``pccs_url``, as JSON."""
    def fetch(quote: bytes) -> dict[str, Any]:
        collateral = dcap_qvl.get_collateral(pccs_url or dcap_qvl.INTEL_PCS_URL, quote)
        doc: dict[str, Any] = json.loads(collateral.to_json())
        return doc
    return fetch


class TdxEvidenceProvider:
    def __init__(self, *, fs: TsmFilesystem | None = None, root: str = TSM_REPORT_ROOT,
                 collateral: CollateralSource | None = None,
                 transparency: TransparencyHook | None = None, cache_size: int = 4) -> None:
        self._fs = fs
        self._root = root
        self._collateral = collateral or pcs_collateral()
        self._transparency = transparency
        self._cache: OrderedDict[bytes, tuple[bytes, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._measurement: str | None = None

    def __repr__(self) -> str:
        return f"TdxEvidenceProvider(measurement={(self._measurement or '?')[:16]}…)"

    @property
    def platform(self) -> str:
        return Platform.TDX.value

    @property
    def measurement(self) -> str:
        if self._measurement is None:
            self._measurement = parse_tdx_quote(self._quote(_PROBE)).report.measurement()
        return self._measurement

    def _quote(self, report_data: bytes) -> bytes:
        return get_report(report_data, provider="tdx_guest", fs=self._fs,
                          root=self._root).outblob

    def bundle(self, key_configs: bytes, *, now: float, expires_at: float) -> dict[str, Any]:
        bound = binding(key_configs)
        with self._lock:
            cached = self._cache.get(bound)
            if cached is None:
                quote = self._quote(bound)
                report = parse_tdx_quote(quote).report
                if report.report_data != bound:
                    raise RuntimeError("the TDX quote does not carry the requested binding")
                measurement = report.measurement()
                if self._measurement not in (None, measurement):
                    raise RuntimeError("the TD's measurement changed while it ran")
                self._measurement = measurement
                cached = (quote, self._collateral(quote))
                self._cache[bound] = cached
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        quote, collateral = cached
        proof = self._transparency(self.measurement, self.platform) \
            if self._transparency else None
        if isinstance(proof, Mapping):
            proof = TransparencyProof.from_json(proof)
        return EvidenceBundle(
            platform=self.platform, key_configs=key_configs, evidence=quote,
            endorsements={"collateral": collateral}, measurement=self.measurement,
            issued_at=int(now), expires_at=int(expires_at), transparency=proof,
        ).to_json()
