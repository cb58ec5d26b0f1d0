"""AMD SEV-SNP: report parsing, offline verification, and the configfs-tsm evidence provider.

The sample (tests/data/evidence/sev-snp/, from virtee/sev, Apache-2.0) is a real Milan
report with the VCEK that signed it and AMD's ASK+ARK chain.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from hushbrief.backend.evidence import EvidenceProvider
from hushbrief.backend.platforms.configfs_tsm import (
    TSM_REPORT_ROOT,
    TsmError,
    TsmRaceError,
    TsmUnavailableError,
    get_report,
)
from hushbrief.backend.platforms.sevsnp import SnpEvidenceProvider
from hushbrief.bot.attestation.sevsnp import (
    SnpPolicyRules,
    binding_error,
    pinned_roots,
    verify_sev_snp,
    verify_sev_snp_evidence,
)
from hushbrief.evidence.bundle import EvidenceBundle, binding
from hushbrief.evidence.sevsnp import (
    ARK_GUID,
    ASK_GUID,
    VCEK_GUID,
    SnpFormatError,
    TcbVersion,
    parse_cert_table,
    parse_report,
)

DATA = Path(__file__).parent / "data" / "evidence" / "sev-snp"
REPORT = bytes.fromhex((DATA / "report_milan.hex").read_text().strip())
VCEK = (DATA / "vcek_milan.der").read_bytes()
CHAIN = (DATA / "cert_chain_milan").read_bytes()
NOW = datetime(2025, 1, 1, tzinfo=UTC)
"""Inside every sample certificate's validity (the VCEK's runs 2023-04-03 to 2030-04-03)."""
# AMD's VCEKs carry serial number 0, which cryptography loads with a deprecation warning.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")

MEASUREMENT = ("7a1e5c266c0108dbc9bb94fa926951320940915d0aafb424"
               "64bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f")
"""The sample's MEASUREMENT (bytes 0x90-0xBF), read off the hex file by hand."""


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def pem_certs(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


def has(errors: tuple[str, ...], fragment: str) -> bool:
    return any(fragment in e for e in errors)


# --- parsing ------------------------------------------------------------------------------


def test_parse_sample_fields() -> None:
    r = parse_report(REPORT)
    assert r.version == 2
    assert r.measurement.hex() == MEASUREMENT == REPORT[0x90:0xC0].hex()
    assert r.report_data == REPORT[0x50:0x90]
    assert r.chip_id == REPORT[0x1A0:0x1E0]
    assert r.policy.raw == 0x30000 and r.policy.smt and r.policy.reserved_one
    assert not r.policy.debug and not r.policy.migrate_ma
    assert r.vmpl == 0 and r.signature_algo == 1 and r.signing_key == 0
    assert r.reported_tcb.components() == {"bootloader": 3, "tee": 0, "snp": 8,
                                           "microcode": 115}
    assert r.reported_tcb.fmc is None and not r.turin_layout
    assert (r.current_major, r.current_minor, r.current_build) == (1, 52, 4)
    assert r.cpuid_family is None and r.launch_mit_vector is None
    assert r.signed_bytes == REPORT[:0x2A0]
    assert len(r.signature_r) == len(r.signature_s) == 72
    assert r.signature_ints[0] == int.from_bytes(REPORT[0x2A0:0x2E8], "little")
    assert r.platform_info.smt_enabled


@pytest.mark.parametrize("data", [b"", REPORT[:-1], REPORT[:0x2A0], REPORT + b"\0"])
def test_parse_rejects_wrong_length(data: bytes) -> None:
    with pytest.raises(SnpFormatError, match="1184 bytes long"):
        parse_report(data)


@pytest.mark.parametrize("version", [0, 1, 6, 0xFFFFFFFF])
def test_parse_rejects_unsupported_version(version: int) -> None:
    data = struct.pack("<I", version) + REPORT[4:]
    with pytest.raises(SnpFormatError, match=f"version {version} is not supported"):
        parse_report(data)


def test_version3_reads_cpuid_and_turin_layout() -> None:
    data = bytearray(REPORT)
    data[0:4] = struct.pack("<I", 3)
    data[0x188:0x18B] = bytes([0x1A, 0x02, 0x00])
    data[0x180:0x188] = bytes([1, 2, 3, 4, 0, 0, 0, 9])
    r = parse_report(bytes(data))
    assert (r.cpuid_family, r.cpuid_model, r.cpuid_stepping) == (0x1A, 2, 0)
    assert r.turin_layout
    assert r.reported_tcb.components() == {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4,
                                           "microcode": 9}


def test_tcb_layouts() -> None:
    raw = int.from_bytes(bytes([1, 2, 3, 4, 5, 6, 7, 8]), "little")
    assert TcbVersion.decode(raw, turin=False).components() == {
        "bootloader": 1, "tee": 2, "snp": 7, "microcode": 8}
    assert TcbVersion.decode(raw, turin=True).components() == {
        "bootloader": 2, "tee": 3, "snp": 4, "microcode": 8, "fmc": 1}


def cert_table(entries: list[tuple[str, bytes]], *, terminate: bool = True) -> bytes:
    header_size = 24 * (len(entries) + (1 if terminate else 0))
    header, body = b"", b""
    for guid, blob in entries:
        header += uuid.UUID(guid).bytes + struct.pack("<II", header_size + len(body), len(blob))
        body += blob
    if terminate:
        header += bytes(24)
    return header + body


def milan_table() -> bytes:
    ask, ark = pem_certs(CHAIN)
    der = serialization.Encoding.DER
    return cert_table([(VCEK_GUID, VCEK), (ASK_GUID, ask.public_bytes(der)),
                       (ARK_GUID, ark.public_bytes(der))]) + bytes(100)  # page padding


def test_cert_table_roundtrip() -> None:
    table = parse_cert_table(milan_table())
    assert set(table) == {VCEK_GUID, ASK_GUID, ARK_GUID}
    assert table[VCEK_GUID] == VCEK
    assert parse_cert_table(b"") == {}
    assert parse_cert_table(bytes(24)) == {}


def test_cert_table_errors() -> None:
    with pytest.raises(SnpFormatError, match="terminator"):
        parse_cert_table(cert_table([(VCEK_GUID, VCEK)], terminate=False)[:24])
    bad = bytearray(cert_table([(VCEK_GUID, VCEK)]))
    bad[16:20] = struct.pack("<I", 10_000)
    with pytest.raises(SnpFormatError, match="outside"):
        parse_cert_table(bytes(bad))
    bad[16:20] = struct.pack("<I", 0)  # overlapping the header
    with pytest.raises(SnpFormatError, match="outside"):
        parse_cert_table(bytes(bad))
    with pytest.raises(SnpFormatError, match="twice"):
        parse_cert_table(cert_table([(VCEK_GUID, b"a"), (VCEK_GUID, b"b")]))


# --- verification -------------------------------------------------------------------------


def test_milan_sample_verifies() -> None:
    verdict = verify_sev_snp(REPORT, vcek=VCEK, chain=CHAIN, now=NOW)
    print("SEV-SNP sample measurement:", verdict.measurement)
    assert verdict.errors == ()
    assert verdict.ok
    assert verdict.chain_valid is True and verdict.signature_valid is True
    assert verdict.debug is False
    parsed = parse_report(REPORT)
    assert verdict.measurement == MEASUREMENT == parsed.measurement.hex()
    assert verdict.report_data == parsed.report_data
    assert verdict.tcb == parsed.reported_tcb.components()
    assert verdict.details["product"] == "Milan"
    assert verdict.details["chip_id"] == parsed.chip_id.hex()
    assert verdict.details["policy"]["debug"] is False
    assert verdict.details["vcek_product_name"] == "Milan-B0"


def test_pinned_chain_and_pem_vcek() -> None:
    vcek_pem = x509.load_der_x509_certificate(VCEK).public_bytes(serialization.Encoding.PEM)
    verdict = verify_sev_snp(REPORT, vcek=vcek_pem, now=NOW)
    assert verdict.ok, verdict.errors


def test_shipped_roots_are_self_signed_and_distinct() -> None:
    keys = set()
    for product in ("milan", "genoa", "turin"):
        roots = pinned_roots(product)
        assert roots.ark.subject == roots.ark.issuer
        assert roots.ask.issuer == roots.ark.subject
        keys.add(roots.ark_spki)
    assert len(keys) == 3


@pytest.mark.parametrize(("offset", "what"), [
    (0x08, "policy ABI minor"),
    (0x30, "VMPL"),
    (0x90, "measurement"),
    (0xBF, "measurement"),
    (0x50, "report data"),
    (0x8F, "report data"),
    (0x1F0, "launch TCB"),
    (0x2A0, "signature R"),
    (0x2E8 + 71, "signature S"),
])
def test_one_flipped_byte_breaks_the_signature(offset: int, what: str) -> None:
    verdict = verify_sev_snp(flip(REPORT, offset), vcek=VCEK, chain=CHAIN, now=NOW)
    assert not verdict.ok, what
    assert verdict.signature_valid is False
    assert verdict.chain_valid is True
    assert has(verdict.errors, "The report's signature does not verify with the VCEK."), what


def test_flipped_measurement_is_reported_as_such() -> None:
    verdict = verify_sev_snp(flip(REPORT, 0x90), vcek=VCEK, chain=CHAIN, now=NOW)
    assert verdict.measurement != MEASUREMENT
    assert verdict.errors == ("The report's signature does not verify with the VCEK.",)


def test_flipped_version_fails_to_parse() -> None:
    verdict = verify_sev_snp(flip(REPORT, 0x00, 0x08), vcek=VCEK, chain=CHAIN, now=NOW)
    assert not verdict.ok
    assert has(verdict.errors, "could not be parsed") and has(verdict.errors, "version 10")
    assert verdict.chain_valid is True  # the certificates themselves are fine


def test_flipped_chip_id_and_tcb_name_the_check() -> None:
    chip = verify_sev_snp(flip(REPORT, 0x1A0), vcek=VCEK, chain=CHAIN, now=NOW)
    assert has(chip.errors, "The VCEK's chip ID does not match the report.")
    tcb = verify_sev_snp(flip(REPORT, 0x186), vcek=VCEK, chain=CHAIN, now=NOW)
    assert has(tcb.errors, "The VCEK's TCB does not match the report's REPORTED_TCB (snp: "
                           "VCEK 8, report 9)")


def test_debug_policy_is_refused_unless_allowed() -> None:
    debug_report = flip(REPORT, 0x0A, 0x08)  # POLICY bit 19 = byte 0x0A, bit 3
    assert parse_report(debug_report).policy.debug
    verdict = verify_sev_snp(debug_report, vcek=VCEK, chain=CHAIN, now=NOW)
    assert verdict.debug is True and not verdict.ok
    assert has(verdict.errors, "allows debugging (bit 19)")
    assert has(verdict.errors, "signature does not verify")  # the flip also broke it
    allowed = verify_sev_snp(debug_report, vcek=VCEK, chain=CHAIN, now=NOW, allow_debug=True)
    assert not has(allowed.errors, "debugging")
    assert allowed.errors == ("The report's signature does not verify with the VCEK.",)


def test_policy_rules() -> None:
    no_smt = verify_sev_snp(REPORT, vcek=VCEK, now=NOW,
                            policy_rules=SnpPolicyRules(allow_smt=False))
    assert no_smt.errors == ("The report's policy allows SMT (bit 16), which the policy "
                             "rules forbid.",)
    single = verify_sev_snp(REPORT, vcek=VCEK, now=NOW,
                            policy_rules=SnpPolicyRules(require_single_socket=True))
    assert has(single.errors, "single socket")
    migrating = verify_sev_snp(flip(REPORT, 0x0A, 0x04), vcek=VCEK, now=NOW)
    assert has(migrating.errors, "migration agent (bit 18)")
    vmpl2 = verify_sev_snp(flip(REPORT, 0x30, 0x02), vcek=VCEK, now=NOW)
    assert has(vmpl2.errors, "requested at VMPL 2, but only VMPL 0")
    relaxed = verify_sev_snp(flip(REPORT, 0x30, 0x02), vcek=VCEK, now=NOW,
                             policy_rules=SnpPolicyRules(max_vmpl=2))
    assert not has(relaxed.errors, "VMPL")
    unknown = verify_sev_snp(flip(REPORT, 0x0C, 0x01), vcek=VCEK, now=NOW)  # bit 32
    assert has(unknown.errors, "bits this verifier does not know (0x100000000)")


def test_min_tcb() -> None:
    ok = verify_sev_snp(REPORT, vcek=VCEK, now=NOW,
                        min_tcb={"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115,
                                 "fmc": 200})  # fmc applies to Turin only
    assert ok.ok, ok.errors
    low = verify_sev_snp(REPORT, vcek=VCEK, now=NOW, min_tcb={"snp": 9, "microcode": 200})
    assert low.errors == ("The report's TCB is below the minimum (snp 8 < 9; "
                          "microcode 115 < 200).",)
    with pytest.raises(ValueError, match="unknown TCB components: sev"):
        verify_sev_snp(REPORT, vcek=VCEK, now=NOW, min_tcb={"sev": 1})


def test_expired_and_not_yet_valid() -> None:
    later = verify_sev_snp(REPORT, vcek=VCEK, chain=CHAIN, now=datetime(2031, 1, 1, tzinfo=UTC))
    assert later.chain_valid is False and not later.ok
    assert later.errors == ("The VCEK certificate expired on 2030-04-03, before "
                            "2031-01-01 00:00 UTC.",)
    far = verify_sev_snp(REPORT, vcek=VCEK, chain=CHAIN, now=datetime(2050, 1, 1))
    assert {e.split(" certificate")[0] for e in far.errors} == {"The ARK", "The ASK",
                                                                 "The VCEK"}
    early = verify_sev_snp(REPORT, vcek=VCEK, now=datetime(2023, 1, 1, tzinfo=UTC))
    assert early.errors == ("The VCEK certificate is not yet valid at 2023-01-01 00:00 UTC "
                            "(valid from 2023-04-03).",)


def rsa_pss_cert(subject: str, issuer: str, key: rsa.RSAPrivateKey,
                 public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, *, ca: bool,
                 extensions: Sequence[x509.UnrecognizedExtension] = ()) -> x509.Certificate:
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(days=30))
               .not_valid_after(NOW + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    return builder.sign(key, hashes.SHA384(), rsa_padding=pss)


@pytest.fixture(scope="module")
def fake_amd() -> dict[str, bytes]:
    """A self-made ARK/ASK/VCEK hierarchy named like AMD's Milan one."""
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    real_vcek = x509.load_der_x509_certificate(VCEK)
    copied = [ext.value for ext in real_vcek.extensions
              if isinstance(ext.value, x509.UnrecognizedExtension)]  # same chip ID and TCB
    ark = rsa_pss_cert("ARK-Milan", "ARK-Milan", ark_key, ark_key.public_key(), ca=True)
    ask = rsa_pss_cert("SEV-Milan", "ARK-Milan", ark_key, ask_key.public_key(), ca=True)
    vcek = rsa_pss_cert("SEV-VCEK", "SEV-Milan", ask_key, vcek_key.public_key(), ca=False,
                        extensions=copied)
    pem = serialization.Encoding.PEM
    return {"chain": ask.public_bytes(pem) + ark.public_bytes(pem),
            "vcek": vcek.public_bytes(serialization.Encoding.DER)}


def test_vcek_from_elsewhere_fails(fake_amd: dict[str, bytes]) -> None:
    verdict = verify_sev_snp(REPORT, vcek=fake_amd["vcek"], chain=CHAIN, now=NOW)
    assert not verdict.ok
    assert verdict.chain_valid is False and verdict.signature_valid is False
    assert has(verdict.errors, "The VCEK is not signed by the ASK.")
    assert has(verdict.errors, "The report's signature does not verify with the VCEK.")
    # The chip ID and TCB extensions were copied from the real VCEK, so they still match.
    assert not has(verdict.errors, "chip ID")


def test_self_made_chain_is_not_pinned(fake_amd: dict[str, bytes]) -> None:
    verdict = verify_sev_snp(REPORT, vcek=fake_amd["vcek"], chain=fake_amd["chain"], now=NOW)
    assert verdict.chain_valid is False
    assert verdict.errors[0] == "The chain's ARK is not AMD's pinned ARK for Milan."
    assert has(verdict.errors, "signature does not verify")


def test_wrong_chain_fails() -> None:
    genoa = (Path(__file__).parent.parent / "hushbrief" / "bot" / "attestation" / "roots"
             / "amd" / "ask_ark_genoa.pem").read_bytes()
    verdict = verify_sev_snp(REPORT, vcek=VCEK, chain=genoa, now=NOW)
    assert verdict.chain_valid is False and verdict.signature_valid is True
    assert has(verdict.errors, "The chain's ARK is not AMD's pinned ARK for Milan.")
    assert has(verdict.errors, "The VCEK is not signed by the ASK.")
    ask, _ark = pem_certs(CHAIN)
    only_ask = verify_sev_snp(REPORT, vcek=VCEK, chain=ask.public_bytes(
        serialization.Encoding.PEM), now=NOW)
    assert has(only_ask.errors, "not one ASK and one ARK")


def test_missing_or_broken_vcek() -> None:
    none = verify_sev_snp(REPORT, vcek=None, now=NOW)
    assert not none.ok and none.chain_valid is None and none.signature_valid is None
    assert has(none.errors, "No VCEK certificate was supplied")
    assert none.measurement == MEASUREMENT
    broken = verify_sev_snp(REPORT, vcek=b"not a certificate", now=NOW)
    assert broken.chain_valid is False
    assert has(broken.errors, "The VCEK certificate could not be parsed.")


def test_truncated_report_verdict() -> None:
    verdict = verify_sev_snp(REPORT[:100], vcek=VCEK, now=NOW)
    assert not verdict.ok and verdict.measurement is None
    assert has(verdict.errors, "The report could not be parsed: An SEV-SNP report is 1184")


def test_evidence_helper_and_binding() -> None:
    endorsements = {"vcek": base64.b64encode(VCEK).decode(), "chain": CHAIN.decode()}
    verdict = verify_sev_snp_evidence(REPORT, endorsements, now=NOW)
    assert verdict.ok
    bound = verify_sev_snp_evidence(REPORT, endorsements, key_configs=b"other keys", now=NOW)
    assert bound.errors == ("The report data does not bind the key configurations in the "
                            "bundle.",)
    assert binding_error(b"\0" * 64, b"k") is not None
    assert binding_error(binding(b"k"), b"k") is None


# --- configfs-tsm -------------------------------------------------------------------------


def synthetic_report(inblob: bytes) -> bytes:
    """The sample with REPORT_DATA replaced, as the hardware would return it (the
    signature no longer verifies, which the provider does not check)."""
    return REPORT[:0x50] + inblob.ljust(64, b"\0") + REPORT[0x90:]


@dataclass
class FakeTsm:
    """Emulates /sys/kernel/config/tsm/report as the kernel's tsm.c behaves."""

    provider: str | None = "sev_guest"
    present: bool = True
    registered: bool = True
    auxblob: bytes = b""
    races: int = 0
    """How many times another writer changes inblob between our write and our read."""
    root: str = TSM_REPORT_ROOT
    dirs: dict[str, dict[str, object]] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    inblobs: list[bytes] = field(default_factory=list)

    def _split(self, path: str) -> tuple[dict[str, object], str]:
        directory, attr = path.rsplit("/", 1)
        if directory not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        return self.dirs[directory], attr

    def mkdir(self, path: str) -> None:
        if not self.present or path.rsplit("/", 1)[0] != self.root:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if not self.registered:
            raise OSError(errno.ENXIO, "No such device or address", path)
        self.dirs[path] = {"generation": 0, "inblob": b""}
        self.made.append(path)

    def rmdir(self, path: str) -> None:
        del self.dirs[path]

    def read_text(self, path: str) -> str:
        state, attr = self._split(path)
        if attr == "provider":
            if self.provider is None:
                raise FileNotFoundError(errno.ENOENT, "no provider attribute", path)
            return self.provider + "\n"
        if attr == "generation":
            return f"{state['generation']}\n"
        raise FileNotFoundError(errno.ENOENT, "unknown attribute", path)

    def write_bytes(self, path: str, data: bytes) -> None:
        state, attr = self._split(path)
        if attr == "inblob":
            if len(data) > 64:
                raise OSError(errno.EINVAL, "inblob too long", path)
            state["inblob"] = data
            self.inblobs.append(data)
        elif attr != "privlevel":
            raise PermissionError(errno.EACCES, "read-only attribute", path)
        state["generation"] = int(str(state["generation"])) + 1

    def read_bytes(self, path: str) -> bytes:
        state, attr = self._split(path)
        if attr == "outblob":
            if self.races:
                self.races -= 1
                state["inblob"] = b"someone else"
                state["generation"] = int(str(state["generation"])) + 1
            inblob = state["inblob"]
            assert isinstance(inblob, bytes)
            return synthetic_report(inblob)
        if attr == "auxblob":
            return self.auxblob
        raise FileNotFoundError(errno.ENOENT, "unknown attribute", path)


def test_tsm_happy_path() -> None:
    fs = FakeTsm(auxblob=b"aux")
    result = get_report(b"\x07" * 64, provider="sev_guest", fs=fs)
    assert result.provider == "sev_guest" and result.auxblob == b"aux"
    assert parse_report(result.outblob).report_data == b"\x07" * 64
    assert fs.dirs == {} and len(fs.made) == 1  # made, then removed
    assert fs.made[0].startswith(TSM_REPORT_ROOT + "/hushbrief-")


def test_tsm_privlevel_counts_as_a_write() -> None:
    fs = FakeTsm()
    get_report(b"x", provider="sev_guest", fs=fs, privlevel=0)
    assert fs.inblobs == [b"x"]


def test_tsm_provider_mismatch() -> None:
    fs = FakeTsm(provider="tdx_guest")
    with pytest.raises(TsmError, match=r"provider 'tdx_guest'.*configured for 'sev_guest'"):
        get_report(b"x", provider="sev_guest", fs=fs)
    assert fs.dirs == {}


def test_tsm_generation_race_then_success() -> None:
    fs = FakeTsm(races=2)
    result = get_report(b"mine", provider="sev_guest", fs=fs, attempts=3)
    assert parse_report(result.outblob).report_data.rstrip(b"\0") == b"mine"
    assert fs.inblobs == [b"mine"] * 3


def test_tsm_generation_race_forever() -> None:
    fs = FakeTsm(races=1000)
    with pytest.raises(TsmRaceError, match="each of 3 attempts"):
        get_report(b"mine", provider="sev_guest", fs=fs, attempts=3)
    assert fs.dirs == {}


def test_tsm_missing_configfs() -> None:
    with pytest.raises(TsmUnavailableError) as info:
        get_report(b"x", provider="sev_guest", fs=FakeTsm(present=False))
    assert str(info.value) == ("configfs-tsm is not available: is this a SEV-SNP or TDX guest "
                               "with the tsm_report module?")


def test_tsm_missing_provider() -> None:
    with pytest.raises(TsmUnavailableError, match="no report provider"):
        get_report(b"x", provider="sev_guest", fs=FakeTsm(registered=False))
    fs = FakeTsm(provider=None)
    with pytest.raises(TsmUnavailableError, match="configfs-tsm is not available"):
        get_report(b"x", provider="sev_guest", fs=fs)
    assert fs.dirs == {}


def test_tsm_argument_checks() -> None:
    with pytest.raises(ValueError, match="1 to 64 bytes"):
        get_report(b"x" * 65, provider="sev_guest", fs=FakeTsm())
    with pytest.raises(ValueError, match="unknown configfs-tsm provider"):
        get_report(b"x", provider="sgx", fs=FakeTsm())


# --- the backend's provider ---------------------------------------------------------------

KEY_CONFIGS = b"\x00\x2d" + bytes(range(45))


def test_provider_bundle() -> None:
    fs = FakeTsm(auxblob=milan_table())
    provider: EvidenceProvider = SnpEvidenceProvider(KEY_CONFIGS, fs=fs)
    assert fs.inblobs == [binding(KEY_CONFIGS)]  # the report is made at construction
    assert provider.platform == "sev-snp" and provider.measurement == MEASUREMENT
    doc = provider.bundle(KEY_CONFIGS, now=1_700_000_000.5, expires_at=1_700_003_600.0)
    bundle = EvidenceBundle.from_json(doc)
    assert bundle.platform == "sev-snp" and bundle.key_configs == KEY_CONFIGS
    assert bundle.measurement == MEASUREMENT and bundle.transparency is None
    assert (bundle.issued_at, bundle.expires_at) == (1_700_000_000, 1_700_003_600)
    assert parse_report(bundle.evidence).report_data == binding(KEY_CONFIGS)
    assert doc["binding"] == binding(KEY_CONFIGS).hex()
    assert base64.b64decode(bundle.endorsements["vcek"]) == VCEK
    assert [c.subject for c in pem_certs(bundle.endorsements["chain"].encode())] == [
        c.subject for c in pem_certs(CHAIN)]
    # The endorsements are usable: the chain verifies; the synthetic report's signature not.
    verdict = verify_sev_snp_evidence(bundle.evidence, bundle.endorsements,
                                      key_configs=bundle.key_configs, now=NOW)
    assert verdict.chain_valid is True and verdict.signature_valid is False
    assert not has(verdict.errors, "bind")
    # Cached per key configuration; a rotation makes a new report.
    provider.bundle(KEY_CONFIGS, now=1.0, expires_at=2.0)
    assert len(fs.inblobs) == 1
    provider.bundle(KEY_CONFIGS + b"rotated", now=1.0, expires_at=2.0)
    assert fs.inblobs[-1] == binding(KEY_CONFIGS + b"rotated") and len(fs.inblobs) == 2


def test_provider_lazy_measurement_and_fallback_endorsements() -> None:
    fs = FakeTsm(auxblob=b"\x01" * 10)  # a broken table from the host: ignored
    provider = SnpEvidenceProvider(fs=fs, vcek=VCEK, chain=CHAIN)
    assert fs.inblobs == []
    assert provider.measurement == MEASUREMENT
    assert len(fs.inblobs) == 1  # one probe report
    doc = provider.bundle(KEY_CONFIGS, now=0, expires_at=60)
    assert base64.b64decode(doc["endorsements"]["vcek"]) == VCEK
    assert doc["endorsements"]["chain"] == CHAIN.decode()
    assert fs.inblobs[-1] == binding(KEY_CONFIGS)


def test_provider_transparency_hook() -> None:
    calls: list[tuple[str, str]] = []
    proof = {"record": {"measurement": MEASUREMENT, "platform": "sev-snp", "version": "1",
                        "source": "git"},
             "index": 3, "proof": [base64.b64encode(hashlib.sha256(b"x").digest()).decode()],
             "checkpoint": "log\n4\nAAAA\n"}

    def hook(measurement: str, platform: str) -> dict[str, object]:
        calls.append((measurement, platform))
        return proof

    provider = SnpEvidenceProvider(KEY_CONFIGS, fs=FakeTsm(), transparency=hook)
    bundle = EvidenceBundle.from_json(provider.bundle(KEY_CONFIGS, now=0, expires_at=60))
    assert calls == [(MEASUREMENT, "sev-snp")]
    assert bundle.transparency is not None and bundle.transparency.index == 3
    assert bundle.endorsements == {}  # the host gave no certificates, none configured


def test_provider_surfaces_unavailable_configfs() -> None:
    with pytest.raises(TsmUnavailableError):
        SnpEvidenceProvider(KEY_CONFIGS, fs=FakeTsm(present=False))
