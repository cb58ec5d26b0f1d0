"""The relay's configuration: which gateway it serves, and its limits.

A relay serves exactly one gateway (RFC 9458 §5: the Oblivious Relay Resource is
configured with the Oblivious Gateway Resource it forwards to). That URL is fixed here at
start-up and validated once; nothing a client sends can change it. The gateway's two
resources sit at fixed paths below it: ``/.well-known/ohttp-gateway`` (RFC 9540 §3: POST
for encapsulated requests, GET for the key configurations) and ``/attestation`` (the
evidence bundle, DESIGN.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from hushbrief.relay.errors import SettingsError

MiB = 1024 * 1024

#: RFC 9540 §3: the gateway resource and the key configurations share this path.
OHTTP_GATEWAY_PATH = "/.well-known/ohttp-gateway"
#: The backend's evidence bundle (DESIGN.md §5).
ATTESTATION_PATH = "/attestation"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """What one relay instance forwards to, and the limits it enforces.

    ``gateway_url`` is the gateway's base URL (``http://127.0.0.1:8081``, or with a path
    prefix, ``https://gw.example/hushbrief``); the relay forwards to
    ``<gateway_url>/.well-known/ohttp-gateway`` and ``<gateway_url>/attestation`` only.
    ``timeout`` bounds one whole exchange with the gateway (a summary takes a while);
    ``connect_timeout`` only the TCP/TLS connect. ``max_concurrency`` forwarded requests
    may be in flight; beyond that the relay answers 503 with ``Retry-After:
    retry_after``. ``expose_metrics`` serves ``GET /metrics``; turn it off when the relay
    listens publicly and metrics are scraped some other way, since request counts over
    time are themselves traffic information (RFC 9458 §6.2.3).
    """

    gateway_url: str
    max_body: int = 4 * MiB
    max_response: int = 4 * MiB
    connect_timeout: float = 5.0
    timeout: float = 60.0
    max_concurrency: int = 256
    retry_after: int = 1
    expose_metrics: bool = True

    def __post_init__(self) -> None:
        _check_gateway_url(self.gateway_url)
        for name in ("max_body", "max_response", "max_concurrency"):
            if getattr(self, name) < 1:
                raise SettingsError(f"Relay setting {name} must be at least 1.")
        for name in ("connect_timeout", "timeout"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"Relay setting {name} must be a positive number of seconds.")
        if self.retry_after < 0:
            raise SettingsError("Relay setting retry_after must not be negative.")

    def gateway_endpoint(self, path: str) -> str:
        """The absolute URL of one of the gateway's fixed resources (a constant path)."""
        return self.gateway_url.rstrip("/") + path


def _check_gateway_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"Gateway URL {url!r} must be an absolute http:// or https:// URL with a host, "
            "for example http://127.0.0.1:8081."
        )
    # Credentials, a query or a fragment have no meaning for a base URL; refusing them keeps
    # the upstream target exactly "base + fixed path".
    if parts.username is not None or parts.password is not None:
        raise SettingsError(f"Gateway URL {url!r} must not contain credentials.")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise SettingsError(f"Gateway URL {url!r} must not have a query or a fragment.")
    try:
        parts.port  # noqa: B018  (urlsplit validates the port lazily)
    except ValueError:
        raise SettingsError(f"Gateway URL {url!r} has an invalid port.") from None


