"""Room and thread history, fetched from the homeserver on demand and decrypted in memory.

``HistoryReader.read`` answers the core's ``fetch_history``. Nothing is buffered
between requests: each ``!summarize`` pages back from the live end of the room,
decrypts what it needs with the bot's own Megolm keys, and forgets it all when
the summary is done.

Which events count
------------------
* Outside a thread: the room's main timeline — ``/messages`` backwards, filtered
  to ``m.room.message`` and ``m.room.encrypted``. Thread *replies* are left out
  (recognized by the cleartext ``m.relates_to`` that clients copy out of the
  ciphertext, so they are skipped before any decryption): each thread is its own
  conversation with its own ``!summarize``, and a room summary that mixed them in
  would jumble both. Thread roots are main-timeline messages and stay.
* Inside a thread: the thread's ``m.thread`` relations (``/relations/{root}/m.thread``,
  newest first) and then the root itself.
* Skipped, not counted: the bot's own messages, ``m.notice`` (what bots send),
  commands to this bot, redacted events, edits themselves, and message types that
  are not conversation (verification requests, polls, …). Skipped events are not
  "left out" either: there was nothing to leave out.
* Edits (``m.replace``): the original event shows its newest edit by the same
  sender — from an edit met on the way back, or the one the server bundles in
  ``unsigned.m.relations.m.replace`` (which also covers edits of thread messages,
  since those are not ``m.thread`` relations themselves). An edit by anyone else
  is ignored, as the spec requires.
* Emotes become ``* name text``; files and images ``[image] name``. A reply's
  fallback quote (``> <@bob> …``) is removed: it quotes another member, who may
  not have opted in.

Bounds: ``limit`` messages (undecryptable ones included: "the last 50 messages"
means the last 50 that were sent), ``since`` (``origin_server_ts``), the
``from_message`` anchor (included, then stop), and at most ``max_scan`` events
looked at, so a room full of thread replies or bot chatter cannot make one
command page through its whole history.

Undecryptable events (sent before the bot joined, whose keys never arrived, or in
an envelope nio cannot use — see ``megolm_event``) are counted in
``MatrixHistory.undecryptable``; the Megolm ones go to ``on_undecryptable`` so the
adapter can ask for their keys. Edits that cannot be decrypted are not counted:
the original is there, only unedited.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nio import MegolmEvent
from nio.exceptions import EncryptionError, LocalProtocolError

from hushbrief.adapters.matrix.commands import message_text, relations
from hushbrief.adapters.matrix.errors import ApiError
from hushbrief.adapters.matrix.transport import Transport, api_path
from hushbrief.bot.events import ChatMessage, ChatRef, Member

log = logging.getLogger("hushbrief.matrix")

MEGOLM = "m.megolm.v1.aes-sha2"
MESSAGE_FILTER = json.dumps({"types": ["m.room.message", "m.room.encrypted"]},
                            separators=(",", ":"))
MEDIA_LABELS = {"m.image": "image", "m.file": "file", "m.audio": "audio", "m.video": "video"}
CONVERSATION = frozenset({"m.text", "m.emote", *MEDIA_LABELS})


@dataclass(frozen=True, slots=True)
class FetchStats:
    """How one history fetch went: for logs (counts, durations) and the benchmark."""

    pages: int
    events: int
    """Events looked at, skipped ones included."""
    decrypted: int
    undecryptable: int
    fetch_seconds: float
    """HTTP round trips and JSON parsing."""
    decrypt_seconds: float


class MatrixHistory(list[ChatMessage]):
    """``fetch_history``'s answer: the messages, oldest first, plus what could not be read.

    A list, so it is the ``Sequence[ChatMessage]`` the core's ``HistorySource``
    promises today; ``undecryptable`` is the count the core can read (and
    ``messages`` the same list), until the protocol returns a small result type.
    """

    __slots__ = ("stats", "undecryptable")

    def __init__(self, messages: Sequence[ChatMessage], *, undecryptable: int,
                 stats: FetchStats) -> None:
        super().__init__(messages)
        self.undecryptable = undecryptable
        self.stats = stats

    @property
    def messages(self) -> Sequence[ChatMessage]:
        return self


UNDECRYPTABLE = object()
"""``Walk.add``'s content for an event the bot holds no key for."""


@dataclass(frozen=True, slots=True)
class _Edit:
    sender: str
    ts: int
    content: Mapping[str, Any]


class Walk:
    """The newest-first walk over raw events that decides what becomes a ``ChatMessage``.

    Pure: the reader feeds it raw events (``wants`` before decrypting, ``add`` after)
    and reads ``messages()`` at the end. Kept apart from the I/O so the rules are
    tested on plain dicts.
    """

    def __init__(
        self,
        chat: ChatRef,
        *,
        bot_user_id: str,
        limit: int,
        since: float | None,
        from_message: str | None,
        thread_id: str | None,
        speaker: Callable[[str], Member],
        is_command: Callable[[Mapping[str, Any]], bool],
        max_scan: int,
    ) -> None:
        self._chat = chat
        self._bot = bot_user_id
        self._limit = limit
        self._since_ms = None if since is None else since * 1000
        self._anchor = from_message
        self._thread = thread_id
        self._speaker = speaker
        self._is_command = is_command
        self._max_scan = max_scan
        self._edits: dict[str, _Edit] = {}
        self._collected: list[ChatMessage] = []
        self.undecryptable = 0
        self.scanned = 0
        self.done = False
        self.truncated = False

    def wants(self, raw: Mapping[str, Any], *, is_root: bool = False) -> bool:
        """Whether ``raw`` (newest first) needs decoding; also decides when the walk ends."""
        if self.done:
            return False
        self.scanned += 1
        if self.scanned > self._max_scan:
            self.done = self.truncated = True
            return False
        ts = raw.get("origin_server_ts")
        if not isinstance(ts, int) or not isinstance(raw.get("event_id"), str):
            return False
        if self._since_ms is not None and ts < self._since_ms:
            self.done = True  # everything further back is older still
            return False
        if raw.get("sender") == self._bot or _redacted(raw):
            return False
        clear = raw.get("content")
        clear_rel = relations(clear) if isinstance(clear, Mapping) else None
        return not (not is_root and self._thread is None and clear_rel is not None
                    and clear_rel.thread_id is not None)

    def add(self, raw: Mapping[str, Any], content: Mapping[str, Any] | object | None, *,
            bundled_edit: tuple[str, int, Mapping[str, Any]] | None = None) -> None:
        """One event ``wants`` accepted, with its (decrypted) content, or ``UNDECRYPTABLE``."""
        event_id: str = raw["event_id"]
        sender = raw.get("sender")
        ts: int = raw["origin_server_ts"]
        if not isinstance(sender, str):
            return
        if content is UNDECRYPTABLE:
            clear = raw.get("content")
            if isinstance(clear, Mapping) and relations(clear).replaces:
                return  # an edit we cannot read: the original still counts, unedited
            self.undecryptable += 1
            self._check_bounds(event_id)
            return
        if not isinstance(content, Mapping):
            return
        rel = relations(content)
        if rel.replaces is not None:
            new = content.get("m.new_content")
            if isinstance(new, Mapping):
                self._note_edit(rel.replaces, _Edit(sender, ts, new))
            return
        if content.get("msgtype") not in CONVERSATION or self._is_command(content):
            return
        if bundled_edit is not None:
            self._note_edit(event_id, _Edit(*bundled_edit))
        edit = self._edits.get(event_id)
        shown = edit.content if edit is not None and edit.sender == sender else content
        text = self._text(sender, shown)
        if text is None:
            return
        self._collected.append(ChatMessage(
            chat=self._chat, message_id=event_id, sender=self._speaker(sender), text=text,
            timestamp=ts / 1000, thread_id=self._thread, reply_to=rel.reply_to))
        self._check_bounds(event_id)

    def messages(self) -> list[ChatMessage]:
        """The collected messages, oldest first."""
        return list(reversed(self._collected))

    def _check_bounds(self, event_id: str) -> None:
        if event_id == self._anchor or len(self._collected) + self.undecryptable >= self._limit:
            self.done = True

    def _note_edit(self, target: str, edit: _Edit) -> None:
        known = self._edits.get(target)
        if known is None or edit.ts > known.ts:
            self._edits[target] = edit

    def _text(self, sender: str, content: Mapping[str, Any]) -> str | None:
        msgtype = content.get("msgtype")
        body = message_text(content)
        if body is None or not body.strip() or msgtype not in CONVERSATION:
            return None
        if msgtype == "m.emote":
            return f"* {self._speaker(sender).display_name} {body}"
        label = MEDIA_LABELS.get(str(msgtype))
        return f"[{label}] {body}" if label else body


def megolm_event(raw: Mapping[str, Any], room_id: str) -> MegolmEvent | None:
    """nio's ``MegolmEvent`` for a raw ``m.room.encrypted`` event, or None if nio can't use it.

    Built directly rather than with ``Event.parse_encrypted_event``: that validates the
    envelope against nio's JSON schema twice, which costs more than the decryption itself
    (see ``bench/bench_matrix.py``); the fields nio reads are checked here instead.
    ``sender_key`` and ``device_id`` are deprecated since Matrix 1.3 but still sent, and
    nio 0.26 finds sessions by ``sender_key``: without it an event cannot be decrypted.
    """
    content = raw.get("content")
    if not isinstance(content, Mapping) or content.get("algorithm") != MEGOLM:
        return None
    fields = ("ciphertext", "sender_key", "session_id", "device_id")
    if not all(isinstance(content.get(f), str) for f in fields):
        return None
    if not (isinstance(raw.get("event_id"), str) and isinstance(raw.get("sender"), str)
            and isinstance(raw.get("origin_server_ts"), int)):
        return None
    event = MegolmEvent(source=dict(raw), device_id=content["device_id"],
                        ciphertext=content["ciphertext"], algorithm=MEGOLM, room_id=room_id)
    event.sender_key = content["sender_key"]
    event.session_id = content["session_id"]
    return event


def _redacted(raw: Mapping[str, Any]) -> bool:
    unsigned = raw.get("unsigned")
    return isinstance(unsigned, Mapping) and "redacted_because" in unsigned


class HistoryReader:
    """Pages and decrypts history for ``fetch_history`` (see the module docstring)."""

    def __init__(
        self,
        transport: Transport,
        decrypt: Callable[[Any], Any],
        *,
        page_size: int = 100,
        max_scan: int = 5000,
        on_undecryptable: Callable[[list[Any]], None] | None = None,
        on_stats: Callable[[FetchStats], None] | None = None,
    ) -> None:
        self._http = transport
        self._decrypt = decrypt
        self._page_size = page_size
        self._max_scan = max_scan
        self._on_undecryptable = on_undecryptable
        self._on_stats = on_stats

    async def read(
        self,
        chat: ChatRef,
        thread_id: str | None,
        *,
        bot_user_id: str,
        limit: int,
        since: float | None,
        from_message: str | None,
        speaker: Callable[[str], Member],
        is_command: Callable[[Mapping[str, Any]], bool],
    ) -> MatrixHistory:
        room_id = chat.chat_id
        walk = Walk(chat, bot_user_id=bot_user_id, limit=max(0, limit), since=since,
                    from_message=from_message, thread_id=thread_id, speaker=speaker,
                    is_command=is_command, max_scan=max(self._max_scan, limit * 4))
        run = _Run(self, room_id)
        # Small requests for small asks: skipped events (bot replies, commands) need room too.
        page = min(self._page_size, max(limit + 20, 20))
        token: str | None = None
        if limit <= 0:
            walk.done = True
        while not walk.done:
            if thread_id is None:
                query: dict[str, str | int] = {"dir": "b", "limit": page,
                                               "filter": MESSAGE_FILTER}
                if token:
                    query["from"] = token
                body = await run.get("messages", api_path("v3", "rooms", room_id, "messages",
                                                          query=query))
                chunk, next_token = body.get("chunk"), body.get("end")
            else:
                query = {"dir": "b", "limit": page}
                if token:
                    query["from"] = token
                body = await run.get("relations", api_path(
                    "v1", "rooms", room_id, "relations", thread_id, "m.thread", query=query))
                chunk, next_token = body.get("chunk"), body.get("next_batch")
            events = [e for e in chunk if isinstance(e, dict)] if isinstance(chunk, list) else []
            for raw in events:
                run.feed(walk, raw)
                if walk.done:
                    break
            if not events or not isinstance(next_token, str) or next_token == token:
                break
            token = next_token
        if thread_id is not None and not walk.done:
            try:
                root = await run.get("event", api_path("v3", "rooms", room_id, "event",
                                                       thread_id))
            except ApiError as exc:
                if exc.errcode not in ("M_NOT_FOUND", "M_FORBIDDEN"):
                    raise
            else:
                run.feed(walk, root, is_root=True)
        stats = FetchStats(pages=run.pages, events=walk.scanned, decrypted=run.decrypted,
                           undecryptable=walk.undecryptable, fetch_seconds=run.fetch_s,
                           decrypt_seconds=run.decrypt_s)
        if walk.truncated:
            log.info("matrix_history_truncated scanned=%d", walk.scanned)
        if run.failed and self._on_undecryptable is not None:
            self._on_undecryptable(run.failed)
        if self._on_stats is not None:
            self._on_stats(stats)
        return MatrixHistory(walk.messages(), undecryptable=walk.undecryptable, stats=stats)


class _Run:
    """One ``read``: its counters, timers and the decoding of single events."""

    def __init__(self, reader: HistoryReader, room_id: str) -> None:
        self._reader = reader
        self._room_id = room_id
        self.pages = 0
        self.decrypted = 0
        self.fetch_s = 0.0
        self.decrypt_s = 0.0
        self.failed: list[Any] = []

    async def get(self, op: str, path: str) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return await self._reader._http.request(op, "GET", path)
        finally:
            self.pages += 1
            self.fetch_s += time.perf_counter() - started

    def feed(self, walk: Walk, raw: Mapping[str, Any], *, is_root: bool = False) -> None:
        if not walk.wants(raw, is_root=is_root):
            return
        content = self._decode(raw)
        bundled = None
        unsigned = raw.get("unsigned")
        relations_ = unsigned.get("m.relations") if isinstance(unsigned, Mapping) else None
        edit = relations_.get("m.replace") if isinstance(relations_, Mapping) else None
        if isinstance(edit, Mapping) and isinstance(edit.get("type"), str):
            decoded = self._decode(edit, count_failure=False)
            if isinstance(decoded, Mapping) and isinstance(edit.get("sender"), str) \
                    and isinstance(edit.get("origin_server_ts"), int):
                new = decoded.get("m.new_content")
                if isinstance(new, Mapping):
                    bundled = (edit["sender"], edit["origin_server_ts"], new)
        walk.add(raw, content, bundled_edit=bundled)

    def _decode(self, raw: Mapping[str, Any], *, count_failure: bool = True
                ) -> Mapping[str, Any] | object | None:
        """The event's content: as sent, decrypted, ``UNDECRYPTABLE``, or None if unusable."""
        if raw.get("type") == "m.room.message":
            content = raw.get("content")
            return content if isinstance(content, Mapping) else None
        if raw.get("type") != "m.room.encrypted":
            return None
        started = time.perf_counter()
        try:
            event = megolm_event(raw, self._room_id)
            if event is None:
                return UNDECRYPTABLE  # not Megolm, or without the fields nio needs
            try:
                plain = self._reader._decrypt(event)
            except (EncryptionError, LocalProtocolError):
                if count_failure:
                    self.failed.append(event)
                return UNDECRYPTABLE
            source = getattr(plain, "source", None)
            if not isinstance(source, Mapping) or source.get("type") != "m.room.message":
                return None
            self.decrypted += 1
            content = source.get("content")
            return content if isinstance(content, Mapping) else None
        finally:
            self.decrypt_s += time.perf_counter() - started
