"""Opt-in flags: who in which chat agreed to have their messages summarized.

This module owns reading and writing the ``consent`` table. A flag is the existence
of a (chat hash, user hash) row; raw identifiers are hashed here and never stored.
Every change is a single statement (INSERT ... ON CONFLICT DO NOTHING, or DELETE), so
several bot processes may toggle the same flag at once without a read-then-write
race, and the returned "changed" booleans stay truthful under concurrency.

The methods are synchronous and short; async callers run them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sqlalchemy import delete, func, select

from hushbrief.bot.identifiers import IdentifierHasher
from hushbrief.bot.storage import Database, consent_table

# Bound on bound parameters per IN list: far above a real thread's speaker count,
# and well within SQLite's and PostgreSQL's parameter limits.
_IN_BATCH: Final = 1000


class ConsentStore:
    """Opt-in flags per chat member, stored as keyed hashes."""

    def __init__(self, db: Database, hasher: IdentifierHasher) -> None:
        self._db = db
        self._hasher = hasher

    def opt_in(self, platform: str, chat_id: str, user_id: str) -> bool:
        """Record that this member agreed; True if they had not already."""
        row = {
            "chat_hash": self._hasher.chat(platform, chat_id),
            "user_hash": self._hasher.user(platform, user_id),
        }
        # RETURNING yields a row only if this statement inserted it; unlike rowcount,
        # which DB-API drivers need not report for INSERT, it is exact on both backends.
        stmt = (
            self._db.insert(consent_table)
            .values(row)
            .on_conflict_do_nothing(
                index_elements=[consent_table.c.chat_hash, consent_table.c.user_hash]
            )
            .returning(consent_table.c.chat_hash)
        )
        with self._db.transaction(write=True) as conn:
            return conn.execute(stmt).first() is not None

    def opt_out(self, platform: str, chat_id: str, user_id: str) -> bool:
        """Remove this member's agreement in this chat; True if there was one."""
        stmt = delete(consent_table).where(
            consent_table.c.chat_hash == self._hasher.chat(platform, chat_id),
            consent_table.c.user_hash == self._hasher.user(platform, user_id),
        )
        with self._db.transaction(write=True) as conn:
            return conn.execute(stmt).rowcount > 0

    def is_opted_in(self, platform: str, chat_id: str, user_id: str) -> bool:
        stmt = select(consent_table.c.user_hash).where(
            consent_table.c.chat_hash == self._hasher.chat(platform, chat_id),
            consent_table.c.user_hash == self._hasher.user(platform, user_id),
        )
        with self._db.transaction() as conn:
            return conn.execute(stmt).first() is not None

    def opted_in_among(
        self, platform: str, chat_id: str, user_ids: Iterable[str]
    ) -> set[str]:
        """The subset of ``user_ids`` (raw IDs) that opted in to this chat.

        One query for any realistic number of speakers (the IN list is split only
        beyond `_IN_BATCH` distinct users), all inside one transaction.
        """
        by_hash: dict[bytes, str] = {}
        for user_id in user_ids:
            by_hash[self._hasher.user(platform, user_id)] = user_id
        if not by_hash:
            return set()
        chat_hash = self._hasher.chat(platform, chat_id)
        hashes = list(by_hash)
        found: set[str] = set()
        with self._db.transaction() as conn:
            for start in range(0, len(hashes), _IN_BATCH):
                stmt = select(consent_table.c.user_hash).where(
                    consent_table.c.chat_hash == chat_hash,
                    consent_table.c.user_hash.in_(hashes[start : start + _IN_BATCH]),
                )
                found.update(by_hash[bytes(h)] for h in conn.execute(stmt).scalars())
        return found

    def count(self, platform: str, chat_id: str) -> int:
        """How many members of this chat opted in."""
        stmt = select(func.count()).select_from(consent_table).where(
            consent_table.c.chat_hash == self._hasher.chat(platform, chat_id)
        )
        with self._db.transaction() as conn:
            return int(conn.execute(stmt).scalar_one())

    def forget(self, platform: str, user_id: str) -> int:
        """Remove this user's agreement in every chat (``/forgetme``); rows removed."""
        stmt = delete(consent_table).where(
            consent_table.c.user_hash == self._hasher.user(platform, user_id)
        )
        with self._db.transaction(write=True) as conn:
            return int(conn.execute(stmt).rowcount)
