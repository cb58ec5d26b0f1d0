"""AWS Nitro Enclaves: the document parser, the offline verifier, and the backend's NSM provider.

The real sample (tests/data/evidence/nitro, from blocky/nitrite, MIT) is an untagged
COSE_Sign1 signed in September 2024 under the AWS Nitro Root-G1; its certificates
have long expired, so it verifies only at its own timestamp. Documents the tests
need that AWS never signed (64-byte user_data, debug PCRs, broken chains) are made
under a throwaway P-384 hierarchy and verified against that root instead.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from hushbrief.backend.platforms.nitro import (
    NSM_IOCTL_RAW,
    LinuxNsmDevice,
    NitroEvidenceProvider,
    NsmError,
    attestation_request,
    document_from_response,
)
from hushbrief.bot.attestation.nitro import AWS_NITRO_ROOT_G1_SHA256, aws_nitro_root, verify_nitro
from hushbrief.evidence.bundle import EvidenceBundle, ReleaseRecord, TransparencyProof, binding
from hushbrief.evidence.nitro import (
    NitroFormatError,
    parse_attestation_document,
    sig_structure,
)

DATA = Path(__file__).parent / "data" / "evidence" / "nitro"
SAMPLE = base64.b64decode((DATA / "nitro_attestation.b64").read_text())
SAMPLE_ROOT_PEM = (DATA / "root.pem").read_bytes()
SAMPLE_PCR0 = ("e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9"
               "f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a")
SAMPLE_PCR1 = ("0343b056cd8485ca7890ddd833476d78460aed2aa161548e"
               "4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa")
SAMPLE_MODULE_ID = "i-0a22e5c5f24d22174-enc0191cceb4289903f"
SAMPLE_TIME = datetime(2024, 9, 7, 14, 37, 39, 545000, tzinfo=UTC)
USER_DATA_ERROR = ("The Nitro document's user_data holds 1024 bytes, not the 64-byte "
                   "binding of the key configurations.")


# --- the real sample ------------------------------------------------------------------

def _reencode(cose: bytes, *, payload: dict[str, Any] | None = None,
              signature: bytes | None = None) -> bytes:
    """The sample with its payload and/or signature replaced, everything else kept."""
    protected, unprotected, old_payload, old_signature = cbor2.loads(cose)
    new_payload = old_payload if payload is None else cbor2.dumps(payload)
    return cbor2.dumps([protected, unprotected, new_payload,
                        old_signature if signature is None else signature])


def _sample_payload() -> dict[str, Any]:
    payload: dict[str, Any] = cbor2.loads(cbor2.loads(SAMPLE)[2])
    return payload


def test_the_sample_parses_as_an_untagged_es384_cose_sign1() -> None:
    doc = parse_attestation_document(SAMPLE)
    assert not doc.tagged
    assert doc.module_id == SAMPLE_MODULE_ID
    assert doc.digest == "SHA384"
    assert doc.timestamp == SAMPLE_TIME
    assert doc.pcrs[0].hex() == SAMPLE_PCR0
    assert sorted(doc.pcrs) == list(range(16))
    assert len(doc.cabundle) == 4
    assert len(doc.signature) == 96
    assert doc.user_data == b"\x01" * 1024
    assert doc.sig_structure() == cbor2.dumps(["Signature1", doc.protected, b"", doc.payload])


def test_the_sample_verifies_at_its_own_timestamp() -> None:
    verdict = verify_nitro(SAMPLE)
    assert verdict.platform == "nitro"
    assert verdict.chain_valid is True
    assert verdict.signature_valid is True
    assert verdict.debug is False
    assert verdict.measurement == SAMPLE_PCR0
    assert verdict.tcb is None
    assert verdict.details["module_id"] == SAMPLE_MODULE_ID
    assert verdict.details["pcr0"] == SAMPLE_PCR0
    assert verdict.details["pcr1"] == SAMPLE_PCR1
    assert verdict.details["pcr8"] == "00" * 48
    assert verdict.details["timestamp"] == 1725719859545
    assert verdict.details["digest"] == "SHA384"
    # The sample's user_data is 1024 bytes of 0x01, not a Hushbrief binding: the
    # evidence itself checks out, but it binds no key configuration.
    assert verdict.report_data is None
    assert verdict.errors == (USER_DATA_ERROR,)
    assert not verdict.ok


def test_the_sample_verifies_at_an_explicit_time_inside_the_leaf_validity() -> None:
    verdict = verify_nitro(SAMPLE, now=SAMPLE_TIME + timedelta(hours=2), root=SAMPLE_ROOT_PEM)
    assert verdict.chain_valid is True and verdict.signature_valid is True
    assert verdict.errors == (USER_DATA_ERROR,)


def test_a_tagged_envelope_verifies_the_same() -> None:
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(SAMPLE)))
    assert parse_attestation_document(tagged).tagged
    verdict = verify_nitro(tagged)
    assert verdict.chain_valid is True and verdict.signature_valid is True


def test_the_packaged_root_is_the_sample_root_and_pinned() -> None:
    der = x509.load_pem_x509_certificate(SAMPLE_ROOT_PEM).public_bytes(Encoding.DER)
    assert aws_nitro_root() == der
    assert parse_attestation_document(SAMPLE).cabundle[0] == der
    assert hashlib.sha256(der).hexdigest() == AWS_NITRO_ROOT_G1_SHA256


def test_a_changed_pcr_breaks_the_signature() -> None:
    payload = _sample_payload()
    pcr1 = bytearray(payload["pcrs"][1])
    pcr1[0] ^= 0x01
    payload["pcrs"][1] = bytes(pcr1)
    verdict = verify_nitro(_reencode(SAMPLE, payload=payload))
    assert verdict.chain_valid is True
    assert verdict.signature_valid is False
    assert "The Nitro document's COSE signature does not verify with the signing " \
           "certificate's key." in verdict.errors
    assert not verdict.ok


def test_a_flipped_signature_byte_fails() -> None:
    signature = bytearray(cbor2.loads(SAMPLE)[3])
    signature[10] ^= 0x80
    verdict = verify_nitro(_reencode(SAMPLE, signature=bytes(signature)))
    assert verdict.signature_valid is False
    assert verdict.chain_valid is True
    assert any("COSE signature does not verify" in e for e in verdict.errors)


def test_verification_long_after_the_certificates_expired_fails() -> None:
    verdict = verify_nitro(SAMPLE, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert verdict.chain_valid is False
    assert verdict.signature_valid is True  # the signature is fine; the time is not
    expired = [e for e in verdict.errors if "expired on" in e]
    # The three intermediates and the signing certificate; the root lives until 2049.
    assert len(expired) == 4
    assert ("The certificate 'i-0a22e5c5f24d22174-enc0191cceb4289903f.us-east-1.aws' "
            "expired on 2024-09-07 17:37:39 UTC, before the verification time "
            "2030-01-01 00:00:00 UTC.") in verdict.errors


def test_verification_before_the_certificates_were_issued_fails() -> None:
    verdict = verify_nitro(SAMPLE, now=datetime(2024, 9, 1, tzinfo=UTC))
    assert verdict.chain_valid is False
    assert any("is not valid until" in e for e in verdict.errors)


def test_the_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_nitro(SAMPLE, now=datetime(2024, 9, 7, 15, 0))


def test_a_wrong_root_fails() -> None:
    intel = (Path(__file__).parent / "data" / "evidence" / "tdx"
             / "intel_sgx_root_ca.pem").read_bytes()
    verdict = verify_nitro(SAMPLE, root=intel)
    assert verdict.chain_valid is False
    assert any(e.startswith("The Nitro CA bundle does not start at the pinned AWS Nitro "
                            "Enclaves root") for e in verdict.errors)


def test_a_look_alike_root_with_the_aws_name_fails() -> None:
    # Same subject as Root-G1, different key: names prove nothing, fingerprints do.
    name = x509.load_pem_x509_certificate(SAMPLE_ROOT_PEM).subject
    fake = _ca(name, ec.generate_private_key(ec.SECP384R1()), None, path_length=None)
    verdict = verify_nitro(SAMPLE, root=fake.cert.public_bytes(Encoding.DER))
    assert verdict.chain_valid is False


def test_expected_pcrs_must_match() -> None:
    good = verify_nitro(SAMPLE, expected_pcrs={0: SAMPLE_PCR0.upper(), 1: SAMPLE_PCR1})
    assert good.errors == (USER_DATA_ERROR,)
    bad = verify_nitro(SAMPLE, expected_pcrs={1: "00" * 48, 20: "11" * 48})
    assert f"PCR1 is {SAMPLE_PCR1}, not the expected {'00' * 48}." in bad.errors
    assert any(e.startswith("The Nitro document has no PCR20") for e in bad.errors)


def test_a_fabricated_document_with_pcr0_zeros_is_reported_as_debug() -> None:
    payload = _sample_payload()
    payload["pcrs"] = {i: b"\0" * 48 for i in payload["pcrs"]}
    verdict = verify_nitro(_reencode(SAMPLE, payload=payload))
    assert verdict.debug is True
    assert verdict.measurement == "00" * 48
    assert verdict.signature_valid is False  # AWS never signed this one
    assert any("debug mode (PCR0 is all zeros)" in e for e in verdict.errors)
    allowed = verify_nitro(_reencode(SAMPLE, payload=payload), allow_debug=True)
    assert allowed.debug is True
    assert not any("debug mode" in e for e in allowed.errors)


# --- strict parsing -----------------------------------------------------------------

def _with_protected(header: dict[int, Any]) -> bytes:
    _, unprotected, payload, signature = cbor2.loads(SAMPLE)
    return cbor2.dumps([cbor2.dumps(header), unprotected, payload, signature])


def _with_payload_field(name: str, value: Any) -> bytes:
    payload = _sample_payload()
    if value is _DELETE:
        del payload[name]
    else:
        payload[name] = value
    return _reencode(SAMPLE, payload=payload)


_DELETE = object()


@pytest.mark.parametrize(("document", "message"), [
    (SAMPLE + b"\0", "preferred CBOR encoding or has trailing bytes"),
    (SAMPLE[:-1], "not well-formed CBOR"),
    (b"", "is 0 bytes"),
    (b"\xa0", "not a four-element COSE_Sign1"),
    (cbor2.dumps(cbor2.CBORTag(98, cbor2.loads(SAMPLE))), "CBOR tag 98"),
    (_with_protected({1: -7}), "algorithm is -7, not ES384"),
    (_with_protected({1: -35, 2: [1]}), "critical parameters"),
    (_reencode(SAMPLE, signature=b"\0" * 64), "must be 96 bytes"),
    (_with_payload_field("digest", "SHA256"), "digest is 'SHA256'"),
    (_with_payload_field("module_id", ""), "module_id must be a non-empty"),
    (_with_payload_field("timestamp", -1), "timestamp must be a positive"),
    (_with_payload_field("timestamp", _DELETE), "lacks timestamp"),
    (_with_payload_field("timestamp", 10**17), "before the year 10000"),
    (_with_payload_field("cabundle", []), "cabundle must be a non-empty array"),
    (_with_payload_field("pcrs", {0: b"\0" * 47}), "PCR0 must be a byte string of 32, 48 or 64"),
    (_with_payload_field("pcrs", {32: b"\0" * 48}), "invalid PCR index 32"),
    (_with_payload_field("user_data", b"\0" * 1025), "user_data must be a byte string of 0 to"),
    (_with_payload_field("extra", 1), "unknown field 'extra'"),
])
def test_malformed_documents_are_refused_with_a_sentence(document: bytes, message: str) -> None:
    with pytest.raises(NitroFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_attestation_document(document)
    verdict = verify_nitro(document)
    assert len(verdict.errors) == 1 and message.split("(")[0] in verdict.errors[0]
    assert verdict.chain_valid is None and verdict.signature_valid is None


def test_duplicate_map_keys_and_non_preferred_integers_are_refused() -> None:
    protected, unprotected, payload, signature = cbor2.loads(SAMPLE)
    # Append a second "digest" entry by hand: the map header goes from 9 to 10 pairs.
    assert payload[0] == 0xA9
    duplicated = b"\xaa" + payload[1:] + cbor2.dumps("digest") + cbor2.dumps("SHA384")
    with pytest.raises(NitroFormatError, match="not well-formed CBOR"):
        parse_attestation_document(cbor2.dumps([protected, unprotected, duplicated, signature]))
    # The protected header {1: -35} with -35 written in a needlessly long form.
    long_form = b"\xa1\x01\x39\x00\x22"
    assert cbor2.loads(long_form) == {1: -35}
    with pytest.raises(NitroFormatError, match="preferred CBOR encoding"):
        parse_attestation_document(cbor2.dumps([long_form, unprotected, payload, signature]))


def test_null_optional_fields_are_absent() -> None:
    payload = _sample_payload()
    payload.update(public_key=None, user_data=None, nonce=None)
    doc = parse_attestation_document(_reencode(SAMPLE, payload=payload))
    assert doc.public_key is None and doc.user_data is None and doc.nonce is None
    assert ("The Nitro document's user_data holds nothing, not the 64-byte binding of the "
            "key configurations.") in verify_nitro(_reencode(SAMPLE, payload=payload)).errors


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_the_parser_only_ever_raises_nitro_format_error(data: bytes) -> None:
    with contextlib.suppress(NitroFormatError):
        parse_attestation_document(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=len(SAMPLE) - 1), st.integers(1, 255))
def test_no_single_byte_change_to_the_sample_still_verifies(offset: int, mask: int) -> None:
    changed = bytearray(SAMPLE)
    changed[offset] ^= mask
    verdict = verify_nitro(bytes(changed))
    assert not (verdict.chain_valid and verdict.signature_valid
                and verdict.measurement == SAMPLE_PCR0
                and verdict.details.get("module_id") == SAMPLE_MODULE_ID
                and verdict.errors == (USER_DATA_ERROR,))


# --- a throwaway hierarchy for documents AWS never signed ---------------------------

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: _Issued | None, *,
        path_length: int | None, ca: bool = True, not_after: datetime | None = None,
        cert_sign: bool = True) -> _Issued:
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(subject if issuer is None else issuer.cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(T0 - timedelta(days=1))
               .not_valid_after(not_after or T0 + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca
                                                    else None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=ca and cert_sign,
                   crl_sign=ca and cert_sign, encipher_only=False, decipher_only=False),
                   critical=True))
    signer = key if issuer is None else issuer.key
    return _Issued(builder.sign(signer, hashes.SHA384()), key)


@dataclass
class FakePki:
    root: _Issued
    intermediate: _Issued
    leaf: _Issued

    @property
    def root_der(self) -> bytes:
        return self.root.cert.public_bytes(Encoding.DER)

    def document(self, *, user_data: bytes | None, pcr0: bytes = b"\x5a" * 48,
                 timestamp: datetime = T0, tagged: bool = False,
                 cabundle: list[bytes] | None = None) -> bytes:
        payload = cbor2.dumps({
            "module_id": "i-test-enc0123", "digest": "SHA384",
            "timestamp": int(timestamp.timestamp() * 1000),
            "pcrs": {0: pcr0, 1: b"\x11" * 48, 2: b"\x22" * 48, 8: b"\0" * 48},
            "certificate": self.leaf.cert.public_bytes(Encoding.DER),
            "cabundle": cabundle if cabundle is not None else [
                self.root_der, self.intermediate.cert.public_bytes(Encoding.DER)],
            "public_key": None, "user_data": user_data, "nonce": None,
        })
        protected = cbor2.dumps({1: -35})
        der = self.leaf.key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        envelope = [protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")]
        return cbor2.dumps(cbor2.CBORTag(18, envelope) if tagged else envelope)


def _pki(**leaf_options: Any) -> FakePki:
    root = _ca(_name("test.nitro-enclaves"), ec.generate_private_key(ec.SECP384R1()), None,
               path_length=None)
    intermediate = _ca(_name("zonal.test"), ec.generate_private_key(ec.SECP384R1()), root,
                       path_length=0)
    leaf = _ca(_name("i-test-enc0123"), leaf_options.pop("key", None)
               or ec.generate_private_key(ec.SECP384R1()), intermediate,
               path_length=None, ca=False, not_after=T0 + timedelta(hours=3), **leaf_options)
    return FakePki(root, intermediate, leaf)


@pytest.fixture(scope="module")
def pki() -> FakePki:
    return _pki()


def test_a_document_binding_64_bytes_under_a_good_chain_is_ok(pki: FakePki) -> None:
    bound = binding(b"key configurations")
    verdict = verify_nitro(pki.document(user_data=bound, tagged=True), root=pki.root_der)
    assert verdict.ok, verdict.errors
    assert verdict.report_data == bound
    assert verdict.measurement == "5a" * 48
    # The same document is refused under the pinned AWS root.
    assert verify_nitro(pki.document(user_data=bound)).chain_valid is False


def test_a_properly_signed_debug_document_is_never_ok(pki: FakePki) -> None:
    document = pki.document(user_data=binding(b"k"), pcr0=b"\0" * 48)
    refused = verify_nitro(document, root=pki.root_der)
    assert refused.debug is True and refused.signature_valid is True
    assert refused.errors == ("The Nitro enclave runs in debug mode (PCR0 is all zeros): "
                              "nothing vouches for its code, and its console is open to the "
                              "parent instance.",)
    allowed = verify_nitro(document, root=pki.root_der, allow_debug=True)
    assert allowed.errors == ()
    assert not allowed.ok  # allow_debug silences the sentence, never the fact


def test_path_length_and_ca_flags_are_enforced(pki: FakePki) -> None:
    # The intermediate allows no CA below it; put a second intermediate under it.
    extra_key = ec.generate_private_key(ec.SECP384R1())
    extra = _ca(_name("extra"), extra_key, pki.intermediate, path_length=None)
    leaf = _ca(_name("i-test-enc0123"), ec.generate_private_key(ec.SECP384R1()), extra,
               path_length=None, ca=False, not_after=T0 + timedelta(hours=3))
    long_chain = FakePki(pki.root, pki.intermediate, leaf)
    document = long_chain.document(user_data=None, cabundle=[
        pki.root_der, pki.intermediate.cert.public_bytes(Encoding.DER),
        extra.cert.public_bytes(Encoding.DER)])
    verdict = verify_nitro(document, root=pki.root_der)
    assert verdict.chain_valid is False
    assert "The certificate 'zonal.test' allows 0 CAs below it, but the bundle has 1." \
        in verdict.errors


def test_a_signing_certificate_that_may_not_sign_is_refused() -> None:
    pki = _pki()
    # A leaf marked as a CA: not an end-entity signing certificate.
    bad = _ca(_name("i-test-enc0123"), pki.leaf.key, pki.intermediate, path_length=None)
    verdict = verify_nitro(FakePki(pki.root, pki.intermediate, bad).document(user_data=None),
                           root=pki.root_der)
    assert verdict.chain_valid is False
    assert "The signing certificate 'i-test-enc0123' is a CA certificate." in verdict.errors


def test_a_bundle_out_of_order_breaks_the_chain(pki: FakePki) -> None:
    document = pki.document(user_data=None, cabundle=[
        pki.root_der, pki.root_der])
    verdict = verify_nitro(document, root=pki.root_der)
    assert verdict.chain_valid is False
    assert "The certificate 'i-test-enc0123' is not signed by 'test.nitro-enclaves', the " \
           "certificate before it in the bundle." in verdict.errors


# --- the backend's evidence source ----------------------------------------------------

@dataclass
class FakeNsm:
    """An NSM that signs what it is asked under the test hierarchy, and records requests."""

    pki: FakePki
    clock: list[datetime] = field(default_factory=lambda: [T0])
    requests: list[dict[str, Any]] = field(default_factory=list)
    pcr0: bytes = b"\x5a" * 48

    def request(self, message: bytes) -> bytes:
        decoded = cbor2.loads(message)
        self.requests.append(decoded)
        user_data = decoded["Attestation"]["user_data"]
        document = self.pki.document(user_data=user_data, pcr0=self.pcr0,
                                     timestamp=self.clock[0])
        return cbor2.dumps({"Attestation": {"document": document}})


@dataclass
class RecordedNsm:
    """Returns the recorded AWS sample whatever it is asked."""

    def request(self, message: bytes) -> bytes:
        return cbor2.dumps({"Attestation": {"document": SAMPLE}})


def test_the_provider_binds_the_key_configs_in_user_data(pki: FakePki) -> None:
    nsm = FakeNsm(pki)
    provider = NitroEvidenceProvider(nsm)
    key_configs = b"\x00\x29 some ohttp key configs"
    now = T0.timestamp()
    doc = provider.bundle(key_configs, now=now, expires_at=now + 600)
    assert nsm.requests == [{"Attestation": {"user_data": binding(key_configs),
                                             "nonce": None, "public_key": None}}]
    bundle = EvidenceBundle.from_json(json.loads(json.dumps(doc)))
    assert bundle.platform == "nitro"
    assert bundle.key_configs == key_configs
    assert bundle.endorsements == {}
    assert bundle.measurement == provider.measurement == "5a" * 48
    assert (bundle.issued_at, bundle.expires_at) == (int(now), int(now) + 600)
    assert bundle.transparency is None
    verdict = verify_nitro(bundle.evidence, now=T0, root=pki.root_der)
    assert verdict.ok, verdict.errors
    assert verdict.report_data == binding(key_configs)
    assert verdict.measurement == bundle.measurement


def test_the_provider_caches_per_key_configs_and_refreshes_before_expiry(pki: FakePki) -> None:
    nsm = FakeNsm(pki)
    provider = NitroEvidenceProvider(nsm, cache_size=2)
    now = T0.timestamp()
    first = provider.bundle(b"a", now=now, expires_at=now + 60)
    again = provider.bundle(b"a", now=now + 30, expires_at=now + 90)
    assert len(nsm.requests) == 1 and first["evidence"] == again["evidence"]
    provider.bundle(b"b", now=now, expires_at=now + 60)
    provider.bundle(b"c", now=now, expires_at=now + 60)
    provider.bundle(b"a", now=now, expires_at=now + 60)  # evicted by b and c
    assert len(nsm.requests) == 4
    # The signing certificate lives 3 h: within 15 minutes of that, fetch anew.
    late = now + 3 * 3600 - 60
    provider.bundle(b"a", now=late, expires_at=late + 600)
    assert len(nsm.requests) == 5


def test_a_bundle_never_outlives_the_documents_certificate(pki: FakePki) -> None:
    provider = NitroEvidenceProvider(FakeNsm(pki))
    now = T0.timestamp()
    doc = provider.bundle(b"k", now=now, expires_at=now + 86400)
    assert doc["expires_at"] == int((T0 + timedelta(hours=3)).timestamp())


def test_the_measurement_comes_from_a_document_without_user_data(pki: FakePki) -> None:
    nsm = FakeNsm(pki)
    provider = NitroEvidenceProvider(nsm)
    assert "unknown" in repr(provider)
    assert provider.measurement == "5a" * 48
    assert nsm.requests[0]["Attestation"]["user_data"] is None
    assert provider.measurement == "5a" * 48 and len(nsm.requests) == 1


def test_the_provider_passes_the_transparency_proof_through(pki: FakePki) -> None:
    calls: list[tuple[str, str]] = []
    record = ReleaseRecord(measurement="5a" * 48, platform="nitro", version="1.0",
                           source="https://example.org/hushbrief@abc")
    proof = TransparencyProof(record=record, index=3, proof=(b"\1" * 32,),
                              checkpoint="log\n4\nAAAA\n")

    def hook(measurement: str, platform: str) -> dict[str, Any]:
        calls.append((measurement, platform))
        return proof.to_json()

    doc = NitroEvidenceProvider(FakeNsm(pki), transparency=hook).bundle(
        b"k", now=T0.timestamp(), expires_at=T0.timestamp() + 60)
    assert calls == [("5a" * 48, "nitro")]
    assert EvidenceBundle.from_json(doc).transparency == proof


def test_the_provider_refuses_a_document_that_does_not_carry_the_binding() -> None:
    with pytest.raises(NsmError, match="does not carry the requested user_data"):
        NitroEvidenceProvider(RecordedNsm()).bundle(b"k", now=0, expires_at=60)


def test_the_provider_refuses_a_changing_pcr0(pki: FakePki) -> None:
    nsm = FakeNsm(pki)
    provider = NitroEvidenceProvider(nsm)
    provider.bundle(b"a", now=T0.timestamp(), expires_at=T0.timestamp() + 60)
    nsm.pcr0 = b"\x5b" * 48
    with pytest.raises(NsmError, match="PCR0 different"):
        provider.bundle(b"b", now=T0.timestamp(), expires_at=T0.timestamp() + 60)


def test_nsm_error_responses_become_nsm_errors() -> None:
    with pytest.raises(NsmError, match=r"refused the attestation request \(InvalidArgument\)"):
        document_from_response(cbor2.dumps({"Error": "InvalidArgument"}))
    with pytest.raises(NsmError, match="not an attestation document"):
        document_from_response(cbor2.dumps({"GetRandom": {"random": b"x"}}))
    with pytest.raises(NsmError, match="not CBOR"):
        document_from_response(b"\xff")


def test_the_ioctl_number_is_iowr_0x0a_0_with_two_iovecs() -> None:
    assert NSM_IOCTL_RAW == 0xC0200A00


def test_the_linux_device_speaks_the_raw_ioctl(tmp_path: Path) -> None:
    """A stand-in for the driver reads the two iovecs exactly as the kernel would."""
    device_file = tmp_path / "nsm"
    device_file.write_bytes(b"")
    seen: list[tuple[int, bytes]] = []
    reply = cbor2.dumps({"Attestation": {"document": SAMPLE}})

    def driver(fd: int, request: int, arg: bytearray, mutate: bool) -> int:
        assert mutate and len(arg) == 32
        req_addr, req_len, resp_addr, resp_cap = struct.unpack("=QQQQ", arg)
        seen.append((request, ctypes.string_at(req_addr, req_len)))
        assert resp_cap == 0x3000
        ctypes.memmove(resp_addr, reply, len(reply))
        arg[24:32] = struct.pack("=Q", len(reply))  # the driver writes back the length
        return 0

    device = LinuxNsmDevice(str(device_file), ioctl=driver)
    message = attestation_request(b"\7" * 64)
    assert device.request(message) == reply
    assert seen == [(0xC0200A00, message)]


def test_the_linux_device_reports_a_missing_nsm(tmp_path: Path) -> None:
    with pytest.raises(NsmError, match="Cannot open the Nitro Secure Module"):
        LinuxNsmDevice(str(tmp_path / "absent")).request(attestation_request(None))
