"""Intel TDX quotes (version 4): parsing only, no trust decisions.

References:

* Intel "TDX DCAP Quoting Library API" (revision 1.x), appendix A.3: the version-4
  quote = 48-byte header, 584-byte TD quote body (``TDREPORT`` 1.0 fields), then a
  little-endian u32 length and the quote signature data (ECDSA signature, attestation
  key, QE report certification data with the PCK chain). The signature covers the
  header and body, bytes ``0x000-0x277``. §2.3.2 "Extended TD checks": a verifier
  must refuse a TD whose TD-under-debug flags are not all zero.
* Intel "TDX Module Base Architecture Specification", ``TDATTRIBUTES`` (64-bit, LE):
  bits 7:0 are the TUD (TD Under Debug) group, bit 0 is DEBUG ("the host VMM can read
  the TD's CPU state and private memory"), bits 31:8 SEC (bit 28 SEPT_VE_DISABLE,
  bit 30 PKS, bit 31 KL), bits 63:32 OTHER (bit 63 PERFMON).

Layout (offsets from the start of the quote, integers little-endian)::

    header  0x000 VERSION u16 (4)   0x002 ATT_KEY_TYPE u16 (2 = ECDSA P-256)
            0x004 TEE_TYPE u32 (0x81 = TDX)    0x008 reserved [4]
            0x00C QE_VENDOR_ID [16]            0x01C USER_DATA [20]
    body    0x030 TEE_TCB_SVN [16]  0x040 MRSEAM [48]      0x070 MRSIGNERSEAM [48]
            0x0A0 SEAMATTRIBUTES [8]           0x0A8 TDATTRIBUTES [8]  0x0B0 XFAM [8]
            0x0B8 MRTD [48]         0x0E8 MRCONFIGID [48]  0x118 MROWNER [48]
            0x148 MROWNERCONFIG [48]           0x178 RTMR0..3 [4 x 48]
            0x238 REPORTDATA [64]
            0x278 QUOTE_SIGNATURE_DATA_LEN u32, then that many bytes, then zero padding

Parsed here without the verifier library so that the backend (which produces
quotes) needs nothing native; the bot's verifier cross-checks these fields against
what dcap-qvl verified.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

__all__ = [
    "HEADER_SIZE",
    "MAX_QUOTE_BYTES",
    "SIGNED_SIZE",
    "TD_REPORT_SIZE",
    "TdAttributes",
    "TdReport",
    "TdxFormatError",
    "TdxQuote",
    "parse_tdx_quote",
]

QUOTE_VERSION = 4
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x81
HEADER_SIZE = 48
TD_REPORT_SIZE = 584
SIGNED_SIZE = HEADER_SIZE + TD_REPORT_SIZE
"""The quote signature covers the header and the TD report body."""
MAX_QUOTE_BYTES = 64 * 1024
"""Real quotes are about 5 KB (mostly the PCK chain); anything far larger is not a quote."""
MEASUREMENT_SIZE = 48
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")


class TdxFormatError(ValueError):
    """The TDX quote is malformed; the message is one sentence naming the problem."""


@dataclass(frozen=True, slots=True)
class TdAttributes:
    """``TDATTRIBUTES``, a 64-bit little-endian bit field."""

    value: int

    DEBUG = 1 << 0
    TUD_MASK = 0xFF
    SEPT_VE_DISABLE = 1 << 28
    PKS = 1 << 30
    KL = 1 << 31
    PERFMON = 1 << 63

    @classmethod
    def from_bytes(cls, raw: bytes) -> TdAttributes:
        if len(raw) != 8:
            raise TdxFormatError("TDATTRIBUTES must be 8 bytes.")
        return cls(int.from_bytes(raw, "little"))

    @property
    def debug(self) -> bool:
        """Bit 0: the TD runs in debug mode and the host can read its memory."""
        return bool(self.value & self.DEBUG)

    @property
    def under_debug(self) -> int:
        """The TUD group (bits 7:0); Intel says any bit set makes the TD untrusted."""
        return self.value & self.TUD_MASK

    def names(self) -> list[str]:
        """The set bits, by name where the spec names them (``bitN`` otherwise)."""
        known = {0: "DEBUG", 28: "SEPT_VE_DISABLE", 30: "PKS", 31: "KL", 63: "PERFMON"}
        return [known.get(bit, f"bit{bit}") for bit in range(64) if self.value >> bit & 1]

    def hex(self) -> str:
        """The 8 bytes as they appear in the quote."""
        return self.value.to_bytes(8, "little").hex()


@dataclass(frozen=True, slots=True)
class TdReport:
    """The TD quote body: the ``TDREPORT`` fields a quote carries."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: TdAttributes
    xfam: bytes
    mr_td: bytes
    """The build-time measurement of the TD (firmware image and initial memory)."""
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    """Run-time measurement registers extended by firmware, kernel and user space."""
    report_data: bytes

    def measurement(self) -> str:
        """What Hushbrief calls a TDX build's measurement: SHA-384 over MRTD and RTMR0-2.

        MRTD alone pins only the TD firmware; RTMR0 (firmware configuration), RTMR1
        (boot loader and kernel) and RTMR2 (kernel command line and initrd) pin what
        runs on it, and are reproducible for a fixed image. RTMR3 is left out: user
        space extends it at run time. The domain prefix keeps this digest from ever
        equalling another platform's measurement.
        """
        h = hashlib.sha384(b"hushbrief tdx measurement v1\0")
        h.update(self.mr_td)
        for rtmr in self.rtmrs[:3]:
            h.update(rtmr)
        return h.hexdigest()


@dataclass(frozen=True, slots=True)
class TdxQuote:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_vendor_id: bytes
    header_user_data: bytes
    report: TdReport
    signed: bytes
    """Header and body: the bytes the attestation key signs."""
    signature_data: bytes
    """The opaque quote signature data (verified by dcap-qvl, not parsed here)."""


_BODY = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")
assert _BODY.size == TD_REPORT_SIZE


def parse_tdx_quote(quote: bytes) -> TdxQuote:
    """Parse a version-4 TDX quote; raise TdxFormatError if it is not one."""
    if not isinstance(quote, bytes | bytearray | memoryview):
        raise TdxFormatError("The TDX quote must be bytes.")
    quote = bytes(quote)
    if len(quote) > MAX_QUOTE_BYTES:
        raise TdxFormatError(f"The TDX quote is {len(quote)} bytes; at most "
                             f"{MAX_QUOTE_BYTES} are allowed.")
    if len(quote) < SIGNED_SIZE + 4:
        raise TdxFormatError(f"The TDX quote is {len(quote)} bytes, too short for a "
                             f"version-4 quote ({SIGNED_SIZE + 4} at least).")
    version, key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if version != QUOTE_VERSION:
        raise TdxFormatError(f"The TDX quote has version {version}; only version "
                             f"{QUOTE_VERSION} is supported.")
    if tee_type != TEE_TYPE_TDX:
        raise TdxFormatError(f"The quote's TEE type is {tee_type:#x}, not TDX ({TEE_TYPE_TDX:#x}).")
    if key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise TdxFormatError(f"The TDX quote's attestation key type is {key_type}, "
                             f"not ECDSA P-256 ({ATT_KEY_TYPE_ECDSA_P256}).")
    (sig_len,) = struct.unpack_from("<I", quote, SIGNED_SIZE)
    end = SIGNED_SIZE + 4 + sig_len
    if end > len(quote):
        raise TdxFormatError(f"The TDX quote's signature data ({sig_len} bytes) runs past "
                             f"its end ({len(quote)} bytes).")
    if quote[end:].strip(b"\0"):
        # Quotes arrive zero-padded from the quote generation service (the sample has 70
        # bytes of padding); anything else after the signature data is not the QE's.
        raise TdxFormatError("The TDX quote has non-zero bytes after its signature data.")
    (tcb_svn, mr_seam, mr_signer_seam, seam_attrs, td_attrs, xfam, mr_td, mr_config_id,
     mr_owner, mr_owner_config, rtmr0, rtmr1, rtmr2, rtmr3,
     report_data) = _BODY.unpack_from(quote, HEADER_SIZE)
    report = TdReport(
        tee_tcb_svn=tcb_svn, mr_seam=mr_seam, mr_signer_seam=mr_signer_seam,
        seam_attributes=seam_attrs, td_attributes=TdAttributes.from_bytes(td_attrs),
        xfam=xfam, mr_td=mr_td, mr_config_id=mr_config_id, mr_owner=mr_owner,
        mr_owner_config=mr_owner_config, rtmrs=(rtmr0, rtmr1, rtmr2, rtmr3),
        report_data=report_data,
    )
    return TdxQuote(
        version=version, attestation_key_type=key_type, tee_type=tee_type,
        qe_vendor_id=quote[12:28], header_user_data=quote[28:48], report=report,
        signed=quote[:SIGNED_SIZE], signature_data=quote[SIGNED_SIZE + 4:end],
    )
