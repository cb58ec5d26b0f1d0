"""Evidence providers: what the backend shows a client before it is trusted (DESIGN.md §5).

A provider turns the key configurations the backend serves (the exact
``application/ohttp-keys`` bytes) into a version-1 evidence bundle
(:mod:`hushbrief.evidence.bundle`): platform evidence whose report data binds
SHA-512 of those bytes, its endorsements, the measurement, and — when the
operator published the build — a transparency-log inclusion proof.

Hardware platforms live in :mod:`hushbrief.backend.platforms` (``sev-snp`` and
``tdx`` through configfs-tsm, ``nitro`` through the NSM device). The ``dev``
provider here is a software stand-in for local runs and tests: its
measurement is a SHA-256 over the source files the backend runs
(``hushbrief/backend``, ``hushbrief/engines``, ``hushbrief/ohttp``,
``hushbrief/evidence``, sorted by path) and the effective engine settings (no
secrets); its "evidence" is a statement signed by an Ed25519 key made in
memory at start. That proves the statement is internally consistent and
nothing else: no hardware vouches for it, and bots refuse it unless told
otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hushbrief.evidence.bundle import EvidenceBundle, Platform, TransparencyProof, binding
from hushbrief.evidence.dev import DEV_FORMAT, dev_statement

__all__ = [
    "PLATFORMS",
    "DevEvidenceProvider",
    "EvidenceProvider",
    "TransparencyHook",
    "dev_measurement",
    "provider_for",
]

PLATFORMS = ("dev", "sev-snp", "tdx", "nitro")
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
MEASURED_PACKAGES = ("backend", "engines", "ohttp", "evidence")
"""The parts of ``hushbrief`` that run inside the backend's trust boundary."""

TransparencyHook = Callable[[str, str], TransparencyProof | None]
"""(measurement, platform) → the log's inclusion proof for this build, if published."""


class EvidenceProvider(Protocol):
    """Builds evidence bundles for one platform."""

    @property
    def platform(self) -> str: ...

    @property
    def measurement(self) -> str:
        """Hex measurement of the running code; also returned in every summary."""
        ...

    def bundle(self, key_configs: bytes, *, now: float, expires_at: float) -> dict[str, Any]:
        """A JSON-ready bundle binding ``key_configs``, valid from ``now`` to ``expires_at``."""
        ...


def dev_measurement(
    engine_settings: Mapping[str, Any], *, files: Iterable[Path] | None = None,
    root: Path = _PACKAGE_ROOT,
) -> str:
    """SHA-256 over the measured source files (path and content) and the engine settings.

    Each file contributes its path relative to ``root`` and its bytes, both
    length-prefixed so that no two different trees hash alike.
    """
    if files is None:
        files = (p for pkg in MEASURED_PACKAGES for p in (root / pkg).rglob("*.py"))
    h = hashlib.sha256(b"hushbrief dev measurement v1\n")
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        name = path.relative_to(root).as_posix().encode("utf-8")
        data = path.read_bytes()
        h.update(len(name).to_bytes(4, "big") + name)
        h.update(len(data).to_bytes(8, "big") + data)
    settings = json.dumps(dict(engine_settings), sort_keys=True, separators=(",", ":"))
    h.update(settings.encode("utf-8"))
    return h.hexdigest()


class DevEvidenceProvider:
    """The ``dev`` platform: a software measurement, a signature by an in-memory key."""

    def __init__(self, engine_settings: Mapping[str, Any], *,
                 transparency: TransparencyHook | None = None,
                 entropy: Callable[[int], bytes] = os.urandom) -> None:
        self._measurement = dev_measurement(engine_settings)
        self._key = Ed25519PrivateKey.from_private_bytes(entropy(32))
        self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._transparency = transparency

    def __repr__(self) -> str:
        return f"DevEvidenceProvider(measurement={self._measurement[:16]}…)"

    def __reduce__(self) -> Any:
        raise TypeError("evidence providers hold keys and are never pickled")

    @property
    def platform(self) -> str:
        return Platform.DEV.value

    @property
    def measurement(self) -> str:
        return self._measurement

    def bundle(self, key_configs: bytes, *, now: float, expires_at: float) -> dict[str, Any]:
        statement = dev_statement(self._measurement, binding(key_configs), self._public)
        proof = (self._transparency(self._measurement, self.platform)
                 if self._transparency is not None else None)
        return EvidenceBundle(
            platform=self.platform, key_configs=key_configs, evidence=statement,
            endorsements={"format": DEV_FORMAT,
                          "signature": base64.b64encode(self._key.sign(statement)).decode()},
            measurement=self._measurement, issued_at=int(now), expires_at=int(expires_at),
            transparency=proof,
        ).to_json()


def provider_for(platform: str, engine_settings: Mapping[str, Any], *,
                 transparency: TransparencyHook | None = None,
                 pccs_url: str = "") -> EvidenceProvider:
    """The evidence provider for ``platform`` on this machine.

    Hardware providers are imported only when asked for: they talk to devices
    that exist only inside their TEE.
    """
    if platform == "dev":
        return DevEvidenceProvider(engine_settings, transparency=transparency)
    if platform == "sev-snp":
        from hushbrief.backend.platforms.sevsnp import SnpEvidenceProvider

        return SnpEvidenceProvider(transparency=transparency)
    if platform == "tdx":
        from hushbrief.backend.platforms.tdx import TdxEvidenceProvider, pcs_collateral

        return TdxEvidenceProvider(collateral=pcs_collateral(pccs_url),
                                   transparency=transparency)
    if platform == "nitro":
        from hushbrief.backend.platforms.nitro import NitroEvidenceProvider

        return NitroEvidenceProvider(transparency=transparency)
    raise ValueError(f"unknown platform {platform!r}; available: {', '.join(PLATFORMS)}")
