"""What the adapter knows about rooms: who may invite it, who is an admin, what is a DM.

Pure functions over room state the adapter tracks from ``/sync``, so the rules
are tested without a homeserver.

Admins
------
A member is an admin — may change the bot's ``!policy`` — if they can change the
room's own settings: their power level is at least the *lower* of the room's
``state_default`` and the level needed to send ``m.room.power_levels``. With
Matrix's defaults that is 50: the room's moderators, the people who may rename
it or change its encryption, may also decide whether it is summarized. (Using the
power-levels level alone — usually 100 — would shut out moderators who can change
everything else about the room; using ``state_default`` alone would let a room
that lowered the power-levels level below it keep the bot away from the people
who can appoint admins.) In room versions 12 and later the room's creators
(``m.room.create``'s sender and ``additional_creators``) have unlimited power and
do not appear in ``users``; they are admins. If the room's power levels have not
been seen, only the creator counts as an admin: the spec would give everyone
level 0 against a ``state_default`` of 0, but failing closed costs nothing here.

The adapter keeps each room's latest ``m.room.power_levels`` *content* itself
instead of asking nio's ``MatrixRoom.power_levels``: nio merges a new event's
``users`` map into the old one, so a member whose entry was removed (demoted to
the default) would keep their old level in nio's view.

Direct chats
------------
A room is a direct chat (``ChatRef.is_group = False``) when it is in the bot's own
``m.direct`` account data — the bot records rooms it creates for a member, and
rooms it joined from an invite flagged ``is_direct`` — *and* it has exactly two
members (joined or invited). The member count alone would call every small room
that only just began a DM; ``m.direct`` alone would keep calling a DM that others
joined later one. A room's ``is_group`` may change over time; consent is stored
per room ID either way, so nothing is lost when it does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hushbrief.adapters.matrix.commands import server_name


def inviter_allowed(inviter: str, allowed: Sequence[str]) -> bool:
    """``allowed`` holds user IDs (exact match) and ``:server`` entries (the inviter's server)."""
    for entry in allowed:
        if entry.startswith(":"):
            if server_name(inviter) == entry[1:]:
                return True
        elif inviter == entry:
            return True
    return False


@dataclass(slots=True)
class RoomState:
    """The state events the adapter itself tracks for one joined room."""

    creator: str | None = None
    additional_creators: frozenset[str] = frozenset()
    room_version: str = "1"
    power_levels: Mapping[str, Any] | None = None
    members: dict[str, str] = field(default_factory=dict)
    """user ID → membership ("join", "invite", "leave", "ban"), from member events seen."""

    def apply(self, event_type: str, state_key: str | None, sender: str,
              content: Mapping[str, Any]) -> None:
        """Fold one state event (from the sync's ``state`` or ``timeline``) into the state."""
        if state_key is None:
            return
        if event_type == "m.room.create" and state_key == "":
            self.creator = sender
            extra = content.get("additional_creators")
            if isinstance(extra, list):
                self.additional_creators = frozenset(x for x in extra if isinstance(x, str))
            version = content.get("room_version")
            self.room_version = version if isinstance(version, str) else "1"
        elif event_type == "m.room.power_levels" and state_key == "":
            self.power_levels = dict(content)
        elif event_type == "m.room.member":
            membership = content.get("membership")
            if isinstance(membership, str):
                self.members[state_key] = membership

    def member_count(self) -> int:
        """Joined plus invited members."""
        return sum(1 for m in self.members.values() if m in ("join", "invite"))

    def is_admin(self, user_id: str) -> bool:
        if user_id in self._privileged_creators():
            return True
        pl = self.power_levels
        if pl is None:
            return user_id == self.creator
        users = pl.get("users")
        users = users if isinstance(users, Mapping) else {}
        level = _int(users.get(user_id), _int(pl.get("users_default"), 0))
        state_default = _int(pl.get("state_default"), 50)
        events = pl.get("events")
        events = events if isinstance(events, Mapping) else {}
        needed = min(state_default, _int(events.get("m.room.power_levels"), state_default))
        return level >= needed

    def _privileged_creators(self) -> frozenset[str]:
        version = self.room_version
        privileged = (int(version) >= 12 if version.isdigit()
                      else version.startswith("org.matrix.hydra."))
        if not privileged or self.creator is None:
            return frozenset()
        return self.additional_creators | {self.creator}


def _int(value: Any, default: int) -> int:
    # Power levels were allowed to be strings before room version 10.
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def direct_rooms(content: Mapping[str, Any]) -> dict[str, set[str]]:
    """``m.direct`` account data → {user ID: {room IDs}}, ignoring malformed entries."""
    rooms: dict[str, set[str]] = {}
    for user_id, ids in content.items():
        if isinstance(user_id, str) and isinstance(ids, list):
            rooms[user_id] = {r for r in ids if isinstance(r, str)}
    return rooms
