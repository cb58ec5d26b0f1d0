"""What the core may ask of a chat platform, as narrow protocols.

Every adapter implements ``Platform``. Abilities that only some platforms have
are separate protocols the core checks for with ``isinstance``, so an adapter
never has to implement a method only to raise "not supported".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hushbrief.bot.events import ChatMessage, ChatRef


@runtime_checkable
class Platform(Protocol):
    @property
    def name(self) -> str:
        """The platform name used in ``ChatRef.platform``."""
        ...

    async def is_admin(self, chat: ChatRef, user_id: str) -> bool:
        """Whether ``user_id`` may change this chat's policy."""
        ...


class History(Protocol):
    """What a history fetch found: readable messages and how many could not be read."""

    @property
    def messages(self) -> Sequence[ChatMessage]:
        """Oldest first, from everyone (the core filters by consent)."""
        ...

    @property
    def undecryptable(self) -> int:
        """Messages in the selection the bot holds no key for (end-to-end encryption)."""
        ...


@dataclass(frozen=True, slots=True)
class FetchedHistory:
    """A plain ``History``."""

    messages: Sequence[ChatMessage]
    undecryptable: int = 0


@runtime_checkable
class HistorySource(Protocol):
    """Platforms that can read a chat's history on demand (Matrix); no window needed."""

    async def fetch_history(
        self,
        chat: ChatRef,
        thread_id: str | None,
        *,
        limit: int,
        since: float | None,
        from_message: str | None,
    ) -> History:
        """Up to ``limit`` newest messages of the thread, oldest first, from everyone."""
        ...


@runtime_checkable
class DirectMessages(Protocol):
    """Platforms that can deliver to one member privately."""

    async def can_message_directly(self, user_id: str) -> bool:
        """False if the member must first open a conversation with the bot."""
        ...


@runtime_checkable
class ActivityIndicator(Protocol):
    """Platforms that can show "typing…" while a summary is being made."""

    async def show_working(self, chat: ChatRef, thread_id: str | None) -> None: ...


@runtime_checkable
class Visibility(Protocol):
    """Platforms where the bot may be unable to see a chat's messages (Telegram privacy mode)."""

    async def visibility_problem(self, chat: ChatRef) -> str | None:
        """One sentence telling admins what to do if the bot cannot see messages; else None."""
        ...
