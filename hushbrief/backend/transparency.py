"""Where the backend gets the transparency-log proof it serves in its bundle.

The operator publishes each build's measurement in the log (``hushbrief log
add``); the backend then needs the record's inclusion proof and a signed
checkpoint to hand to clients. Two sources:

* a file written by ``hushbrief log prove`` (re-read when it changes), for
  deployments that ship the proof with the image;
* the log's HTTP server (``hushbrief log serve``), polled in the background so
  that newer checkpoints reach clients without a restart.

Either way the backend only relays what the log signed; clients verify it. A
proof for another measurement or platform is never served.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx

from hushbrief.evidence.bundle import BundleFormatError, TransparencyProof

log = logging.getLogger("hushbrief.backend.transparency")


class FileTransparency:
    """A proof read from a JSON file (``hushbrief log prove`` output)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._proof: TransparencyProof | None = None

    def __call__(self, measurement: str, platform: str) -> TransparencyProof | None:
        try:
            stat = self._path.stat()
        except OSError:
            if self._stamp is not None:
                log.warning("transparency proof file is gone: %s", self._path)
            self._stamp, self._proof = None, None
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._proof = TransparencyProof.from_json(json.loads(self._path.read_bytes()))
            except (OSError, ValueError, BundleFormatError) as exc:
                log.warning("transparency proof file %s is unusable: %s", self._path, exc)
                self._proof = None
        return _matching(self._proof, measurement, platform)


class LogTransparency:
    """A proof fetched from the log's server and refreshed in the background."""

    def __init__(self, url: str, *, refresh: float = 600.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = url.rstrip("/")
        self._refresh = refresh
        self._transport = transport
        self._proof: TransparencyProof | None = None

    def __call__(self, measurement: str, platform: str) -> TransparencyProof | None:
        return _matching(self._proof, measurement, platform)

    async def fetch(self, measurement: str, platform: str) -> None:
        async with httpx.AsyncClient(transport=self._transport, timeout=10.0,
                                     trust_env=False) as client:
            try:
                resp = await client.get(f"{self._url}/proof",
                                        params={"measurement": measurement,
                                                "platform": platform})
            except httpx.HTTPError as exc:
                log.warning("transparency log unreachable: %s", type(exc).__name__)
                return
        if resp.status_code != 200:
            log.warning("transparency log has no record of this build (status %d)",
                        resp.status_code)
            return
        try:
            self._proof = TransparencyProof.from_json(resp.json())
        except (ValueError, BundleFormatError) as exc:
            log.warning("transparency log answered an unusable proof: %s", exc)

    async def keep_fresh(self, measurement: str, platform: str) -> None:
        """Run until cancelled, fetching every ``refresh`` seconds (after a first ``fetch``)."""
        while True:
            await asyncio.sleep(self._refresh)
            await self.fetch(measurement, platform)


def _matching(proof: TransparencyProof | None, measurement: str,
              platform: str) -> TransparencyProof | None:
    if proof is None:
        return None
    if proof.record.measurement != measurement or proof.record.platform != platform:
        log.warning("the transparency proof is for another build; not serving it")
        return None
    return proof
