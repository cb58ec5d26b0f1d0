"""Intel TDX: the quote parser and the offline verifier (dcap-qvl with the pinned Intel root).

The sample (tests/data/evidence/tdx, from Phala-Network/dcap-qvl, MIT) is a real
version-4 quote with the collateral fetched for it in June 2025; dcap-qvl accepts
it at times between 2025-06-20 and 2025-07-19 and, with today's clock, refuses it
for an expired CRL. The Intel SGX Root CA beside it is the copy the PyPI package
tinfoil ships (Apache-2.0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dcap_qvl  # type: ignore[import-untyped,unused-ignore]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from hushbrief.bot.attestation.tdx import (
    ACCEPTED_TCB_STATUSES,
    INTEL_SGX_ROOT_CA_SHA256,
    DcapOutcome,
    TdxCollateralError,
    collateral_from_json,
    intel_sgx_root_ca,
    run_dcap_qvl,
    tcb_status_errors,
    td_attribute_errors,
    td_report_fields,
    tdx_verdict,
    verify_tdx,
)
from hushbrief.evidence.tdx import (
    SIGNED_SIZE,
    TdAttributes,
    TdxFormatError,
    TdxQuote,
    parse_tdx_quote,
)

DATA = Path(__file__).parent / "data" / "evidence" / "tdx"
QUOTE = (DATA / "tdx_quote").read_bytes()
COLLATERAL: dict[str, Any] = json.loads((DATA / "tdx_quote_collateral.json").read_text())
ROOT_PEM = (DATA / "intel_sgx_root_ca.pem").read_bytes()
INSIDE = datetime(2025, 7, 1, tzinfo=UTC)
MRTD = ("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a"
        "3520c942a604a407de03ae6dc5f87f27428b2538873118b7")
REPORT_DATA = ("9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
               "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20")
RTMR0 = ("44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b"
         "8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0")
TD_ATTRIBUTES_OFFSET = 48 + 16 + 48 + 48 + 8
EXPIRED_CRL = "The TDX collateral is not valid at the given time (expired CRL)."


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= mask
    return bytes(changed)


# --- parsing ------------------------------------------------------------------------

def test_the_sample_parses_as_a_version_4_tdx_quote() -> None:
    quote = parse_tdx_quote(QUOTE)
    assert (quote.version, quote.tee_type, quote.attestation_key_type) == (4, 0x81, 2)
    assert quote.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"  # Intel's QE
    report = quote.report
    assert report.mr_td.hex() == MRTD
    assert report.report_data.hex() == REPORT_DATA
    assert report.rtmrs[0].hex() == RTMR0
    assert report.rtmrs[3] == b"\0" * 48
    assert report.tee_tcb_svn.hex() == "06010300000000000000000000000000"
    assert report.td_attributes.hex() == "0000001000000000"
    assert report.td_attributes.names() == ["SEPT_VE_DISABLE"]
    assert not report.td_attributes.debug
    assert quote.signed == QUOTE[:SIGNED_SIZE]
    assert len(quote.signature_data) == 4300  # followed by 70 bytes of zero padding


def test_the_parser_agrees_with_dcap_qvl() -> None:
    theirs = dcap_qvl.parse_quote(QUOTE).report
    ours = td_report_fields(parse_tdx_quote(QUOTE).report)
    for name, value in ours.items():
        assert getattr(theirs, name).hex() == value, name


@pytest.mark.parametrize(("quote", "message"), [
    (QUOTE[:600], "too short"),
    (b"\x05\x00" + QUOTE[2:], "version 5; only version 4"),
    (QUOTE[:4] + b"\0\0\0\0" + QUOTE[8:], "TEE type is 0x0, not TDX"),
    (QUOTE[:2] + b"\x03\x00" + QUOTE[4:], "attestation key type is 3"),
    (QUOTE[:SIGNED_SIZE] + (10_000).to_bytes(4, "little") + QUOTE[SIGNED_SIZE + 4:],
     "runs past its end"),
    (QUOTE + b"\x01", "non-zero bytes after its signature data"),
    (QUOTE + b"\0" * 65536, "at most 65536"),
])
def test_malformed_quotes_are_refused_with_a_sentence(quote: bytes, message: str) -> None:
    with pytest.raises(TdxFormatError, match=message):
        parse_tdx_quote(quote)
    verdict = verify_tdx(quote, collateral=COLLATERAL, now=INSIDE)
    assert len(verdict.errors) == 1 and message in verdict.errors[0]
    assert not verdict.ok


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1000))
def test_the_parser_only_ever_raises_tdx_format_error(data: bytes) -> None:
    with contextlib.suppress(TdxFormatError):
        parse_tdx_quote(data)


# --- verification through dcap-qvl --------------------------------------------------

def test_the_sample_verifies_inside_the_collateral_window() -> None:
    verdict = verify_tdx(QUOTE, collateral=COLLATERAL, now=INSIDE)
    assert verdict.ok, verdict.errors
    assert verdict.platform == "tdx"
    assert verdict.chain_valid is True and verdict.signature_valid is True
    # The measurement pins MRTD and RTMR0-2 (hushbrief.evidence.tdx.TdReport.measurement).
    report = parse_tdx_quote(QUOTE).report
    assert report.mr_td.hex() == MRTD
    expected = hashlib.sha384(b"hushbrief tdx measurement v1\0" + report.mr_td
                              + b"".join(report.rtmrs[:3])).hexdigest()
    assert verdict.measurement == expected
    assert verdict.report_data is not None and verdict.report_data.hex() == REPORT_DATA
    assert verdict.debug is False
    assert verdict.tcb is not None and verdict.tcb["status"] == "UpToDate"
    assert verdict.tcb["advisory_ids"] == []
    assert verdict.details["rtmr0"] == RTMR0
    assert verdict.details["td_attribute_flags"] == ["SEPT_VE_DISABLE"]


@pytest.mark.parametrize("day", [datetime(2025, 6, 20, tzinfo=UTC),
                                 datetime(2025, 7, 19, tzinfo=UTC)])
def test_the_window_edges(day: datetime) -> None:
    assert verify_tdx(QUOTE, collateral=COLLATERAL, now=day).ok


def test_the_sample_fails_with_todays_clock() -> None:
    verdict = verify_tdx(QUOTE, collateral=COLLATERAL, now=datetime.now(UTC))
    assert verdict.errors == (EXPIRED_CRL,)
    assert verdict.chain_valid is False
    assert verdict.signature_valid is None  # never reached
    assert "CrlExpired" in verdict.details["dcap_qvl_error"]
    assert not verdict.ok


def test_the_sample_fails_before_the_collateral_was_issued() -> None:
    verdict = verify_tdx(QUOTE, collateral=COLLATERAL, now=datetime(2025, 6, 1, tzinfo=UTC))
    assert verdict.errors == ("The TDX collateral is not valid at the given time "
                              "(issued after it).",)
    assert verdict.chain_valid is False


def test_the_sample_fails_after_the_tcb_info_expired() -> None:
    verdict = verify_tdx(QUOTE, collateral=COLLATERAL, now=datetime(2025, 7, 25, tzinfo=UTC))
    assert verdict.errors == ("The TDX collateral is not valid at the given time "
                              "(expired TCB info).",)


@pytest.mark.parametrize("offset", [
    48 + 10,                  # TEE_TCB_SVN
    48 + 16 + 48 + 48 + 20,   # MRTD
    48 + 520,                 # REPORTDATA
    30,                       # user data in the header
])
def test_a_flipped_byte_in_the_signed_part_fails(offset: int) -> None:
    verdict = verify_tdx(_flip(QUOTE, offset), collateral=COLLATERAL, now=INSIDE)
    assert verdict.signature_valid is False
    assert "The TDX quote's signature over its TD report does not verify." in verdict.errors
    assert not verdict.ok


def test_a_foreign_qe_vendor_is_refused() -> None:
    verdict = verify_tdx(_flip(QUOTE, 12), collateral=COLLATERAL, now=INSIDE)
    assert verdict.errors == ("The TDX quote does not come from Intel's quoting enclave "
                              "(unknown QE vendor ID).",)


def test_a_changed_attestation_key_fails() -> None:
    # The attestation key sits after the 64-byte quote signature; the QE report hashes it.
    verdict = verify_tdx(_flip(QUOTE, SIGNED_SIZE + 4 + 64 + 5), collateral=COLLATERAL,
                         now=INSIDE)
    assert verdict.signature_valid is False
    assert not verdict.ok


def test_a_wrong_root_fails() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.load_pem_x509_certificate(ROOT_PEM).subject  # a look-alike by name
    fake = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime(2018, 1, 1)).not_valid_after(datetime(2049, 1, 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(key, hashes.SHA256()))
    verdict = verify_tdx(QUOTE, collateral=COLLATERAL, now=INSIDE,
                         root_ca_der=fake.public_bytes(Encoding.DER))
    assert verdict.chain_valid is False
    assert verdict.errors == ("The TDX collateral is not signed under the pinned Intel SGX "
                              "Root CA.",)


def test_the_packaged_root_is_the_sample_root_and_pinned() -> None:
    der = x509.load_pem_x509_certificate(ROOT_PEM).public_bytes(Encoding.DER)
    assert intel_sgx_root_ca() == der
    assert hashlib.sha256(der).hexdigest() == INTEL_SGX_ROOT_CA_SHA256


def test_the_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_tdx(QUOTE, collateral=COLLATERAL, now=datetime(2025, 7, 1))


def test_expected_rtmrs_must_match() -> None:
    assert verify_tdx(QUOTE, collateral=COLLATERAL, now=INSIDE,
                      expected_rtmrs={0: RTMR0, 3: "00" * 48}).ok
    verdict = verify_tdx(QUOTE, collateral=COLLATERAL, now=INSIDE,
                         expected_rtmrs={1: "ab" * 48})
    assert len(verdict.errors) == 1 and verdict.errors[0].startswith("RTMR1 is 0084452c")


# --- collateral -----------------------------------------------------------------------

def test_collateral_json_converts_for_dcap_qvl() -> None:
    converted = collateral_from_json(COLLATERAL)
    assert converted.pck_crl == bytes.fromhex(COLLATERAL["pck_crl"])
    assert converted.tcb_info == COLLATERAL["tcb_info"]


@pytest.mark.parametrize(("change", "message"), [
    ({"pck_crl": None}, "lacks pck_crl"),
    ({"tcb_info_signature": "not hex"}, "tcb_info_signature is not hex"),
    ({"qe_identity": 7}, "lacks qe_identity"),
])
def test_bad_collateral_is_refused_with_a_sentence(change: dict[str, Any], message: str) -> None:
    collateral = {**COLLATERAL, **change}
    with pytest.raises(TdxCollateralError, match=message):
        collateral_from_json(collateral)
    verdict = verify_tdx(QUOTE, collateral=collateral, now=INSIDE)
    assert verdict.chain_valid is False
    assert any(message in e for e in verdict.errors)


def test_a_tampered_tcb_info_fails() -> None:
    # One added space: the same TCB info to a JSON reader, different bytes to a signature.
    tcb_info = COLLATERAL["tcb_info"].replace('"tcbEvaluationDataNumber":',
                                              '"tcbEvaluationDataNumber": ')
    verdict = verify_tdx(QUOTE, collateral={**COLLATERAL, "tcb_info": tcb_info}, now=INSIDE)
    assert verdict.chain_valid is False
    assert verdict.errors == ("The TDX collateral's TCB info is not signed by Intel.",)


# --- policy: debug attributes and TCB status ------------------------------------------

def test_the_debug_bit_is_refused_unless_allowed() -> None:
    debug = TdAttributes(TdAttributes.DEBUG | TdAttributes.SEPT_VE_DISABLE)
    assert debug.debug and debug.names() == ["DEBUG", "SEPT_VE_DISABLE"]
    assert td_attribute_errors(debug) == [
        "The TD runs in debug mode (TDATTRIBUTES.DEBUG); the host can read its memory."]
    assert td_attribute_errors(debug, allow_debug=True) == []
    assert td_attribute_errors(TdAttributes(TdAttributes.SEPT_VE_DISABLE)) == []


@pytest.mark.parametrize("bit", range(1, 8))
def test_other_td_under_debug_bits_are_always_refused(bit: int) -> None:
    errors = td_attribute_errors(TdAttributes(1 << bit), allow_debug=True)
    assert len(errors) == 1 and "TD-under-debug attribute bits" in errors[0]


def test_td_attributes_read_little_endian() -> None:
    raw = bytes.fromhex("0100001000000080")
    attributes = TdAttributes.from_bytes(raw)
    assert attributes.debug
    assert attributes.names() == ["DEBUG", "SEPT_VE_DISABLE", "PERFMON"]
    assert attributes.hex() == raw.hex()


def _with_attributes(quote: TdxQuote, value: int) -> TdxQuote:
    report = dataclasses.replace(quote.report, td_attributes=TdAttributes(value))
    return dataclasses.replace(quote, report=report)


def _accepted(quote: TdxQuote, status: str = "UpToDate",
              advisories: tuple[str, ...] = ()) -> DcapOutcome:
    """What dcap-qvl would say had it verified ``quote`` (no debug quote can be signed)."""
    return DcapOutcome(status=status, advisory_ids=advisories,
                       report=td_report_fields(quote.report))


def test_a_verified_debug_td_is_refused_and_never_ok() -> None:
    debug = _with_attributes(parse_tdx_quote(QUOTE), TdAttributes.DEBUG)
    verdict = tdx_verdict(debug, _accepted(debug))
    assert verdict.chain_valid is True and verdict.signature_valid is True
    assert verdict.debug is True
    assert verdict.errors == (
        "The TD runs in debug mode (TDATTRIBUTES.DEBUG); the host can read its memory.",)
    allowed = tdx_verdict(debug, _accepted(debug), allow_debug=True)
    assert allowed.errors == () and allowed.debug is True
    assert not allowed.ok


def test_dcap_qvls_own_debug_refusal_is_reported_once() -> None:
    debug = _with_attributes(parse_tdx_quote(QUOTE), TdAttributes.DEBUG)
    outcome = DcapOutcome(failed="debug", failure="The TD runs in debug mode "
                          "(TDATTRIBUTES.DEBUG); the host can read its memory.")
    assert len(tdx_verdict(debug, outcome).errors) == 1


def test_the_debug_bit_in_a_real_quote_breaks_its_signature() -> None:
    verdict = verify_tdx(_flip(QUOTE, TD_ATTRIBUTES_OFFSET), collateral=COLLATERAL, now=INSIDE)
    assert verdict.debug is True
    assert verdict.signature_valid is False
    assert len(verdict.errors) == 2


def test_a_parser_disagreement_is_an_error() -> None:
    real = parse_tdx_quote(QUOTE)
    outcome = run_dcap_qvl(QUOTE, collateral_from_json(COLLATERAL), intel_sgx_root_ca(), INSIDE)
    assert outcome.status == "UpToDate" and outcome.report == td_report_fields(real.report)
    other = dataclasses.replace(real, report=dataclasses.replace(
        real.report, mr_td=b"\1" * 48))
    verdict = tdx_verdict(other, outcome)
    assert "dcap-qvl verified a different TD report than the one parsed here." in verdict.errors
    assert verdict.signature_valid is False


@pytest.mark.parametrize("status", sorted(ACCEPTED_TCB_STATUSES))
def test_accepted_tcb_statuses(status: str) -> None:
    quote = parse_tdx_quote(QUOTE)
    assert tcb_status_errors(status) == []
    assert tdx_verdict(quote, _accepted(quote, status, ("INTEL-SA-00837",))).ok


@pytest.mark.parametrize("status", [
    "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked", "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded", "TDRelaunchAdvised", "SomethingNew",
])
def test_refused_tcb_statuses(status: str) -> None:
    quote = parse_tdx_quote(QUOTE)
    verdict = tdx_verdict(quote, _accepted(quote, status, ("INTEL-SA-00837",)))
    assert not verdict.ok
    assert verdict.tcb is not None and verdict.tcb["status"] == status
    assert len(verdict.errors) == 1
    assert verdict.errors[0].startswith(f"The TDX platform's TCB status is {status}: ")
    assert verdict.errors[0].endswith("(advisories: INTEL-SA-00837).")


def test_the_accepted_statuses_can_be_narrowed() -> None:
    quote = parse_tdx_quote(QUOTE)
    outcome = _accepted(quote, "SWHardeningNeeded")
    assert not tdx_verdict(quote, outcome, accepted_tcb_statuses={"UpToDate"}).ok


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=SIGNED_SIZE - 1), st.integers(1, 255))
def test_no_change_to_the_signed_part_verifies(offset: int, mask: int) -> None:
    verdict = verify_tdx(_flip(QUOTE, offset, mask), collateral=COLLATERAL, now=INSIDE)
    assert not verdict.ok

