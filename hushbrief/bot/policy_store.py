"""Per-chat policy overrides: reading, changing and resetting them.

This module owns the ``chat_policy`` table. Only the keys a chat's admins changed are
stored (one nullable column per key; NULL follows the operator's default), so the
effective policy is always ``defaults.with_overrides(overrides)``. Changing one key
is a single upsert of that column, so concurrent changes of different keys from
several processes do not overwrite each other.

Who may change policy is decided by the caller (the command layer), not here.
"""

from __future__ import annotations

import typing
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import delete, select

from hushbrief.bot.identifiers import IdentifierHasher
from hushbrief.bot.policy import POLICY_KEYS, Policy, policy_to_storage
from hushbrief.bot.storage import Database, chat_policy_table

_FIELD_TYPES: Final[dict[str, Any]] = typing.get_type_hints(Policy)


def _storable(key: str, value: Any) -> Any:
    """Check ``value`` against the key's type and return it as stored.

    A wrong type stored here would make the chat's whole policy unreadable later, so
    it is refused now. Range checks belong to `policy.parse_policy_value`.
    """
    if value is None:
        return None
    field_type = _FIELD_TYPES[key]
    if field_type is bool:
        if not isinstance(value, bool):
            raise ValueError(f"policy key {key!r} takes a bool")
        return value
    if field_type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"policy key {key!r} takes an int")
        return value
    if isinstance(field_type, type) and issubclass(field_type, StrEnum):
        try:
            return policy_to_storage(field_type(value))
        except ValueError:
            raise ValueError(f"policy key {key!r} takes one of its enum values") from None
    raise TypeError(f"policy key {key!r} has no storage rule")  # pragma: no cover


class PolicyStore:
    """Policy overrides per chat, keyed by the chat's hash."""

    def __init__(self, db: Database, hasher: IdentifierHasher) -> None:
        self._db = db
        self._hasher = hasher

    def overrides(self, platform: str, chat_id: str) -> dict[str, Any]:
        """The keys this chat changed, with their stored values (enums as strings)."""
        stmt = select(chat_policy_table).where(
            chat_policy_table.c.chat_hash == self._hasher.chat(platform, chat_id)
        )
        with self._db.transaction() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            return {}
        return {k: row[k] for k in POLICY_KEYS if row[k] is not None}

    def set(self, platform: str, chat_id: str, key: str, value: Any) -> None:
        """Store one override (None clears it); ValueError for an unknown key or bad value."""
        if key not in POLICY_KEYS:
            raise ValueError("unknown policy key")
        stored = _storable(key, value)
        insert = self._db.insert(chat_policy_table).values(
            {"chat_hash": self._hasher.chat(platform, chat_id), key: stored}
        )
        # Only this key's column is written on conflict: a concurrent change of
        # another key in the same chat survives.
        stmt = insert.on_conflict_do_update(
            index_elements=[chat_policy_table.c.chat_hash],
            set_={key: insert.excluded[key]},
        )
        with self._db.transaction(write=True) as conn:
            conn.execute(stmt)

    def reset(self, platform: str, chat_id: str) -> None:
        """Drop every override of this chat: it follows the operator's defaults again."""
        stmt = delete(chat_policy_table).where(
            chat_policy_table.c.chat_hash == self._hasher.chat(platform, chat_id)
        )
        with self._db.transaction(write=True) as conn:
            conn.execute(stmt)

    def effective(self, platform: str, chat_id: str, defaults: Policy) -> Policy:
        """The operator's defaults with this chat's overrides applied."""
        return defaults.with_overrides(self.overrides(platform, chat_id))
