"""``HOST:PORT`` listen addresses, as every Hushbrief service takes them.

The relay, the backend, the transparency-log server and the Telegram webhook
all listen somewhere; one parser gives them the same rules and the same
one-sentence errors. Nothing else of Hushbrief is imported here.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["parse_listen"]

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[IPv6]:PORT``) into a host for uvicorn and a port.

    Raises ValueError with one sentence saying what is wrong.
    """
    text = value.strip()
    example = "for example 127.0.0.1:8080 or [::1]:8080"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(
                f"Listen address {value!r} is not [IPv6]:PORT; write it like [::1]:8080."
            )
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"Listen address {value!r}: {host!r} in brackets is not an IPv6 address."
            ) from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(
                f"Listen address {value!r} has no port; write HOST:PORT, {example}."
            )
        if not host:
            raise ValueError(
                f"Listen address {value!r} has no host; write HOST:PORT, {example}."
            )
        if ":" in host:
            raise ValueError(
                f"Listen address {value!r}: put an IPv6 address in brackets, like [::1]:8080."
            )
        if not _HOSTNAME.match(host):
            raise ValueError(f"Listen address {value!r}: {host!r} is not a valid host name.")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"Listen address {value!r}: the port must be a number, {example}.")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"Listen address {value!r}: the port must be between 1 and 65535.")
    return host, port
