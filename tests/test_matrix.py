"""The Matrix adapter against a real Synapse, end to end, with E2EE.

Members are plain nio clients (``tests.synapse``); the bot is the real thing: a
``open_bot(config)`` core on SQLite with local processing, plus ``MatrixAdapter``
logged in with a password, syncing in the background. The first tests check the
pure rules (commands, relations, admins, the history walk) without a server.

What the Synapse scenarios show:

* an unencrypted room: opt-in, a summary that uses only opted-in members' messages
  and says one was left out, ``!optout`` taking effect for the next summary, and
  ``!policy`` refused to a non-admin but allowed to an admin (power 100) and to
  the room's creator;
* an encrypted room: the same, with the answer itself encrypted; a summary inside
  a thread covers only the thread; a reply-anchored summary starts at the message
  replied to; ``!summarize private`` arrives in a new encrypted DM;
* an invite from someone not in ``allowed_inviters`` is declined; a DM invite makes
  a direct chat (``is_group`` False); a kick makes the bot forget the room;
* history counts messages sent before the bot joined as undecryptable;
* a restart on the same data directory answers no old command again and still
  decrypts new messages (same device, same keys);
* canaries in messages and display names appear in no file under the bot's data
  directory (nio's store included) and in no log record.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nio
import pytest

from hushbrief.adapters.matrix import MatrixAdapter, MatrixHistory
from hushbrief.adapters.matrix.commands import BotNames, parse, relations, strip_reply_fallback
from hushbrief.adapters.matrix.errors import MatrixStartError
from hushbrief.adapters.matrix.formatting import render, split, to_bang
from hushbrief.adapters.matrix.history import UNDECRYPTABLE, Walk, megolm_event
from hushbrief.adapters.matrix.logfilter import install_nio_filter
from hushbrief.adapters.matrix.rooms import RoomState, inviter_allowed
from hushbrief.adapters.matrix.session import (
    Session,
    load_or_create_store_key,
    load_session,
    matrix_dir,
    save_session,
)
from hushbrief.bot.app import Bot, open_bot
from hushbrief.bot.config import Config, MatrixConfig, ProcessingConfig, StorageConfig
from hushbrief.bot.events import ChatRef, Member
from hushbrief.bot.policy import Policy, Processing
from tests.synapse import ClientFactory, SynapseServer, sync_once

MEGOLM = "m.megolm.v1.aes-sha2"
ENCRYPTED = [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}]
SYNC_FILTER = {"room": {"timeline": {"limit": 100}}}
WAIT = 30.0


# --------------------------------------------------------------------------- pure rules


NAMES = BotNames("@hushbrief:example.org", ("Hushbrief",))


def _text(body: str, **extra: Any) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, **extra}


@pytest.mark.parametrize(("body", "expected"), [
    ("!summarize 3h", ("summarize", ("3h",))),
    ("/summarize private", ("summarize", ("private",))),
    ("!OPTIN", ("optin", ())),
    ("Hushbrief: summarize 50", ("summarize", ("50",))),
    ("hushbrief, !status", ("status", ())),
    ("@hushbrief:example.org !help", ("help", ())),
    ("!summarize@hushbrief", ("summarize", ())),
    ("!summarize@otherbot", None),
    ("!weather Berlin", None),  # another bot's command
    ("Hushbrief: what do you think?", None),  # addressed, but not a command
    ("Hushbrief: !frobnicate", ("frobnicate", ())),  # addressed: the core explains
    ("we should !summarize later", None),
    ("!", None),
])
def test_commands_in_a_group(body: str, expected: tuple[str, tuple[str, ...]] | None) -> None:
    assert parse(_text(body), NAMES, direct=False) == expected


def test_commands_in_a_dm_and_of_other_kinds() -> None:
    assert parse(_text("!frobnicate"), NAMES, direct=True) == ("frobnicate", ())
    assert parse({"msgtype": "m.notice", "body": "!summarize"}, NAMES, direct=False) is None
    assert parse({"msgtype": "m.emote", "body": "!summarize"}, NAMES, direct=False) is None
    pill = _text("Hush: summarize", **{"m.mentions": {"user_ids": [NAMES.user_id]}})
    assert parse(pill, NAMES, direct=False) == ("summarize", ())


def test_the_reply_fallback_is_not_parsed_and_not_kept() -> None:
    content = _text("> <@bob:example.org> !optout\n> second line\n\n!summarize",
                    **{"m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}})
    assert parse(content, NAMES, direct=False) == ("summarize", ())
    assert strip_reply_fallback("> quoted\n\nmine") == "mine"
    assert strip_reply_fallback("no quote") == "no quote"


def test_relations_tell_thread_fallbacks_from_replies() -> None:
    fallback = {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                                 "is_falling_back": True, "m.in_reply_to": {"event_id": "$l"}}}
    assert relations(fallback).thread_id == "$root" and relations(fallback).reply_to is None
    real = {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                             "is_falling_back": False, "m.in_reply_to": {"event_id": "$m"}}}
    assert relations(real).reply_to == "$m"
    assert relations({"m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}).replaces \
        == "$o"
    assert relations({"m.relates_to": {"m.in_reply_to": {"event_id": "$r"}}}).reply_to == "$r"


def test_inviters_and_admins() -> None:
    allowed = ("@alice:example.org", ":trusted.org")
    assert inviter_allowed("@alice:example.org", allowed)
    assert inviter_allowed("@anyone:trusted.org", allowed)
    assert not inviter_allowed("@bob:example.org", allowed)
    assert not inviter_allowed("@x:untrusted.org", allowed)
    assert not inviter_allowed("@x:evil-trusted.org", allowed)

    room = RoomState()
    room.apply("m.room.create", "", "@c:x", {"room_version": "10"})
    assert room.is_admin("@c:x") and not room.is_admin("@m:x")  # no power levels yet
    room.apply("m.room.power_levels", "", "@c:x",
               {"users": {"@c:x": 100, "@mod:x": 50, "@m:x": 10}, "state_default": 50})
    assert room.is_admin("@c:x") and room.is_admin("@mod:x") and not room.is_admin("@m:x")
    # Demotion: the entry disappears, the new event replaces the old one entirely.
    room.apply("m.room.power_levels", "", "@c:x", {"users": {"@c:x": 100}})
    assert not room.is_admin("@mod:x")
    # The power-levels level, when lower than state_default, is the threshold.
    room.apply("m.room.power_levels", "", "@c:x",
               {"users": {"@m:x": 30}, "state_default": 50,
                "events": {"m.room.power_levels": 30}})
    assert room.is_admin("@m:x") and not room.is_admin("@c:x")  # v10: no creator privilege
    v12 = RoomState()
    v12.apply("m.room.create", "", "@c:x", {"room_version": "12",
                                            "additional_creators": ["@d:x"]})
    v12.apply("m.room.power_levels", "", "@c:x", {"users": {}})
    assert v12.is_admin("@c:x") and v12.is_admin("@d:x") and not v12.is_admin("@m:x")


def test_formatting_escapes_and_says_bang() -> None:
    parts = render("Summary of the last hour:\n<b>A & B</b>", bold_first_line=True)
    assert parts[0].html == ("<strong>Summary of the last hour:</strong><br>"
                             "&lt;b&gt;A &amp; B&lt;/b&gt;")
    assert to_bang("send /optin, then /summarize 3h; see https://x.org/help") == \
        "send !optin, then !summarize 3h; see https://x.org/help"
    assert to_bang("I don't know /frob; send /help") == "I don't know /frob; send !help"
    long = "\n".join(f"line {i} " + "&" * 100 for i in range(2000))
    chunks = split(long)
    assert len(chunks) > 1 and "\n".join(chunks) == long


def _raw(event_id: str, sender: str, ts: int, content: dict[str, Any], *,
         kind: str = "m.room.message", unsigned: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = {"event_id": event_id, "sender": sender, "origin_server_ts": ts, "type": kind,
           "content": content}
    if unsigned:
        raw["unsigned"] = unsigned
    return raw


def _walk(**kw: Any) -> Walk:
    chat = ChatRef("matrix", "!r:x")
    args: dict[str, Any] = {
        "bot_user_id": "@bot:x", "limit": 100, "since": None, "from_message": None,
        "thread_id": None, "speaker": lambda uid: Member(uid, uid[1:2].upper(), uid[1:2]),
        "is_command": lambda c: parse(c, BotNames("@bot:x"), direct=False) is not None,
        "max_scan": 1000}
    args.update(kw)
    return Walk(chat, **args)


def _feed(walk: Walk, events: list[dict[str, Any]], undecryptable: tuple[str, ...] = ()) -> None:
    for raw in events:  # newest first, as /messages?dir=b returns them
        if walk.wants(raw):
            walk.add(raw, UNDECRYPTABLE if raw["event_id"] in undecryptable else raw["content"])
        if walk.done:
            break


def test_the_history_walk() -> None:
    events = [
        _raw("$9", "@a:x", 9000, _text("!summarize")),  # a command: not a message
        _raw("$8", "@bot:x", 8000, {"msgtype": "m.notice", "body": "bot"}),
        _raw("$7", "@a:x", 7000, {"msgtype": "m.text", "body": "* fixed",
                                  "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                                  "m.relates_to": {"rel_type": "m.replace", "event_id": "$3"}}),
        _raw("$6", "@b:x", 6000, {"msgtype": "m.text", "body": "x", "m.new_content": {
            "msgtype": "m.text", "body": "forged"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$5"}}),
        _raw("$5", "@a:x", 5000, _text("in thread", **{"m.relates_to": {
            "rel_type": "m.thread", "event_id": "$1"}})),
        _raw("$4", "@c:x", 4000, {}, kind="m.room.encrypted"),
        _raw("$3", "@a:x", 3000, _text("typo")),
        _raw("$2", "@b:x", 2000, {"msgtype": "m.emote", "body": "waves"},
             unsigned={}),
        _raw("$r", "@b:x", 1500, {}, unsigned={"redacted_because": {}}),
        _raw("$1", "@b:x", 1000, _text("> <@a:x> quoted\n\nroot",
                                       **{"m.relates_to": {"m.in_reply_to": {"event_id": "$0"}}})),
        _raw("$n", "@b:x", 900, {"msgtype": "m.notice", "body": "another bot"}),
    ]
    walk = _walk()
    _feed(walk, events, undecryptable=("$4",))
    got = [(m.message_id, m.text, m.reply_to) for m in walk.messages()]
    assert got == [("$1", "root", "$0"), ("$2", "* B waves", None), ("$3", "fixed", None)]
    assert walk.undecryptable == 1

    anchored = _walk(from_message="$2")
    _feed(anchored, events, undecryptable=("$4",))
    assert [m.message_id for m in anchored.messages()] == ["$2", "$3"]

    limited = _walk(limit=2)
    _feed(limited, events, undecryptable=("$4",))
    assert [m.message_id for m in limited.messages()] == ["$3"]  # + 1 undecryptable = 2

    recent = _walk(since=2.5)
    _feed(recent, events)
    assert [m.message_id for m in recent.messages()] == ["$3"]


def test_encrypted_envelopes_nio_cannot_use_are_recognized() -> None:
    content = {"algorithm": MEGOLM, "ciphertext": "c", "sender_key": "k", "session_id": "s",
               "device_id": "D"}
    event = megolm_event(_raw("$e", "@a:x", 1, content, kind="m.room.encrypted"), "!r:x")
    assert event is not None and event.session_id == "s" and event.room_id == "!r:x"
    modern = {k: v for k, v in content.items() if k not in ("sender_key", "device_id")}
    assert megolm_event(_raw("$e", "@a:x", 1, modern, kind="m.room.encrypted"), "!r:x") is None


def test_session_and_store_key_files_are_private(tmp_path: Path) -> None:
    root = matrix_dir(tmp_path / "data")
    assert root.stat().st_mode & 0o777 == 0o700
    key = load_or_create_store_key(root, "")
    assert len(bytes.fromhex(key)) == 32 and load_or_create_store_key(root, "") == key
    assert (root / "store.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_store_key(root, "configured secret") == "configured secret"
    assert load_session(root) is None
    session = Session("http://127.0.0.1:1", "@bot:x", "DEV", "token")
    save_session(root, session)
    assert load_session(root) == session and "token" not in repr(session)
    assert (root / "session.json").stat().st_mode & 0o777 == 0o600
    (root / "session.json").chmod(0o644)
    with pytest.raises(MatrixStartError, match="chmod 600"):
        load_session(root)
    (root / "store.key").unlink()
    (root / "store.key").symlink_to(tmp_path / "elsewhere.key")
    with pytest.raises(MatrixStartError, match="symbolic link"):
        load_or_create_store_key(root, "")


def test_nio_records_keep_no_content(caplog: pytest.LogCaptureFixture) -> None:
    install_nio_filter()
    caplog.set_level(logging.DEBUG)
    secret = _canary("log")
    logging.getLogger("nio.rooms").info(f"Room !r:x handling {secret}")
    logging.getLogger("nio.responses").debug("Validating response schema %r: %s", {}, secret)
    logging.getLogger("nio.events.misc").warning("Error validating event: %s", secret)
    logging.getLogger("nio.client.async_client").warning(
        "Got 429 response (ratelimited), sleeping for %dms", 1500)
    messages = [r.getMessage() for r in caplog.records]
    assert not any(secret in m for m in messages)
    assert "nio record withheld at" in messages[0] and len(messages) == 3
    assert messages[2] == "Got 429 response (ratelimited), sleeping for 1500ms"


# --------------------------------------------------------------------------- harness


def _canary(tag: str) -> str:
    return f"canary{tag}{secrets.token_hex(5)}"


def _files_containing(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n.encode() in data]
    return hits


def _relates(event: Any) -> Mapping[str, Any]:
    content = event.source.get("content", {})
    rel = content.get("m.relates_to") if isinstance(content, Mapping) else None
    return rel if isinstance(rel, Mapping) else {}


def _in_reply_to(event: Any) -> str | None:
    reply = _relates(event).get("m.in_reply_to")
    return reply.get("event_id") if isinstance(reply, Mapping) else None


@dataclass
class Person:
    """A member's nio client and everything its syncs delivered, per room."""

    client: Any
    seen: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    invites: list[str] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    async def sync(self, timeout_ms: int = 0) -> None:
        resp = await sync_once(self.client, timeout_ms=timeout_ms, sync_filter=SYNC_FILTER)
        for room_id, info in resp.rooms.join.items():
            self.seen[room_id].extend(info.timeline.events)
        self.invites.extend(resp.rooms.invite)

    async def say(self, room_id: str, body: str, *, thread: str | None = None,
                  reply_to: str | None = None, sync: bool = True) -> str:
        if sync:
            await self.sync()
        content = _text(body)
        if thread is not None:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread,
                                       "is_falling_back": reply_to is None,
                                       "m.in_reply_to": {"event_id": reply_to or thread}}
        elif reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        resp = await self.client.room_send(room_id, "m.room.message", content,
                                           ignore_unverified_devices=True)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return str(resp.event_id)

    async def edit(self, room_id: str, event_id: str, body: str) -> str:
        content = {"msgtype": "m.text", "body": f"* {body}",
                   "m.new_content": {"msgtype": "m.text", "body": body},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}}
        resp = await self.client.room_send(room_id, "m.room.message", content,
                                           ignore_unverified_devices=True)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return str(resp.event_id)

    async def wait_for(self, room_id: str, what: Callable[[Any], bool],
                       timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.seen[room_id]:
                if what(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user_id} waited {timeout}s in vain")
            await self.sync(timeout_ms=500)

    async def answer(self, room_id: str, command_id: str, bot_id: str) -> Any:
        """The bot's reply to ``command_id`` (decrypted, if the room is encrypted)."""
        return await self.wait_for(room_id, lambda e: e.sender == bot_id
                                   and _in_reply_to(e) == command_id)

    async def ask(self, room_id: str, command: str, bot_id: str, **kw: Any) -> str:
        event_id = await self.say(room_id, command, **kw)
        return str((await self.answer(room_id, event_id, bot_id)).body)

    def answers(self, room_id: str, command_id: str, bot_id: str) -> list[Any]:
        return [e for e in self.seen[room_id]
                if e.sender == bot_id and _in_reply_to(e) == command_id]


@dataclass
class RunningBot:
    bot: Bot
    adapter: MatrixAdapter
    config: Config

    @property
    def user_id(self) -> str:
        return self.adapter.user_id


BotFactory = Callable[..., Awaitable[RunningBot]]


def _bot_config(synapse: SynapseServer, data_dir: Path, user_id: str, password: str,
                allowed: tuple[str, ...]) -> Config:
    base = Config()
    return replace(
        base,
        storage=StorageConfig(data_dir=data_dir),
        processing=ProcessingConfig(mode=Processing.LOCAL),
        matrix=MatrixConfig(enabled=True, homeserver=synapse.base_url, user_id=user_id,
                            password=password, allowed_inviters=allowed),
        # Several summaries per room and per member within a minute.
        policy_defaults=replace(Policy(), chat_rate=1000, member_rate=1000),
    )


@pytest.fixture
async def matrix_bots(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[BotFactory]:
    """``await matrix_bots(name, allowed=(...), data_dir=None)`` → a started bot.

    Every bot is stopped and its database closed at the end of the test.
    """
    running: list[RunningBot] = []

    async def make(name: str, *, allowed: tuple[str, ...], data_dir: Path | None = None,
                   password: str | None = None) -> RunningBot:
        user_id = synapse.user_id(name)
        if password is None:
            account = synapse.accounts.get(user_id) or synapse.register_account(name)
            password = account.password
        config = _bot_config(synapse, data_dir or tmp_path / f"data-{name}", user_id,
                             password, allowed)
        bot = open_bot(config)
        adapter = MatrixAdapter(config.matrix, bot.core, data_dir=config.storage.data_dir,
                                poll_timeout=1.0, drain_timeout=5.0)
        try:
            await adapter.start()
        except BaseException:
            bot.close()
            raise
        run = RunningBot(bot, adapter, config)
        running.append(run)
        return run

    try:
        yield make
    finally:
        for run in reversed(running):
            await run.adapter.stop()
            await run.bot.aclose()


async def _room(owner: Person, *, encrypted: bool, invite: list[str],
                power: dict[str, int] | None = None) -> str:
    resp = await owner.client.room_create(
        name="hushbrief test", invite=invite, initial_state=ENCRYPTED if encrypted else [],
        power_level_override={"users": power} if power else None)
    assert isinstance(resp, nio.RoomCreateResponse), resp
    await owner.sync()
    return str(resp.room_id)


async def _join(person: Person, room_id: str) -> None:
    resp = await person.client.join(room_id)
    assert isinstance(resp, nio.JoinResponse), resp
    await person.sync()


def _is_hello(bot_id: str) -> Callable[[Any], bool]:
    return lambda e: e.sender == bot_id and "!optin" in getattr(e, "body", "")


# --------------------------------------------------------------------------- scenarios


@pytest.mark.slow
async def test_unencrypted_room_consent_optout_and_policy(
    synapse: SynapseServer, matrix_clients: ClientFactory, matrix_bots: BotFactory,
) -> None:
    tag = secrets.token_hex(3)
    alice = Person(await matrix_clients(f"alice-{tag}"))
    bob, carol, dave = [Person(await matrix_clients(f"{n}-{tag}"))
                        for n in ("bob", "carol", "dave")]
    bot = await matrix_bots(f"bot-{tag}", allowed=(alice.user_id,))
    room = await _room(alice, encrypted=False,
                       invite=[bot.user_id, bob.user_id, carol.user_id, dave.user_id],
                       power={dave.user_id: 100})
    await alice.wait_for(room, _is_hello(bot.user_id))
    for person in (bob, carol, dave):
        await _join(person, room)

    assert "Thanks" in await alice.ask(room, "!optin", bot.user_id)
    assert "Thanks" in await carol.ask(room, "/optin", bot.user_id)
    said = {who: _canary(who) for who in ("alice", "carol", "bob")}
    await alice.say(room, f"We should ship the release on Friday after the review {said['alice']}.")
    await carol.say(room, f"The database migration needs one more test run first {said['carol']}.")
    await bob.say(room, f"The landing page logo colours look completely wrong {said['bob']}.")

    summary = await alice.ask(room, "!summarize", bot.user_id)
    assert said["alice"] in summary and said["carol"] in summary, summary
    assert said["bob"] not in summary
    assert "1 message was left out" in summary

    assert "no longer used" in await carol.ask(room, f"{bot.user_id}: optout", bot.user_id)
    summary = await alice.ask(room, "!summarize", bot.user_id)
    assert said["alice"] in summary and said["carol"] not in summary, summary
    assert "2 messages were left out" in summary

    refusal = await bob.ask(room, "!policy summaries off", bot.user_id)
    assert "Only this chat's admins" in refusal
    assert "Done: summaries is now off" in await dave.ask(room, "!policy summaries off",
                                                          bot.user_id)
    assert "switched off" in await alice.ask(room, "!summarize", bot.user_id)
    assert "Done" in await alice.ask(room, "!policy summaries on", bot.user_id)  # the creator

    help_text = await bob.ask(room, "!help", bot.user_id)
    assert "!optin" in help_text and "/optin" not in help_text and "start commands with !" \
        in help_text


@pytest.mark.slow
async def test_encrypted_room_threads_replies_dm_and_no_canaries(
    synapse: SynapseServer, matrix_clients: ClientFactory, matrix_bots: BotFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tag = secrets.token_hex(3)
    bot = await matrix_bots(f"bot-{tag}", allowed=(f":{synapse.server_name}",))
    names = {who: _canary(who.capitalize()) for who in ("alice", "bob", "carol")}
    alice, bob, carol = [Person(await matrix_clients(f"{who}-{tag}"))
                         for who in ("alice", "bob", "carol")]
    for person, who in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        assert isinstance(await person.client.set_displayname(f"{who} {names[who]}"),
                          nio.ProfileSetDisplayNameResponse)
    room = await _room(alice, encrypted=True, invite=[bot.user_id, bob.user_id, carol.user_id])
    await alice.wait_for(room, _is_hello(bot.user_id))
    for person in (bob, carol):
        await _join(person, room)
    for person in (alice, carol):
        assert "Thanks" in await person.ask(room, "!optin", bot.user_id)

    said = {k: _canary(k) for k in ("a1", "c0", "c1", "b1", "a2", "root", "t1", "t2", "t2e",
                                    "after")}
    await alice.say(room, f"Let us plan the offsite in the mountains this spring {said['a1']}.")
    typo = await carol.say(room, f"I can bok the trian tickets for everyone {said['c0']}.")
    await carol.edit(room, typo, f"I can book the train tickets for the whole group {said['c1']}.")
    await bob.say(room, f"My budget spreadsheet still has the wrong totals {said['b1']}.")
    anchor = await alice.say(room, f"The venue needs a deposit by the end of month {said['a2']}.")

    command = await alice.say(room, "!summarize")
    answer = await alice.answer(room, command, bot.user_id)
    assert answer.decrypted, "the summary was sent unencrypted"
    assert isinstance(answer, nio.RoomMessageNotice)
    summary = str(answer.body)
    for key in ("a1", "c1", "a2"):
        assert said[key] in summary, summary
    assert said["b1"] not in summary and said["c0"] not in summary  # the edit counts
    assert "1 message was left out" in summary
    assert names["alice"] in summary or names["carol"] in summary  # names restored

    # Reply-anchored: from the message replied to on.
    anchored = await alice.ask(room, f"> <{alice.user_id}> earlier\n\n!summarize",
                               bot.user_id, reply_to=anchor)
    assert said["a2"] in anchored and said["a1"] not in anchored, anchored
    assert "since the message you replied to" in anchored

    # A thread: only the thread is summarized, and the room summary leaves it out.
    root = await carol.say(room, f"Which hiking trail should we take on day two {said['root']}?")
    await alice.say(room, f"The northern ridge trail has the best views {said['t1']}.",
                    thread=root)
    t2 = await carol.say(room, f"The lake loop is shorter and easier for all {said['t2']}.",
                         thread=root)
    # An edit of a thread message is no m.thread relation itself: the bundled edit counts.
    await carol.edit(room, t2, f"The lake loop is shorter and easier for everyone {said['t2e']}.")
    await alice.say(room, f"Unrelated: the caterer confirmed the menu {said['after']}.")
    in_thread = await alice.say(room, "!summarize", thread=root)
    threaded = await alice.answer(room, in_thread, bot.user_id)
    assert _relates(threaded).get("rel_type") == "m.thread"
    assert _relates(threaded).get("event_id") == root
    text = str(threaded.body)
    assert said["t1"] in text and said["t2e"] in text and said["t2"] not in text, text
    assert said["after"] not in text and said["a1"] not in text
    room_summary = await alice.ask(room, "!summarize", bot.user_id)
    assert said["after"] in room_summary and said["t1"] not in room_summary, room_summary

    # Private delivery: a new encrypted DM room, recorded in the bot's m.direct.
    note = await alice.ask(room, "!summarize private", bot.user_id)
    assert "direct message" in note
    dm_event = None
    deadline = time.monotonic() + WAIT
    while dm_event is None:
        assert time.monotonic() < deadline, "no DM invite arrived"
        await alice.sync(timeout_ms=500)
        for dm in list(alice.invites):
            await _join(alice, dm)
            alice.invites.remove(dm)
            dm_event = await alice.wait_for(dm, lambda e: e.sender == bot.user_id
                                            and said["a1"] in getattr(e, "body", ""))
            assert alice.client.rooms[dm].encrypted
    assert dm_event.decrypted
    # The DM room is reused for the next private summary.
    again = await alice.ask(room, "!summarize private", bot.user_id)
    assert "direct message" in again
    await alice.wait_for(dm, lambda e: e.sender == bot.user_id and e is not dm_event
                         and said["a1"] in getattr(e, "body", ""))
    await alice.sync()
    assert alice.invites == []

    # Invariant 1: no canary in the data directory (nio's store included) or in any log.
    canaries = list(said.values()) + list(names.values())
    assert _files_containing(bot.config.storage.data_dir, canaries) == []
    for record in caplog.records:
        message = record.getMessage()
        assert not any(c in message for c in canaries), (record.name, message)
    assert any(r.name.startswith("nio") for r in caplog.records)  # nio did log
    # Nor identifiers: the bot's and nio's records name rooms by pseudonymous tags only.
    ids = [room, dm, alice.user_id, bob.user_id, carol.user_id]
    for record in caplog.records:
        if record.name.startswith(("hushbrief", "nio", "peewee")):
            message = record.getMessage()
            assert not any(i in message for i in ids), (record.name, message)


@pytest.mark.slow
async def test_an_invite_from_a_stranger_is_declined(
    synapse: SynapseServer, matrix_clients: ClientFactory, matrix_bots: BotFactory,
) -> None:
    tag = secrets.token_hex(3)
    alice = Person(await matrix_clients(f"alice-{tag}"))
    bot = await matrix_bots(f"bot-{tag}", allowed=(alice.user_id, ":elsewhere.example"))
    mallory = Person(await matrix_clients(f"mallory-{tag}"))
    room = await _room(mallory, encrypted=False, invite=[bot.user_id])

    def bot_left(event: Any) -> bool:
        return (isinstance(event, nio.RoomMemberEvent) and event.state_key == bot.user_id
                and event.membership == "leave")

    await mallory.wait_for(room, bot_left)
    # The allowed inviter still gets the bot.
    ok = await _room(alice, encrypted=False, invite=[bot.user_id])
    await alice.wait_for(ok, _is_hello(bot.user_id))


@pytest.mark.slow
async def test_a_restart_answers_nothing_old_and_still_decrypts(
    synapse: SynapseServer, matrix_clients: ClientFactory, matrix_bots: BotFactory,
    tmp_path: Path,
) -> None:
    tag = secrets.token_hex(3)
    alice = Person(await matrix_clients(f"alice-{tag}"))
    data_dir = tmp_path / "restart-data"
    first = await matrix_bots(f"bot-{tag}", allowed=(alice.user_id,), data_dir=data_dir)
    device = first.adapter.device_id
    room = await _room(alice, encrypted=True, invite=[first.user_id])
    await alice.wait_for(room, _is_hello(first.user_id))
    answered = await alice.say(room, "!optin")
    await alice.answer(room, answered, first.user_id)
    await first.adapter.stop()
    await first.bot.aclose()

    while_down = await alice.say(room, "!status")  # sent while the bot is down
    second = await matrix_bots(f"bot-{tag}", allowed=(alice.user_id,), data_dir=data_dir)
    assert second.adapter.device_id == device, "the restart logged in a new device"
    text = _canary("later")
    await alice.say(room, f"After the restart the bot still reads encrypted talk {text}.")
    fresh = await alice.say(room, "!summarize")
    summary = await alice.answer(room, fresh, second.user_id)
    assert text in summary.body, summary.body
    assert "could not" not in summary.body
    # Commands are handled in order per room: anything replayed would have come first.
    assert len(alice.answers(room, answered, second.user_id)) == 1
    assert alice.answers(room, while_down, second.user_id) == []
    assert second.adapter.commands_handled == 1
    # Room state (the creator's privilege) was reloaded with the full-state first sync.
    assert "Done" in await alice.ask(room, "!policy redact on", second.user_id)
    session = data_dir / "matrix" / "session.json"
    assert session.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "matrix" / "store.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
async def test_history_counts_what_it_cannot_decrypt(
    synapse: SynapseServer, matrix_clients: ClientFactory, matrix_bots: BotFactory,
) -> None:
    """Messages sent before the bot joined are counted, not read."""
    tag = secrets.token_hex(3)
    alice = Person(await matrix_clients(f"alice-{tag}"))
    bot = await matrix_bots(f"bot-{tag}", allowed=(alice.user_id,))
    room = await _room(alice, encrypted=True, invite=[])
    secret = _canary("before")
    await alice.say(room, f"Sent before the bot was invited {secret}.")
    assert isinstance(await alice.client.room_invite(room, bot.user_id), nio.RoomInviteResponse)
    await alice.wait_for(room, _is_hello(bot.user_id))
    await alice.say(room, "Sent after the bot joined.")
    history = await bot.adapter.fetch_history(ChatRef("matrix", room), None, limit=50,
                                              since=None, from_message=None)
    assert isinstance(history, MatrixHistory)
    assert [m.text for m in history] == ["Sent after the bot joined."]
    assert history.undecryptable == 1
    assert history.stats.decrypted >= 1 and history.stats.pages >= 1
    await asyncio.sleep(0)


@pytest.mark.slow
async def test_a_kick_makes_the_bot_forget_the_room(
    synapse: SynapseServer, matrix_clients: ClientFactory, matrix_bots: BotFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hushbrief")
    tag = secrets.token_hex(3)
    alice = Person(await matrix_clients(f"alice-{tag}"))
    bot = await matrix_bots(f"bot-{tag}", allowed=(alice.user_id,))
    room = await _room(alice, encrypted=True, invite=[bot.user_id])
    await alice.wait_for(room, _is_hello(bot.user_id))
    assert "Thanks" in await alice.ask(room, "!optin", bot.user_id)
    assert isinstance(await alice.client.room_kick(room, bot.user_id), nio.RoomKickResponse)
    deadline = time.monotonic() + WAIT
    while not any("matrix_left reason=kicked" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the bot did not notice the kick"
        await asyncio.sleep(0.1)
    assert any(r.getMessage().startswith("chat_gone") for r in caplog.records)
    tag_of_room = bot.bot.core.chat_tag(ChatRef("matrix", room))
    assert any(f"chat={tag_of_room}" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
async def test_a_dm_invite_makes_a_direct_chat(
    synapse: SynapseServer, matrix_clients: ClientFactory, matrix_bots: BotFactory,
) -> None:
    tag = secrets.token_hex(3)
    alice = Person(await matrix_clients(f"alice-{tag}"))
    bot = await matrix_bots(f"bot-{tag}", allowed=(alice.user_id,))
    resp = await alice.client.room_create(is_direct=True, invite=[bot.user_id],
                                          initial_state=ENCRYPTED)
    assert isinstance(resp, nio.RoomCreateResponse), resp
    dm = str(resp.room_id)
    hello = await alice.wait_for(dm, lambda e: e.sender == bot.user_id
                                 and "!summarize private" in getattr(e, "body", ""))
    assert hello.decrypted
    refusal = await alice.ask(dm, "!optin", bot.user_id)
    assert "Send !optin in the group chat" in refusal
    assert "forgetme" in await alice.ask(dm, "!help", bot.user_id)
