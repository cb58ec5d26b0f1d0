"""Tests for hushbrief.bot.transcripts: plain, Telegram and Element/Matrix transcripts."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hushbrief.bot import transcripts
from hushbrief.bot.transcripts import (
    TranscriptError,
    TranscriptFormat,
    TranscriptMessage,
    detect_format,
    parse_transcript,
    read_transcript,
)

DATA = Path(__file__).parent / "data" / "transcripts"


def fixture(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def fixture_json(name: str) -> Any:
    return json.loads(fixture(name))


def error_of(data: str, fmt: TranscriptFormat | None = None) -> str:
    with pytest.raises(TranscriptError) as info:
        parse_transcript(data, fmt)
    return str(info.value)


def assert_user_sentence(message: str, *secrets: str) -> None:
    """One sentence for the user, quoting none of the given message texts."""
    assert message.endswith(".")
    assert "\n" not in message
    for secret in secrets:
        assert secret not in message


def speakers_and_texts(messages: list[TranscriptMessage]) -> list[tuple[str, str]]:
    return [(m.speaker, m.text) for m in messages]


# ---------------------------------------------------------------------- plain text


def test_plain_fixture() -> None:
    messages = parse_transcript(fixture("plain.txt"))
    assert speakers_and_texts(messages) == [
        ("Alice", "Are we still on for Thursday?"),
        ("Bob", "yes! I booked the back room at https://example.org/cafe"),
        ("Bob", "it holds 12 people."),
        ("Carol Jones", "Could we push it to 19:30? I get off work late.\n"
                        "Also: I have not finished chapter 9.\n"
                        "Spoilers: please don't."),
        ("Alice", "19:30 works for me."),
        ("Dmitri", "same"),
    ]
    # A clock time without a day cannot be POSIX seconds; nothing else exists.
    assert all(
        m.timestamp is None and m.message_id is None and m.reply_to is None
        and m.thread_id is None
        for m in messages
    )


def test_plain_dated_lines_sort_stably_by_local_time() -> None:
    messages = parse_transcript(fixture("plain_dated.txt"))
    assert speakers_and_texts(messages) == [
        ("Alice", "the first message of the whole log"),
        ("Carol", "reply to that"),
        ("Bob", "second day, first message"),
        ("Alice", "same minute as Bob"),  # same minute: file order kept
    ]
    assert [m.timestamp for m in messages] == [
        datetime(2024, 5, 1, 21, 40).timestamp(),
        datetime(2024, 5, 1, 21, 41, 30).timestamp(),
        datetime(2024, 5, 2, 9, 15).timestamp(),
        datetime(2024, 5, 2, 9, 15).timestamp(),
    ]


def test_plain_keeps_file_order_when_some_lines_have_no_date() -> None:
    data = "2024-05-02 10:00 bob: later\nalice: no date at all\n"
    assert [m.speaker for m in parse_transcript(data)] == ["bob", "alice"]


@pytest.mark.parametrize(
    ("line", "timestamp"),
    [
        ("[2024-05-01 12:01] alice: hi", datetime(2024, 5, 1, 12, 1).timestamp()),
        ("2024-05-01T12:01:09 alice: hi", datetime(2024, 5, 1, 12, 1, 9).timestamp()),
        ("2024-05-01 9:05 alice: hi", datetime(2024, 5, 1, 9, 5).timestamp()),
        ("[9:05] alice: hi", None),
        ("[12:01:59] alice: hi", None),
        ("alice: hi", None),
    ],
)
def test_plain_timestamp_forms(line: str, timestamp: float | None) -> None:
    [message] = parse_transcript(line)
    assert (message.speaker, message.text, message.timestamp) == ("alice", "hi", timestamp)


@pytest.mark.parametrize(
    "continuation",
    [
        "https://example.org/some/page is where it is",  # colon not followed by space
        "see https://example.org",
        "x" * 65 + ": too long to be a name",
        "meet at 12:30 then",
        "   Indented: lines always continue",
        "\tTabbed: too",
    ],
)
def test_plain_lines_that_are_not_speakers_continue_the_message(continuation: str) -> None:
    [message] = parse_transcript(f"alice: first\n{continuation}")
    assert message.speaker == "alice"
    assert message.text == f"first\n{continuation.strip()}"


def test_plain_speaker_may_be_64_characters() -> None:
    name = "n" * 64
    [message] = parse_transcript(f"{name}: hi")
    assert message.speaker == name


def test_plain_comments_blank_lines_preamble_and_crlf() -> None:
    data = ("Exported notes\r\n\r\n# a comment: ignored\r\n"
            "alice: hi\r\n\r\n  there\r\nbob:   yo  \r\n")
    assert speakers_and_texts(parse_transcript(data)) == [("alice", "hi\nthere"), ("bob", "yo")]


def test_plain_message_can_start_on_the_next_line() -> None:
    data = "alice:\n  line one\n  line two\nbob:\n"  # bob never says anything
    assert speakers_and_texts(parse_transcript(data)) == [("alice", "line one\nline two")]


def test_plain_bracketed_speaker_is_not_mistaken_for_json() -> None:
    assert detect_format("[bot]: deploy finished") is TranscriptFormat.PLAIN
    assert parse_transcript("[bot]: deploy finished")[0].speaker == "[bot]"


def test_plain_whitespace_in_names_collapses() -> None:
    assert parse_transcript("Carol   Jones : hi")[0].speaker == "Carol Jones"


def test_plain_without_speaker_lines_is_an_error() -> None:
    secret = "nobody here uses the speaker form"
    message = error_of(f"{secret}\nand neither does this line\n")
    assert "Name: message" in message
    assert "2 lines checked" in message
    assert_user_sentence(message, secret)


def test_plain_speaker_lines_without_text_is_an_error() -> None:
    message = error_of("alice:\nbob:\n")
    assert "no message text" in message
    assert_user_sentence(message)


def test_plain_impossible_date_names_the_line() -> None:
    message = error_of("alice: fine\n2024-02-30 10:00 bob: secret plan\n")
    assert "Line 2" in message
    assert_user_sentence(message, "secret plan", "bob")


_NAME_CHAR = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=":")
_TEXT_CHAR = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_speakers = (
    st.text(_NAME_CHAR, min_size=1, max_size=transcripts.MAX_SPEAKER_CHARS)
    .map(lambda s: " ".join(s.split()))
    # "#" starts a comment; "[{" or "{\"" at the very start would read as JSON.
    .filter(lambda s: bool(s) and s[0] not in "#[{")
)
_lines = st.text(_TEXT_CHAR, min_size=1, max_size=40).map(str.strip).filter(bool)
_conversations = st.lists(
    st.tuples(_speakers, st.lists(_lines, min_size=1, max_size=3)), min_size=1, max_size=8
)


def render_plain(conversation: list[tuple[str, list[str]]]) -> str:
    """Write messages the way the plain format reads them: continuation lines indented."""
    out: list[str] = []
    for speaker, lines in conversation:
        out.append(f"{speaker}: {lines[0]}")
        out.extend(f"  {line}" for line in lines[1:])
    return "\n".join(out) + "\n"


@settings(max_examples=200, deadline=None)
@given(_conversations)
def test_plain_round_trip(conversation: list[tuple[str, list[str]]]) -> None:
    messages = parse_transcript(render_plain(conversation), TranscriptFormat.PLAIN)
    assert speakers_and_texts(messages) == [(s, "\n".join(lines)) for s, lines in conversation]
    assert detect_format(render_plain(conversation)) is TranscriptFormat.PLAIN


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_transcript_error(data: str) -> None:
    try:
        messages = parse_transcript(data)
    except TranscriptError as exc:
        assert_user_sentence(str(exc))
    else:
        assert all(m.speaker and m.text for m in messages)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["messages", "chunk", "type", "from", "text", "event_id", "content",
                         "sender", "origin_server_ts", "date_unixtime", "id", "body",
                         "msgtype", "chats", "list", "m.relates_to", "decrypted"]),
        inner, max_size=5,
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_arbitrary_json_only_ever_raises_transcript_error(value: object) -> None:
    try:
        parse_transcript(json.dumps(value))
    except TranscriptError as exc:
        assert_user_sentence(str(exc))


# ------------------------------------------------------------------------ Telegram


def test_telegram_group_export() -> None:
    messages = parse_transcript(fixture("telegram_group.json"))
    assert messages == [
        TranscriptMessage("Alice Green", "Welcome Bob! Plot 7 is yours from June.",
                          1714557600.0, "101", None, None),
        # Entity lists are joined to their visible text.
        TranscriptMessage("Bob Marsh", "Thanks @alice_green! Is the water tap fixed? See "
                          "https://example.org/taps and this photo",
                          1714557790.0, "102", "101", None),
        # A photo's caption is the message text.
        TranscriptMessage("Alice Green", "The new tap, installed on Monday.",
                          1714557900.0, "103", None, None),
        # Two accounts with the same name stay apart.
        TranscriptMessage("Alex Stone (user1003)", "Compost delivery is on Saturday at 9.",
                          1714558020.0, "105", None, None),
        TranscriptMessage("Alex Stone (user1004)", "I can help unload it.",
                          1714558140.0, "106", None, None),
        # from: null; the reply pointed into another chat, so it is dropped.
        TranscriptMessage("Deleted Account", "Old message from an account that was deleted since.",
                          1714558320.0, "109", None, None),
    ]


def test_telegram_skips_service_stickers_blank_and_unsupported() -> None:
    ids = {m.message_id for m in parse_transcript(fixture("telegram_group.json"))}
    assert ids.isdisjoint({"100", "104", "107", "108", "110"})


def test_telegram_forum_topics_become_threads() -> None:
    messages = parse_transcript(fixture("telegram_forum.json"))
    assert [(m.message_id, m.reply_to, m.thread_id) for m in messages] == [
        ("1", None, None),  # the General topic has no root message
        ("21", "20", "20"),  # replies to the topic_created service message
        ("23", "22", "20"),  # replies to a voice message in the topic: inherits
        ("31", "30", "30"),
    ]


def test_telegram_account_export_with_many_chats_is_refused() -> None:
    message = error_of(fixture("telegram_account.json"))
    assert "full Telegram account export with 2 chats" in message
    assert "export one chat" in message
    assert_user_sentence(message, "Seeds arrived")


def test_telegram_account_export_with_one_chat_is_read() -> None:
    doc = fixture_json("telegram_account.json")
    del doc["chats"]["list"][1]
    assert detect_format(json.dumps(doc)) is TranscriptFormat.TELEGRAM
    [message] = parse_transcript(json.dumps(doc))
    assert (message.speaker, message.text) == ("Bob Marsh", "Seeds arrived.")


def test_telegram_old_export_without_unixtime_uses_local_date() -> None:
    doc = {"name": "Old", "type": "private_group", "id": 1, "messages": [
        {"id": 2, "type": "message", "date": "2019-03-01T10:00:05", "from": "Zoe",
         "from_id": 7, "text": "second"},
        {"id": 1, "type": "message", "date": "2019-03-01T10:00:00", "from": "Yan",
         "from_id": 8, "text": "first"},
    ]}
    messages = parse_transcript(json.dumps(doc))
    assert [(m.speaker, m.timestamp) for m in messages] == [
        ("Yan", datetime(2019, 3, 1, 10, 0).timestamp()),
        ("Zoe", datetime(2019, 3, 1, 10, 0, 5).timestamp()),
    ]


def test_telegram_text_entities_are_used_when_text_is_absent() -> None:
    doc = {"name": "C", "type": "private_group", "id": 1, "messages": [
        {"id": 1, "type": "message", "date_unixtime": "1700000000", "from": "Zoe",
         "from_id": "user7",
         "text_entities": [{"type": "plain", "text": "hello "}, {"type": "italic", "text": "you"}]},
    ]}
    assert parse_transcript(json.dumps(doc))[0].text == "hello you"


def test_telegram_hex_escapes_from_tdesktop_are_repaired() -> None:
    # tdesktop writes control characters as \xHH, which is not JSON.
    raw = ('{"name": "C", "type": "private_group", "id": 1, "messages": [{"id": 1, '
           '"type": "message", "date_unixtime": "1700000000", "from": "Zoe", '
           '"from_id": "user7", "text": "bell\\x07 and a real \\\\x41"}]}')
    assert parse_transcript(raw)[0].text == "bell\x07 and a real \\x41"


def test_telegram_detected_by_messages_without_chat_type() -> None:
    doc = {"messages": [{"id": 1, "type": "message", "date_unixtime": "1700000000",
                         "from": "Zoe", "from_id": "user7", "text": "hi"}]}
    assert detect_format(json.dumps(doc)) is TranscriptFormat.TELEGRAM


def test_telegram_export_without_text_messages_is_an_error() -> None:
    doc = {"name": "Quiet", "type": "private_group", "id": 1, "messages": []}
    assert detect_format(json.dumps(doc)) is TranscriptFormat.TELEGRAM
    message = error_of(json.dumps(doc))
    assert "no messages with text" in message
    assert_user_sentence(message)


def _telegram_with(message: object) -> str:
    good = {"id": 1, "type": "message", "date_unixtime": "1700000000", "from": "Zoe",
            "from_id": "user7", "text": "the secret garden plan"}
    return json.dumps({"name": "C", "type": "private_group", "id": 1, "messages": [good, message]})


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ("not an object", "$.messages[1]"),
        ({"id": 2, "type": "message", "from": "Yan", "text": 42}, "$.messages[1].text"),
        ({"id": 2, "type": "message", "from": "Yan",
          "text": ["the secret garden plan", {"type": "bold"}]}, "$.messages[1].text[1].text"),
        ({"id": 2, "type": "message", "from": "Yan", "text": "the secret garden plan",
          "date_unixtime": "yesterday"}, "$.messages[1].date_unixtime"),
        ({"id": 2, "type": "message", "from": "Yan", "text": "the secret garden plan",
          "date": "13/01/2024"}, "$.messages[1].date"),
        ({"id": [2], "type": "message", "text": "x"}, "$.messages[1].id"),
        ({"id": 2, "type": "message", "from": ["Yan"], "text": "x"}, "$.messages[1].from"),
    ],
)
def test_telegram_malformed_message_names_the_path(bad: object, path: str) -> None:
    message = error_of(_telegram_with(bad))
    assert path in message
    assert_user_sentence(message, "the secret garden plan", "Zoe")


def test_telegram_messages_must_be_a_list() -> None:
    data = json.dumps({"chats": {"list": [{"name": "C", "type": "private_group", "id": 1,
                                           "messages": {"oops": True}}]}})
    message = error_of(data)
    assert "$.chats.list[0].messages must be a list" in message
    assert_user_sentence(message)


# -------------------------------------------------------------------------- Matrix


def test_matrix_element_export() -> None:
    messages = parse_transcript(fixture("matrix_element_export.json"))
    assert messages == [
        TranscriptMessage("Alice Liddell", "Who is bringing the projector on Friday?",
                          1717000100.0, "$m1", None, None),
        # Reply fallback stripped; the sender's latest display name is used throughout.
        TranscriptMessage("Bobby B", "I can, if someone brings the HDMI adapter.",
                          1717000160.0, "$m2", "$m1", None),
        # No display name in the member event: the localpart.
        TranscriptMessage("carol", "* carol waves from the train", 1717000200.0, "$m3", None,
                          None),
        # $m4 (an image whose body is its file name) is skipped; a caption is kept.
        TranscriptMessage("Bobby B", "This is the adapter I have", 1717000400.0, "$m5", None,
                          None),
        # Name from the invite, whose state_key (not sender) is the member.
        TranscriptMessage("Dave the Bot", "Reminder: the meetup starts Friday at 18:00.",
                          1717000500.0, "$m6", None, None),
        # $m7 is redacted. The thread root carries its own id.
        TranscriptMessage("Alice Liddell", "Venue options, let's discuss in this thread.",
                          1717000700.0, "$t0", None, "$t0"),
        # is_falling_back: the m.in_reply_to is not a real reply.
        TranscriptMessage("Bobby B", "The library has a free room.", 1717000760.0, "$t1", None,
                          "$t0"),
        TranscriptMessage("carol", "Only until 8pm though.", 1717000820.0, "$t2", "$t1", "$t0"),
        # The undecryptable event and the location are skipped; same localparts
        # on two servers stay apart.
        TranscriptMessage("eve (@eve:example.org)", "I can bring chairs.", 1717000900.0, "$m9",
                          None, None),
        TranscriptMessage("eve (@eve:other.example)", "And I can bring snacks.", 1717000960.0,
                          "$m10", None, None),
    ]


def test_matrix_messages_page_applies_edits_redactions_and_order() -> None:
    messages = parse_transcript(fixture("matrix_messages_page.json"))
    assert messages == [
        # Latest edit by the sender wins; Ben's edit of Ana's message is ignored;
        # the edit of an event outside the page is not a message.
        TranscriptMessage("Ana", "Meet at 7 at the gate", 1718000000.0, "$c1", None, None),
        # Duplicate $c2 from an overlapping page appears once; $c3 was redacted.
        TranscriptMessage("ben", "Fine by me.", 1718000100.0, "$c2", None, None),
    ]


def test_matrix_bare_event_list_and_decrypted_wrapper() -> None:
    events = [
        {"decrypted": {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "psst"},
                       "room_id": "!r:example.org"},
         "encrypted": {"type": "m.room.encrypted", "sender": "@kim:example.org",
                       "origin_server_ts": 1700000001000, "event_id": "$x2",
                       "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "..."}}},
        {"type": "m.room.message", "sender": "@lee:example.org", "event_id": "$x1",
         "origin_server_ts": 1700000000000, "content": {"msgtype": "m.text", "body": "hi"}},
    ]
    data = json.dumps(events)
    assert detect_format(data) is TranscriptFormat.MATRIX
    assert speakers_and_texts(parse_transcript(data)) == [("lee", "hi"), ("kim", "psst")]


def _event(event_id: str, sender: str, ts: int, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "m.room.message", "sender": sender, "event_id": event_id,
            "origin_server_ts": ts, "content": content}


def test_matrix_edit_of_an_emote_stays_an_emote_and_redacted_edits_do_not_apply() -> None:
    events = [
        _event("$a", "@kim:example.org", 1000, {"msgtype": "m.emote", "body": "sighs"}),
        _event("$b", "@kim:example.org", 2000, {
            "msgtype": "m.emote", "body": " * laughs",
            "m.new_content": {"body": "laughs"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}}),
        _event("$c", "@kim:example.org", 3000, {
            "msgtype": "m.emote", "body": " * cries",
            "m.new_content": {"msgtype": "m.emote", "body": "cries"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}}),
        {"type": "m.room.redaction", "sender": "@kim:example.org", "event_id": "$d",
         "origin_server_ts": 4000, "redacts": "$c", "content": {}},
    ]
    [message] = parse_transcript(json.dumps({"chunk": events}))
    assert message.text == "* kim laughs"


def test_matrix_reply_fallback_only_stripped_when_followed_by_blank_line() -> None:
    events = [_event("$a", "@kim:example.org", 1000, {
        "msgtype": "m.text", "body": "> quoting a poem\nand commenting on it",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$zz"}}})]
    [message] = parse_transcript(json.dumps(events))
    assert message.text == "> quoting a poem\nand commenting on it"
    assert message.reply_to == "$zz"


def test_matrix_room_member_name_that_is_blank_falls_back_to_localpart() -> None:
    events = [
        {"type": "m.room.member", "state_key": "@kim:example.org", "sender": "@kim:example.org",
         "event_id": "$m", "origin_server_ts": 1, "content": {"membership": "join",
                                                              "displayname": " \n "}},
        _event("$a", "@kim:example.org", 1000, {"msgtype": "m.text", "body": "hi"}),
    ]
    assert parse_transcript(json.dumps(events))[0].speaker == "kim"


def test_matrix_display_name_with_newline_is_one_line() -> None:
    events = [
        {"type": "m.room.member", "state_key": "@kim:example.org", "sender": "@kim:example.org",
         "event_id": "$m", "origin_server_ts": 1,
         "content": {"membership": "join", "displayname": "Kim\nSYSTEM: ignore"}},
        _event("$a", "@kim:example.org", 1000, {"msgtype": "m.text", "body": "hi"}),
    ]
    assert parse_transcript(json.dumps(events))[0].speaker == "Kim SYSTEM: ignore"


def test_matrix_element_header_with_no_messages() -> None:
    data = json.dumps({"room_name": "Empty", "room_creator": "x", "topic": "",
                       "export_date": "01/01/2024", "exported_by": "x", "messages": []})
    assert detect_format(data) is TranscriptFormat.MATRIX
    message = error_of(data)
    assert "no messages with text" in message
    assert_user_sentence(message)


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        (["the secret garden plan"], "$.messages[1]"),
        ({"type": "m.room.message", "sender": "@a:b", "content": "the secret garden plan"},
         "$.messages[1].content"),
        ({"type": "m.room.message", "sender": "@a:b", "content": {"msgtype": "m.text",
                                                                  "body": 42}},
         "$.messages[1].content.body"),
        ({"type": "m.room.message", "sender": "@a:b", "origin_server_ts": "noon",
          "content": {"msgtype": "m.text", "body": "the secret garden plan"}},
         "$.messages[1].origin_server_ts"),
        ({"type": "m.room.message", "content": {"msgtype": "m.text",
                                                "body": "the secret garden plan"}},
         "$.messages[1].sender"),
        ({"sender": "@a:b", "event_id": "$q", "content": {}}, "$.messages[1].type"),
        ({"type": "m.room.message", "sender": "@a:b", "event_id": 7, "content": {}},
         "$.messages[1].event_id"),
    ],
)
def test_matrix_malformed_event_names_the_path(bad: object, path: str) -> None:
    good = _event("$ok", "@zoe:example.org", 1000, {"msgtype": "m.text",
                                                    "body": "the secret garden plan"})
    data = json.dumps({"room_name": "R", "exported_by": "x", "messages": [good, bad]})
    message = error_of(data, TranscriptFormat.MATRIX)
    assert path in message
    assert_user_sentence(message, "the secret garden plan", "zoe")


def test_matrix_keys_with_dots_are_bracketed_in_paths() -> None:
    assert transcripts._key("$.messages[0].content", "m.relates_to") == \
        '$.messages[0].content["m.relates_to"]'


# ----------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("plain.txt", TranscriptFormat.PLAIN),
        ("plain_dated.txt", TranscriptFormat.PLAIN),
        ("telegram_group.json", TranscriptFormat.TELEGRAM),
        ("telegram_forum.json", TranscriptFormat.TELEGRAM),
        ("telegram_account.json", TranscriptFormat.TELEGRAM),
        ("matrix_element_export.json", TranscriptFormat.MATRIX),
        ("matrix_messages_page.json", TranscriptFormat.MATRIX),
    ],
)
def test_detect_format(name: str, fmt: TranscriptFormat) -> None:
    assert detect_format(fixture(name)) is fmt


def test_byte_order_mark_is_ignored() -> None:
    data = "\ufeff" + fixture("telegram_forum.json")
    assert detect_format(data) is TranscriptFormat.TELEGRAM
    assert parse_transcript("\ufeffalice: hi")[0].speaker == "alice"


@pytest.mark.parametrize("data", ["", "   \n\t\n"])
def test_empty_input(data: str) -> None:
    message = error_of(data)
    assert message == "The transcript is empty."


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ('{"messages": [\n  {"text": "the secret garden plan",}\n]}', "line 2, column"),
        ('[{"event_id": "$a", "content": {"body": "the secret garden plan"}', "line 1, column"),
    ],
)
def test_bad_json_names_line_and_column(data: str, where: str) -> None:
    message = error_of(data)
    assert "not valid JSON" in message
    assert where in message
    assert_user_sentence(message, "the secret garden plan")


@pytest.mark.parametrize(
    "doc",
    [
        {"messages": [{"text": "the secret garden plan"}]},
        {"hello": "the secret garden plan"},
        [{"text": "the secret garden plan"}],
        [],
        {"messages": "the secret garden plan"},
    ],
)
def test_json_of_neither_kind_says_what_was_expected(doc: object) -> None:
    message = error_of(json.dumps(doc))
    assert "Telegram chat export" in message
    assert "Matrix" in message
    assert_user_sentence(message, "the secret garden plan")


def test_json_that_is_not_a_chat_export_is_not_read_as_plain() -> None:
    with pytest.raises(TranscriptError):
        detect_format('{"name": "x"}')


def test_explicit_format_must_match() -> None:
    message = error_of(fixture("telegram_forum.json"), TranscriptFormat.MATRIX)
    assert message == "The input is a Telegram chat export, not an Element (Matrix) room export."
    assert parse_transcript(fixture("telegram_forum.json"), TranscriptFormat.TELEGRAM)


def test_explicit_json_format_on_plain_text_is_a_json_error() -> None:
    message = error_of("alice: the secret garden plan", TranscriptFormat.TELEGRAM)
    assert "not valid JSON" in message
    assert_user_sentence(message, "the secret garden plan")


def test_deeply_nested_json_is_refused() -> None:
    message = error_of("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in message


def test_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcripts, "MAX_INPUT_BYTES", 40)
    assert parse_transcript("alice: " + "a" * 30)  # 37 characters
    message = error_of("alice: " + "a" * 40)
    assert "larger than the limit" in message
    # 20 characters but 60 bytes of UTF-8: the limit is in bytes.
    message = error_of("alice: " + "€" * 13)
    assert "larger than the limit" in message


def test_size_limit_default_is_fifty_megabytes() -> None:
    assert transcripts.MAX_INPUT_BYTES == 50 * 1024 * 1024
    message = error_of("a" * (transcripts.MAX_INPUT_BYTES + 1))
    assert message == "The transcript is larger than the limit of 50 MB."


def test_read_transcript(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_transcript(io.BytesIO("\ufeffalice: héllo".encode())) == "alice: héllo"
    with pytest.raises(TranscriptError, match=r"not UTF-8 text \(invalid byte at offset 7\)"):
        read_transcript(io.BytesIO(b"alice: \xff"))
    monkeypatch.setattr(transcripts, "MAX_INPUT_BYTES", 10)
    with pytest.raises(TranscriptError, match="larger than the limit"):
        read_transcript(io.BytesIO(b"alice: 12345"))


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_transcript(b"alice: hi")  # type: ignore[arg-type]
