"""The evidence bundle (``GET /attestation``), version 1.

A bundle binds the key configurations a client will encrypt to (the exact
``application/ohttp-keys`` bytes, RFC 9458 §3) to hardware evidence about the
code that holds the private keys, and to a transparency-log entry that says
this code was published::

    {
      "version": 1,
      "platform": "sev-snp" | "tdx" | "nitro" | "dev",
      "key_configs": "<base64 of the application/ohttp-keys bytes>",
      "binding": "<hex SHA-512 of those bytes>",
      "evidence": "<base64 platform evidence: SNP report, TDX quote, Nitro COSE_Sign1,
                    or the dev statement>",
      "endorsements": {...},        # sev-snp: {"vcek": b64 DER, "chain": PEM ASK+ARK}
                                    # tdx: {"collateral": {...}}; nitro: {}
                                    # dev: {"signature": b64 Ed25519 over the evidence bytes}
      "measurement": "<hex>",       # what the platform measured (claimed; verifiers
                                    # take it from the evidence, never from here)
      "transparency": {             # or null
        "record": {"measurement": hex, "platform": str, "version": str, "source": str},
        "index": <leaf index>,
        "proof": ["<base64 hash>", ...],     # RFC 9162 §2.1.3 inclusion proof
        "checkpoint": "<C2SP signed note text>"
      },
      "issued_at": <unix seconds>, "expires_at": <unix seconds>
    }

The binding every platform's report data (or Nitro's ``user_data``) must carry
is SHA-512 over the key-configuration bytes exactly as served: decoding and
re-encoding could drop entries a client skips, so it is never recomputed from
parsed configurations.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

BUNDLE_VERSION = 1
MAX_BUNDLE_BYTES = 1 << 20


class Platform(StrEnum):
    DEV = "dev"
    SEV_SNP = "sev-snp"
    TDX = "tdx"
    NITRO = "nitro"


class BundleFormatError(ValueError):
    """The bundle is not a well-formed version-1 bundle; the message names the field."""


def binding(key_configs: bytes) -> bytes:
    """What the evidence must bind: SHA-512 over the ``application/ohttp-keys`` bytes."""
    return hashlib.sha512(key_configs).digest()


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """One published build: what the transparency log holds, one record per leaf."""

    measurement: str
    platform: str
    version: str
    source: str
    """Where the build comes from, e.g. a repository URL and commit."""

    def leaf(self) -> bytes:
        """The leaf data the log hashes: canonical JSON (sorted keys, no spaces, UTF-8)."""
        return json.dumps(
            {"measurement": self.measurement, "platform": self.platform,
             "source": self.source, "version": self.version},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        ).encode("utf-8")

    def to_json(self) -> dict[str, str]:
        return {"measurement": self.measurement, "platform": self.platform,
                "version": self.version, "source": self.source}

    @classmethod
    def from_json(cls, doc: Any, where: str = "record") -> ReleaseRecord:
        obj = _object(doc, where)
        return cls(**{k: _str(obj, k, where) for k in ("measurement", "platform", "version",
                                                        "source")})


@dataclass(frozen=True, slots=True)
class TransparencyProof:
    record: ReleaseRecord
    index: int
    proof: tuple[bytes, ...]
    checkpoint: str

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record.to_json(), "index": self.index,
                "proof": [_b64(h) for h in self.proof], "checkpoint": self.checkpoint}

    @classmethod
    def from_json(cls, doc: Any, where: str = "transparency") -> TransparencyProof:
        obj = _object(doc, where)
        index = obj.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise BundleFormatError(f"{where}.index must be a non-negative integer")
        hashes = obj.get("proof")
        if not isinstance(hashes, list) or len(hashes) > 64:
            raise BundleFormatError(f"{where}.proof must be a list of at most 64 hashes")
        proof = tuple(_unb64(h, f"{where}.proof[{i}]") for i, h in enumerate(hashes))
        return cls(record=ReleaseRecord.from_json(obj.get("record"), f"{where}.record"),
                   index=index, proof=proof, checkpoint=_str(obj, "checkpoint", where))


@dataclass(frozen=True, slots=True)
class EvidenceBundle:
    platform: str
    key_configs: bytes
    evidence: bytes
    measurement: str
    issued_at: int
    expires_at: int
    endorsements: dict[str, Any] = field(default_factory=dict)
    transparency: TransparencyProof | None = None
    version: int = BUNDLE_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "platform": self.platform,
            "key_configs": _b64(self.key_configs),
            "binding": binding(self.key_configs).hex(),
            "evidence": _b64(self.evidence),
            "endorsements": self.endorsements,
            "measurement": self.measurement,
            "transparency": None if self.transparency is None else self.transparency.to_json(),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, doc: Any) -> EvidenceBundle:
        """Parse a decoded JSON bundle; BundleFormatError names the first bad field."""
        obj = _object(doc, "bundle")
        if obj.get("version") != BUNDLE_VERSION:
            raise BundleFormatError(f"bundle.version must be {BUNDLE_VERSION}")
        platform = _str(obj, "platform", "bundle")
        if platform not in {p.value for p in Platform}:
            raise BundleFormatError(f"bundle.platform {platform!r} is not a known platform")
        times = {}
        for key in ("issued_at", "expires_at"):
            value = obj.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BundleFormatError(f"bundle.{key} must be an integer (Unix seconds)")
            times[key] = value
        endorsements = obj.get("endorsements", {})
        if not isinstance(endorsements, dict):
            raise BundleFormatError("bundle.endorsements must be an object")
        transparency = obj.get("transparency")
        return cls(
            platform=platform,
            key_configs=_unb64(obj.get("key_configs"), "bundle.key_configs"),
            evidence=_unb64(obj.get("evidence", ""), "bundle.evidence"),
            measurement=_str(obj, "measurement", "bundle"),
            issued_at=times["issued_at"],
            expires_at=times["expires_at"],
            endorsements=endorsements,
            transparency=None if transparency is None
            else TransparencyProof.from_json(transparency),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EvidenceBundle:
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleFormatError("the bundle is larger than 1 MiB")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise BundleFormatError("the bundle is not JSON") from None
        return cls.from_json(doc)


def _object(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BundleFormatError(f"{where} must be an object")
    return doc


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BundleFormatError(f"{where}.{key} must be a string")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise BundleFormatError(f"{where} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BundleFormatError(f"{where} is not valid base64") from None
