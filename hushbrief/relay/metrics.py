"""Prometheus metrics for the relay: counts, sizes and latencies, nothing else.

The relay may see sizes and timing (DESIGN.md §1); it exposes them only in aggregate.
Every label value comes from a closed set defined in code — a route name, a status class
("2xx"), an ``Outcome`` — never from the client (no path, header, address or body byte),
so the exposition cannot carry anything a client sent, and its cardinality is bounded.

Each app instance gets its own ``CollectorRegistry``: several relays (and tests) in one
process do not share or collide on the global default registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from hushbrief.relay.errors import Outcome


class Route(StrEnum):
    """The relay's routes; a metric label, so the set is closed."""

    REQUEST = "request"  # POST /.well-known/ohttp-gateway (encapsulated request)
    KEYS = "keys"  # GET /.well-known/ohttp-gateway (key configurations)
    ATTESTATION = "attestation"  # GET /attestation (evidence bundle)
    HEALTHZ = "healthz"
    READYZ = "readyz"
    METRICS = "metrics"
    UNMATCHED = "unmatched"  # anything else: answered 404 without looking further


# Ciphertext sizes: a padded summary request is a few KiB to the 1 MiB limit.
_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
# Gateway latency: key fetches take milliseconds, summaries seconds up to the timeout.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
                    30.0, 60.0, 120.0)


def status_class(status: int | None) -> str:
    """``"2xx"`` … ``"5xx"``, or ``"none"`` when no response was sent."""
    if status is None or not 100 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


@dataclass(slots=True)
class RequestRecord:
    """What one request did, filled in while it is handled; logged and counted at the end."""

    route: Route = Route.UNMATCHED
    status: int | None = None
    outcome: Outcome = Outcome.INTERNAL_ERROR
    request_bytes: int = 0
    response_bytes: int = 0
    upstream_status: int | None = None
    upstream_seconds: float | None = None


class RelayMetrics:
    """The relay's metric families, in a registry private to one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hushbrief_relay_requests", "Requests handled, by route, status class and outcome.",
            ["route", "status_class", "outcome"], registry=self.registry,
        )
        self.duration = Histogram(
            "hushbrief_relay_request_duration_seconds",
            "Time from request start to response end, by route.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.request_size = Histogram(
            "hushbrief_relay_request_body_bytes", "Size of request bodies forwarded, by route.",
            ["route"], buckets=_SIZE_BUCKETS, registry=self.registry,
        )
        self.response_size = Histogram(
            "hushbrief_relay_response_body_bytes", "Size of response bodies sent, by route.",
            ["route"], buckets=_SIZE_BUCKETS, registry=self.registry,
        )
        self.upstream = Histogram(
            "hushbrief_relay_upstream_duration_seconds",
            "Time of one exchange with the gateway, by route and the gateway's status class "
            "('none' when it gave no answer).",
            ["route", "status_class"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "hushbrief_relay_in_flight", "Forwarded requests currently in flight.",
            registry=self.registry,
        )

    def observe(self, record: RequestRecord, duration: float) -> None:
        route = record.route.value
        self.requests.labels(route, status_class(record.status), record.outcome.value).inc()
        self.duration.labels(route).observe(duration)
        if record.route in (Route.REQUEST, Route.KEYS, Route.ATTESTATION):
            # Only bodies that went to the gateway; a refused upload was never forwarded.
            if record.route is Route.REQUEST and record.upstream_seconds is not None:
                self.request_size.labels(route).observe(record.request_bytes)
            if record.status is not None:
                self.response_size.labels(route).observe(record.response_bytes)
        if record.upstream_seconds is not None:
            self.upstream.labels(route, status_class(record.upstream_status)).observe(
                record.upstream_seconds
            )

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
