"""The evidence bundle: what the backend shows a client before it is trusted (DESIGN.md §5).

A bundle binds the key configurations the client will encrypt to
(``application/ohttp-keys`` bytes, RFC 9458 §3 / RFC 9540 §3) to a measurement of
the code that holds the private keys::

    {"version": 1, "platform": "dev",
     "key_configs": "<base64 of application/ohttp-keys>",
     "measurement": "<hex>", "issued_at": <unix>, "expires_at": <unix>,
     "binding": "<hex SHA-512 of the key_configs bytes>"}

On a TEE the binding is what goes into the hardware report's report data, and
the platform adds its evidence, endorsements and a transparency proof; the
provider for each platform plugs in behind :class:`EvidenceProvider`. The
``dev`` provider here is a software stand-in: its measurement is a SHA-256 over
the source files the backend runs (``hushbrief/backend``, ``hushbrief/engines``,
``hushbrief/ohttp``, sorted by path) and the effective engine settings (no
secrets), so it changes whenever the code or the engine does, but nothing
vouches for it. Clients refuse ``dev`` unless told otherwise.

A bundle is built for each GET from the current key configurations: it is
public, cheap, and changes when the keys rotate.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "BUNDLE_VERSION",
    "PLATFORMS",
    "DevEvidenceProvider",
    "EvidenceProvider",
    "binding",
    "dev_measurement",
    "provider_for",
]

BUNDLE_VERSION = 1
PLATFORMS = ("dev",)
"""Platforms with an evidence provider; the attestation work adds sev-snp, tdx, nitro."""
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
MEASURED_PACKAGES = ("backend", "engines", "ohttp")
"""The parts of ``hushbrief`` that run inside the backend's trust boundary."""


def binding(key_configs: bytes) -> str:
    """The value a platform report binds: SHA-512 over the ``application/ohttp-keys`` bytes."""
    return hashlib.sha512(key_configs).hexdigest()


class EvidenceProvider(Protocol):
    """Builds evidence bundles for one platform (``dev``, later ``sev-snp``, ``tdx``, ``nitro``)."""

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
    """The ``dev`` platform: a software measurement and no hardware evidence."""

    def __init__(self, engine_settings: Mapping[str, Any]) -> None:
        self._measurement = dev_measurement(engine_settings)

    def __repr__(self) -> str:
        return f"DevEvidenceProvider(measurement={self._measurement[:16]}…)"

    @property
    def platform(self) -> str:
        return "dev"

    @property
    def measurement(self) -> str:
        return self._measurement

    def bundle(self, key_configs: bytes, *, now: float, expires_at: float) -> dict[str, Any]:
        return {
            "version": BUNDLE_VERSION,
            "platform": self.platform,
            "key_configs": base64.b64encode(key_configs).decode("ascii"),
            "measurement": self._measurement,
            "issued_at": int(now),
            "expires_at": int(expires_at),
            "binding": binding(key_configs),
        }


def provider_for(platform: str, engine_settings: Mapping[str, Any]) -> EvidenceProvider:
    """The evidence provider for ``platform``; only ``dev`` exists so far."""
    if platform == "dev":
        return DevEvidenceProvider(engine_settings)
    raise ValueError(f"unknown platform {platform!r}; available: {', '.join(PLATFORMS)}")
