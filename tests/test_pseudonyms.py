"""Pseudonyms (P1…Pn in order of first appearance), mentions, redaction, restoration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hushbrief.bot.pseudonyms import Person, Speaker, pseudonymize, redact, restore, without


def sp(user: str, name: str, text: str, ts: float = 0.0, handle: str | None = None,
       mid: str | None = None, reply_to: str | None = None) -> Speaker:
    return Speaker(user, name, handle, text, ts, mid, reply_to)


def test_speakers_numbered_in_order_of_first_appearance() -> None:
    p = pseudonymize([sp("u9", "Zoe", "a"), sp("u1", "Adam", "b"), sp("u9", "Zoe", "c")])
    assert [t.speaker for t in p.turns] == ["P1", "P2", "P1"]
    assert p.names == {"P1": "Zoe", "P2": "Adam"}


def test_mentions_of_names_and_handles_become_pseudonyms() -> None:
    p = pseudonymize([
        sp("u1", "Alice Smith", "hi all", handle="alicia"),
        sp("u2", "Bob", "@alicia and Alice, ALICE SMITH, alice: ok? Bobby stays, bob goes"),
    ])
    assert p.turns[1].text == "P1 and P1, P1, P1: ok? Bobby stays, P2 goes"
    for name in ("alicia", "Alice", "Smith", "bob"):
        assert name.lower() not in p.turns[1].text.lower().replace("bobby", "")


def test_shared_first_names_are_not_guessed() -> None:
    p = pseudonymize([sp("u1", "Anna Berg", "x"), sp("u2", "Anna Kahn", "Anna, look")])
    assert p.turns[1].text == "Anna, look"


def test_same_display_name_different_people_stay_apart() -> None:
    p = pseudonymize([sp("u1", "Sam", "a"), sp("u2", "Sam", "b")])
    assert p.names == {"P1": "Sam", "P2": "Sam (2)"}


def test_times_and_replies_are_relative() -> None:
    p = pseudonymize([sp("u1", "A", "q", ts=100.0, mid="m1"),
                      sp("u2", "B", "a", ts=160.5, mid="m2", reply_to="m1"),
                      sp("u2", "B", "x", ts=170.0, mid="m3", reply_to="gone")])
    assert [t.t for t in p.turns] == [0.0, 60.5, 70.0]
    assert [t.reply_to for t in p.turns] == [None, 0, None]


def test_restore_replaces_only_known_pseudonyms() -> None:
    assert restore("- P1: hi P2, see P12 and P3x", {"P1": "alice", "P2": "bob"}) == \
        "- alice: hi bob, see P12 and P3x"


@pytest.mark.parametrize(("text", "expected"), [
    ("write to jane.doe+x@example.co.uk today", "write to [email] today"),
    ("see https://example.com/a?b=c and www.test.org", "see [link] and [link]"),
    ("docs at example.io/path", "docs at [link]"),
    ("call +49 30 12345678 or (030) 1234-5678", "call [phone] or ([phone]"),
    ("on 2024-05-01 at 12:30, room 4711", "on 2024-05-01 at 12:30, room 4711"),
    ("version 1.2.3 and 3 apples", "version 1.2.3 and 3 apples"),
])
def test_redaction(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redaction_applies_only_when_asked() -> None:
    msgs = [sp("u1", "A", "mail a@b.io")]
    assert pseudonymize(msgs).turns[0].text == "mail a@b.io"
    assert pseudonymize(msgs, redact_pii=True).turns[0].text == "mail [email]"


names = st.text(alphabet=st.characters(categories=["L"]), min_size=2, max_size=12)


@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]), st.text(max_size=60)),
                min_size=1, max_size=20),
       st.fixed_dictionaries({u: names for u in ["u1", "u2", "u3", "u4"]}))
def test_no_speaker_name_survives_pseudonymization(
    msgs: list[tuple[str, str]], people: dict[str, str]
) -> None:
    p = pseudonymize([sp(u, people[u], f"{people[u]} says {t}") for u, t in msgs])
    shared = {v for v in people.values() if list(people.values()).count(v) > 1}
    for (user, _), turn in zip(msgs, p.turns, strict=True):
        assert turn.speaker.startswith("P")
        if people[user] in shared:
            # Two speakers share the name: the mention is replaced, by one of them.
            assert turn.text.split(" says ", 1)[0] in p.names
        else:
            assert turn.text.startswith(turn.speaker + " says ")
    assert set(p.names.values()) >= {people[u] for u, _ in msgs} - {
        v for v in people.values() if list(people.values()).count(v) > 1}


# --- every person reference, not only speakers (DESIGN.md §7, invariant 10) -----------------

def test_members_who_never_spoke_are_pseudonymized_when_mentioned() -> None:
    p = pseudonymize([sp("u1", "Alice", "ask Carol Jones, or @cjones, or carol")],
                     people=[Person("u3", "Carol Jones", "cjones"), Person("u4", "Dan", None)])
    assert p.turns[0].text == "ask P2, or P2, or P2"
    assert p.names == {"P1": "Alice", "P2": "Carol Jones"}  # Dan was never mentioned


def test_a_mention_spelled_differently_is_still_that_person() -> None:
    # Telegram text_mention: "Bobby" links user 7 whose name is "Robert Tables".
    p = pseudonymize([sp("u1", "Alice", "thanks Bobby!")],
                     people=[Person("7", "Robert Tables", None, spelled=("Bobby",))])
    assert p.turns[0].text == "thanks P2!"
    assert restore(p.turns[0].text, p.names) == "thanks Robert Tables!"


def test_username_only_mentions_become_pseudonyms() -> None:
    p = pseudonymize([sp("u1", "Alice", "cc @someone_else please")],
                     people=[Person("", handle="someone_else")])
    assert p.turns[0].text == "cc P2 please"
    assert p.names["P2"] == "@someone_else"


@pytest.mark.parametrize("ref", [
    "@zed:evil.example", "@zed:evil.example:8448", "https://matrix.to/#/@zed:evil.example",
    "https://matrix.to/#/%40zed%3Aevil.example?via=x.org", "matrix:u/zed:evil.example",
    "@zed:[2001:db8::1]",
])
def test_matrix_ids_never_pass_server_part_included(ref: str) -> None:
    p = pseudonymize([sp("@a:hs.example", "Alice", f"ping {ref} now")])
    assert p.turns[0].text == "ping P2 now"
    assert "evil" not in p.turns[0].text and "zed" not in p.turns[0].text
    assert restore("P2 agreed", p.names).endswith("agreed")


def test_known_matrix_ids_restore_to_the_display_name() -> None:
    p = pseudonymize([sp("@a:hs.example", "Alice", "hi @bob:hs.example and bob")],
                     people=[Person("@bob:hs.example", "Bob Builder")])
    assert p.turns[0].text == "hi P2 and P2"  # the localpart is an alias too
    assert p.names["P2"] == "Bob Builder"


def test_a_literal_pseudonym_typed_by_a_member_stays_literal() -> None:
    p = pseudonymize([sp("u1", "Alice", "P1 bug: the P2 queue is stuck"),
                      sp("u2", "Bob", "P1 fixed by Alice")])
    seen = " ".join(t.text for t in p.turns)
    # The engine sees pseudonyms only: "P1" typed above is not the speaker P1.
    assert p.turns[0].text.split()[0] != "P1" and "P1 fixed" not in seen
    back = [restore(t.text, p.names) for t in p.turns]
    assert back == ["P1 bug: the P2 queue is stuck", "P1 fixed by Alice"]
    assert restore("P1 and P2 spoke", p.names) == "Alice and Bob spoke"


def test_common_words_that_are_names_match_only_as_spelled() -> None:
    p = pseudonymize([sp("u1", "Alice", "I will ask Will")],
                     people=[Person("u2", "Will", None)])
    assert p.turns[0].text == "I will ask P2"


def test_without_drops_turns_and_renumbers_replies() -> None:
    p = pseudonymize([sp("a", "A", "q", mid="1"), sp("b", "B", "x", mid="2"),
                      sp("a", "A", "r", mid="3", reply_to="1"),
                      sp("a", "A", "s", mid="4", reply_to="2")])
    kept = without(p, {"b"})
    assert [t.text for t in kept.turns] == ["q", "r", "s"]
    assert [t.reply_to for t in kept.turns] == [None, 0, None]
    assert kept.authors == ["a", "a", "a"]
