"""Attestation before anything leaves (DESIGN.md section 5 and invariant 5).

The bot must refuse a backend whose evidence does not bind the key it would
encrypt to, whose build is not in the transparency log, whose log checkpoint
forks from one it has seen, or whose bundle expired — and in each case the
relay must receive no request at all. These tests run the real backend (dev
platform), relay and log server on loopback, and the real bot.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hushbrief.adapters.console.chat import ConsoleChat, ConsolePlatform
from hushbrief.backend.devbuild import published_dev_backend
from hushbrief.backend.evidence import DevEvidenceProvider
from hushbrief.bot.app import Bot, open_bot
from hushbrief.bot.attestation.checkpoints import CheckpointStore, TrustedCheckpoint
from hushbrief.bot.attestation.source import LogConsistencyClient
from hushbrief.bot.attestation.verify import AttestationPolicy, LogPolicy, verify_bundle
from hushbrief.bot.config import Config
from hushbrief.bot.policy import Processing
from hushbrief.bot.storage import Database
from hushbrief.evidence.bundle import EvidenceBundle, ReleaseRecord, TransparencyProof
from hushbrief.evidence.dev import dev_statement
from hushbrief.relay import RelaySettings
from hushbrief.relay import create_app as relay_app
from hushbrief.tlog.server import create_app as log_app
from hushbrief.tlog.store import TransparencyLog
from hushbrief.tlog.store import init as init_log
from tests.conftest import ChatDriver, Clock
from tests.servers import serve
from tests.test_private_path import Capture

ORIGIN = "test.hushbrief.invalid/log"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def new_log(path: Path) -> TransparencyLog:
    return init_log(path, ORIGIN)


def publish(tlog: TransparencyLog, measurement: str, platform: str = "dev") -> None:
    tlog.add(ReleaseRecord(measurement=measurement, platform=platform, version="1.0",
                           source="https://example.invalid/hushbrief@abc123"))


def dev_bundle(provider: DevEvidenceProvider, key_configs: bytes = b"\x00\x01keys",
               *, now: float | None = None, ttl: int = 3600) -> EvidenceBundle:
    issued = NOW.timestamp() if now is None else now
    return EvidenceBundle.from_json(provider.bundle(key_configs, now=issued,
                                                    expires_at=issued + ttl))


def proof_hook(tlog: TransparencyLog) -> Any:
    return lambda measurement, platform: tlog.prove(measurement, platform)


def policy_for(tlog: TransparencyLog | None, **kw: Any) -> AttestationPolicy:
    log = None if tlog is None else LogPolicy(ORIGIN, tlog.verifier.key_string)
    return AttestationPolicy(log=log, allow_dev=True, **kw)


@pytest.fixture
def tlog(tmp_path: Path) -> TransparencyLog:
    return new_log(tmp_path / "log")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CheckpointStore]:
    db = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    db.upgrade()
    yield CheckpointStore(db)
    db.dispose()


# --- verify_bundle, step by step -----------------------------------------------------------

async def test_every_step_passes_for_a_published_dev_build(
    tlog: TransparencyLog, store: CheckpointStore
) -> None:
    provider = DevEvidenceProvider({"engine": "extractive"}, transparency=proof_hook(tlog))
    publish(tlog, provider.measurement)
    result = await verify_bundle(dev_bundle(provider), policy_for(tlog), now=NOW,
                                 checkpoints=store)
    assert result.ok, result.steps
    assert [s.name for s in result.steps] == [
        "bundle", "platform", "evidence", "binding", "measurement", "log", "consistency"]
    assert result.dev and result.measurement == provider.measurement
    assert store.get(LogPolicy(ORIGIN, tlog.verifier.key_string).id) == TrustedCheckpoint(
        1, tlog.root())


@pytest.mark.parametrize(("mutate", "step", "sentence"), [
    (lambda b: replace(b, expires_at=int(NOW.timestamp()) - 1), "bundle", "evidence freshness"),
    (lambda b: replace(b, issued_at=int(NOW.timestamp()) + 3600), "bundle",
     "evidence freshness"),
    (lambda b: replace(b, key_configs=b"another key"), "binding", "key binding"),
    (lambda b: replace(b, measurement="00" * 32), "measurement", "code measurement"),
    (lambda b: replace(b, evidence=b[:-1] if (b := b.evidence) else b), "evidence",
     "hardware evidence"),
    (lambda b: replace(b, endorsements={"signature": base64.b64encode(b"x" * 64).decode()}),
     "evidence", "hardware evidence"),
    (lambda b: replace(b, transparency=None), "log", "transparency log"),
])
async def test_each_failed_check_is_named(
    tlog: TransparencyLog, mutate: Any, step: str, sentence: str
) -> None:
    provider = DevEvidenceProvider({}, transparency=proof_hook(tlog))
    publish(tlog, provider.measurement)
    result = await verify_bundle(mutate(dev_bundle(provider)), policy_for(tlog), now=NOW)
    assert not result.ok
    failed = [s for s in result.steps if not s.ok]
    assert [s.name for s in failed] == [step]
    assert result.failure() == (f"The private summarizer failed its {sentence} check, so "
                                "nothing was sent.")


async def test_dev_is_refused_unless_allowed(tlog: TransparencyLog) -> None:
    provider = DevEvidenceProvider({}, transparency=proof_hook(tlog))
    publish(tlog, provider.measurement)
    result = await verify_bundle(dev_bundle(provider),
                                 replace(policy_for(tlog), allow_dev=False), now=NOW)
    assert [s.name for s in result.steps if not s.ok] == ["platform"]
    assert "allow_dev" in result.steps[-1].detail


async def test_a_statement_binding_another_key_is_refused(tlog: TransparencyLog) -> None:
    """The evidence is genuine (well signed) but binds a key other than the offered one."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    provider = DevEvidenceProvider({})
    publish(tlog, provider.measurement)
    statement = dev_statement(provider.measurement, b"\x07" * 64, public)
    bundle = replace(dev_bundle(provider), evidence=statement,
                     endorsements={"signature": base64.b64encode(key.sign(statement)).decode()})
    result = await verify_bundle(bundle, policy_for(None), now=NOW)
    assert [s.name for s in result.steps if not s.ok] == ["binding"]


async def test_measurement_list_policy(tlog: TransparencyLog) -> None:
    provider = DevEvidenceProvider({})
    listed = replace(policy_for(None), measurements=frozenset({provider.measurement}))
    assert (await verify_bundle(dev_bundle(provider), listed, now=NOW)).ok
    other = replace(policy_for(None), measurements=frozenset({"ab" * 32}))
    result = await verify_bundle(dev_bundle(provider), other, now=NOW)
    assert [s.name for s in result.steps if not s.ok] == ["measurement"]


async def test_unpublished_build_and_foreign_logs_are_refused(
    tlog: TransparencyLog, tmp_path: Path
) -> None:
    provider = DevEvidenceProvider({})
    publish(tlog, "cd" * 32)  # the log holds another build only
    # A proof for the other build, served by a backend that is not that build:
    wrong = replace(dev_bundle(provider), transparency=tlog.prove("cd" * 32, "dev"))
    result = await verify_bundle(wrong, policy_for(tlog), now=NOW)
    assert [s.name for s in result.steps if not s.ok] == ["log"]
    assert "another build" in result.steps[-1].detail
    # A genuine proof from a log this bot does not trust:
    rogue = new_log(tmp_path / "rogue")
    publish(rogue, provider.measurement)
    foreign = replace(dev_bundle(provider), transparency=rogue.prove(provider.measurement, "dev"))
    result = await verify_bundle(foreign, policy_for(tlog), now=NOW)
    assert [s.name for s in result.steps if not s.ok] == ["log"]
    # A tampered inclusion proof:
    publish(tlog, provider.measurement)
    good = tlog.prove(provider.measurement, "dev")
    bad = TransparencyProof(good.record, good.index, tuple(b"\x00" * 32 for _ in good.proof),
                            good.checkpoint)
    result = await verify_bundle(replace(dev_bundle(provider), transparency=bad),
                                 policy_for(tlog), now=NOW)
    assert [s.name for s in result.steps if not s.ok] == ["log"]


async def test_newer_checkpoints_need_a_consistency_proof(
    tlog: TransparencyLog, store: CheckpointStore
) -> None:
    provider = DevEvidenceProvider({}, transparency=proof_hook(tlog))
    publish(tlog, provider.measurement)
    policy = policy_for(tlog)
    assert (await verify_bundle(dev_bundle(provider), policy, now=NOW, checkpoints=store)).ok
    publish(tlog, "ef" * 32)  # the log grows
    publish(tlog, "12" * 32)
    # Without a log server the bot cannot tell growth from a fork: refused.
    result = await verify_bundle(dev_bundle(provider), policy, now=NOW, checkpoints=store)
    assert [s.name for s in result.steps if not s.ok] == ["consistency"]
    assert not result.fork
    # With the log's server the growth is proven and remembered.
    with serve(log_app(tlog)) as log_url:
        async with httpx.AsyncClient() as client:
            result = await verify_bundle(dev_bundle(provider), policy, now=NOW,
                                         checkpoints=store,
                                         fetch_consistency=LogConsistencyClient(client,
                                                                                log_url))
    assert result.ok, result.steps
    assert store.get(policy.log.id).size == 3  # type: ignore[union-attr]


async def test_a_forked_log_is_detected(tmp_path: Path, store: CheckpointStore) -> None:
    """Two histories under the same key and origin: the second one the bot sees is a fork."""
    tlog = new_log(tmp_path / "log")
    provider = DevEvidenceProvider({}, transparency=proof_hook(tlog))
    publish(tlog, "aa" * 32)
    publish(tlog, provider.measurement)
    policy = policy_for(tlog)
    assert (await verify_bundle(dev_bundle(provider), policy, now=NOW, checkpoints=store)).ok
    # The operator (or an attacker with the key) rewrites history: same key, other records.
    fork_dir = tmp_path / "fork"
    fork_dir.mkdir(mode=0o700)
    for name in ("log.key", "log.pub"):
        (fork_dir / name).write_bytes((tmp_path / "log" / name).read_bytes())
        (fork_dir / name).chmod(0o600)
    (fork_dir / "records.jsonl").write_bytes(b"")
    from hushbrief.tlog.store import open_log

    forked = open_log(fork_dir)
    publish(forked, "bb" * 32)
    publish(forked, provider.measurement)
    forked_provider = DevEvidenceProvider({}, transparency=proof_hook(forked))
    result = await verify_bundle(dev_bundle(forked_provider), policy, now=NOW,
                                 checkpoints=store)
    assert result.fork and not result.ok
    assert "two different histories" in result.failure() and "admins" in result.failure()


# --- end to end: nothing reaches the relay ----------------------------------------------------

@dataclass
class Deployment:
    relay: Capture
    relay_url: str
    tlog: TransparencyLog
    backend: Any


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A dev backend whose build is published, behind a relay; the proof comes from a file."""
    dev = published_dev_backend(tmp_path, origin=ORIGIN)
    with serve(dev.app) as backend_url:
        relay = Capture(relay_app(RelaySettings(gateway_url=backend_url)))
        with serve(relay) as relay_url:
            yield Deployment(relay, relay_url, dev.log, dev.app)


def attested_config(config: Config, d: Deployment, **attestation: Any) -> Config:
    settings = {"allow_dev": True, "log_origin": ORIGIN, "log_key": d.tlog.verifier.key_string,
                **attestation}
    return replace(
        config,
        processing=replace(config.processing, mode=Processing.PRIVATE, relay_url=d.relay_url),
        attestation=replace(config.attestation, **settings))


async def summarize_once(bot: Bot, clock: Clock) -> str:
    chat = ChatDriver(ConsoleChat(core=bot.core, out=io.StringIO(),
                                  platform=ConsolePlatform(), clock=clock), clock)
    await chat.say("alice", "/optin")
    await chat.say("alice", "A canary sentence about the quarterly budget review.")
    got = await chat.say("alice", "/summarize")
    return got[0].text


async def test_a_verified_backend_gets_the_request(
    config: Config, clock: Clock, deployment: Deployment
) -> None:
    clock.now = time.time()
    bot = open_bot(attested_config(config, deployment), clock=clock)
    try:
        text = await summarize_once(bot, clock)
    finally:
        await bot.aclose()
    assert "quarterly budget" in text and "dev attestation" in text
    assert len(deployment.relay.posts) == 1


@pytest.mark.parametrize("case", ["dev-not-allowed", "not-in-log", "measurement-list",
                                  "foreign-log-key", "expired"])
async def test_refused_backends_receive_nothing(
    config: Config, clock: Clock, deployment: Deployment, tmp_path: Path, case: str
) -> None:
    clock.now = time.time()
    cfg = attested_config(config, deployment)
    if case == "dev-not-allowed":
        cfg = attested_config(config, deployment, allow_dev=False)
    elif case == "not-in-log":
        other = new_log(tmp_path / "other")  # same origin, another key: the build isn't there
        cfg = attested_config(config, deployment, log_key=other.verifier.key_string)
    elif case == "measurement-list":
        cfg = attested_config(config, deployment, measurements=("ab" * 32,))
    elif case == "foreign-log-key":
        cfg = attested_config(config, deployment, log_origin="another.invalid/log")
    elif case == "expired":
        clock.now = time.time() + 10 * 86400  # the bot's clock is past the bundle's expiry
    bot = open_bot(cfg, clock=clock)
    try:
        text = await summarize_once(bot, clock)
    finally:
        await bot.aclose()
    assert text.endswith("check, so nothing was sent.")
    assert deployment.relay.posts == [], "the relay received a request"
    assert b"quarterly" not in deployment.relay.everything()


async def test_forked_checkpoint_is_refused_end_to_end(
    config: Config, clock: Clock, deployment: Deployment
) -> None:
    clock.now = time.time()
    cfg = attested_config(config, deployment)
    bot = open_bot(cfg, clock=clock)
    try:
        # The bot once saw a checkpoint of the same size with another root.
        policy = LogPolicy(ORIGIN, deployment.tlog.verifier.key_string)
        CheckpointStore(bot.database).advance(policy.id, TrustedCheckpoint(1, b"\x42" * 32))
        text = await summarize_once(bot, clock)
    finally:
        await bot.aclose()
    assert "two different histories" in text
    assert deployment.relay.posts == []


async def test_verification_is_cached_until_expiry(
    config: Config, clock: Clock, deployment: Deployment
) -> None:
    clock.now = time.time()
    bot = open_bot(attested_config(config, deployment), clock=clock)
    try:
        for _ in range(3):
            await summarize_once(bot, clock)
    finally:
        await bot.aclose()
    fetches = [r for r in deployment.relay.received if b"/attestation" in r]
    assert len(fetches) == 1 and len(deployment.relay.posts) == 3


async def test_privacy_says_dev_is_not_protected_by_hardware(
    config: Config, clock: Clock, deployment: Deployment
) -> None:
    bot = open_bot(attested_config(config, deployment), clock=clock)
    try:
        chat = ChatDriver(ConsoleChat(core=bot.core, out=io.StringIO(), clock=clock), clock)
        text = await chat.ask("bob", "/privacy")
    finally:
        await bot.aclose()
    assert "no hardware protects summaries made there" in text
