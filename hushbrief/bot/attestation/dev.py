"""The ``dev`` platform's verifier: checks the statement is consistent, and nothing more.

A dev bundle's "evidence" is a statement signed by a key the backend made in
memory. A valid signature shows the statement was not altered after the
backend signed it; it does not show what code runs, because no hardware
vouches for the key. ``chain_valid`` is therefore always False, and the bot
accepts dev evidence only when ``[attestation] allow_dev = true``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hushbrief.bot.attestation.verdict import PlatformVerdict
from hushbrief.evidence.dev import DevFormatError, parse_dev_statement


def verify_dev(evidence: bytes, endorsements: Mapping[str, Any]) -> PlatformVerdict:
    try:
        statement = parse_dev_statement(evidence)
    except DevFormatError as exc:
        return PlatformVerdict(platform="dev", errors=(str(exc),))
    errors: list[str] = []
    signature_valid = False
    try:
        signature = base64.b64decode(str(endorsements.get("signature", "")), validate=True)
        Ed25519PublicKey.from_public_bytes(statement.public_key).verify(signature, evidence)
        signature_valid = True
    except (binascii.Error, ValueError, InvalidSignature):
        errors.append("The dev statement's signature does not verify.")
    return PlatformVerdict(
        platform="dev", chain_valid=False, signature_valid=signature_valid,
        measurement=statement.measurement, report_data=statement.report_data, debug=False,
        errors=tuple(errors),
        details={"hardware": "none: a software key made by the backend at start"},
    )
