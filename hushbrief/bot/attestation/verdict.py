"""What a platform verifier concludes about one piece of evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PlatformVerdict:
    """The outcome of checking raw platform evidence, before any policy.

    ``errors`` holds one plain sentence per failed check; a verdict is good only
    when it is empty. ``None`` means "not checked" (for example, no chain was
    available), which is never good enough for the bot.
    """

    platform: str
    chain_valid: bool | None = None
    signature_valid: bool | None = None
    measurement: str | None = None
    """Hex of what the platform measured (SNP MEASUREMENT, TDX MRTD…, Nitro PCR0, dev hash)."""
    report_data: bytes | None = None
    """The 64 bytes the evidence binds (SNP/TDX report data, Nitro user_data)."""
    debug: bool | None = None
    tcb: dict[str, Any] | None = None
    errors: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    """Platform-specific facts worth printing (policy bits, PCRs, TD attributes…)."""

    @property
    def ok(self) -> bool:
        return (not self.errors and self.chain_valid is True and self.signature_valid is True
                and self.debug is False and self.measurement is not None
                and self.report_data is not None)
