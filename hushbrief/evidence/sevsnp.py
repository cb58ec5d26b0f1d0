"""AMD SEV-SNP attestation reports and the certificate table: parsing only, no trust decisions.

References:

* AMD "SEV Secure Nested Paging Firmware ABI Specification" (publication 56860):
  the ``ATTESTATION_REPORT`` structure (Table 22 in revision 1.55, the revision the
  kernel's configfs-tsm ABI cites), the ``TCB_VERSION`` structure (§2.2), the guest
  policy (§4.3) and the ECDSA P-384/SHA-384 signature format (chapter "Digital
  Signatures": R and S as 72-byte little-endian integers).
* AMD "SEV-ES Guest-Hypervisor Communication Block Standardization" (publication
  56421) §4.1.8.1 ``MSG_REPORT_REQ``: the GUID-keyed certificate table that Linux
  returns in configfs-tsm's ``auxblob`` (Documentation/ABI/testing/configfs-tsm-report).

Layout of the 0x4A0-byte report (all integers little-endian)::

    0x000 VERSION u32            0x004 GUEST_SVN u32        0x008 POLICY u64
    0x010 FAMILY_ID [16]         0x020 IMAGE_ID [16]        0x030 VMPL u32
    0x034 SIGNATURE_ALGO u32     0x038 CURRENT_TCB u64      0x040 PLATFORM_INFO u64
    0x048 AUTHOR_KEY_EN:1 MASK_CHIP_KEY:1 SIGNING_KEY:3 (u32)   0x04C reserved
    0x050 REPORT_DATA [64]       0x090 MEASUREMENT [48]     0x0C0 HOST_DATA [32]
    0x0E0 ID_KEY_DIGEST [48]     0x110 AUTHOR_KEY_DIGEST [48]
    0x140 REPORT_ID [32]         0x160 REPORT_ID_MA [32]    0x180 REPORTED_TCB u64
    0x188 CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (u8 each; version 3 and later)
    0x1A0 CHIP_ID [64]           0x1E0 COMMITTED_TCB u64
    0x1E8 CURRENT_BUILD, _MINOR, _MAJOR (u8)     0x1EC COMMITTED_BUILD, _MINOR, _MAJOR (u8)
    0x1F0 LAUNCH_TCB u64
    0x1F8 LAUNCH_MIT_VECTOR u64, 0x200 CURRENT_MIT_VECTOR u64 (version 5 and later)
    0x2A0 SIGNATURE [512]: R [72] at +0x00, S [72] at +0x48, the rest zero

The signature covers bytes 0x000-0x29F.

A ``TCB_VERSION`` packs one security patch level (SPL) per byte. Milan and Genoa
(family 19h) use ``BOOT_LOADER, TEE, reserved x4, SNP, MICROCODE``; Turin (family
1Ah) adds the FMC firmware and moves the others: ``FMC, BOOT_LOADER, TEE, SNP,
reserved x3, MICROCODE``. Which layout applies is a property of the chip: reports of
version 3 and later say so in CPUID_FAM_ID; for version 2 the parser guesses from the
CHIP_ID shape (Turin chip IDs are 8 bytes, zero-padded) and a verifier that knows the
product from the VCEK re-decodes with :meth:`TcbVersion.decode`.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARK_GUID",
    "ASK_GUID",
    "CERT_TABLE_NAMES",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "SUPPORTED_VERSIONS",
    "VCEK_GUID",
    "VLEK_GUID",
    "GuestPolicy",
    "PlatformInfo",
    "SnpFormatError",
    "SnpReport",
    "TcbVersion",
    "parse_cert_table",
    "parse_report",
]

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
"""The signature covers bytes 0x000-0x29F: everything before the SIGNATURE field."""
SUPPORTED_VERSIONS = frozenset({2, 3, 4, 5})
"""Report versions whose layout this parser knows; 3 added the CPUID fields, 5 the
mitigation vectors, and 4 changed nothing a verifier reads."""
SIGNATURE_OFFSET = 0x2A0
ECDSA_COMPONENT_SIZE = 72
FAMILY_TURIN = 0x1A
"""CPUID family 1Ah (Zen 5, Turin): the TCB_VERSION layout with an FMC byte."""

# GUIDs of the certificate table (GHCB specification §4.1.8.1), in canonical text form.
VCEK_GUID = "63da758d-e664-4564-adc5-f4b93be8accd"
VLEK_GUID = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
ASK_GUID = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
"""The ASK, or the ASVK when the table carries a VLEK."""
ARK_GUID = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
CERT_TABLE_NAMES = {VCEK_GUID: "vcek", VLEK_GUID: "vlek", ASK_GUID: "ask", ARK_GUID: "ark"}
_CERT_ENTRY = struct.Struct("<16sII")
_MAX_CERT_ENTRIES = 64
"""More entries than any host sends; a bound so a hostile table cannot make us loop long."""


class SnpFormatError(ValueError):
    """The bytes are not a well-formed SEV-SNP report or certificate table."""


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """One TCB_VERSION: the security patch level of each firmware component."""

    raw: int
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None
    """Turin (family 1Ah) only: the SPL of the FMC firmware."""

    @classmethod
    def decode(cls, raw: int, *, turin: bool) -> TcbVersion:
        b = raw.to_bytes(8, "little")
        if turin:
            return cls(raw=raw, fmc=b[0], bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7])
        return cls(raw=raw, bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    def components(self) -> dict[str, int]:
        """The SPLs by name (``bootloader``, ``tee``, ``snp``, ``microcode`` and ``fmc``)."""
        parts = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp,
                 "microcode": self.microcode}
        if self.fmc is not None:
            parts["fmc"] = self.fmc
        return parts


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    """The guest policy the owner set at launch (ABI §4.3); the firmware enforces it."""

    raw: int
    abi_minor: int
    abi_major: int
    smt: bool
    """Bit 16: the guest may run on a core whose sibling thread runs something else."""
    reserved_one: bool
    """Bit 17: reserved, must be 1 in every valid policy."""
    migrate_ma: bool
    """Bit 18: a migration agent may be associated with the guest (and export its state)."""
    debug: bool
    """Bit 19: the hypervisor may decrypt and alter guest memory with the debug commands."""
    single_socket: bool
    cxl_allow: bool
    mem_aes_256_xts: bool
    rapl_dis: bool
    ciphertext_hiding: bool
    page_swap_disable: bool
    unknown_bits: int
    """Bits 26-63, reserved today; a verifier should refuse what it cannot interpret."""

    @classmethod
    def decode(cls, raw: int) -> GuestPolicy:
        def bit(n: int) -> bool:
            return bool(raw >> n & 1)

        return cls(raw=raw, abi_minor=raw & 0xFF, abi_major=raw >> 8 & 0xFF, smt=bit(16),
                   reserved_one=bit(17), migrate_ma=bit(18), debug=bit(19),
                   single_socket=bit(20), cxl_allow=bit(21), mem_aes_256_xts=bit(22),
                   rapl_dis=bit(23), ciphertext_hiding=bit(24), page_swap_disable=bit(25),
                   unknown_bits=raw & ~((1 << 26) - 1))

    def flags(self) -> dict[str, Any]:
        return {"abi": f"{self.abi_major}.{self.abi_minor}", "smt": self.smt,
                "migrate_ma": self.migrate_ma, "debug": self.debug,
                "single_socket": self.single_socket, "cxl_allow": self.cxl_allow,
                "mem_aes_256_xts": self.mem_aes_256_xts, "rapl_dis": self.rapl_dis,
                "ciphertext_hiding": self.ciphertext_hiding,
                "page_swap_disable": self.page_swap_disable}


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """PLATFORM_INFO: facts about the host at the time of the report."""

    raw: int
    smt_enabled: bool
    tsme_enabled: bool
    ecc_enabled: bool
    rapl_disabled: bool
    ciphertext_hiding_enabled: bool
    alias_check_complete: bool
    """Bit 5 (report version 3+ firmware): the memory-alias check that mitigates BadRAM ran."""

    @classmethod
    def decode(cls, raw: int) -> PlatformInfo:
        return cls(raw=raw, smt_enabled=bool(raw & 1), tsme_enabled=bool(raw >> 1 & 1),
                   ecc_enabled=bool(raw >> 2 & 1), rapl_disabled=bool(raw >> 3 & 1),
                   ciphertext_hiding_enabled=bool(raw >> 4 & 1),
                   alias_check_complete=bool(raw >> 5 & 1))

    def flags(self) -> dict[str, bool]:
        return {"smt_enabled": self.smt_enabled, "tsme_enabled": self.tsme_enabled,
                "ecc_enabled": self.ecc_enabled, "rapl_disabled": self.rapl_disabled,
                "ciphertext_hiding_enabled": self.ciphertext_hiding_enabled,
                "alias_check_complete": self.alias_check_complete}


@dataclass(frozen=True, slots=True)
class SnpReport:
    """A parsed ATTESTATION_REPORT. Nothing here has been verified."""

    raw: bytes
    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    author_key_en: bool
    mask_chip_key: bool
    signing_key: int
    """0: the VCEK signed the report; 1: a VLEK; 7: not signed."""
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    """The TCB the VCEK was derived from; the one a verifier compares to the VCEK."""
    cpuid_family: int | None
    cpuid_model: int | None
    cpuid_stepping: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: bytes
    """R as stored: 72 bytes, little-endian."""
    signature_s: bytes
    """S as stored: 72 bytes, little-endian."""
    turin_layout: bool
    """Whether the TCB fields were decoded with the family 1Ah (Turin) layout."""

    @property
    def signed_bytes(self) -> bytes:
        """Bytes 0x000-0x29F: what the VCEK signed."""
        return self.raw[:SIGNED_SIZE]

    @property
    def signature_ints(self) -> tuple[int, int]:
        """(r, s) as integers, converted from the report's little-endian fields."""
        return (int.from_bytes(self.signature_r, "little"),
                int.from_bytes(self.signature_s, "little"))

    def tcb_fields(self, *, turin: bool) -> dict[str, TcbVersion]:
        """The four TCB fields decoded with an explicit layout (for a verifier that knows
        the product from the VCEK better than the report's version 2 heuristic)."""
        return {name: TcbVersion.decode(getattr(self, name).raw, turin=turin)
                for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb")}


def _looks_turin(version: int, family: int | None, chip_id: bytes) -> bool:
    if version >= 3:
        return family == FAMILY_TURIN
    # Version 2 carries no CPUID: Turin's chip ID is 8 bytes with zero padding, earlier
    # chips use all 64. A masked (all-zero) chip ID gives no hint; assume the older layout.
    return any(chip_id[:8]) and not any(chip_id[8:])


def parse_report(data: bytes) -> SnpReport:
    """Parse a 1184-byte ATTESTATION_REPORT; SnpFormatError if it has the wrong size or version."""
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise SnpFormatError(
            f"An SEV-SNP report is {REPORT_SIZE} bytes long, but this one is {len(data)}.")
    version, guest_svn, policy = struct.unpack_from("<IIQ", data, 0x000)
    if version not in SUPPORTED_VERSIONS:
        raise SnpFormatError(f"SEV-SNP report version {version} is not supported "
                             f"(known: {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}).")
    vmpl, signature_algo, current_tcb, platform_info, key_info = struct.unpack_from(
        "<IIQQI", data, 0x030)
    reported_tcb, = struct.unpack_from("<Q", data, 0x180)
    committed_tcb, = struct.unpack_from("<Q", data, 0x1E0)
    launch_tcb, = struct.unpack_from("<Q", data, 0x1F0)
    family = model = stepping = None
    if version >= 3:
        family, model, stepping = data[0x188], data[0x189], data[0x18A]
    launch_mit = current_mit = None
    if version >= 5:
        launch_mit, current_mit = struct.unpack_from("<QQ", data, 0x1F8)
    chip_id = data[0x1A0:0x1E0]
    turin = _looks_turin(version, family, chip_id)
    sig = data[SIGNATURE_OFFSET:]
    return SnpReport(
        raw=data,
        version=version,
        guest_svn=guest_svn,
        policy=GuestPolicy.decode(policy),
        family_id=data[0x010:0x020],
        image_id=data[0x020:0x030],
        vmpl=vmpl,
        signature_algo=signature_algo,
        current_tcb=TcbVersion.decode(current_tcb, turin=turin),
        platform_info=PlatformInfo.decode(platform_info),
        author_key_en=bool(key_info & 1),
        mask_chip_key=bool(key_info >> 1 & 1),
        signing_key=key_info >> 2 & 0b111,
        report_data=data[0x050:0x090],
        measurement=data[0x090:0x0C0],
        host_data=data[0x0C0:0x0E0],
        id_key_digest=data[0x0E0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=TcbVersion.decode(reported_tcb, turin=turin),
        cpuid_family=family,
        cpuid_model=model,
        cpuid_stepping=stepping,
        chip_id=chip_id,
        committed_tcb=TcbVersion.decode(committed_tcb, turin=turin),
        current_build=data[0x1E8],
        current_minor=data[0x1E9],
        current_major=data[0x1EA],
        committed_build=data[0x1EC],
        committed_minor=data[0x1ED],
        committed_major=data[0x1EE],
        launch_tcb=TcbVersion.decode(launch_tcb, turin=turin),
        launch_mit_vector=launch_mit,
        current_mit_vector=current_mit,
        signature_r=sig[:ECDSA_COMPONENT_SIZE],
        signature_s=sig[ECDSA_COMPONENT_SIZE:2 * ECDSA_COMPONENT_SIZE],
        turin_layout=turin,
    )


def parse_cert_table(auxblob: bytes) -> dict[str, bytes]:
    """The certificates in a GHCB certificate table, keyed by GUID text (see ``*_GUID``).

    The table is a list of 24-byte entries (GUID in RFC 4122 byte order, then offset and
    length as little-endian u32, offsets counted from the start of the table) ended by an
    all-zero entry; the certificates (DER) follow. An empty blob means the host supplied
    no certificates and gives an empty dict.
    """
    data = bytes(auxblob)
    if not data:
        return {}
    entries: list[tuple[str, int, int]] = []
    pos = 0
    while True:
        if pos + _CERT_ENTRY.size > len(data):
            raise SnpFormatError("The certificate table ends before its all-zero terminator.")
        raw_guid, offset, length = _CERT_ENTRY.unpack_from(data, pos)
        pos += _CERT_ENTRY.size
        if not any(raw_guid) and offset == 0 and length == 0:
            break
        if len(entries) == _MAX_CERT_ENTRIES:
            raise SnpFormatError(
                f"The certificate table has more than {_MAX_CERT_ENTRIES} entries.")
        entries.append((str(uuid.UUID(bytes=raw_guid)), offset, length))
    table: dict[str, bytes] = {}
    for guid, offset, length in entries:
        # A certificate may not overlap the table itself nor run past the blob.
        if offset < pos or offset + length > len(data) or length == 0:
            raise SnpFormatError(
                f"The certificate table entry {guid} points outside the certificate area.")
        if guid in table:
            raise SnpFormatError(f"The certificate table lists {guid} twice.")
        table[guid] = data[offset:offset + length]
    return table
