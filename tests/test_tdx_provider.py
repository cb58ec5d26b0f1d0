"""The backend's TDX evidence provider against an emulated configfs-tsm (no TD runs here)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import pytest

from hushbrief.backend.platforms.tdx import TdxEvidenceProvider
from hushbrief.evidence.bundle import EvidenceBundle, binding
from hushbrief.evidence.tdx import parse_tdx_quote
from tests.test_sevsnp import FakeTsm

QUOTE = (Path(__file__).parent / "data" / "evidence" / "tdx" / "tdx_quote").read_bytes()
REPORT_DATA = 48 + 520  # v4 header, then REPORTDATA is the TD report body's last 64 bytes


def quote_with(report_data: bytes) -> bytes:
    """The sample quote with REPORTDATA replaced, as the TD would get it (unsigned now)."""
    return QUOTE[:REPORT_DATA] + report_data.ljust(64, b"\0") + QUOTE[REPORT_DATA + 64:]


@dataclass
class FakeTdx(FakeTsm):
    provider: str | None = "tdx_guest"
    honest: bool = True

    def read_bytes(self, path: str) -> bytes:
        state, attr = self._split(path)
        if attr == "outblob":
            inblob = state["inblob"]
            assert isinstance(inblob, bytes)
            return quote_with(inblob if self.honest else b"\x00" * 64)
        return super().read_bytes(path)


def test_bundle_carries_quote_collateral_and_measurement() -> None:
    fs = FakeTdx()
    asked: list[bytes] = []

    def collateral(quote: bytes) -> dict[str, str]:
        asked.append(quote)
        return {"tcb_info": "{}"}

    provider = TdxEvidenceProvider(fs=fs, collateral=collateral)
    keys = b"\x00\x01key configurations"
    bundle = EvidenceBundle.from_json(provider.bundle(keys, now=1000, expires_at=2000))
    assert bundle.platform == "tdx"
    report = parse_tdx_quote(bundle.evidence).report
    assert report.report_data == binding(keys) and fs.inblobs[-1] == binding(keys)
    assert bundle.measurement == report.measurement() == provider.measurement
    assert bundle.endorsements == {"collateral": {"tcb_info": "{}"}}
    # A second bundle for the same keys reuses the quote and its collateral.
    provider.bundle(keys, now=1500, expires_at=2500)
    assert len(asked) == 1
    assert base64.b64encode(bundle.evidence).decode() == provider.bundle(
        keys, now=1, expires_at=2)["evidence"]


def test_a_quote_without_the_binding_is_never_served() -> None:
    provider = TdxEvidenceProvider(fs=FakeTdx(honest=False), collateral=lambda q: {})
    with pytest.raises(RuntimeError, match="binding"):
        provider.bundle(b"keys", now=1, expires_at=2)


def test_not_a_tdx_guest() -> None:
    from hushbrief.backend.platforms.configfs_tsm import TsmError

    provider = TdxEvidenceProvider(fs=FakeTdx(provider="sev_guest"), collateral=lambda q: {})
    with pytest.raises(TsmError):
        _ = provider.measurement
