"""The ``dev`` platform's evidence: a statement signed by a key the backend made in memory.

There is no hardware behind it. The statement says which measurement holds the
key bound by ``report_data``; the signature only shows that whoever serves the
bundle also holds the signing key. Bots accept it only when
``[attestation] allow_dev = true``, and then say so in every summary.

Statement (UTF-8 JSON, canonical: sorted keys, no spaces)::

    {"format": "hushbrief-dev/1", "measurement": "<hex>",
     "public_key": "<base64 raw Ed25519>", "report_data": "<hex, 64 bytes>"}
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

DEV_FORMAT = "hushbrief-dev/1"


class DevFormatError(ValueError):
    """The dev statement is malformed; the message says which field."""


@dataclass(frozen=True, slots=True)
class DevStatement:
    measurement: str
    report_data: bytes
    public_key: bytes


def dev_statement(measurement: str, report_data: bytes, public_key: bytes) -> bytes:
    return json.dumps(
        {"format": DEV_FORMAT, "measurement": measurement,
         "public_key": base64.b64encode(public_key).decode("ascii"),
         "report_data": report_data.hex()},
        sort_keys=True, separators=(",", ":"),
    ).encode("utf-8")


def parse_dev_statement(data: bytes) -> DevStatement:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise DevFormatError("The dev evidence is not JSON.") from None
    if not isinstance(doc, dict) or doc.get("format") != DEV_FORMAT:
        raise DevFormatError(f"The dev evidence is not a {DEV_FORMAT} statement.")
    measurement, report_data, public_key = (doc.get(k) for k in
                                            ("measurement", "report_data", "public_key"))
    if not (isinstance(measurement, str) and isinstance(report_data, str)
            and isinstance(public_key, str)):
        raise DevFormatError("The dev evidence lacks measurement, report_data or public_key.")
    try:
        rd = bytes.fromhex(report_data)
        pk = base64.b64decode(public_key, validate=True)
    except (ValueError, binascii.Error):
        raise DevFormatError("The dev evidence's report_data or public_key is malformed.") \
            from None
    if len(rd) != 64 or len(pk) != 32:
        raise DevFormatError("The dev evidence's report_data or public_key has a wrong length.")
    return DevStatement(measurement=measurement, report_data=rd, public_key=pk)
