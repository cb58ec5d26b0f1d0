"""The bot's direct chats: its ``m.direct`` account data, and an encrypted DM room per member.

``!summarize private`` delivers to the member in a direct chat. The room is the one
the bot's ``m.direct`` lists for that member, if the bot is still in it with the
member (joined or invited), it is encrypted and nobody else is there; otherwise a
new one is created — ``is_direct``, the member invited, ``m.room.encryption`` in the
initial state so that not even the first message is ever sent in clear — and
recorded in ``m.direct``, the way Element records the DMs it makes. A DM the member
opened with the bot (an invite flagged ``is_direct``) is recorded the same way.

``m.direct`` lives on the homeserver, not on the bot's disk. It is read fresh before
each change and written back whole (the API has no partial update), under a lock,
so the bot's own concurrent changes never overwrite each other.

The summary is sent as soon as the new room is known from ``/sync`` with its
encryption and the invited member: nio then shares the room key with the member's
devices right away, so the member can read it after accepting the invite.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from nio import AsyncClient, RoomPreset

from hushbrief.adapters.matrix.errors import ApiError, MatrixError
from hushbrief.adapters.matrix.rooms import RoomState, direct_rooms
from hushbrief.adapters.matrix.transport import RetryPolicy, Transport, api_path, call_nio

log = logging.getLogger("hushbrief.matrix")

MEGOLM: Final = "m.megolm.v1.aes-sha2"
ENCRYPTION_STATE: Final = {"type": "m.room.encryption", "state_key": "",
                           "content": {"algorithm": MEGOLM}}


class DirectChats:
    """Finds, creates and records the bot's direct chats."""

    def __init__(
        self,
        client: AsyncClient,
        http: Transport,
        retry: RetryPolicy,
        *,
        rooms: Mapping[str, RoomState],
        wait_for: Callable[[Callable[[], bool]], Awaitable[bool]],
        tag: Callable[[str], str],
    ) -> None:
        self._client = client
        self._http = http
        self._retry = retry
        self._rooms = rooms
        self._wait_for = wait_for
        self._tag = tag
        self._by_user: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()

    def is_direct(self, room_id: str) -> bool:
        """In ``m.direct`` and exactly two members (see ``rooms`` for why both)."""
        state = self._rooms.get(room_id)
        if state is None or state.member_count() != 2:
            return False
        return any(room_id in ids for ids in self._by_user.values())

    def update(self, content: Mapping[str, Any]) -> None:
        """``m.direct`` as a sync delivered it (it changed, perhaps by another device)."""
        self._by_user = direct_rooms(content)

    async def load(self) -> None:
        self._by_user = await self._read() or {}

    async def record(self, user_id: str, room_id: str) -> None:
        """Add ``room_id`` to the bot's ``m.direct`` for ``user_id``."""
        async with self._lock:
            await self._record(user_id, room_id)

    async def room_for(self, user_id: str) -> str:
        """An encrypted direct chat with ``user_id``: a usable one from ``m.direct``, or new."""
        client = self._client
        async with self._lock:
            for room_id in sorted(self._by_user.get(user_id, ())):
                if self._usable(room_id, user_id) and self._rooms[room_id].member_count() == 2:
                    return room_id
            resp = await call_nio("create_dm", lambda: client.room_create(
                is_direct=True, invite=[user_id], preset=RoomPreset.trusted_private_chat,
                initial_state=[ENCRYPTION_STATE]), self._retry, idempotent=False)
            room_id = str(resp.room_id)
            log.info("matrix_dm_created chat=%s", self._tag(room_id))
            await self._record(user_id, room_id)
        if not await self._wait_for(lambda: self._usable(room_id, user_id)):
            raise MatrixError("dm_not_synced")
        return room_id

    def _usable(self, room_id: str, user_id: str) -> bool:
        state, room = self._rooms.get(room_id), self._client.rooms.get(room_id)
        return (state is not None and room is not None and bool(room.encrypted)
                and state.members.get(user_id) in ("join", "invite"))

    async def _record(self, user_id: str, room_id: str) -> None:
        current = await self._read()
        if current is None:
            return  # unreadable: writing now could erase entries we cannot see
        current.setdefault(user_id, set()).add(room_id)
        try:
            await self._http.request("direct_put", "PUT", self._path(),
                                     body={u: sorted(r) for u, r in current.items()})
        except MatrixError as exc:
            log.warning("matrix_direct_failed op=put reason=%s", exc)
        self._by_user = current

    async def _read(self) -> dict[str, set[str]] | None:
        try:
            return direct_rooms(await self._http.request("direct_get", "GET", self._path()))
        except ApiError as exc:
            if exc.errcode == "M_NOT_FOUND":
                return {}  # the bot has no direct chats yet
            log.warning("matrix_direct_failed op=get reason=%s", exc)
        except MatrixError as exc:
            log.warning("matrix_direct_failed op=get reason=%s", exc)
        return None

    def _path(self) -> str:
        return api_path("v3", "user", str(self._client.user_id), "account_data", "m.direct")
