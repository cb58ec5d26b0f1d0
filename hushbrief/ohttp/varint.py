"""QUIC variable-length integers (RFC 9000 §16), the length encoding of RFC 9292.

The two most significant bits of the first byte give the encoded length (1, 2, 4
or 8 bytes); the remaining bits, big-endian, give the value, so values run from 0
to 2^62-1. The encoder always picks the shortest form. The decoder accepts any
form: RFC 9000 §16 does not require the minimal encoding, and RFC 9292 inherits
that ("the variable-length integer encoding from Section 16 of QUIC").
"""

from __future__ import annotations

from hushbrief.ohttp.errors import TruncatedMessage

__all__ = ["MAX_VARINT", "decode_varint", "encode_varint", "varint_size"]

MAX_VARINT = (1 << 62) - 1


def varint_size(value: int) -> int:
    """The number of bytes :func:`encode_varint` uses for ``value``."""
    if value < 0 or value > MAX_VARINT:
        raise ValueError("a QUIC varint holds 0 to 2^62-1")
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x4000_0000:
        return 4
    return 8


def encode_varint(value: int) -> bytes:
    """Encode ``value`` in the shortest QUIC varint form (RFC 9000 §16)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("a varint encodes an int")
    size = varint_size(value)
    # The length prefix is log2(size) in the top two bits of the first byte.
    prefix = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[size]
    encoded = bytearray(value.to_bytes(size, "big"))
    encoded[0] |= prefix
    return bytes(encoded)


def decode_varint(data: bytes, offset: int = 0, end: int | None = None) -> tuple[int, int]:
    """Decode the varint at ``data[offset:end]``; return ``(value, next_offset)``.

    Raises :class:`TruncatedMessage` when the varint runs past ``end`` (default:
    the end of ``data``).
    """
    if end is None:
        end = len(data)
    if offset >= end:
        raise TruncatedMessage("input ended before a variable-length integer")
    first = data[offset]
    size = 1 << (first >> 6)
    stop = offset + size
    if stop > end:
        raise TruncatedMessage("input ended inside a variable-length integer")
    if size == 1:
        return first, stop
    value = int.from_bytes(data[offset:stop], "big") & ((1 << (8 * size - 2)) - 1)
    return value, stop
