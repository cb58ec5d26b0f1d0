"""The in-memory message window, for platforms that cannot fetch history (Telegram).

What it holds, and why it is shaped this way:

* Only messages of members who had opted in when they wrote them carry text.
  Every other message becomes a *placeholder*: its ID and time, no sender, no
  text, so that a summary can say how many messages it left out and a
  reply-anchored ``/summarize`` still finds its starting point.
* It lives in this process's memory only. Nothing here is ever written to disk,
  logged or pickled; a restart loses it, by design.
* It is bounded three ways: messages per thread (the chat's policy), bytes per
  chat (the operator's cap) and time-to-live (the chat's policy). The number of
  chats is bounded too; the idlest chat is dropped first.
* ``/optout`` and ``/forgetme`` turn that member's buffered messages into
  placeholders at once, so the next summary cannot contain them.

Each message is packed into a single ``bytes`` object (a fixed header plus the
UTF-8 ID, reply ID and text) because a Python object per field costs several
hundred bytes, more than a typical chat message itself; packing keeps the
window's memory under twice the raw text (measured by ``bench/bench_window.py``).
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from hushbrief.bot.events import ChatMessage

ChatKey = tuple[str, str]
"""(platform, chat_id)"""

# ts (double), user slot (uint32), id length, reply length (uint16 each)
_HEADER = struct.Struct("<dIHH")
_PLACEHOLDER = 0xFFFFFFFF
_MAX_ID = 0xFFFF


@dataclass(frozen=True, slots=True)
class BufferedMessage:
    message_id: str
    timestamp: float
    user_id: str | None
    """None for a placeholder: a message whose text the bot did not keep."""
    display_name: str | None
    handle: str | None
    text: str | None
    reply_to: str | None

    @property
    def is_placeholder(self) -> bool:
        return self.text is None


@dataclass(frozen=True, slots=True)
class Selection:
    """What ``/summarize`` asked for: all of them bounded by ``limit``, and optionally
    only messages newer than ``since`` or from ``from_message`` on."""

    limit: int
    since: float | None = None
    from_message: str | None = None


@dataclass(frozen=True, slots=True)
class Selected:
    messages: list[BufferedMessage]
    """Messages with text, oldest first."""
    left_out: int
    """Placeholders within the selection: messages whose text was never kept."""
    anchor_found: bool = True
    undecryptable: int = 0
    """Messages the bot could not decrypt (history platforms with end-to-end encryption)."""


def _pack(ts: float, slot: int, message_id: str, reply_to: str | None, text: str | None) -> bytes:
    mid = message_id.encode()[:_MAX_ID]
    rid = (reply_to or "").encode()[:_MAX_ID]
    body = b"" if text is None else text.encode()
    return _HEADER.pack(ts, slot, len(mid), len(rid)) + mid + rid + body


def _header(rec: bytes) -> tuple[float, int, int, int]:
    ts, slot, mlen, rlen = _HEADER.unpack_from(rec)
    return ts, slot, mlen, rlen


def _record_id(rec: bytes) -> str:
    _, _, mlen, _ = _header(rec)
    start = _HEADER.size
    return rec[start:start + mlen].decode()


def _record_ts(rec: bytes) -> float:
    return float(_HEADER.unpack_from(rec)[0])


@dataclass(slots=True)
class _Members:
    """Per-chat table of who wrote the buffered messages; records refer to a slot."""

    slots: list[tuple[str, str, str | None] | None] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def slot_for(self, user_id: str, name: str, handle: str | None) -> int:
        slot = self.index.get(user_id)
        if slot is None:
            slot = len(self.slots)
            self.slots.append((user_id, name, handle))
            self.index[user_id] = slot
        elif self.slots[slot] != (user_id, name, handle):
            # The latest display name wins: it is what the summary reader knows.
            self.slots[slot] = (user_id, name, handle)
        return slot

    def forget(self, user_id: str) -> int | None:
        slot = self.index.pop(user_id, None)
        if slot is not None:
            self.slots[slot] = None
        return slot


@dataclass(slots=True)
class _ChatBuffer:
    max_messages: int
    ttl: float
    threads: dict[str | None, deque[bytes]] = field(default_factory=dict)
    members: _Members = field(default_factory=_Members)
    nbytes: int = 0

    def count(self) -> int:
        return sum(len(t) for t in self.threads.values())


class MessageWindow:
    """Bounded per-chat, per-thread buffers of recent messages, in memory only."""

    def __init__(self, *, max_bytes_per_chat: int = 2_000_000, max_chats: int = 10_000) -> None:
        self._max_bytes = max_bytes_per_chat
        self._max_chats = max_chats
        self._chats: OrderedDict[ChatKey, _ChatBuffer] = OrderedDict()

    # --- limits ---------------------------------------------------------------------

    def configure(self, chat: ChatKey, *, max_messages: int, ttl: float) -> None:
        """Apply a chat's policy limits; shrinking them takes effect at once."""
        buf = self._chats.get(chat)
        if buf is None:
            return
        buf.max_messages, buf.ttl = max_messages, ttl
        for thread in buf.threads.values():
            while len(thread) > max_messages:
                buf.nbytes -= len(thread.popleft())

    # --- ingest ---------------------------------------------------------------------

    def add(
        self, msg: ChatMessage, *, opted_in: bool, max_messages: int, ttl: float
    ) -> None:
        """Buffer ``msg``: with its text if its sender opted in, as a placeholder otherwise."""
        key = (msg.chat.platform, msg.chat.chat_id)
        buf = self._chats.get(key)
        if buf is None:
            buf = self._chats[key] = _ChatBuffer(max_messages=max_messages, ttl=ttl)
            while len(self._chats) > self._max_chats:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(key)
            buf.max_messages, buf.ttl = max_messages, ttl
        if opted_in:
            slot = buf.members.slot_for(msg.sender.user_id, msg.sender.display_name,
                                        msg.sender.handle)
            rec = _pack(msg.timestamp, slot, msg.message_id, msg.reply_to, msg.text)
        else:
            rec = _pack(msg.timestamp, _PLACEHOLDER, msg.message_id, None, None)
        thread = buf.threads.get(msg.thread_id)
        if thread is None:
            thread = buf.threads[msg.thread_id] = deque()
        thread.append(rec)
        buf.nbytes += len(rec)
        while len(thread) > buf.max_messages:
            buf.nbytes -= len(thread.popleft())
        self._evict_bytes(buf)

    def _evict_bytes(self, buf: _ChatBuffer) -> None:
        while buf.nbytes > self._max_bytes:
            # The oldest message of the whole chat goes first, whichever thread holds it.
            oldest = min(
                (t for t in buf.threads.values() if t), key=lambda t: _record_ts(t[0])
            )
            buf.nbytes -= len(oldest.popleft())
        self._drop_empty_threads(buf)

    @staticmethod
    def _drop_empty_threads(buf: _ChatBuffer) -> None:
        for tid in [tid for tid, t in buf.threads.items() if not t]:
            del buf.threads[tid]

    def edit(self, chat: ChatKey, message_id: str, text: str) -> bool:
        """Replace a buffered message's text. Placeholders stay placeholders."""
        found = self._find(chat, message_id)
        if found is None:
            return False
        buf, thread, i = found
        rec = thread[i]
        ts, slot, mlen, rlen = _header(rec)
        if slot == _PLACEHOLDER:
            return False
        start = _HEADER.size
        reply = rec[start + mlen:start + mlen + rlen].decode() or None
        new = _pack(ts, slot, _record_id(rec), reply, text)
        thread[i] = new
        buf.nbytes += len(new) - len(rec)
        self._evict_bytes(buf)
        return True

    def delete(self, chat: ChatKey, message_id: str) -> bool:
        """Forget a message that was deleted on the platform, placeholder or not."""
        found = self._find(chat, message_id)
        if found is None:
            return False
        buf, thread, i = found
        rec = thread[i]
        del thread[i]
        buf.nbytes -= len(rec)
        self._drop_empty_threads(buf)
        return True

    def _find(self, chat: ChatKey, message_id: str) -> tuple[_ChatBuffer, deque[bytes], int] | None:
        buf = self._chats.get(chat)
        if buf is None:
            return None
        for thread in buf.threads.values():
            # Edits and deletions are nearly always of recent messages: search newest first.
            for i in range(len(thread) - 1, -1, -1):
                if _record_id(thread[i]) == message_id:
                    return buf, thread, i
        return None

    # --- consent withdrawal --------------------------------------------------------

    def purge_member(self, chat: ChatKey, user_id: str) -> int:
        """Drop the text of every buffered message ``user_id`` wrote in ``chat``."""
        buf = self._chats.get(chat)
        if buf is None:
            return 0
        slot = buf.members.forget(user_id)
        if slot is None:
            return 0
        purged = 0
        for thread in buf.threads.values():
            for i, rec in enumerate(thread):
                ts, rslot, _, _ = _header(rec)
                if rslot == slot:
                    new = _pack(ts, _PLACEHOLDER, _record_id(rec), None, None)
                    thread[i] = new
                    buf.nbytes += len(new) - len(rec)
                    purged += 1
        return purged

    def purge_member_everywhere(self, platform: str, user_id: str) -> int:
        return sum(
            self.purge_member(key, user_id) for key in list(self._chats) if key[0] == platform
        )

    def drop_chat(self, chat: ChatKey) -> None:
        self._chats.pop(chat, None)

    # --- expiry ---------------------------------------------------------------------

    def expire(self, now: float) -> int:
        """Drop every message older than its chat's time-to-live; returns how many."""
        dropped = 0
        for key in list(self._chats):
            buf = self._chats[key]
            cutoff = now - buf.ttl
            for thread in buf.threads.values():
                # Messages arrive in time order, so expired ones sit at the left end.
                while thread and _record_ts(thread[0]) < cutoff:
                    buf.nbytes -= len(thread.popleft())
                    dropped += 1
            self._drop_empty_threads(buf)
            if not buf.threads:
                del self._chats[key]
        return dropped

    # --- reading --------------------------------------------------------------------

    def select(
        self, chat: ChatKey, thread_id: str | None, selection: Selection, *, now: float
    ) -> Selected:
        """The newest messages of one thread that ``selection`` asks for, oldest first."""
        buf = self._chats.get(chat)
        thread = buf.threads.get(thread_id) if buf is not None else None
        if buf is None or thread is None:
            return Selected([], 0, anchor_found=selection.from_message is None)
        cutoff = now - buf.ttl
        if selection.since is not None:
            cutoff = max(cutoff, selection.since)
        records: list[bytes] = []
        anchor_found = selection.from_message is None
        for rec in reversed(thread):
            if len(records) >= selection.limit or _record_ts(rec) < cutoff:
                break
            records.append(rec)
            if selection.from_message is not None and _record_id(rec) == selection.from_message:
                anchor_found = True
                break
        if not anchor_found:
            return Selected([], 0, anchor_found=False)
        records.reverse()
        kept: list[BufferedMessage] = []
        left_out = 0
        for msg in self._unpack_all(buf, records):
            if msg.is_placeholder:
                left_out += 1
            else:
                kept.append(msg)
        return Selected(kept, left_out)

    @staticmethod
    def _unpack_all(buf: _ChatBuffer, records: list[bytes]) -> Iterator[BufferedMessage]:
        start = _HEADER.size
        for rec in records:
            ts, slot, mlen, rlen = _header(rec)
            mid = rec[start:start + mlen].decode()
            member = None if slot == _PLACEHOLDER else buf.members.slots[slot]
            if member is None:
                yield BufferedMessage(mid, ts, None, None, None, None, None)
                continue
            reply = rec[start + mlen:start + mlen + rlen].decode() or None
            text = rec[start + mlen + rlen:].decode()
            user_id, name, handle = member
            yield BufferedMessage(mid, ts, user_id, name, handle, text, reply)

    def stats(self, chat: ChatKey) -> tuple[int, int]:
        """(messages, bytes) buffered for ``chat``."""
        buf = self._chats.get(chat)
        return (0, 0) if buf is None else (buf.count(), buf.nbytes)

    def total_bytes(self) -> int:
        return sum(b.nbytes for b in self._chats.values())

    def __len__(self) -> int:
        return sum(b.count() for b in self._chats.values())
