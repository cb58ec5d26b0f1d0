"""The key source the private path uses: keys only from verified evidence.

``AttestedKeySource`` fetches the backend's evidence bundle through the relay
(``GET /attestation``), verifies it completely (``verify_bundle``) and only
then offers the bound key configuration to the OHTTP transport. Any failure
raises ``AttestationFailed`` before a single byte of content leaves
(DESIGN.md invariant 5). A verified key is reused until its bundle expires or
the gateway rejects the key (it rotated), and is then verified afresh.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx

from hushbrief.bot.attestation.checkpoints import CheckpointStore
from hushbrief.bot.attestation.verify import AttestationPolicy, Verification, verify_bundle
from hushbrief.bot.private import (
    GatewayKey,
    KeyUnavailable,
    PrivatePathError,
    RelayUnreachable,
    Timeout,
)
from hushbrief.evidence.bundle import BundleFormatError, EvidenceBundle
from hushbrief.ohttp.errors import OHTTPError
from hushbrief.ohttp.keyconfig import choose_config, decode_key_configs

log = logging.getLogger("hushbrief.attestation")

ATTESTATION_PATH = "/attestation"


class AttestationFailed(PrivatePathError):
    """A check failed; ``verification`` says which. Nothing was sent."""

    def __init__(self, message: str, verification: Verification | None = None) -> None:
        super().__init__(message)
        self.verification = verification


async def fetch_bundle(client: httpx.AsyncClient, url: str) -> EvidenceBundle:
    """GET the bundle at ``url`` (a relay's or a backend's ``/attestation``) and parse it."""
    try:
        resp = await client.get(url, headers={"accept": "application/json"})
    except httpx.TimeoutException:
        raise Timeout("The relay did not answer in time, so nothing was sent.") from None
    except httpx.HTTPError:
        raise RelayUnreachable("The relay cannot be reached right now, so nothing was "
                               "sent.") from None
    if resp.status_code != 200:
        log.warning("bundle_fetch_failed status=%d", resp.status_code)
        raise KeyUnavailable("The private summarizer offered no evidence, so nothing was "
                             "sent.")
    try:
        return EvidenceBundle.from_bytes(resp.content)
    except BundleFormatError as exc:
        log.warning("bundle_malformed reason=%s", exc)
        raise AttestationFailed("The private summarizer's evidence could not be read, so "
                                "nothing was sent.") from None


class LogConsistencyClient:
    """Consistency proofs from the log's public server (``hushbrief log serve``)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self._client = client
        self._url = url.rstrip("/")

    async def __call__(self, old: int, new: int) -> Sequence[bytes]:
        resp = await self._client.get(f"{self._url}/consistency",
                                      params={"old": old, "new": new})
        resp.raise_for_status()
        doc = resp.json()
        hashes = doc.get("proof") if isinstance(doc, dict) else None
        if not isinstance(hashes, list) or len(hashes) > 64:
            raise ValueError("malformed consistency proof")
        return [base64.b64decode(h, validate=True) for h in hashes]


class AttestedKeySource:
    def __init__(
        self,
        client: httpx.AsyncClient,
        relay_url: str,
        policy: AttestationPolicy,
        *,
        checkpoints: CheckpointStore | None = None,
        log_client: LogConsistencyClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._url = relay_url.rstrip("/") + ATTESTATION_PATH
        self._policy = policy
        self._checkpoints = checkpoints
        self._log_client = log_client
        self._clock = clock
        self._cached: tuple[int, GatewayKey] | None = None
        self._lock = asyncio.Lock()
        self.last: Verification | None = None
        """The most recent verification, passed or failed (for /status and audits)."""

    async def current(self) -> GatewayKey:
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now < self._cached[0]:
                return self._cached[1]
            self._cached = None
            bundle = await fetch_bundle(self._client, self._url)
            started = time.perf_counter()
            verification = await verify_bundle(
                bundle, self._policy, now=datetime.fromtimestamp(now, tz=UTC),
                checkpoints=self._checkpoints, fetch_consistency=self._log_client)
            self.last = verification
            ms = (time.perf_counter() - started) * 1000
            if not verification.ok:
                failed = next(s.name for s in verification.steps if not s.ok)
                log.warning("attestation_failed step=%s platform=%s ms=%.1f", failed,
                            bundle.platform, ms)
                raise AttestationFailed(verification.failure(), verification)
            try:
                config, suite = choose_config(decode_key_configs(bundle.key_configs))
            except OHTTPError:
                raise KeyUnavailable("The private summarizer's attested key cannot be used "
                                     "by this bot, so nothing was sent.") from None
            key = GatewayKey(config, suite, measurement=verification.measurement,
                             dev=verification.dev)
            self._cached = (bundle.expires_at, key)
            log.info("attestation_ok platform=%s measurement=%s ms=%.1f", bundle.platform,
                     (verification.measurement or "")[:16], ms)
            return key

    def invalidate(self) -> None:
        self._cached = None
