"""Reading chat transcripts for ``hushbrief summarize [FILE]``.

A transcript arrives as one string (a file or stdin) and is turned into a list of
:class:`TranscriptMessage` in chronological order. Three formats are understood,
and :func:`detect_format` tells them apart without being told:

Plain text (``plain``)
    One message per line, ``Speaker: text``. A line may start with a timestamp,
    ``[12:01]``, ``[2024-05-01 12:01]`` or ``2024-05-01 12:01`` (seconds optional;
    ``T`` may stand for the space; a full date is read as local time, a bare clock
    time gives no timestamp). The colon after the speaker must be followed by a
    space or end the line, and a speaker is at most 64 characters without a colon,
    so ``https://x`` or ``12:30`` inside text never starts a message. Blank lines
    and lines with ``#`` in the first column are skipped. A line that is indented, or that has
    no ``Speaker:`` form, continues the previous message (leading whitespace is
    dropped); lines before the first speaker line are a preamble and are ignored.
    Input counts as JSON only when it opens like JSON does (``{"``, ``{}``,
    ``[{``, ``[[``, ``["`` or ``[]``), so ``[bot]: hi`` is still plain text.

Telegram Desktop JSON (``telegram-json``)
    ``result.json`` from "Export chat history" with JSON selected: an object with
    ``name``, ``type``, ``id`` and ``messages``. Only ``"type": "message"`` entries
    count; service messages (joins, pins, topic creation) and entries whose text is
    empty (stickers, media without caption) are skipped. In these exports a
    media caption *is* the ``text`` field. ``text`` is a string or a list mixing
    strings and entity objects (``{"type": "bold", "text": ...}``); the visible
    text of the parts is joined, link targets of ``text_link`` are not kept.
    Replies across chats (``reply_to_peer_id``) are dropped because their ids
    belong to another chat. In forum supergroups a message that starts a topic
    thread replies to the topic's ``topic_created`` service message; that id
    becomes ``thread_id``, and replies inherit the thread of what they answer.
    Names: ``from``; ``null`` (deleted accounts) reads as "Deleted Account".
    A full account export (``chats.list``) is accepted only if it holds one chat.

Element (Matrix) JSON (``matrix-json``)
    Element's "Export chat" JSON: ``room_name``, ``room_creator``, ``topic``,
    ``export_date``, ``exported_by`` and ``messages``, a list of raw events as
    the client holds them (already decrypted, already showing the latest edit).
    Also a bare JSON list of events, and a ``/messages`` response
    (``{"chunk": [...], "state": [...]}``). ``m.room.message`` events with
    ``m.text``, ``m.notice`` and ``m.emote`` (rendered ``* name text``) are kept.
    Media (``m.image``, ``m.file``, ``m.video``, ``m.audio``) are kept only when
    they carry a caption, which by the spec is when ``filename`` is present and
    differs from ``body``; a bare ``body`` is just the file name and tells a
    summary nothing. Other msgtypes (locations, undecryptable
    ``m.bad.encrypted``, verification requests) are skipped. Edits
    (``m.replace``) replace the text of the event they edit, newest wins, and
    only when sent by the original sender; they are never messages themselves.
    Redacted events (empty content, ``unsigned.redacted_because``, or the target
    of an ``m.room.redaction`` in the input) are skipped. A reply's fallback
    quote (leading ``> `` lines and the blank line after them) is cut from the
    body. ``m.thread`` relations give ``thread_id`` = the root event id, and the
    root itself carries its own id so a thread groups completely; the
    ``m.in_reply_to`` that thread messages carry only as a fallback
    (``is_falling_back``) is not a reply. The speaker is the display name from
    the latest ``m.room.member`` event for the sender in the input, else the
    localpart of the user id (``@alice:example.org`` → ``alice``).

In every format a name shared by two different accounts gets the account id
appended (``Alex (user42)``), so a summary never merges two people; surrounding
whitespace is stripped from texts and runs of whitespace in names collapse.
Messages are sorted by timestamp (stably) when every message has one; otherwise
the input order is kept.

Errors are :class:`TranscriptError`, whose message is one sentence for the user
that names the line number or JSON path (``$.messages[3].text``) and never quotes
message text, so error output cannot leak a chat into logs.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import BinaryIO, Final

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_SPEAKER_CHARS",
    "TranscriptError",
    "TranscriptFormat",
    "TranscriptMessage",
    "detect_format",
    "parse_transcript",
    "read_transcript",
]

MAX_INPUT_BYTES: Final = 50 * 1024 * 1024
"""The largest transcript accepted; a month of a very busy group fits easily."""

MAX_SPEAKER_CHARS: Final = 64
"""The longest speaker name a plain-text line may start with."""


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    speaker: str
    """Display name as it should appear in the summary."""
    text: str
    timestamp: float | None
    """POSIX seconds; None when the format has none."""
    message_id: str | None
    reply_to: str | None
    """message_id of the message this answers, if known."""
    thread_id: str | None
    """Matrix thread root / Telegram topic, if known."""


class TranscriptFormat(StrEnum):
    PLAIN = "plain"
    TELEGRAM = "telegram-json"
    MATRIX = "matrix-json"


class TranscriptError(ValueError):
    """The transcript cannot be read; the message is one sentence for the user.

    It says what is wrong and where (line number or JSON path) and never quotes
    message text.
    """


_FORMAT_NAMES: Final = {
    TranscriptFormat.PLAIN: "a plain-text transcript",
    TranscriptFormat.TELEGRAM: "a Telegram chat export",
    TranscriptFormat.MATRIX: "an Element (Matrix) room export",
}


# --------------------------------------------------------------------------- input


def read_transcript(stream: BinaryIO) -> str:
    """Read a transcript from a binary stream (a file or ``sys.stdin.buffer``).

    Reads at most one byte past the limit, so a huge input is refused without
    being held in memory, and decodes UTF-8 (a byte-order mark is allowed).
    """
    raw = stream.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        raise TranscriptError(_too_large())
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TranscriptError(
            f"The transcript is not UTF-8 text (invalid byte at offset {exc.start})."
        ) from None


def _too_large() -> str:
    return f"The transcript is larger than the limit of {MAX_INPUT_BYTES // (1024 * 1024)} MB."


def _prepare(data: str) -> str:
    if not isinstance(data, str):
        raise TypeError(f"a transcript is a str, not {type(data).__name__}")
    # Characters never outnumber UTF-8 bytes, so the cheap length test settles
    # most inputs; only text that could be over the limit in bytes is encoded.
    if len(data) > MAX_INPUT_BYTES or (
        len(data) * 4 > MAX_INPUT_BYTES
        and len(data.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES
    ):
        raise TranscriptError(_too_large())
    data = data.removeprefix("\ufeff")
    if not data.strip():
        raise TranscriptError("The transcript is empty.")
    return data


# ----------------------------------------------------------------------- detection

_TIME: Final = r"\d{1,2}:\d{2}(?::\d{2})?"
_DATE: Final = r"\d{4}-\d{2}-\d{2}"
_JSON_START: Final = re.compile(r"\s*(?:\{\s*[\"}]|\[\s*[\[{\]\"])")

_PLAIN_LINE: Final = re.compile(
    rf"""
    (?:
        \[(?P<bdate>{_DATE})[ T](?P<btime>{_TIME})\]
      | \[(?P<clock>{_TIME})\]
      | (?P<date>{_DATE})[ T](?P<time>{_TIME})
    )?
    [ \t]*
    (?P<speaker>[^:\s][^:]{{0,{MAX_SPEAKER_CHARS - 1}}}?)
    [ \t]*:
    (?:[ \t]+(?P<text>.*))?
    """,
    re.VERBOSE | re.DOTALL,
)

_TELEGRAM_CHAT_TYPES: Final = frozenset({
    "personal_chat", "bot_chat", "saved_messages", "replies",
    "private_group", "private_supergroup", "public_supergroup",
    "private_channel", "public_channel",
})

# How many list items the detector inspects: enough to get past a run of
# service messages or state events, cheap even for a 50 MB export.
_SNIFF_ITEMS: Final = 200


def detect_format(data: str) -> TranscriptFormat:
    """Tell which format ``data`` is in; raise TranscriptError if it is none of them."""
    return _sniff(_prepare(data))[0]


def parse_transcript(
    data: str, fmt: TranscriptFormat | None = None
) -> list[TranscriptMessage]:
    """Parse a transcript, detecting its format unless ``fmt`` is given."""
    data = _prepare(data)
    if fmt is None:
        fmt, doc = _sniff(data)
    elif fmt is TranscriptFormat.PLAIN:
        doc = None
    else:
        doc = _load_json(data)
        found = _classify_json(doc)
        if found is not fmt:
            raise TranscriptError(
                f"The input is {_FORMAT_NAMES[found]}, not {_FORMAT_NAMES[fmt]}."
            )
    if fmt is TranscriptFormat.PLAIN:
        messages = _parse_plain(data)
    elif fmt is TranscriptFormat.TELEGRAM:
        messages = _parse_telegram(doc)
    else:
        messages = _parse_matrix(doc)
    return _chronological(messages)


def _sniff(data: str) -> tuple[TranscriptFormat, object]:
    # Every JSON export opens with `{"`, `[{` or `[]`; a plain transcript may
    # open with "[12:01] alice: hi" or "[bot]: hi", which never look like that.
    if _JSON_START.match(data) is None:
        return TranscriptFormat.PLAIN, None
    doc = _load_json(data)
    return _classify_json(doc), doc


# Telegram Desktop writes control characters other than \n, \r and \t as "\xHH",
# which JSON does not allow. Only an odd run of backslashes escapes the "x".
_TELEGRAM_HEX_ESCAPE: Final = re.compile(r"(?<!\\)((?:\\\\)*)\\x([0-9A-Fa-f]{2})")


def _load_json(data: str) -> object:
    try:
        return _decode(data)
    except json.JSONDecodeError as exc:
        repaired = _TELEGRAM_HEX_ESCAPE.sub(r"\1\\u00\2", data)
        if repaired != data:
            try:
                return _decode(repaired)
            except json.JSONDecodeError:
                pass
        # JSONDecodeError.msg is a fixed phrase ("Expecting value"); it never
        # contains document text, unlike str(exc) in some other parsers.
        raise TranscriptError(
            f"The transcript is not valid JSON: {exc.msg[:1].lower()}{exc.msg[1:]} "
            f"at line {exc.lineno}, column {exc.colno}."
        ) from None


def _decode(data: str) -> object:
    try:
        doc: object = json.loads(data)
    except RecursionError:
        raise TranscriptError(
            "The transcript's JSON is nested too deeply to be a chat export."
        ) from None
    return doc


def _classify_json(doc: object) -> TranscriptFormat:
    if isinstance(doc, list):
        if _looks_matrix(doc):
            return TranscriptFormat.MATRIX
    elif isinstance(doc, dict):
        if isinstance(doc.get("chats"), dict):
            return TranscriptFormat.TELEGRAM
        if isinstance(doc.get("chunk"), list):
            return TranscriptFormat.MATRIX
        messages = doc.get("messages")
        if isinstance(messages, list):
            chat_type = doc.get("type")
            if isinstance(chat_type, str) and chat_type in _TELEGRAM_CHAT_TYPES:
                return TranscriptFormat.TELEGRAM
            if _looks_matrix(messages):
                return TranscriptFormat.MATRIX
            if _looks_telegram(messages):
                return TranscriptFormat.TELEGRAM
            # An export with no messages yet still says what it is by its header.
            if "room_name" in doc or "exported_by" in doc:
                return TranscriptFormat.MATRIX
            if {"name", "type", "id"} <= doc.keys():
                return TranscriptFormat.TELEGRAM
    raise TranscriptError(
        "The JSON is neither a Telegram chat export (an object with \"messages\" that "
        "have \"from\" and \"date_unixtime\") nor an Element export or list of Matrix "
        "events (objects with \"event_id\" and \"origin_server_ts\")."
    )


def _looks_matrix(items: list[object]) -> bool:
    for item in items[:_SNIFF_ITEMS]:
        if isinstance(item, dict):
            event = item.get("decrypted", item)
            if isinstance(event, dict) and ("event_id" in event or "origin_server_ts" in event):
                return True
    return False


def _looks_telegram(items: list[object]) -> bool:
    return any(
        isinstance(item, dict) and ("date_unixtime" in item or "from" in item or "from_id" in item)
        for item in items[:_SNIFF_ITEMS]
    )


# ---------------------------------------------------------------------- plain text

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def _parse_plain(data: str) -> list[TranscriptMessage]:
    # Each entry: speaker, text lines, timestamp.
    drafts: list[tuple[str, list[str], float | None]] = []
    lines = _LINE_BREAK.split(data)
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        # Indentation always means continuation, so a message line that happens
        # to look like "Note: ..." can still be written by indenting it.
        match = None if line[0] in " \t" else _PLAIN_LINE.fullmatch(line)
        if match is None:
            if drafts:
                drafts[-1][1].append(line.strip())
            continue
        speaker = _clean_name(match["speaker"])
        first = (match["text"] or "").strip()
        drafts.append((speaker, [first] if first else [], _plain_time(match, number)))
    if not drafts:
        # A final line break does not start another line.
        count = len(lines) - (lines[-1] == "")
        raise TranscriptError(
            f"No line of the transcript has the form \"Name: message\" ({count} lines checked)."
        )
    messages = [
        TranscriptMessage(speaker, "\n".join(parts), ts, None, None, None)
        for speaker, parts, ts in drafts
        if parts
    ]
    if not messages:
        raise TranscriptError("The transcript's speaker lines have no message text.")
    return messages


def _plain_time(match: re.Match[str], number: int) -> float | None:
    date = match["bdate"] or match["date"]
    clock = match["btime"] or match["time"]
    if date is None or clock is None:
        # A bare clock time has no day, so it cannot become POSIX seconds.
        return None
    hour, _, rest = clock.partition(":")
    try:
        # A naive time is the writer's local time; most likely that is this host.
        return datetime.fromisoformat(f"{date}T{hour.zfill(2)}:{rest}").timestamp()
    except ValueError:
        raise TranscriptError(f"Line {number} starts with an impossible date or time.") from None


# ------------------------------------------------------------------------ Telegram


def _parse_telegram(doc: object) -> list[TranscriptMessage]:
    chat, path = _telegram_chat(doc)
    items = chat.get("messages")
    if not isinstance(items, list):
        raise TranscriptError(f"{_key(path, 'messages')} must be a list, not {_kind(items)}.")

    topic_roots: set[str] = set()
    thread_of: dict[str, str | None] = {}
    names: dict[str, str] = {}
    # Entries: speaker key, text, timestamp, id, reply_to, thread_id.
    drafts: list[tuple[str, str, float | None, str | None, str | None, str | None]] = []
    for index, item in enumerate(items):
        at = f"{path}.messages[{index}]"
        entry = _object(item, at)
        message_id = _telegram_id(entry.get("id"), _key(at, "id"))
        kind = entry.get("type")
        if kind == "service":
            if entry.get("action") == "topic_created" and message_id is not None:
                topic_roots.add(message_id)
            continue
        if kind != "message":  # "unsupported" and anything newer
            continue
        reply_to = _telegram_id(entry.get("reply_to_message_id"), _key(at, "reply_to_message_id"))
        if entry.get("reply_to_peer_id") is not None:
            reply_to = None  # the id belongs to another chat
        thread_id: str | None = None
        if reply_to is not None:
            thread_id = reply_to if reply_to in topic_roots else thread_of.get(reply_to)
        if message_id is not None:
            # Recorded even for messages without text, so a reply to a sticker
            # still finds its topic.
            thread_of[message_id] = thread_id
        if "text" in entry:
            text = _telegram_text(entry["text"], _key(at, "text")).strip()
        else:
            text = _telegram_text(entry.get("text_entities"), _key(at, "text_entities")).strip()
        if not text:
            continue
        speaker_key, name = _telegram_sender(entry, at)
        names.setdefault(speaker_key, name)
        drafts.append(
            (speaker_key, text, _telegram_time(entry, at), message_id, reply_to, thread_id)
        )
    if not drafts:
        raise TranscriptError(f"The Telegram export at {path} has no messages with text.")
    speakers = _disambiguate(names)
    return [
        TranscriptMessage(speakers[key], text, ts, mid, reply, thread)
        for key, text, ts, mid, reply, thread in drafts
    ]


def _telegram_chat(doc: object) -> tuple[dict[str, object], str]:
    root = _object(doc, "$")
    chats = root.get("chats")
    if not isinstance(chats, dict):
        return root, "$"
    # A full account export ("Export Telegram data") lists every chat.
    found: list[tuple[object, str]] = []
    for section in ("chats", "left_chats"):
        holder = root.get(section)
        if isinstance(holder, dict) and isinstance(holder.get("list"), list):
            found += [(c, f"$.{section}.list[{i}]") for i, c in enumerate(holder["list"])]
    if len(found) != 1:
        raise TranscriptError(
            f"This is a full Telegram account export with {len(found)} chats; "
            "export one chat instead (the chat's menu, \"Export chat history\")."
        )
    chat, path = found[0]
    return _object(chat, path), path


def _telegram_id(value: object, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TranscriptError(f"{path} must be a number, not {_kind(value)}.")
    return str(value)


def _telegram_text(value: object, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise TranscriptError(f"{path} must be text or a list of text parts, not {_kind(value)}.")
    parts: list[str] = []
    for index, part in enumerate(value):
        if isinstance(part, str):
            parts.append(part)
            continue
        at = f"{path}[{index}]"
        piece = _object(part, at).get("text")
        if not isinstance(piece, str):
            raise TranscriptError(f"{_key(at, 'text')} must be text, not {_kind(piece)}.")
        parts.append(piece)
    return "".join(parts)


def _telegram_sender(entry: Mapping[str, object], at: str) -> tuple[str, str]:
    """Return a stable key for the account and the name to show."""
    from_id = entry.get("from_id")
    if from_id is not None and not isinstance(from_id, (str, int)):
        raise TranscriptError(f"{_key(at, 'from_id')} must be text, not {_kind(from_id)}.")
    if "from" in entry:
        raw = entry["from"]
        if raw is not None and not isinstance(raw, str):
            raise TranscriptError(f"{_key(at, 'from')} must be text, not {_kind(raw)}.")
        # Telegram writes null when the account no longer has a name.
        name = _clean_name(raw or "") or "Deleted Account"
    else:
        name = "Unknown sender"
    return (str(from_id) if from_id is not None else f"name:{name}"), name


def _telegram_time(entry: Mapping[str, object], at: str) -> float | None:
    unix = entry.get("date_unixtime")
    if unix is not None:
        if isinstance(unix, str) and unix.strip().lstrip("-").isdigit():
            return float(int(unix))
        if isinstance(unix, int) and not isinstance(unix, bool):
            return float(unix)
        raise TranscriptError(f"{_key(at, 'date_unixtime')} must be a number of seconds.")
    # Exports older than date_unixtime (2021) only have the exporter's local time.
    date = entry.get("date")
    if date is None:
        return None
    if isinstance(date, str):
        try:
            return datetime.fromisoformat(date).timestamp()
        except ValueError:
            pass
    raise TranscriptError(f"{_key(at, 'date')} must be an ISO date and time.")


# -------------------------------------------------------------------------- Matrix

_MATRIX_TEXT_TYPES: Final = frozenset({"m.text", "m.notice", "m.emote"})
_MATRIX_MEDIA_TYPES: Final = frozenset({"m.image", "m.file", "m.video", "m.audio"})


@dataclass(slots=True)
class _MatrixDraft:
    event_id: str | None
    sender: str
    timestamp: float | None
    content: dict[str, object]
    path: str


@dataclass(slots=True)
class _MatrixEdit:
    timestamp: float
    event_id: str
    sender: str
    new_content: dict[str, object]


def _parse_matrix(doc: object) -> list[TranscriptMessage]:
    if isinstance(doc, list):
        sources = [(doc, "$")]
    else:
        root = _object(doc, "$")
        if isinstance(root.get("chunk"), list):
            # A /messages response carries lazily-loaded member events in "state".
            sources = [(_list(root.get("state", []), "$.state"), "$.state"),
                       (_list(root["chunk"], "$.chunk"), "$.chunk")]
        else:
            sources = [(_list(root.get("messages"), "$.messages"), "$.messages")]
    scan = _MatrixScan()
    for items, base in sources:
        for index, item in enumerate(items):
            scan.add(_matrix_event(item, f"{base}[{index}]"), f"{base}[{index}]")
    return scan.messages()


class _MatrixScan:
    """Two passes over the events: first collect, then resolve.

    Edits, redactions, thread markers and member names can come before or after
    the events they concern (a /messages page runs backwards), so nothing is
    resolved until every event has been seen.
    """

    def __init__(self) -> None:
        self.display: dict[str, tuple[float, int, str]] = {}
        self.edits: dict[str, list[_MatrixEdit]] = {}
        self.redacted: set[str] = set()
        self.thread_roots: set[str] = set()
        self.drafts: list[_MatrixDraft] = []
        self.seen: set[str] = set()
        self.order = 0  # input position, the tie-break for member events

    def add(self, event: dict[str, object], at: str) -> None:
        event_id = _opt_str(event, "event_id", at)
        if event_id is not None:
            # Overlapping pages of a paginated fetch repeat events.
            if event_id in self.seen:
                return
            self.seen.add(event_id)
        kind = _opt_str(event, "type", at)
        if kind is None:
            raise TranscriptError(f"{_key(at, 'type')} is missing.")
        self.order += 1
        content = _object(event.get("content", {}), _key(at, "content"))
        ts = _matrix_time(event, at)
        if kind == "m.room.member":
            self._member(event, content, ts, at)
        elif kind == "m.room.redaction":
            target = event.get("redacts", content.get("redacts"))  # moved to content in v11
            if isinstance(target, str):
                self.redacted.add(target)
        elif kind == "m.room.message":
            self._message(event, event_id, content, ts, at)
        # Anything else (m.room.encrypted left undecrypted, stickers, polls,
        # other state) has no text for a summary.

    def _member(
        self, event: Mapping[str, object], content: Mapping[str, object], ts: float | None, at: str
    ) -> None:
        # state_key is the member; sender differs for invites and kicks.
        user = _opt_str(event, "state_key", at)
        name = content.get("displayname")
        if user is None or not isinstance(name, str) or not _clean_name(name):
            return  # a leave event carries no name and must not erase one
        stamp = (ts if ts is not None else float("-inf"), self.order)
        known = self.display.get(user)
        if known is None or stamp >= known[:2]:
            self.display[user] = (*stamp, _clean_name(name))

    def _message(
        self,
        event: Mapping[str, object],
        event_id: str | None,
        content: dict[str, object],
        ts: float | None,
        at: str,
    ) -> None:
        sender = _opt_str(event, "sender", at)
        if sender is None:
            raise TranscriptError(f"{_key(at, 'sender')} is missing.")
        relation = content.get("m.relates_to")
        if isinstance(relation, dict):
            target = relation.get("event_id")
            if relation.get("rel_type") == "m.replace" and isinstance(target, str):
                new_content = content.get("m.new_content")
                if isinstance(new_content, dict):
                    self.edits.setdefault(target, []).append(_MatrixEdit(
                        ts if ts is not None else float("-inf"), event_id or "", sender,
                        new_content,
                    ))
                return
            if relation.get("rel_type") == "m.thread" and isinstance(target, str):
                self.thread_roots.add(target)
        unsigned = event.get("unsigned")
        if isinstance(unsigned, dict):
            if unsigned.get("redacted_because") is not None:
                return
            relations = unsigned.get("m.relations")
            if isinstance(relations, dict) and "m.thread" in relations and event_id:
                self.thread_roots.add(event_id)
        if content:  # a redacted event has had its content stripped
            self.drafts.append(_MatrixDraft(event_id, sender, ts, content, at))

    def _current_content(self, draft: _MatrixDraft) -> dict[str, object]:
        # Only the original sender may edit (anything else is spoofing); the
        # latest edit wins, ties broken by event id as the spec orders them.
        valid = [
            e for e in self.edits.get(draft.event_id or "", [])
            if e.sender == draft.sender and e.event_id not in self.redacted
        ]
        if not valid:
            return draft.content
        latest = max(valid, key=lambda e: (e.timestamp, e.event_id))
        return {"msgtype": draft.content.get("msgtype"), **latest.new_content}

    def messages(self) -> list[TranscriptMessage]:
        built: list[tuple[_MatrixDraft, str, bool, str | None, str | None]] = []
        for draft in self.drafts:
            if draft.event_id is not None and draft.event_id in self.redacted:
                continue
            # Relations stay those of the original: m.new_content carries none.
            relation = draft.content.get("m.relates_to")
            relation = relation if isinstance(relation, dict) else {}
            thread_id: str | None = None
            root = relation.get("event_id")
            if relation.get("rel_type") == "m.thread" and isinstance(root, str):
                thread_id = root
            elif draft.event_id is not None and draft.event_id in self.thread_roots:
                thread_id = draft.event_id
            in_reply_to = relation.get("m.in_reply_to")
            replied = in_reply_to.get("event_id") if isinstance(in_reply_to, dict) else None
            # In a thread, m.in_reply_to is only a hint for thread-unaware
            # clients unless is_falling_back is false.
            falling_back = thread_id is not None and relation.get("is_falling_back") is True
            reply_to = replied if isinstance(replied, str) and not falling_back else None
            content = self._current_content(draft)
            text = _matrix_text(content, _key(draft.path, "content"), quoted=replied is not None)
            if text:
                emote = content.get("msgtype") == "m.emote"
                built.append((draft, text, emote, reply_to, thread_id))
        if not built:
            raise TranscriptError("The Matrix export has no messages with text.")

        speakers = _disambiguate({
            d.sender: self.display[d.sender][2] if d.sender in self.display
            else _localpart(d.sender)
            for d, *_ in built
        })
        messages: list[TranscriptMessage] = []
        for draft, text, emote, reply_to, thread_id in built:
            speaker = speakers[draft.sender]
            messages.append(TranscriptMessage(
                speaker, f"* {speaker} {text}" if emote else text,
                draft.timestamp, draft.event_id, reply_to, thread_id,
            ))
        return messages


def _matrix_event(item: object, at: str) -> dict[str, object]:
    event = _object(item, at)
    decrypted = event.get("decrypted")
    if isinstance(decrypted, dict):
        # matrix-js-sdk's toJSON() of an encrypted event wraps both views; the
        # wire event fills in what an older decrypted view lacks (sender, ts).
        wire = event.get("encrypted")
        merged: dict[str, object] = dict(wire) if isinstance(wire, dict) else {}
        merged.update(decrypted)
        return merged
    return event


def _matrix_time(event: Mapping[str, object], at: str) -> float | None:
    ts = event.get("origin_server_ts")
    if ts is None:
        return None
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise TranscriptError(f"{_key(at, 'origin_server_ts')} must be a number of milliseconds.")
    return ts / 1000


def _matrix_text(content: Mapping[str, object], at: str, *, quoted: bool) -> str:
    body = content.get("body")
    if body is None:
        return ""
    if not isinstance(body, str):
        raise TranscriptError(f"{_key(at, 'body')} must be text, not {_kind(body)}.")
    msgtype = content.get("msgtype")
    if not isinstance(msgtype, str):
        return ""
    if msgtype in _MATRIX_MEDIA_TYPES:
        filename = content.get("filename")
        if not (isinstance(filename, str) and body != filename):
            return ""
    elif msgtype not in _MATRIX_TEXT_TYPES:
        return ""
    if quoted:
        body = _strip_reply_fallback(body)
    return body.strip()


def _strip_reply_fallback(body: str) -> str:
    lines = body.split("\n")
    quoted = 0
    while quoted < len(lines) and lines[quoted].startswith(">"):
        quoted += 1
    # Only a quote block closed by an empty line is a fallback; a reply that
    # merely starts by quoting something keeps its text.
    if 0 < quoted < len(lines) and lines[quoted].strip() == "":
        return "\n".join(lines[quoted + 1:])
    return body


def _localpart(user_id: str) -> str:
    if user_id.startswith("@"):
        return user_id[1:].split(":", 1)[0] or user_id
    return user_id


# ------------------------------------------------------------------------- helpers


def _chronological(messages: list[TranscriptMessage]) -> list[TranscriptMessage]:
    if messages and all(m.timestamp is not None for m in messages):
        # sorted() is stable, so messages in the same second keep input order.
        return sorted(messages, key=lambda m: m.timestamp or 0.0)
    return messages


def _disambiguate(names: Mapping[str, str]) -> dict[str, str]:
    """Map account keys to shown names; a name two accounts share gets the key added."""
    counts = Counter(names.values())
    return {key: (f"{name} ({key})" if counts[name] > 1 else name) for key, name in names.items()}


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _clean_name(name: str) -> str:
    # A name is one line in a prompt and in the summary; a newline or escape
    # sequence hidden in a display name must not break either.
    return " ".join(_CONTROL.sub(" ", name).split())


_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _key(path: str, key: str) -> str:
    """Extend a JSON path by an object key, bracketing keys like ``m.relates_to``."""
    return f"{path}.{key}" if _IDENTIFIER.fullmatch(key) else f"{path}[{json.dumps(key)}]"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _object(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TranscriptError(f"{path} must be a JSON object, not {_kind(value)}.")
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise TranscriptError(f"{path} must be a list, not {_kind(value)}.")
    return value


def _opt_str(obj: Mapping[str, object], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise TranscriptError(f"{_key(path, key)} must be text, not {_kind(value)}.")
