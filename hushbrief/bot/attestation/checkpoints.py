"""The bot's memory of the transparency log: the newest checkpoint it verified.

Only the tree size and root hash are stored, per configured log. A log may
only grow: a checkpoint of the same size with another root, or one that a
consistency proof cannot connect to the stored one, is a fork — proof that the
log showed different histories to different readers — and the bot refuses.

Several replicas may verify at once; ``advance`` only ever moves the stored
checkpoint forward (a conditional upsert), so the newest one wins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select

from hushbrief.bot.storage import Database, log_checkpoint_table


def log_id(origin: str, key: str) -> str:
    """A stable name for one log: its public origin and key, hashed to 32 hex characters."""
    return hashlib.sha256(f"{origin}\n{key}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class TrustedCheckpoint:
    size: int
    root: bytes


class CheckpointStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, log: str) -> TrustedCheckpoint | None:
        table = log_checkpoint_table
        with self._db.transaction() as conn:
            row = conn.execute(
                select(table.c.size, table.c.root).where(table.c.log_id == log)).first()
        return None if row is None else TrustedCheckpoint(int(row.size), bytes(row.root))

    def advance(self, log: str, checkpoint: TrustedCheckpoint) -> None:
        """Store ``checkpoint`` unless a larger one is already stored."""
        table = log_checkpoint_table
        stmt = self._db.insert(table).values(log_id=log, size=checkpoint.size,
                                             root=checkpoint.root)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.log_id],
            set_={"size": stmt.excluded.size, "root": stmt.excluded.root},
            where=table.c.size < stmt.excluded.size,
        )
        with self._db.transaction(write=True) as conn:
            conn.execute(stmt)
