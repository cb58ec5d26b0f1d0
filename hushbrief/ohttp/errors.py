"""The exceptions of the OHTTP layer: what a peer can do wrong.

The split follows h11: when the *peer* sends something unacceptable (a malformed
binary HTTP message, an unknown key identifier, a ciphertext that does not open),
one of the classes below is raised and the I/O layer turns it into an error
response. When *our own caller* misuses the API (a nonce of the wrong length, a
``str`` where ``bytes`` belong, a status code outside its range), the ordinary
``ValueError``/``TypeError`` is raised instead: that is a bug to fix, not a peer to
answer.

No message of these exceptions contains payload bytes: they name the structure
that failed and, at most, offsets and lengths. Exceptions end up in logs and error
reports, and the payload is a private chat (DESIGN.md §6, §7.1).
"""

from __future__ import annotations

__all__ = [
    "DecryptionFailed",
    "KeyConfigError",
    "LimitExceeded",
    "MalformedMessage",
    "OHTTPError",
    "TrailingData",
    "TruncatedMessage",
    "UnknownKeyId",
    "UnsupportedSuite",
]


class OHTTPError(Exception):
    """Root of the tree: the peer sent something this implementation does not accept."""


class MalformedMessage(OHTTPError):
    """A framing error: bad varint, bad framing indicator, bad values, overlong section.

    RFC 9292 §4 calls these "invalid messages": they are not processed further,
    only logged (without content) and answered with an error.
    """


class TruncatedMessage(MalformedMessage):
    """The input ended where RFC 9292 §3.8 does not allow a message to end."""


class TrailingData(MalformedMessage):
    """Bytes follow a complete message where only zero padding may (RFC 9292 §3.8)."""


class LimitExceeded(MalformedMessage):
    """A hard limit of this implementation was hit (size, field count, 1xx count, chunks).

    Raised *before* anything of the declared size is allocated.
    """


class KeyConfigError(MalformedMessage):
    """A key configuration or an ``application/ohttp-keys`` list is malformed (RFC 9458 §3)."""


class UnknownKeyId(OHTTPError):
    """The gateway holds no key with the request's key identifier.

    The gateway answers in clear with the ``ohttp-key`` problem type (RFC 9458 §5.3)
    so that the client refetches the key configuration.
    """


class UnsupportedSuite(OHTTPError):
    """A KEM, KDF or AEAD that is not supported here, or not offered by that key."""


class DecryptionFailed(OHTTPError):
    """The AEAD did not open: wrong key, tampered ciphertext, tag or encapsulated key."""
