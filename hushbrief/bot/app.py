"""Assembles the core from a configuration: storage, identifiers, window, processors.

Every adapter (the console demo, Telegram, Matrix) starts from ``open_bot``, so
they all run the same core against the same storage rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from hushbrief.bot.attestation.checkpoints import CheckpointStore
from hushbrief.bot.attestation.source import AttestedKeySource, LogConsistencyClient
from hushbrief.bot.attestation.verify import AttestationPolicy, LogPolicy
from hushbrief.bot.config import AttestationConfig, Config
from hushbrief.bot.consent import ConsentStore
from hushbrief.bot.core import Hushbrief
from hushbrief.bot.events import ChatRef
from hushbrief.bot.identifiers import IdentifierHasher, load_or_create_key
from hushbrief.bot.policy import Processing
from hushbrief.bot.policy_store import PolicyStore
from hushbrief.bot.private import PrivateProcessor, build_private_processor
from hushbrief.bot.processing import LocalProcessor, Processor
from hushbrief.bot.storage import Database
from hushbrief.bot.window import MessageWindow
from hushbrief.engines.extractive import ExtractiveEngine

log = logging.getLogger("hushbrief.app")


@dataclass
class Bot:
    core: Hushbrief
    database: Database
    window: MessageWindow
    hasher: IdentifierHasher
    private: PrivateProcessor | None = None

    async def aclose(self) -> None:
        """Close network clients, then the database."""
        if self.private is not None:
            await self.private.aclose()
        self.close()

    def close(self) -> None:
        self.database.dispose()


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory readable only by its owner (it holds the identifier key)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def open_bot(
    config: Config, *, upgrade: bool = True, clock: Callable[[], float] = time.time
) -> Bot:
    """Open storage (migrating it to the current schema) and build the core.

    Raises the storage layer's ``StorageError`` subclasses with operator-facing
    messages; callers print them as one line.
    """
    data_dir = config.storage.data_dir
    prepare_data_dir(data_dir)
    key = load_or_create_key(data_dir, config.storage.identifier_key or None)
    hasher = IdentifierHasher(key)
    database = Database(config.storage.resolved_database_url())
    if upgrade:
        database.upgrade()
    window = MessageWindow(
        max_bytes_per_chat=config.window.max_bytes_per_chat,
        max_chats=config.window.max_chats,
    )
    processors: dict[Processing, Processor] = {
        Processing.LOCAL: LocalProcessor(ExtractiveEngine()),
    }
    private = None
    if config.processing.relay_url:
        relay_url = config.processing.relay_url
        policy = attestation_policy(config.attestation)
        checkpoints = CheckpointStore(database)
        log_url = config.attestation.log_url

        def attested(outer: httpx.AsyncClient) -> AttestedKeySource:
            return AttestedKeySource(
                outer, relay_url, policy, checkpoints=checkpoints, clock=clock,
                log_client=LogConsistencyClient(outer, log_url) if log_url else None)

        note = None
        if policy.allow_dev:
            note = ("This bot also accepts a development backend (dev attestation): no "
                    "hardware protects summaries made there, and each such summary says so.")
        private = build_private_processor(
            relay_url, keys=attested, timeout=config.processing.timeout,
            engine=config.processing.private_engine, privacy_note=note)
        processors[Processing.PRIVATE] = private
    elif config.processing.mode is Processing.PRIVATE:
        log.warning("private processing is the default but [processing] relay_url is empty: "
                    "chats that keep the default will get a refusal")
    core = Hushbrief(
        consent=ConsentStore(database, hasher),
        policies=PolicyStore(database, hasher),
        defaults=config.default_policy(),
        window=window,
        processors=processors,
        chat_tag=lambda chat: _chat_tag(hasher, chat),
        clock=clock,
    )
    log.info("bot ready database=%s processing_default=%s", database.dialect,
             config.processing.mode)
    return Bot(core=core, database=database, window=window, hasher=hasher, private=private)


def attestation_policy(config: AttestationConfig) -> AttestationPolicy:
    """``[attestation]`` as the verifier's policy."""
    log = None
    if config.log_origin or config.log_key:
        log = LogPolicy(origin=config.log_origin, key=config.log_key)
    return AttestationPolicy(
        platforms=frozenset(config.platforms),
        measurements=frozenset(config.measurements), log=log,
        allow_dev=config.allow_dev,
        snp_min_tcb=dict(config.snp_min_tcb),
    )


def _chat_tag(hasher: IdentifierHasher, chat: ChatRef) -> str:
    return hasher.log_tag(chat.platform, chat.chat_id)
