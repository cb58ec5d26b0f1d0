"""The AMD SEV-SNP verifier: offline, with ``now`` passed in, against AMD roots shipped here.

What it checks, each failure adding one sentence to ``PlatformVerdict.errors``:

1. The certificate chain (AMD "VCEK Certificate and KDS Interface Specification",
   publication 57230): the ARK is self-signed and is AMD's ARK for the product, pinned
   by public key (``roots/amd/ask_ark_<product>.pem``, AMD's KDS ``cert_chain``
   bundles as shipped by google/go-sev-guest, Apache-2.0, see ``roots/amd/LICENSE``);
   the ARK signs the ASK and the ASK signs the VCEK, all RSASSA-PSS with SHA-384, MGF1
   SHA-384 and a 48-byte salt; every certificate is within its validity period at
   ``now``. Without a ``chain`` the pinned ASK and ARK are used.
2. The report signature (SEV-SNP ABI, publication 56860, ATTESTATION_REPORT Table 22
   in rev. 1.55 and the ECDSA P-384/SHA-384 signature format): ECDSA P-384 over bytes
   0x000-0x29F with the VCEK's key; R and S are 72-byte little-endian integers.
3. The VCEK belongs to this chip and TCB: its hwID extension (1.3.6.1.4.1.3704.1.4;
   64 bytes before Turin, 8 bytes zero-padded on Turin) equals CHIP_ID, and its SPL
   extensions (blSPL .1.3.1, teeSPL .1.3.2, snpSPL .1.3.3, ucodeSPL .1.3.8 and, on
   Turin, fmcSPL .1.3.9) equal REPORTED_TCB. The firmware derives the VCEK from
   exactly that TCB, so a mismatch means the certificate is for another chip or TCB.
4. The guest policy (ABI §4.3): bit 19 (debug) is refused unless ``allow_debug``;
   other bits per :class:`SnpPolicyRules`; reserved bit 17 must be set and bits this
   verifier does not know must be clear.
5. A minimum TCB, per component, and the report version (2 to 5, by the parser).
6. VMPL: by default only reports requested at VMPL 0 are accepted (see
   :class:`SnpPolicyRules.max_vmpl`).

The product (Milan, Genoa, Turin) comes from the VCEK's issuer ("SEV-Milan", ...),
which the chain check then ties to the pinned ARK; failing that, from the chain's ARK.
The VCEK's productName extension and, in report version 3 and later, CPUID_FAM_ID and
CPUID_MOD_ID must agree. Turin's TCB layout differs, so REPORTED_TCB is decoded for the
product determined here, not for the parser's guess.

Only VCEK-signed reports are supported; a VLEK (SIGNING_KEY 1) is refused with a
plain error, since its chain runs through the ASVK, which is not pinned here.

The binding (REPORT_DATA == SHA-512 of the key configurations) is the caller's check;
:func:`binding_error` and :func:`verify_sev_snp_evidence` help with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from hushbrief.bot.attestation.verdict import PlatformVerdict
from hushbrief.evidence.bundle import binding
from hushbrief.evidence.sevsnp import (
    SnpFormatError,
    SnpReport,
    TcbVersion,
    parse_report,
)

__all__ = [
    "PRODUCTS",
    "TCB_COMPONENTS",
    "SnpPolicyRules",
    "binding_error",
    "pinned_roots",
    "verify_sev_snp",
    "verify_sev_snp_evidence",
]

PLATFORM = "sev-snp"
PRODUCTS = ("milan", "genoa", "turin")
TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode", "fmc")
ECDSA_P384_SHA384 = 1
SIGNING_KEY_NAMES = {0: "VCEK", 1: "VLEK", 7: "none"}

_AMD = "1.3.6.1.4.1.3704.1."
OID_STRUCT_VERSION = x509.ObjectIdentifier(_AMD + "1")
OID_PRODUCT_NAME = x509.ObjectIdentifier(_AMD + "2")
OID_HWID = x509.ObjectIdentifier(_AMD + "4")
OID_CSP_ID = x509.ObjectIdentifier(_AMD + "5")
OID_SPL = {
    "bootloader": x509.ObjectIdentifier(_AMD + "3.1"),
    "tee": x509.ObjectIdentifier(_AMD + "3.2"),
    "snp": x509.ObjectIdentifier(_AMD + "3.3"),
    "microcode": x509.ObjectIdentifier(_AMD + "3.8"),
    "fmc": x509.ObjectIdentifier(_AMD + "3.9"),
}
# AMD signs its certificates with RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48 (KDS spec).
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_CPUID_FAMILY = {"milan": 0x19, "genoa": 0x19, "turin": 0x1A}


def _cpuid_model_matches(product: str, model: int) -> bool:
    # CPUID model ranges per product (AMD processor programming references).
    if product == "milan":
        return model <= 0x0F
    if product == "genoa":
        return 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF
    return model <= 0x1F


@dataclass(frozen=True, slots=True)
class SnpPolicyRules:
    """Which guest-policy and platform facts are acceptable, beyond debug (always refused
    unless ``allow_debug``).

    The defaults refuse what lets someone outside the guest read it and accept what
    every cloud SEV-SNP offering sets today.
    """

    allow_migration_agent: bool = False
    """POLICY bit 18. A migration agent can export the guest's memory; we run no
    migration, so a policy that permits one only widens who can read the keys."""
    allow_smt: bool = True
    """POLICY bit 16. SMT shares a core with other tenants (a side-channel concern),
    but every cloud SNP offering runs with SMT on, so refusing it refuses them all."""
    require_single_socket: bool = False
    require_aes_256_xts: bool = False
    """POLICY bit 22: require AES-256-XTS memory encryption (Genoa and later)."""
    max_vmpl: int = 0
    """Highest VMPL the report may have been requested at. VMPL 0 is the most privileged
    level, where the measured firmware and kernel run; a report from a higher VMPL could
    have been requested (with any REPORT_DATA) by less privileged, unmeasured code.
    Raise it only for SVSM deployments where the guest OS runs at VMPL 1-3."""


@dataclass(frozen=True, slots=True)
class _Roots:
    product: str
    ark: x509.Certificate
    ask: x509.Certificate
    ark_spki: bytes = field(repr=False)


def _load_certs(data: bytes) -> list[x509.Certificate]:
    """PEM (any number) or one DER certificate."""
    with warnings.catch_warnings():
        # AMD issues VCEKs with serial number 0, which cryptography tolerates with a
        # deprecation warning (RFC 5280 wants positive serials); the serial plays no
        # part in our checks, so the warning is noise here.
        warnings.filterwarnings("ignore", message=".*serial number.*")
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _split_ask_ark(certs: list[x509.Certificate]) -> tuple[x509.Certificate, x509.Certificate]:
    """(ASK, ARK) from a two-certificate bundle in either order; ValueError otherwise."""
    roots = [c for c in certs if c.subject == c.issuer]
    others = [c for c in certs if c.subject != c.issuer]
    if len(certs) != 2 or len(roots) != 1 or len(others) != 1:
        raise ValueError("not one ASK and one self-issued ARK")
    return others[0], roots[0]


@cache
def pinned_roots(product: str) -> _Roots:
    """AMD's ASK and ARK for ``product`` (``milan``, ``genoa``, ``turin``), shipped here."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown AMD product {product!r}; known: {', '.join(PRODUCTS)}")
    pem = (resources.files("hushbrief.bot.attestation") / "roots" / "amd"
           / f"ask_ark_{product}.pem").read_bytes()
    ask, ark = _split_ask_ark(_load_certs(pem))
    return _Roots(product=product, ark=ark, ask=ask, ark_spki=_spki(ark))


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _product_from_cn(cn: str) -> str | None:
    # VCEK issuer "SEV-Milan"; ASK subject "SEV-Milan"; ARK subject "ARK-Milan".
    for prefix in ("SEV-", "ARK-"):
        if cn.startswith(prefix) and cn[len(prefix):].lower() in PRODUCTS:
            return cn[len(prefix):].lower()
    return None


def _extension_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _der_uint(value: bytes | None) -> int | None:
    """A small non-negative DER INTEGER (the SPL extensions), or None if malformed."""
    if value is None or len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        return None
    if value[1] > 8 or value[2] & 0x80:
        return None
    return int.from_bytes(value[2:], "big")


def _der_ia5(value: bytes | None) -> str | None:
    if value is None or len(value) < 2 or value[0] != 0x16 or value[1] != len(value) - 2:
        return None
    try:
        return value[2:].decode("ascii")
    except UnicodeDecodeError:
        return None


@lru_cache(maxsize=64)
def _pss_signed_by(subject_der: bytes, issuer_der: bytes) -> bool:
    """Whether ``issuer``'s key signed ``subject`` (RSASSA-PSS SHA-384, salt 48).

    A pure function of the two certificates' bytes, so memoised: the bot checks the same
    ARK and ASK for every bundle, and each RSA-4096 verification costs real time.
    """
    subject = _load_certs(subject_der)[0]
    key = _load_certs(issuer_der)[0].public_key()
    if (not isinstance(key, rsa.RSAPublicKey)
            or subject.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS
            or not isinstance(subject.signature_hash_algorithm, hashes.SHA384)):
        return False
    try:
        key.verify(subject.signature, subject.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _validity_error(name: str, cert: x509.Certificate, now: datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return (f"The {name} certificate is not yet valid at {now:%Y-%m-%d %H:%M} UTC "
                f"(valid from {cert.not_valid_before_utc:%Y-%m-%d}).")
    if now > cert.not_valid_after_utc:
        return (f"The {name} certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}, "
                f"before {now:%Y-%m-%d %H:%M} UTC.")
    return None


def _check_chain(vcek: x509.Certificate | None, chain: bytes | None, product: str,
                 now: datetime, errors: list[str]) -> bool:
    """ARK pinned and self-signed, ARK -> ASK -> VCEK, validity at ``now``."""
    before = len(errors)
    pinned = pinned_roots(product)
    label = product.capitalize()
    if chain is None:
        ask, ark = pinned.ask, pinned.ark
    else:
        try:
            ask, ark = _split_ask_ark(_load_certs(chain))
        except ValueError:
            errors.append("The certificate chain is not one ASK and one ARK in PEM.")
            return False
    if _spki(ark) != pinned.ark_spki:
        errors.append(f"The chain's ARK is not AMD's pinned ARK for {label}.")
    if not _pss_signed_by(_der(ark), _der(ark)):
        errors.append("The ARK's self-signature does not verify.")
    if ask.issuer != ark.subject or not _pss_signed_by(_der(ask), _der(ark)):
        errors.append("The ASK is not signed by the ARK.")
    if not (_is_ca(ark) and _is_ca(ask)):
        errors.append("The ARK or the ASK is not marked as a certificate authority.")
    certs = [("ARK", ark), ("ASK", ask)]
    if vcek is not None:
        if vcek.issuer != ask.subject or not _pss_signed_by(_der(vcek), _der(ask)):
            errors.append("The VCEK is not signed by the ASK.")
        certs.append(("VCEK", vcek))
    for name, cert in certs:
        problem = _validity_error(name, cert, now)
        if problem:
            errors.append(problem)
    return len(errors) == before


def _check_signature(report: SnpReport, vcek: x509.Certificate, errors: list[str]) -> bool:
    if report.signature_algo != ECDSA_P384_SHA384:
        errors.append(f"The report's signature algorithm {report.signature_algo} is not "
                      "ECDSA P-384 with SHA-384.")
        return False
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                       ec.SECP384R1):
        errors.append("The VCEK's key is not an ECDSA P-384 key.")
        return False
    r, s = report.signature_ints
    try:
        key.verify(encode_dss_signature(r, s), report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        errors.append("The report's signature does not verify with the VCEK.")
        return False
    return True


def _check_vcek_binds_report(report: SnpReport, vcek: x509.Certificate, reported: TcbVersion,
                             errors: list[str]) -> None:
    hwid = _extension_value(vcek, OID_HWID)
    if hwid is None:
        errors.append("The VCEK has no hardware ID extension, so it cannot be tied to the "
                      "report's chip.")
    elif report.mask_chip_key or not any(report.chip_id):
        errors.append("The report's chip ID is masked, so it cannot be matched to the VCEK.")
    elif len(hwid) not in (8, 64) or hwid.ljust(64, b"\0") != report.chip_id:
        errors.append("The VCEK's chip ID does not match the report.")
    mismatched = []
    for name, value in reported.components().items():
        spl = _der_uint(_extension_value(vcek, OID_SPL[name]))
        if spl != value:
            mismatched.append(f"{name}: VCEK {'missing' if spl is None else spl}, "
                              f"report {value}")
    if mismatched:
        errors.append("The VCEK's TCB does not match the report's REPORTED_TCB ("
                      + "; ".join(mismatched) + ").")


def _check_policy(report: SnpReport, rules: SnpPolicyRules, allow_debug: bool,
                  errors: list[str]) -> None:
    policy = report.policy
    if policy.debug and not allow_debug:
        errors.append("The report's policy allows debugging (bit 19), so the host can read "
                      "and change the guest's memory.")
    if not policy.reserved_one:
        errors.append("The report's policy has reserved bit 17 clear, which no valid "
                      "policy has.")
    if policy.unknown_bits:
        errors.append(f"The report's policy sets bits this verifier does not know "
                      f"({policy.unknown_bits:#x}).")
    if policy.migrate_ma and not rules.allow_migration_agent:
        errors.append("The report's policy allows a migration agent (bit 18), which the "
                      "policy rules forbid.")
    if policy.smt and not rules.allow_smt:
        errors.append("The report's policy allows SMT (bit 16), which the policy rules "
                      "forbid.")
    if rules.require_single_socket and not policy.single_socket:
        errors.append("The report's policy does not require a single socket (bit 20), "
                      "which the policy rules demand.")
    if rules.require_aes_256_xts and not policy.mem_aes_256_xts:
        errors.append("The report's policy does not require AES-256-XTS (bit 22), which "
                      "the policy rules demand.")
    if report.vmpl > rules.max_vmpl:
        errors.append(f"The report was requested at VMPL {report.vmpl}, but only VMPL "
                      f"{rules.max_vmpl} or lower is accepted.")


def _check_min_tcb(reported: TcbVersion, min_tcb: Mapping[str, int],
                   errors: list[str]) -> None:
    have = reported.components()
    below = [f"{name} {have[name]} < {want}" for name, want in min_tcb.items()
             if name in have and have[name] < want]
    if below:
        errors.append("The report's TCB is below the minimum (" + "; ".join(below) + ").")


def _determine_product(vcek: x509.Certificate | None, chain: bytes | None,
                       report: SnpReport | None) -> str | None:
    if vcek is not None:
        product = _product_from_cn(_common_name(vcek.issuer))
        if product:
            return product
    if chain is not None:
        try:
            _ask, ark = _split_ask_ark(_load_certs(chain))
        except ValueError:
            return None
        return _product_from_cn(_common_name(ark.subject))
    if vcek is None and report is not None and report.cpuid_family is not None:
        # Without any certificate, only the report itself can name the product.
        for product in PRODUCTS:
            if (_CPUID_FAMILY[product] == report.cpuid_family
                    and report.cpuid_model is not None
                    and _cpuid_model_matches(product, report.cpuid_model)):
                return product
    return None


def _as_utc(now: datetime) -> datetime:
    # A naive datetime is taken as UTC; certificates' validity is in UTC.
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def verify_sev_snp(
    report: bytes,
    *,
    vcek: bytes | None,
    chain: bytes | None = None,
    now: datetime,
    min_tcb: Mapping[str, int] | None = None,
    allow_debug: bool = False,
    policy_rules: SnpPolicyRules | None = None,
) -> PlatformVerdict:
    """Verify an SEV-SNP report against its VCEK and AMD's roots, offline, at ``now``.

    ``vcek`` is DER or PEM; ``chain`` is the ASK and ARK in PEM (AMD KDS ``cert_chain``
    format) or None for the pinned pair. ``min_tcb`` maps components from
    :data:`TCB_COMPONENTS` to minimum SPLs (``fmc`` applies to Turin only). Problems with
    the evidence become sentences in ``errors``; a ``min_tcb`` naming an unknown
    component is a programming error and raises ValueError.
    """
    if min_tcb is not None:
        unknown = sorted(set(min_tcb) - set(TCB_COMPONENTS))
        if unknown:
            raise ValueError(f"min_tcb names unknown TCB components: {', '.join(unknown)}")
    rules = policy_rules or SnpPolicyRules()
    now = _as_utc(now)
    errors: list[str] = []
    details: dict[str, Any] = {}

    parsed: SnpReport | None
    try:
        parsed = parse_report(report)
    except SnpFormatError as exc:
        parsed = None
        errors.append(f"The report could not be parsed: {exc}")

    vcek_cert: x509.Certificate | None = None
    if vcek is None:
        errors.append("No VCEK certificate was supplied, so the report's signature could "
                      "not be checked.")
    else:
        try:
            loaded = _load_certs(vcek)
            if len(loaded) != 1:
                raise ValueError("expected one certificate")
            vcek_cert = loaded[0]
        except ValueError:
            errors.append("The VCEK certificate could not be parsed.")

    product = _determine_product(vcek_cert, chain, parsed)
    chain_valid: bool | None = None
    if product is None:
        errors.append("The AMD product (Milan, Genoa or Turin) could not be determined "
                      "from the VCEK's issuer or the chain.")
        chain_valid = False if vcek_cert is not None or chain is not None else None
    else:
        details["product"] = product.capitalize()
        details["ark_spki_sha256"] = _fingerprint(pinned_roots(product).ark)
        chain_ok = _check_chain(vcek_cert, chain, product, now, errors)
        # Without a VCEK the chain cannot reach the report: "not checked", not "good".
        chain_valid = chain_ok if vcek_cert is not None else (False if not chain_ok else None)
    if vcek is not None and vcek_cert is None:
        chain_valid = False

    if vcek_cert is not None:
        name = _der_ia5(_extension_value(vcek_cert, OID_PRODUCT_NAME))
        if name is not None:
            details["vcek_product_name"] = name
            if product is not None and name.split("-")[0].lower() != product:
                errors.append(f"The VCEK's product name {name!r} does not match its issuer "
                              f"({product.capitalize()}).")
        if _extension_value(vcek_cert, OID_CSP_ID) is not None:
            errors.append("The certificate is a VLEK, which this verifier does not support.")

    if parsed is None:
        return PlatformVerdict(platform=PLATFORM, chain_valid=chain_valid,
                               signature_valid=None, errors=tuple(errors), details=details)

    turin = parsed.turin_layout if product is None else product == "turin"
    reported = TcbVersion.decode(parsed.reported_tcb.raw, turin=turin)
    if (product is not None and parsed.cpuid_family is not None
            and (parsed.cpuid_family != _CPUID_FAMILY[product]
                 or parsed.cpuid_model is None
                 or not _cpuid_model_matches(product, parsed.cpuid_model))):
        errors.append(f"The report's CPUID family {parsed.cpuid_family:#x} model "
                      f"{parsed.cpuid_model:#x} is not a {product.capitalize()} processor.")
    if parsed.signing_key != 0:
        errors.append(f"The report is signed by the "
                      f"{SIGNING_KEY_NAMES.get(parsed.signing_key, 'unknown')} key "
                      f"(SIGNING_KEY {parsed.signing_key}); only VCEK-signed reports are "
                      "supported.")

    signature_valid: bool | None = None
    if vcek_cert is not None:
        signature_valid = _check_signature(parsed, vcek_cert, errors)
        _check_vcek_binds_report(parsed, vcek_cert, reported, errors)
    _check_policy(parsed, rules, allow_debug, errors)
    if min_tcb:
        _check_min_tcb(reported, min_tcb, errors)

    details.update({
        "report_version": parsed.version,
        "chip_id": parsed.chip_id.hex(),
        "policy": parsed.policy.flags() | {"raw": f"{parsed.policy.raw:#x}"},
        "platform_info": parsed.platform_info.flags(),
        "vmpl": parsed.vmpl,
        "guest_svn": parsed.guest_svn,
        "signing_key": SIGNING_KEY_NAMES.get(parsed.signing_key, str(parsed.signing_key)),
        "host_data": parsed.host_data.hex(),
        "id_key_digest": parsed.id_key_digest.hex(),
        "family_id": parsed.family_id.hex(),
        "image_id": parsed.image_id.hex(),
        "reported_tcb_raw": f"{reported.raw:#018x}",
        "firmware": f"{parsed.current_major}.{parsed.current_minor}.{parsed.current_build}",
    })
    return PlatformVerdict(
        platform=PLATFORM,
        chain_valid=chain_valid,
        signature_valid=signature_valid,
        measurement=parsed.measurement.hex(),
        report_data=parsed.report_data,
        debug=parsed.policy.debug,
        tcb=dict(reported.components()),
        errors=tuple(errors),
        details=details,
    )


def binding_error(report_data: bytes | None, key_configs: bytes) -> str | None:
    """The sentence to report when REPORT_DATA does not bind ``key_configs``, else None."""
    if report_data is None or not hmac.compare_digest(report_data, binding(key_configs)):
        return "The report data does not bind the key configurations in the bundle."
    return None


def verify_sev_snp_evidence(
    evidence: bytes,
    endorsements: Mapping[str, Any],
    *,
    key_configs: bytes | None = None,
    now: datetime,
    min_tcb: Mapping[str, int] | None = None,
    allow_debug: bool = False,
    policy_rules: SnpPolicyRules | None = None,
) -> PlatformVerdict:
    """Verify a bundle's SNP ``evidence`` with its ``endorsements`` (``{"vcek": b64 DER,
    "chain": PEM}``), and, when ``key_configs`` is given, the binding as well."""
    vcek: bytes | None = None
    chain: bytes | None = None
    problems: list[str] = []
    raw_vcek = endorsements.get("vcek")
    if raw_vcek is not None:
        try:
            vcek = base64.b64decode(str(raw_vcek), validate=True)
        except (binascii.Error, ValueError):
            problems.append("The bundle's VCEK endorsement is not valid base64.")
    raw_chain = endorsements.get("chain")
    if isinstance(raw_chain, str) and raw_chain.strip():
        chain = raw_chain.encode("ascii", "replace")
    verdict = verify_sev_snp(evidence, vcek=vcek, chain=chain, now=now, min_tcb=min_tcb,
                             allow_debug=allow_debug, policy_rules=policy_rules)
    if key_configs is not None:
        problem = binding_error(verdict.report_data, key_configs)
        if problem:
            problems.append(problem)
    if not problems:
        return verdict
    return PlatformVerdict(
        platform=verdict.platform, chain_valid=verdict.chain_valid,
        signature_valid=verdict.signature_valid, measurement=verdict.measurement,
        report_data=verdict.report_data, debug=verdict.debug, tcb=verdict.tcb,
        errors=verdict.errors + tuple(problems), details=verdict.details,
    )


def _fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the SubjectPublicKeyInfo: how the pinned ARKs are identified in output."""
    return hashlib.sha256(_spki(cert)).hexdigest()
