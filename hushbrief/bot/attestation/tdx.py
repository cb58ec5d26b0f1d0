"""The Intel TDX verifier: a version-4 quote checked offline with dcap-qvl against the pinned root.

dcap-qvl (Phala Network's Rust port of Intel's DCAP quote verification, used via
its Python bindings) does the cryptography: the PCK certificate chain in the quote
up to the Intel SGX Root CA given to it, the CRLs, the TCB info and QE identity
collateral signed by Intel, the QE report, the quote signature over header and TD
report, and the TCB level matching. It gets the Intel SGX Root CA pinned in this
package (``verify_with_root_ca``), never a fetched one, and the time from the
caller. The bundle carries the collateral (``endorsements = {"collateral": {...}}``,
the JSON shape dcap-qvl serialises: PEM chains, JSON documents as strings, CRLs
and signatures as hex); nothing is downloaded.

On top of that, this module decides:

* Debug. Intel's "TDX DCAP Quoting Library API" §2.3.2 says to refuse a TD with
  any TD-under-debug flag (``TDATTRIBUTES`` bits 7:0) set; bit 0 is DEBUG, in
  which the host can read the TD's memory. ``allow_debug`` silences the DEBUG
  error only (and a debug verdict is never ``ok``); the reserved TUD bits are
  always refused.
* TCB status. ``UpToDate`` and ``SWHardeningNeeded`` pass: the platform runs the
  latest microcode and TDX module, and what remains (the advisories listed in
  ``tcb``) is mitigated in the guest's software, which the measurement pins.
  Every other status fails: ``ConfigurationNeeded`` and
  ``ConfigurationAndSWHardeningNeeded`` (a BIOS setting such as SMT leaves a known
  weakness open that the guest cannot mitigate), ``OutOfDate*`` (a patched TCB
  exists and this platform does not run it), ``TDRelaunchAdvised*`` (the TDX
  module was updated under the running TD, which must restart to be covered) and
  ``Revoked``. Callers may pass their own ``accepted_tcb_statuses``.
* Measurement = SHA-384 over MRTD, RTMR0, RTMR1 and RTMR2
  (:meth:`hushbrief.evidence.tdx.TdReport.measurement`). MRTD alone pins only the
  TD firmware (computed before the TD runs); RTMR0 (firmware configuration),
  RTMR1 (boot loader and kernel) and RTMR2 (kernel command line and initrd) pin
  the image on top of it and are reproducible for a fixed image, so the digest of
  all four is what the transparency log records. RTMR3 (extended by user space
  at run time) is left out; it and the raw registers go in ``details`` and can be
  pinned with ``expected_rtmrs``.
* Parser agreement. The fields this verdict reports come from
  :mod:`hushbrief.evidence.tdx`; they must equal what dcap-qvl verified, so that
  the two parsers cannot disagree about what was signed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import dcap_qvl  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hushbrief.bot.attestation.verdict import PlatformVerdict
from hushbrief.evidence.tdx import TdAttributes, TdReport, TdxFormatError, TdxQuote, parse_tdx_quote

__all__ = [
    "ACCEPTED_TCB_STATUSES",
    "INTEL_SGX_ROOT_CA_SHA256",
    "DcapOutcome",
    "TdxCollateralError",
    "collateral_from_json",
    "intel_sgx_root_ca",
    "run_dcap_qvl",
    "tcb_status_errors",
    "td_attribute_errors",
    "td_report_fields",
    "tdx_verdict",
    "verify_tdx",
]

PLATFORM = "tdx"
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
"""SHA-256 over the DER of ``CN=Intel SGX Root CA`` (valid 2018-2049).

The package data file is checked against this constant when loaded.
"""
_ROOT_RESOURCE = ("roots", "intel", "intel_sgx_root_ca.pem")

ACCEPTED_TCB_STATUSES = frozenset({"UpToDate", "SWHardeningNeeded"})
KNOWN_TCB_STATUSES = frozenset({
    "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
    "OutOfDate", "OutOfDateConfigurationNeeded", "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded", "Revoked",
})
_TCB_REASONS = {
    "ConfigurationNeeded": "the platform's configuration leaves a known weakness open",
    "ConfigurationAndSWHardeningNeeded":
        "the platform's configuration leaves a known weakness open",
    "OutOfDate": "a newer, patched TCB exists and this platform does not run it",
    "OutOfDateConfigurationNeeded":
        "a newer, patched TCB exists and this platform does not run it",
    "TDRelaunchAdvised": "the TDX module was updated and the TD must restart to be covered",
    "TDRelaunchAdvisedConfigurationNeeded":
        "the TDX module was updated and the TD must restart to be covered",
    "Revoked": "Intel revoked this platform's TCB",
}
_COLLATERAL_PEM = ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain")
_COLLATERAL_JSON = ("tcb_info", "qe_identity")
_COLLATERAL_HEX = ("root_ca_crl", "pck_crl", "tcb_info_signature", "qe_identity_signature")
_MAX_COLLATERAL_FIELD = 256 * 1024

Check = Literal["chain", "signature", "debug", "tcb", "quote", "other"]
# dcap-qvl reports failures as ValueError("Verification failed: <cause>"); these map the
# causes it can give (matched as substrings, first match wins) to the check that failed
# and a sentence for people.
_DCAP_FAILURES: tuple[tuple[str, Check, str], ...] = (
    ("CrlExpired", "chain", "The TDX collateral is not valid at the given time (expired CRL)."),
    ("TCBInfo expired", "chain",
     "The TDX collateral is not valid at the given time (expired TCB info)."),
    ("QE Identity expired", "chain",
     "The TDX collateral is not valid at the given time (expired QE identity)."),
    ("issue date is in the future", "chain",
     "The TDX collateral is not valid at the given time (issued after it)."),
    ("CertNotValidYet", "chain",
     "A certificate of the TDX quote or collateral is not yet valid at the given time."),
    ("CertExpired", "chain",
     "A certificate of the TDX quote or collateral has expired at the given time."),
    ("certificate expired", "chain",
     "A certificate of the TDX quote or collateral has expired at the given time."),
    ("CertRevoked", "chain", "The TDX PCK certificate or one of its issuers is revoked."),
    ("UnknownIssuer", "chain",
     "The TDX certificate chain does not lead to the pinned Intel SGX Root CA."),
    ("root CA CRL", "chain",
     "The TDX collateral is not signed under the pinned Intel SGX Root CA."),
    ("Failed to parse root CA", "chain",
     "The pinned Intel SGX Root CA could not be used."),
    ("invalid for tcb_info", "chain", "The TDX collateral's TCB info is not signed by Intel."),
    ("invalid for qe_identity", "chain",
     "The TDX collateral's QE identity is not signed by Intel."),
    ("ISV enclave report signature is invalid", "signature",
     "The TDX quote's signature over its TD report does not verify."),
    ("QE report hash mismatch", "signature",
     "The TDX quote's attestation key is not the one the quoting enclave vouched for."),
    ("invalid for qe_report", "signature",
     "The quoting enclave's report in the TDX quote is not signed by its PCK certificate."),
    ("Debug mode is enabled", "debug",
     "The TD runs in debug mode (TDATTRIBUTES.DEBUG); the host can read its memory."),
    ("TCB status is invalid", "tcb", "Intel revoked this platform's TCB."),
    ("No matching TCB level", "tcb", "The TDX platform matches no TCB level Intel lists."),
    ("SEAMATTRIBUTES", "tcb", "The TDX module is not the one Intel's TCB info describes."),
    ("Unknown QE vendor ID", "quote",
     "The TDX quote does not come from Intel's quoting enclave (unknown QE vendor ID)."),
    ("Unsupported DCAP attestation key type", "quote",
     "The TDX quote uses an attestation key type dcap-qvl does not support."),
    ("Failed to decode quote", "quote", "dcap-qvl cannot decode the TDX quote."),
)


class TdxCollateralError(ValueError):
    """The collateral JSON is not what dcap-qvl needs; the message is one sentence."""


@dataclass(frozen=True, slots=True)
class DcapOutcome:
    """What dcap-qvl concluded about one quote: a TCB status, or the check that failed."""

    status: str | None = None
    """The TCB status (``UpToDate``…) when dcap-qvl accepted the quote."""
    advisory_ids: tuple[str, ...] = ()
    report: Mapping[str, str] | None = None
    """The TD report fields dcap-qvl verified, hex, keyed as :func:`td_report_fields`."""
    failed: Check | None = None
    failure: str | None = None
    """A sentence for people when dcap-qvl refused the quote."""
    details: dict[str, Any] = field(default_factory=dict)


@cache
def intel_sgx_root_ca() -> bytes:
    """DER of the pinned Intel SGX Root CA, from package data."""
    pem = resources.files("hushbrief.bot.attestation").joinpath(*_ROOT_RESOURCE).read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    if hashlib.sha256(der).hexdigest() != INTEL_SGX_ROOT_CA_SHA256:
        raise RuntimeError("The packaged Intel SGX Root CA is not the pinned one.")
    return der


def collateral_from_json(doc: Mapping[str, Any]) -> Any:
    """dcap-qvl's ``QuoteCollateralV3`` from the bundle's ``endorsements["collateral"]``.

    Raises TdxCollateralError naming the first field that is missing or malformed.
    """
    if not isinstance(doc, Mapping):
        raise TdxCollateralError("The TDX collateral must be a JSON object.")
    values: dict[str, Any] = {}
    for name in (*_COLLATERAL_PEM, *_COLLATERAL_JSON, *_COLLATERAL_HEX):
        value = doc.get(name)
        if not isinstance(value, str) or not value or len(value) > _MAX_COLLATERAL_FIELD:
            raise TdxCollateralError(f"The TDX collateral lacks {name} or it is not a string.")
        if name in _COLLATERAL_HEX:
            try:
                values[name] = bytes.fromhex(value)
            except ValueError:
                raise TdxCollateralError(f"The TDX collateral's {name} is not hex.") from None
        else:
            values[name] = value
    try:
        return dcap_qvl.QuoteCollateralV3(**values)
    except (ValueError, TypeError):
        raise TdxCollateralError("dcap-qvl does not accept the TDX collateral.") from None


def td_report_fields(report: TdReport) -> dict[str, str]:
    """The TD report as hex strings, named as dcap-qvl names them."""
    fields = {
        "tee_tcb_svn": report.tee_tcb_svn, "mr_seam": report.mr_seam,
        "mr_signer_seam": report.mr_signer_seam, "seam_attributes": report.seam_attributes,
        "xfam": report.xfam, "mr_td": report.mr_td, "mr_config_id": report.mr_config_id,
        "mr_owner": report.mr_owner, "mr_owner_config": report.mr_owner_config,
        **{f"rt_mr{i}": rtmr for i, rtmr in enumerate(report.rtmrs)},
        "report_data": report.report_data,
    }
    return {"td_attributes": report.td_attributes.hex(),
            **{name: value.hex() for name, value in fields.items()}}


def td_attribute_errors(attributes: TdAttributes, *, allow_debug: bool = False) -> list[str]:
    """Sentences for the TD attributes that make a TD untrusted (Intel DCAP API §2.3.2)."""
    errors: list[str] = []
    if attributes.debug and not allow_debug:
        errors.append("The TD runs in debug mode (TDATTRIBUTES.DEBUG); "
                      "the host can read its memory.")
    others = attributes.under_debug & ~TdAttributes.DEBUG
    if others:
        # Bits 7:1 are reserved TUD bits or, in TDX 1.5, profiling flags that also let the
        # host observe the TD; neither is ever set for a production TD.
        errors.append(f"The TD sets TD-under-debug attribute bits ({others:#04x}); "
                      "Intel says such a TD is not to be trusted.")
    return errors


def tcb_status_errors(status: str, advisory_ids: Collection[str] = (), *,
                      accepted: Collection[str] = ACCEPTED_TCB_STATUSES) -> list[str]:
    """A sentence if ``status`` is not an accepted TCB status."""
    if status in accepted:
        return []
    reason = _TCB_REASONS.get(status, "Hushbrief does not know this status")
    advisories = f" (advisories: {', '.join(sorted(advisory_ids))})" if advisory_ids else ""
    return [f"The TDX platform's TCB status is {status}: {reason}{advisories}."]


def run_dcap_qvl(quote: bytes, collateral: Any, root_ca_der: bytes, now: datetime) -> DcapOutcome:
    """Run dcap-qvl's verification and turn its answer or refusal into a DcapOutcome."""
    try:
        verified = dcap_qvl.verify_with_root_ca(quote, collateral, root_ca_der,
                                                int(now.timestamp()))
    except (ValueError, TypeError, RuntimeError) as exc:  # ValueError is documented
        message = str(exc)
        check, sentence = _classify(message)
        return DcapOutcome(failed=check, failure=sentence,
                           details={"dcap_qvl_error": " ".join(message.split())})
    summary = json.loads(verified.to_json())
    body = summary.get("report", {})
    td10 = body.get("TD10") if isinstance(body, dict) else None
    return DcapOutcome(
        status=str(verified.status),
        advisory_ids=tuple(str(a) for a in verified.advisory_ids),
        report=None if not isinstance(td10, dict) else {k: str(v) for k, v in td10.items()},
        details={k: summary[k] for k in ("qe_status", "platform_status") if k in summary},
    )


def _classify(message: str) -> tuple[Check, str]:
    for needle, check, sentence in _DCAP_FAILURES:
        if needle in message:
            return check, sentence
    first = message.strip().splitlines()[0] if message.strip() else "no reason given"
    return "other", f"dcap-qvl refused the TDX quote: {first}."


def tdx_verdict(quote: TdxQuote, outcome: DcapOutcome, *, allow_debug: bool = False,
                accepted_tcb_statuses: Collection[str] = ACCEPTED_TCB_STATUSES,
                expected_rtmrs: Mapping[int, str] | None = None) -> PlatformVerdict:
    """Combine the parsed quote, dcap-qvl's outcome and Hushbrief's policy into a verdict."""
    report = quote.report
    attributes = report.td_attributes
    errors: list[str] = []
    chain_valid: bool | None = None
    signature_valid: bool | None = None
    tcb: dict[str, Any] | None = None

    if outcome.failed is None and outcome.status is not None:
        chain_valid = signature_valid = True
        ours = td_report_fields(report)
        if outcome.report is None or any(outcome.report.get(k) != v for k, v in ours.items()):
            errors.append("dcap-qvl verified a different TD report than the one parsed here.")
            signature_valid = False
        tcb = {"status": outcome.status, "advisory_ids": list(outcome.advisory_ids),
               "tee_tcb_svn": report.tee_tcb_svn.hex(), **outcome.details}
        errors.extend(tcb_status_errors(outcome.status, outcome.advisory_ids,
                                        accepted=accepted_tcb_statuses))
    else:
        if outcome.failed == "chain":
            chain_valid = False
        elif outcome.failed == "signature":
            signature_valid = False
        # dcap-qvl's own debug refusal repeats what td_attribute_errors says below.
        if outcome.failed != "debug" or not attributes.debug:
            errors.append(outcome.failure or "dcap-qvl refused the TDX quote.")

    errors.extend(td_attribute_errors(attributes, allow_debug=allow_debug))
    for index, want in sorted((expected_rtmrs or {}).items()):
        have = report.rtmrs[index].hex() if 0 <= index < len(report.rtmrs) else None
        if have != want.strip().lower():
            errors.append(f"RTMR{index} is {have}, not the expected {want.lower()}.")

    details: dict[str, Any] = {
        "mr_td": report.mr_td.hex(),
        **{f"rtmr{i}": rtmr.hex() for i, rtmr in enumerate(report.rtmrs)},
        "td_attributes": attributes.hex(), "td_attribute_flags": attributes.names(),
        "xfam": report.xfam.hex(), "mr_seam": report.mr_seam.hex(),
        "mr_signer_seam": report.mr_signer_seam.hex(),
        "seam_attributes": report.seam_attributes.hex(),
        "mr_config_id": report.mr_config_id.hex(), "mr_owner": report.mr_owner.hex(),
        "mr_owner_config": report.mr_owner_config.hex(),
        "tee_tcb_svn": report.tee_tcb_svn.hex(),
        **{k: v for k, v in outcome.details.items() if k == "dcap_qvl_error"},
    }
    return PlatformVerdict(
        platform=PLATFORM, chain_valid=chain_valid, signature_valid=signature_valid,
        measurement=report.measurement(), report_data=report.report_data,
        debug=attributes.debug, tcb=tcb, errors=tuple(errors), details=details,
    )


def verify_tdx(
    quote: bytes, *, collateral: Mapping[str, Any], now: datetime,
    root_ca_der: bytes | None = None, allow_debug: bool = False,
    accepted_tcb_statuses: Collection[str] = ACCEPTED_TCB_STATUSES,
    expected_rtmrs: Mapping[int, str] | None = None,
) -> PlatformVerdict:
    """Verify a TDX quote offline at ``now`` (timezone-aware) with the bundle's collateral.

    ``collateral`` is ``endorsements["collateral"]``. ``root_ca_der`` replaces the
    pinned Intel SGX Root CA (tests only). ``allow_debug`` silences the DEBUG error; a
    debug verdict is never ``ok``.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    root = intel_sgx_root_ca() if root_ca_der is None else root_ca_der
    try:
        parsed = parse_tdx_quote(quote)
    except TdxFormatError as exc:
        return PlatformVerdict(platform=PLATFORM, errors=(str(exc),))
    try:
        qvl_collateral = collateral_from_json(collateral)
    except TdxCollateralError as exc:
        outcome = DcapOutcome(failed="chain", failure=str(exc))
    else:
        outcome = run_dcap_qvl(bytes(quote), qvl_collateral, root, now)
    return tdx_verdict(parsed, outcome, allow_debug=allow_debug,
                       accepted_tcb_statuses=accepted_tcb_statuses,
                       expected_rtmrs=expected_rtmrs)
