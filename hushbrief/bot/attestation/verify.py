"""Every check a bundle must pass before the bot encrypts a single message to its key.

``verify_bundle`` runs the checks of DESIGN.md §5 in order and records each as
a ``Step``; the first failure decides the one sentence the user sees. The
order matters for what that sentence says, not for safety: a bundle is good
only when every step passed.

1. ``bundle``      the bundle is current (issued, not expired)
2. ``platform``    its platform is one the operator accepts (dev only when allowed)
3. ``evidence``    the platform evidence verifies to its pinned hardware root,
                   with debug off and the minimum TCB met
4. ``binding``     the evidence's report data is SHA-512 of exactly the key
                   configurations in the bundle (the key the bot will use)
5. ``measurement`` the evidence's measurement is the one the bundle claims, and
                   one the operator accepts
6. ``log``         the build is in the transparency log: the checkpoint is
                   signed by the pinned log key, the record is included under
                   its root, and the record names this measurement and platform
7. ``consistency`` the checkpoint extends (or is extended by) the newest one
                   this bot verified before; anything else is a fork

Everything here is offline and takes ``now``; only the consistency proof for a
checkpoint newer than the remembered one is fetched, through a callable the
caller supplies (the log's public server).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hushbrief.bot.attestation.checkpoints import CheckpointStore, TrustedCheckpoint, log_id
from hushbrief.bot.attestation.dev import verify_dev
from hushbrief.bot.attestation.nitro import verify_nitro
from hushbrief.bot.attestation.sevsnp import verify_sev_snp
from hushbrief.bot.attestation.tdx import verify_tdx
from hushbrief.bot.attestation.verdict import PlatformVerdict
from hushbrief.evidence.bundle import EvidenceBundle, Platform, binding
from hushbrief.tlog.merkle import ProofError
from hushbrief.tlog.note import Checkpoint, NoteError, parse_verifier_key
from hushbrief.tlog.verify import verify_extension, verify_transparency_proof

log = logging.getLogger("hushbrief.attestation")

FetchConsistency = Callable[[int, int], Awaitable[Sequence[bytes]]]
"""(old size, new size) → the log's consistency proof between them."""

HARDWARE = frozenset({Platform.SEV_SNP.value, Platform.TDX.value, Platform.NITRO.value})


@dataclass(frozen=True, slots=True)
class LogPolicy:
    origin: str
    key: str
    """The note verifier key, ``<name>+<key id>+<base64 key>``."""

    @property
    def id(self) -> str:
        return log_id(self.origin, self.key)


@dataclass(frozen=True, slots=True)
class AttestationPolicy:
    """What the operator accepts (``[attestation]``)."""

    platforms: frozenset[str] = HARDWARE
    measurements: frozenset[str] = frozenset()
    log: LogPolicy | None = None
    allow_dev: bool = False
    allow_debug: bool = False
    """Only ``hushbrief attest verify --allow-debug`` sets this; the bot never does."""
    snp_min_tcb: Mapping[str, int] = field(default_factory=dict)
    clock_skew: int = 300
    """Seconds a bundle's issue time may lie in the future (clocks differ)."""

    def accepts_platform(self, platform: str) -> bool:
        if platform == Platform.DEV:
            return self.allow_dev
        return platform in self.platforms


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    ok: bool
    detail: str
    """A plain sentence: what was checked and what was found (never message content)."""


@dataclass(frozen=True, slots=True)
class Verification:
    steps: tuple[Step, ...]
    bundle: EvidenceBundle | None
    verdict: PlatformVerdict | None = None
    checkpoint: Checkpoint | None = None
    fork: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def dev(self) -> bool:
        return self.bundle is not None and self.bundle.platform == Platform.DEV

    @property
    def measurement(self) -> str | None:
        return None if self.verdict is None else self.verdict.measurement

    def failure(self) -> str:
        """One sentence for the user naming the check that failed."""
        failed = next((s for s in self.steps if not s.ok), None)
        if failed is None:
            return ""
        if self.fork:
            return ("The transparency log showed this bot two different histories, so "
                    "nothing was sent; admins: stop using private processing and tell the "
                    "bot's operator.")
        return (f"The private summarizer failed its {_CHECK_NAMES[failed.name]} check, so "
                "nothing was sent.")


_CHECK_NAMES = {
    "bundle": "evidence freshness", "platform": "platform", "evidence": "hardware evidence",
    "binding": "key binding", "measurement": "code measurement", "log": "transparency log",
    "consistency": "log consistency",
}


async def verify_bundle(
    bundle: EvidenceBundle,
    policy: AttestationPolicy,
    *,
    now: datetime,
    checkpoints: CheckpointStore | None = None,
    fetch_consistency: FetchConsistency | None = None,
    remember: bool = True,
) -> Verification:
    """Run every check; stop at the first failure (later checks would mean nothing).

    With ``remember`` the verified checkpoint is stored as the newest one seen
    (only when every step passed); ``hushbrief audit`` passes False.
    """
    steps: list[Step] = []

    def done(**kw: Any) -> Verification:
        return Verification(steps=tuple(steps), bundle=bundle, **kw)

    ts = int(now.timestamp())
    if bundle.expires_at <= ts:
        steps.append(Step("bundle", False, f"The bundle expired at {_iso(bundle.expires_at)}."))
        return done()
    if bundle.issued_at > ts + policy.clock_skew:
        steps.append(Step("bundle", False, "The bundle claims to be issued in the future "
                                           f"({_iso(bundle.issued_at)})."))
        return done()
    steps.append(Step("bundle", True, f"Issued {_iso(bundle.issued_at)}, valid until "
                                      f"{_iso(bundle.expires_at)}."))

    if not policy.accepts_platform(bundle.platform):
        why = ("dev attestation is not allowed ([attestation] allow_dev = false)"
               if bundle.platform == Platform.DEV else
               f"accepted platforms: {', '.join(sorted(policy.platforms)) or 'none'}")
        steps.append(Step("platform", False, f"Platform {bundle.platform} refused: {why}."))
        return done()
    steps.append(Step("platform", True, f"Platform {bundle.platform} is accepted" + (
        " (dev: no hardware protects it)." if bundle.platform == Platform.DEV else ".")))

    verdict = _platform_verdict(bundle, policy, now)
    evidence_ok = (verdict.signature_valid is True and not verdict.errors
                   and verdict.measurement is not None and verdict.report_data is not None
                   and (verdict.chain_valid is True or bundle.platform == Platform.DEV)
                   and verdict.debug is False)
    if not evidence_ok:
        problems = " ".join(verdict.errors) or "The evidence could not be fully checked."
        steps.append(Step("evidence", False, problems))
        return done(verdict=verdict)
    steps.append(Step("evidence", True, _evidence_summary(verdict)))

    expected = binding(bundle.key_configs)
    if verdict.report_data != expected:
        steps.append(Step("binding", False, "The evidence binds a different key than the one "
                                            "the bundle offers."))
        return done(verdict=verdict)
    steps.append(Step("binding", True, "The report data is SHA-512 of the offered key "
                                       f"configurations ({expected.hex()[:16]}…)."))

    measurement = verdict.measurement or ""
    if bundle.measurement.lower() != measurement.lower():
        steps.append(Step("measurement", False, "The bundle claims another measurement than "
                                                "the evidence shows."))
        return done(verdict=verdict)
    if policy.measurements and measurement.lower() not in policy.measurements:
        steps.append(Step("measurement", False, f"Measurement {measurement[:16]}… is not in "
                                                "[attestation] measurements."))
        return done(verdict=verdict)
    if not policy.measurements and policy.log is None and bundle.platform != Platform.DEV:
        steps.append(Step("measurement", False, "No measurement is accepted: configure "
                                                "[attestation] measurements or a log."))
        return done(verdict=verdict)
    steps.append(Step("measurement", True, f"Measurement {measurement} is accepted" + (
        " by the configured list." if policy.measurements else
        " if the transparency log holds it." if policy.log else " (dev).")))

    if policy.log is None:
        return done(verdict=verdict)
    checkpoint, ok = _check_log(bundle, policy.log, measurement, steps)
    if not ok or checkpoint is None:
        return done(verdict=verdict, checkpoint=checkpoint)

    fork = await _check_consistency(policy.log, checkpoint, checkpoints, fetch_consistency,
                                    steps, remember=remember)
    return done(verdict=verdict, checkpoint=checkpoint, fork=fork)


def _platform_verdict(bundle: EvidenceBundle, policy: AttestationPolicy,
                      now: datetime) -> PlatformVerdict:
    e = bundle.endorsements
    try:
        if bundle.platform == Platform.SEV_SNP:
            vcek = base64.b64decode(str(e.get("vcek", "")), validate=True) or None
            chain = str(e["chain"]).encode() if e.get("chain") else None
            return verify_sev_snp(bundle.evidence, vcek=vcek, chain=chain, now=now,
                                  min_tcb=policy.snp_min_tcb, allow_debug=policy.allow_debug)
        if bundle.platform == Platform.TDX:
            collateral = e.get("collateral")
            if not isinstance(collateral, dict):
                return PlatformVerdict("tdx", errors=("The bundle has no TDX collateral.",))
            return verify_tdx(bundle.evidence, collateral=collateral, now=now,
                              allow_debug=policy.allow_debug)
        if bundle.platform == Platform.NITRO:
            return verify_nitro(bundle.evidence, now=now, allow_debug=policy.allow_debug)
        return verify_dev(bundle.evidence, e)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        # Verifiers report expected failures as verdict errors; anything that escapes
        # is malformed input, which is a failed check, not a crash.
        log.info("evidence unreadable platform=%s type=%s", bundle.platform,
                 type(exc).__name__)
        return PlatformVerdict(bundle.platform, errors=("The evidence is malformed.",))


def _evidence_summary(v: PlatformVerdict) -> str:
    if v.platform == Platform.DEV:
        return ("The dev statement's signature verifies; no hardware root exists for dev "
                "evidence.")
    parts = ["The certificate chain leads to the pinned root", "the signature verifies",
             "debug is off"]
    if v.tcb:
        parts.append("TCB " + ", ".join(f"{k} {val}" for k, val in sorted(v.tcb.items())))
    return "; ".join(parts) + "."


def _check_log(bundle: EvidenceBundle, policy: LogPolicy, measurement: str,
               steps: list[Step]) -> tuple[Checkpoint | None, bool]:
    proof = bundle.transparency
    if proof is None:
        steps.append(Step("log", False, "The bundle carries no transparency-log proof."))
        return None, False
    try:
        verifier = parse_verifier_key(policy.key)
    except NoteError as exc:
        steps.append(Step("log", False, f"The configured log key is unusable: {exc}."))
        return None, False
    try:
        checkpoint = verify_transparency_proof(proof, verifier, origin=policy.origin)
    except NoteError as exc:
        steps.append(Step("log", False, f"The log checkpoint does not verify: {exc}."))
        return None, False
    except ProofError as exc:
        steps.append(Step("log", False, f"The record is not in the log: {exc}."))
        return None, False
    record = proof.record
    if record.measurement.lower() != measurement.lower() or record.platform != bundle.platform:
        steps.append(Step("log", False, "The log record is for another build than the "
                                        "evidence shows."))
        return checkpoint, False
    steps.append(Step("log", True, f"Record {proof.index} of {checkpoint.size} in "
                                   f"{checkpoint.origin} (version {record.version}, "
                                   f"source {record.source}); checkpoint signed by the "
                                   "pinned key."))
    return checkpoint, True


async def _check_consistency(
    policy: LogPolicy, checkpoint: Checkpoint, store: CheckpointStore | None,
    fetch: FetchConsistency | None, steps: list[Step], *, remember: bool,
) -> bool:
    """Append the consistency step; return True if a fork was found."""
    trusted = store.get(policy.id) if store is not None else None
    if trusted is None:
        steps.append(Step("consistency", True, "First checkpoint seen from this log; "
                                               "remembered." if store else
                                               "No earlier checkpoint to compare with."))
        if store is not None and remember:
            store.advance(policy.id, TrustedCheckpoint(checkpoint.size, checkpoint.root_hash))
        return False
    remembered = Checkpoint(checkpoint.origin, trusted.size, trusted.root)
    if trusted.size == checkpoint.size:
        if trusted.root != checkpoint.root_hash:
            return _fork(steps, checkpoint.size)
        steps.append(Step("consistency", True, f"Same checkpoint as remembered (size "
                                               f"{trusted.size})."))
        return False
    older, newer = ((remembered, checkpoint) if trusted.size < checkpoint.size
                    else (checkpoint, remembered))
    if fetch is None:
        steps.append(Step("consistency", False,
                          f"The checkpoint (size {checkpoint.size}) differs from the "
                          f"remembered one (size {trusted.size}) and no log server is "
                          "configured to prove they agree ([attestation] log_url)."))
        return False
    try:
        proof = await fetch(older.size, newer.size)
    except Exception as exc:  # network: a failed check, never a crash
        steps.append(Step("consistency", False, "The log server did not provide a "
                                                f"consistency proof ({type(exc).__name__})."))
        return False
    try:
        verify_extension(older, newer, proof)
    except ProofError:
        return _fork(steps, checkpoint.size, trusted.size)
    steps.append(Step("consistency", True, f"Checkpoint size {newer.size} extends size "
                                           f"{older.size} (consistency proof verified)."))
    if store is not None and remember and newer is checkpoint:
        store.advance(policy.id, TrustedCheckpoint(checkpoint.size, checkpoint.root_hash))
    return False


def _fork(steps: list[Step], size: int, other: int | None = None) -> bool:
    where = f"size {size}" if other is None else f"sizes {other} and {size}"
    log.error("transparency log fork detected at %s: refusing the backend", where)
    steps.append(Step("consistency", False, f"The log's checkpoints at {where} contradict "
                                            "each other: the log has forked."))
    return True


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
