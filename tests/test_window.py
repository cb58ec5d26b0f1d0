"""The in-memory message window: bounds, TTL, placeholders, edits, deletions, purges."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hushbrief.bot.events import ChatMessage, ChatRef, Member
from hushbrief.bot.window import MessageWindow, Selection

CHAT = ChatRef("telegram", "-100")
KEY = ("telegram", "-100")
T0 = 1_000_000.0


def msg(i: int, user: str = "u1", text: str | None = None, thread: str | None = None,
        ts: float | None = None, reply_to: str | None = None) -> ChatMessage:
    return ChatMessage(CHAT, str(i), Member(user, user.upper()), text or f"message {i}",
                       T0 + i if ts is None else ts, thread_id=thread, reply_to=reply_to)


def everything(window: MessageWindow, thread: str | None = None, now: float = T0 + 10_000):
    return window.select(KEY, thread, Selection(limit=10_000), now=now)


def test_only_opted_in_text_is_kept_and_others_are_counted() -> None:
    w = MessageWindow()
    w.add(msg(1, "u1"), opted_in=True, max_messages=100, ttl=86400)
    w.add(msg(2, "u2", "secret of u2"), opted_in=False, max_messages=100, ttl=86400)
    got = everything(w)
    assert [m.text for m in got.messages] == ["message 1"]
    assert got.left_out == 1
    assert got.messages[0].display_name == "U1"


def test_count_bound_per_thread() -> None:
    w = MessageWindow()
    for i in range(50):
        w.add(msg(i, thread="a"), opted_in=True, max_messages=10, ttl=86400)
        w.add(msg(100 + i, thread="b"), opted_in=True, max_messages=10, ttl=86400)
    assert w.stats(KEY)[0] == 20
    assert [m.message_id for m in everything(w, "a").messages] == [str(i) for i in range(40, 50)]


def test_byte_bound_per_chat_evicts_oldest_across_threads() -> None:
    w = MessageWindow(max_bytes_per_chat=2_000)
    for i in range(100):
        w.add(msg(i, text="x" * 50, thread="a" if i % 2 else "b"), opted_in=True,
              max_messages=1000, ttl=86400)
    count, nbytes = w.stats(KEY)
    assert nbytes <= 2_000 and count < 100
    kept = sorted(int(m.message_id) for t in ("a", "b") for m in everything(w, t).messages)
    assert kept == list(range(100 - count, 100))


def test_ttl_in_select_and_expire() -> None:
    w = MessageWindow()
    w.add(msg(1, ts=T0), opted_in=True, max_messages=100, ttl=60)
    w.add(msg(2, ts=T0 + 100), opted_in=True, max_messages=100, ttl=60)
    assert [m.message_id for m in everything(w, now=T0 + 120).messages] == ["2"]
    assert w.expire(T0 + 120) == 1
    assert w.stats(KEY)[0] == 1
    assert w.expire(T0 + 1000) == 1
    assert w.stats(KEY) == (0, 0) and len(w) == 0


def test_limit_since_and_anchor() -> None:
    w = MessageWindow()
    for i in range(10):
        w.add(msg(i), opted_in=i % 3 != 0, max_messages=100, ttl=86400)
    now = T0 + 20
    got = w.select(KEY, None, Selection(limit=4), now=now)
    assert [m.message_id for m in got.messages] == ["7", "8"] and got.left_out == 2
    got = w.select(KEY, None, Selection(limit=100, since=T0 + 5), now=now)
    assert [m.message_id for m in got.messages] == ["5", "7", "8"]
    got = w.select(KEY, None, Selection(limit=100, from_message="4"), now=now)
    assert [m.message_id for m in got.messages] == ["4", "5", "7", "8"] and got.left_out == 2
    assert not w.select(KEY, None, Selection(limit=100, from_message="nope"), now=now).anchor_found
    # An anchor older than the limit is not found either: the limit still holds.
    assert not w.select(KEY, None, Selection(limit=2, from_message="4"), now=now).anchor_found


def test_edit_replaces_and_delete_removes() -> None:
    w = MessageWindow()
    w.add(msg(1, text="before", reply_to="0"), opted_in=True, max_messages=100, ttl=86400)
    w.add(msg(2, "u2", text="hidden"), opted_in=False, max_messages=100, ttl=86400)
    assert w.edit(KEY, "1", "after")
    assert not w.edit(KEY, "2", "edited by a non-opted-in member")
    got = everything(w)
    assert [m.text for m in got.messages] == ["after"] and got.messages[0].reply_to == "0"
    assert w.delete(KEY, "2") and w.delete(KEY, "1")
    assert not w.delete(KEY, "1")
    assert w.stats(KEY) == (0, 0)


def test_purge_member_turns_their_messages_into_placeholders() -> None:
    w = MessageWindow()
    w.add(msg(1, "u1", "u1 text"), opted_in=True, max_messages=100, ttl=86400)
    w.add(msg(2, "u2", "u2 text"), opted_in=True, max_messages=100, ttl=86400)
    w.add(msg(3, "u1", "u1 again", thread="t"), opted_in=True, max_messages=100, ttl=86400)
    assert w.purge_member(KEY, "u1") == 2
    got = everything(w)
    assert [m.text for m in got.messages] == ["u2 text"] and got.left_out == 1
    assert everything(w, "t").left_out == 1
    # Opting in again later keeps the old messages out; new ones count.
    w.add(msg(4, "u1", "u1 fresh"), opted_in=True, max_messages=100, ttl=86400)
    assert [m.text for m in everything(w).messages] == ["u2 text", "u1 fresh"]


def test_purge_everywhere_only_touches_that_platform() -> None:
    w = MessageWindow()
    other = ChatMessage(ChatRef("matrix", "!r"), "9", Member("u1", "U1"), "matrix text", T0)
    w.add(other, opted_in=True, max_messages=10, ttl=86400)
    w.add(msg(1, "u1"), opted_in=True, max_messages=10, ttl=86400)
    assert w.purge_member_everywhere("telegram", "u1") == 1
    assert w.select(("matrix", "!r"), None, Selection(limit=10), now=T0).messages


def test_max_chats_drops_the_idlest() -> None:
    w = MessageWindow(max_chats=2)
    for chat in ("a", "b", "c"):
        w.add(ChatMessage(ChatRef("telegram", chat), "1", Member("u", "U"), "hi", T0),
              opted_in=True, max_messages=10, ttl=86400)
    assert w.stats(("telegram", "a")) == (0, 0)
    assert w.stats(("telegram", "c"))[0] == 1


def test_configure_shrinks_at_once() -> None:
    w = MessageWindow()
    for i in range(20):
        w.add(msg(i), opted_in=True, max_messages=100, ttl=86400)
    w.configure(KEY, max_messages=5, ttl=86400)
    assert w.stats(KEY)[0] == 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.booleans(),
                          st.text(max_size=40), st.sampled_from([None, "t"])), max_size=60),
       st.integers(min_value=1, max_value=30))
def test_invariants_under_random_traffic(
    traffic: list[tuple[str, bool, str, str | None]], limit: int
) -> None:
    w = MessageWindow(max_bytes_per_chat=1_500)
    opted: dict[str, bool] = {}
    for i, (user, opted_in, text, thread) in enumerate(traffic):
        opted[user] = opted_in
        w.add(msg(i, user, text or "·", thread), opted_in=opted_in, max_messages=limit,
              ttl=86400)
    for thread in (None, "t"):
        got = everything(w, thread)
        assert len(got.messages) + got.left_out <= limit
        ids = [int(m.message_id) for m in got.messages]
        assert ids == sorted(ids)
        for m in got.messages:
            user, opted_in, text, _ = traffic[int(m.message_id)]
            assert opted_in and m.user_id == user and m.text == (text or "·")
    assert w.stats(KEY)[1] <= 1_500
