"""The Telegram adapter, end to end: the real python-telegram-bot client, the real core,
storage and engine, against a Bot API server emulated over loopback HTTP
(``tests/fake_telegram.py``).

Each scenario reads like what happens in a Telegram group: members post, the
bot answers in the same chat and topic, as a reply. Local processing, so no relay
is involved (the private path has its own tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from telegram import Bot as PtbBot
from telegram import Update

from hushbrief.adapters.telegram import TelegramAdapter, TelegramStartError
from hushbrief.adapters.telegram.adapter import PRIVACY_MODE_PROBLEM
from hushbrief.adapters.telegram.delivery import RetryPolicy
from hushbrief.adapters.telegram.formatting import (
    MESSAGE_LIMIT,
    escape,
    escaped_length,
    render_html,
    split_plain,
)
from hushbrief.adapters.telegram.updates import (
    SHARED_IDENTITY_REFUSAL,
    BotIdentity,
    BotMembership,
    translate,
)
from hushbrief.bot.app import Bot, open_bot
from hushbrief.bot.config import Config, TelegramConfig
from hushbrief.bot.events import ChatMessage, ChatRef, CommandReceived, MessageEdited
from hushbrief.bot.platform import (
    ActivityIndicator,
    DirectMessages,
    HistorySource,
    Platform,
    Visibility,
)
from tests.fake_telegram import BOT_ID, BOT_USERNAME, Chat, FakeTelegram, Sent, parse_html
from tests.servers import free_port

# PTB itself reads RetryAfter.retry_after in the exception's constructor, which warns.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

FAST = RetryPolicy(base_delay=0.05, max_delay=0.2)
ME = BotIdentity(BOT_ID, BOT_USERNAME)


@dataclass
class Scene:
    """One running bot on the emulated Telegram, and a group with two members."""

    fake: FakeTelegram
    adapter: TelegramAdapter
    bot: Bot
    group: Chat

    def window_count(self, chat: Chat) -> int:
        return self.bot.window.stats(("telegram", str(chat.id)))[0]

    async def ask(self, chat: Chat, user: Any, text: str, **kwargs: Any) -> Sent:
        """Post a command and return the bot's answer to it."""
        mid = self.fake.say(chat, user, text, **kwargs)
        return await self.fake.wait_reply(chat, mid)

    async def settle(self) -> None:
        """Wait until the adapter has dealt with every update pushed so far."""
        await self.fake.wait_fetched()
        deadline = time.monotonic() + 10
        while self.adapter.updates_handled < self.fake.pushed:
            assert time.monotonic() < deadline, "the adapter did not catch up"
            await asyncio.sleep(0.01)


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    emulator = FakeTelegram()
    with emulator.running():
        yield emulator


@contextlib.asynccontextmanager
async def running(fake: FakeTelegram, config: Config, **telegram: Any
                  ) -> AsyncIterator[Scene]:
    bot = open_bot(config)
    settings = TelegramConfig(enabled=True, token=fake.token, api_base_url=fake.api_base_url,
                              **telegram)
    adapter = TelegramAdapter(settings, bot.core, data_dir=config.storage.data_dir,
                              poll_timeout=1, retry=FAST, drain_timeout=5)
    await adapter.start()
    try:
        yield Scene(fake, adapter, bot, fake.group("Team"))
    finally:
        await adapter.stop()
        await bot.aclose()


@pytest.fixture
async def scene(fake: FakeTelegram, config: Config) -> AsyncIterator[Scene]:
    async with running(fake, config) as s:
        yield s


# --- groups, topics, replies ------------------------------------------------------------

async def test_optin_and_summary_in_a_group(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice, bob = fake.user("Alice", "Archer", username="alice"), fake.user("Bob")
    answer = await scene.ask(group, alice, "/optin")
    assert answer.text.startswith("Thanks")
    await scene.ask(group, bob, "/optin@hushbriefbot")
    fake.say(group, alice, "Shall we move the release to Friday? The migration needs a day.")
    fake.say(group, bob, "Friday works for me, I will update the changelog tonight.")
    command = fake.say(group, alice, "/summarize")
    summary = await fake.wait_reply(group, command)
    assert summary.text.startswith("Summary of the last 24 hours (2 messages used)")
    assert "Alice Archer: Shall we move the release to Friday?" in summary.text
    assert "Bob: Friday works for me" in summary.text
    # Plain text from the core, escaped HTML on the wire, the header in bold.
    assert summary.parse_mode == "HTML"
    assert summary.raw.startswith("<b>Summary of the last 24 hours")
    assert summary.thread_id is None
    assert len(fake.actions) <= 1  # "typing…" at most once for an instant summary


async def test_a_member_who_did_not_opt_in_is_left_out(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice, carol = fake.user("Alice"), fake.user("Carol")
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "The venue is booked for the offsite in March.")
    fake.say(group, carol, "carol's private remark about the budget")
    summary = await scene.ask(group, alice, "/summarize")
    assert "(1 message used; 1 message was left out because its author has not opted in)" \
        in summary.text
    assert "budget" not in summary.text


async def test_a_forum_topic_is_summarized_alone_and_answered_in_that_topic(
    scene: Scene,
) -> None:
    fake = scene.fake
    forum = fake.group("Forum", forum=True)
    alice = fake.user("Alice")
    releases = fake.create_topic(forum, alice, "Releases")
    lunch = fake.create_topic(forum, alice, "Lunch")
    await scene.ask(forum, alice, "/optin")
    fake.say(forum, alice, "Release candidate two is tagged and uploaded.", thread=releases)
    fake.say(forum, alice, "Pizza or sushi on Thursday?", thread=lunch)
    fake.say(forum, alice, "General chatter outside any topic.")
    summary = await scene.ask(forum, alice, "/summarize", thread=releases)
    assert "(1 message used)" in summary.text
    assert "Release candidate two" in summary.text
    assert "Pizza" not in summary.text and "General chatter" not in summary.text
    assert summary.thread_id == releases


async def test_a_reply_anchored_summary_starts_at_the_replied_message(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "Old news about the previous sprint retrospective.")
    anchor = fake.say(group, alice, "New topic: the database migration plan for May.")
    fake.say(group, alice, "We need a rollback script before the migration starts.",
             reply_to=anchor)
    summary = await scene.ask(group, alice, "/summarize", reply_to=anchor)
    assert summary.text.startswith("Summary since the message you replied to (2 messages used)")
    assert "retrospective" not in summary.text


async def test_commands_for_other_bots_are_ignored(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "Something worth summarizing about the quarterly report.")
    ignored = fake.say(group, alice, "/summarize@otherbot")
    also_ignored = fake.say(group, alice, "/weather Berlin")  # unaddressed, not ours
    handled = fake.say(group, alice, f"/summarize@{BOT_USERNAME}")
    summary = await fake.wait_reply(group, handled)
    assert "quarterly report" in summary.text
    await scene.settle()
    assert {s.reply_to for s in fake.sent_to(group)} & {ignored, also_ignored} == set()


# --- admins and policy ---------------------------------------------------------------------

async def test_only_admins_change_policy_anonymous_admins_included(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    member, admin = fake.user("Mallory"), fake.user("Ada")
    fake.set_status(group, admin, "administrator")
    refused = await scene.ask(group, member, "/policy who admins")
    assert refused.text.startswith("Only this chat's admins can change its settings")
    done = await scene.ask(group, admin, "/policy who admins")
    assert done.text == "Done: who is now admins."
    anonymous = fake.say_as_group(group, "/policy length 200")
    assert (await fake.wait_reply(group, anonymous)).text == "Done: length is now 200."
    # Everyone can still read the settings.
    listing = await scene.ask(group, member, "/policy")
    assert "who = admins" in listing.text and "length = 200" in listing.text


async def test_the_group_creator_is_an_admin_and_statuses_are_cached(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    owner = fake.user("Olga")
    fake.set_status(group, owner, "creator")
    await scene.ask(group, owner, "/policy redact on")
    await scene.ask(group, owner, "/policy redact off")
    asked = [p for p in fake.calls_of("getChatMember") if p.get("user_id") == owner.id]
    assert len(asked) == 1


async def test_anonymous_senders_can_neither_opt_in_nor_summarize(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    channel = Chat(-1_009_999, "channel", title="Announcements")
    for text in ("/optin", "/summarize"):
        mid = fake.say_as_group(group, text)
        assert (await fake.wait_reply(group, mid)).text == SHARED_IDENTITY_REFUSAL
    mid = fake.say_as_channel(group, channel, "/optin")
    assert (await fake.wait_reply(group, mid)).text == SHARED_IDENTITY_REFUSAL
    # Their messages are never kept: a placeholder, counted as left out.
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.say_as_group(group, "Pinned: the office is closed on Monday.")
    fake.say(group, alice, "Noted, I will work from home on Monday then.")
    summary = await scene.ask(group, alice, "/summarize")
    assert "1 message was left out" in summary.text
    assert "office is closed" not in summary.text


# --- message content ----------------------------------------------------------------------

async def test_an_edited_message_replaces_the_original(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    mid = fake.say(group, alice, "The deadline is Tuesday at noon.")
    fake.edit(group, alice, mid, "The deadline is Wednesday at noon, not Tuesday.")
    summary = await scene.ask(group, alice, "/summarize")
    assert "(1 message used)" in summary.text
    assert "Wednesday" in summary.text


async def test_captions_count_as_messages(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "Whiteboard photo from the architecture review.", caption=True)
    fake.say(group, alice, "", caption=False, extra={"sticker": {
        "file_id": "s", "file_unique_id": "s", "type": "regular", "width": 1, "height": 1,
        "is_animated": False, "is_video": False}})
    summary = await scene.ask(group, alice, "/summarize")
    assert "(1 message used)" in summary.text
    assert "Whiteboard photo" in summary.text


async def test_html_special_characters_are_escaped(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    tricky = fake.user("<b>Eve</b> & Co", username="eve")
    await scene.ask(group, tricky, "/optin")
    fake.say(group, tricky, "if a < b && c > d then <script>alert(1)</script> &amp; done")
    summary = await scene.ask(group, tricky, "/summarize")
    # The emulator parses HTML as strictly as Telegram: the text arrived intact.
    assert "<b>Eve</b> & Co: if a < b && c > d then <script>alert(1)</script> &amp; done" \
        in summary.text
    assert "&lt;script&gt;" in summary.raw and "&amp;amp;" in summary.raw


async def test_a_long_summary_is_split_into_messages_within_the_limit(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    admin = fake.user("Ada")
    fake.set_status(group, admin, "administrator")
    await scene.ask(group, admin, "/optin")
    await scene.ask(group, admin, "/policy length 1000")
    members = [fake.user(f"Member{i}") for i in range(12)]
    for member in members:
        await scene.ask(group, member, "/optin")
    for i, member in enumerate(members * 3):
        words = " ".join(f"w{i}x{j}<&>" for j in range(30))
        fake.say(group, member, f"Point {i}: {words}.")
    before = len(fake.sent_to(group))
    command = fake.say(group, admin, "/summarize")
    first = await fake.wait_reply(group, command)
    await scene.settle()
    parts = fake.sent_to(group)[before:]
    assert len(parts) >= 2 and parts[0] == first
    for part in parts:
        assert len(part.text.encode("utf-16-le")) // 2 <= MESSAGE_LIMIT
        assert len(part.raw) <= MESSAGE_LIMIT
    assert all(p.reply_to is None for p in parts[1:])
    assert parts[-1].text.endswith("Made on this bot's host.")
    assert "<&>" in "".join(p.text for p in parts)


# --- visibility (privacy mode) --------------------------------------------------------------

async def test_privacy_mode_tells_admins_what_to_do(config: Config) -> None:
    fake = FakeTelegram(can_read_all_group_messages=False)
    with fake.running():
        async with running(fake, config) as scene:
            group, alice = scene.group, fake.user("Alice")
            await scene.ask(group, alice, "/optin")
            summary = await scene.ask(group, alice, "/summarize")
            assert summary.text == PRIVACY_MODE_PROBLEM
            status = await scene.ask(group, alice, "/status")
            assert status.text.endswith(PRIVACY_MODE_PROBLEM)
            # An admin bot sees every message: no warning in another group.
            other = fake.group("Admins")
            fake.set_status(other, BOT_ID, "administrator")
            status = await scene.ask(other, alice, "/status")
            assert PRIVACY_MODE_PROBLEM not in status.text


async def test_being_added_says_hello_and_warns_about_privacy_mode(config: Config) -> None:
    fake = FakeTelegram(can_read_all_group_messages=False)
    with fake.running():
        async with running(fake, config) as scene:
            new = fake.group("New group")
            fake.add_bot(new)
            [hello] = await fake.wait_sent(1, chat=new)
            assert "/optin" in hello.text and hello.text.endswith(PRIVACY_MODE_PROBLEM)
            promoted = fake.group("Promoted")
            fake.add_bot(promoted, admin=True)
            [hello] = await fake.wait_sent(1, chat=promoted)
            assert PRIVACY_MODE_PROBLEM not in hello.text
            del scene


# --- private delivery ---------------------------------------------------------------------

async def test_private_delivery_sends_a_direct_message(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "Budget approved for two new laptops this quarter.")
    note = await scene.ask(group, alice, "/summarize private")
    assert note.text == "I sent you the summary in a direct message."
    [dm] = fake.sent_to(alice.id)
    assert dm.text.startswith("Summary of the last 24 hours (1 message used)")
    assert dm.reply_to is None


async def test_private_delivery_to_a_member_who_never_started_the_bot_falls_back(
    scene: Scene,
) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    fake.forbid_dm(alice)
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "Budget approved for two new laptops this quarter.")
    fallback = await scene.ask(group, alice, "/summarize private")
    assert fallback.text.startswith("I couldn't deliver your summary privately")
    assert fallback.text.endswith(f"https://t.me/{BOT_USERNAME}?start=hi")
    await scene.settle()
    assert fake.sent_to(alice.id) == []
    assert not any("I sent you the summary" in s.text for s in fake.sent_to(group))
    assert not any("laptops" in s.text for s in fake.sent_to(group))
    # Pressing Start (the link's /start hi) explains the bot in the private chat.
    private = fake.private_chat(alice)
    welcome = await scene.ask(private, alice, "/start hi")
    assert welcome.text.startswith("Hello! I work in group chats")
    assert "/optin" in welcome.text


# --- failures -----------------------------------------------------------------------------------

async def test_flood_control_delays_the_reply_but_delivers_it(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    fake.fail_next("sendMessage", 1, "retry_after", retry_after=1)
    started = time.monotonic()
    answer = await scene.ask(group, alice, "/optin")
    assert answer.text.startswith("Thanks")
    [(_, kind, failed_at)] = fake.failures_served
    assert kind == "retry_after"
    assert answer.at - failed_at >= 1.0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", ["bad_gateway", "disconnect"])
async def test_polling_survives_network_errors(scene: Scene, kind: str) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.fail_next("getUpdates", 1, kind)
    deadline = time.monotonic() + 5
    while not fake.failures_served:  # the long poll in flight returns, then one fails
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    answer = await scene.ask(group, alice, "/status")
    assert answer.text.startswith("You have opted in here")


@pytest.mark.parametrize("kind", ["bad_gateway", "disconnect"])
async def test_sending_survives_network_errors(scene: Scene, kind: str) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    fake.fail_next("sendMessage", 2, kind)
    answer = await scene.ask(group, alice, "/optin")
    assert answer.text.startswith("Thanks")
    assert [k for m, k, _ in fake.failures_served if m == "sendmessage"] == [kind, kind]
    assert len(fake.sent_to(group)) == 1
    # …and the bot keeps answering.
    assert (await scene.ask(group, alice, "/status")).text.startswith("You have opted in")


async def test_a_send_that_keeps_failing_is_logged_without_content(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    fake.fail_next("sendMessage", FAST.attempts, "bad_gateway")
    caplog.set_level(logging.INFO, logger="hushbrief.telegram")
    fake.say(group, alice, "/optin")
    await scene.settle()
    failed = [r.getMessage() for r in caplog.records if "telegram_send_failed" in r.getMessage()]
    assert failed == [failed[0]] and "reason=network" in failed[0]
    assert (await scene.ask(group, alice, "/status")).text.startswith("You have opted in")


async def test_removing_the_bot_empties_its_window_for_that_chat(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "A message that sits in the window.")
    await scene.settle()
    assert scene.window_count(group) == 1
    fake.remove_bot(group)
    await scene.settle()
    assert scene.window_count(group) == 0


async def test_a_send_forbidden_in_a_group_forgets_the_chat(scene: Scene) -> None:
    fake, group = scene.fake, scene.group
    alice = fake.user("Alice")
    await scene.ask(group, alice, "/optin")
    fake.say(group, alice, "Buffered before the bot was removed.")
    await scene.settle()
    with fake._lock:  # removed without the bot having seen the update
        fake._state.removed_from.add(group.id)
    fake.say(group, alice, "/status")
    await scene.settle()
    assert scene.window_count(group) == 0


async def test_typing_shows_in_the_topic_until_the_reply_is_posted(scene: Scene) -> None:
    fake = scene.fake
    forum, alice = fake.group("Forum", forum=True), fake.user("Alice")
    topic = fake.create_topic(forum, alice, "Plans")
    ref = ChatRef("telegram", str(forum.id))
    await scene.adapter.show_working(ref, str(topic))
    deadline = time.monotonic() + 5
    while (forum.id, "typing", topic) not in fake.actions:
        assert time.monotonic() < deadline, fake.actions
        await asyncio.sleep(0.01)
    await scene.ask(forum, alice, "/help", thread=topic)
    assert scene.adapter._typing == {}


# --- startup --------------------------------------------------------------------------------

async def test_the_adapter_offers_what_telegram_can_do(scene: Scene) -> None:
    adapter = scene.adapter
    for ability in (Platform, DirectMessages, ActivityIndicator, Visibility):
        assert isinstance(adapter, ability)
    # Telegram cannot fetch history: the core must buffer in its window.
    assert not isinstance(adapter, HistorySource)
    assert adapter.name == "telegram" and adapter.bot_username == BOT_USERNAME


async def test_command_menus_are_published_for_groups_and_private_chats(scene: Scene) -> None:
    groups = [c["command"] for c in scene.fake.commands("all_group_chats")]
    private = [c["command"] for c in scene.fake.commands("all_private_chats")]
    assert groups[:3] == ["summarize", "optin", "optout"]
    assert {"status", "privacy", "policy", "forgetme", "help"} <= set(groups)
    assert private[0] == "start" and "forgetme" in private and "summarize" not in private


async def test_a_rejected_token_stops_startup_with_one_line(
    fake: FakeTelegram, config: Config
) -> None:
    bot = open_bot(config)
    try:
        adapter = TelegramAdapter(TelegramConfig(enabled=True, token="1:wrong",
                                                 api_base_url=fake.api_base_url), bot.core)
        with pytest.raises(TelegramStartError, match="rejected"):
            await adapter.start()
        await adapter.stop()  # harmless after a failed start
    finally:
        await bot.aclose()


# --- webhook ------------------------------------------------------------------------------------

async def test_webhook_mode_accepts_only_the_secret(fake: FakeTelegram, config: Config) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    secret = "s3cret-" + secrets.token_hex(8)
    async with running(fake, config, mode="webhook", webhook_url=url,
                       webhook_listen=f"127.0.0.1:{port}", webhook_secret=secret) as scene:
        hook = fake.webhook
        assert hook is not None and hook["url"] == url and hook["secret_token"] == secret
        assert set(hook["allowed_updates"]) == {"message", "edited_message", "my_chat_member"}
        group, alice = scene.group, fake.user("Alice")
        # Telegram itself (the emulator) delivers with the secret header.
        answer = await scene.ask(group, alice, "/optin")
        assert answer.text.startswith("Thanks")
        forged = {"message": fake.message(group, alice, "/optout")}
        assert await fake.post_update(url, forged, secret=None, update_id=9) == 403
        assert await fake.post_update(url, forged, secret="wrong", update_id=10) == 403
        await asyncio.sleep(0.2)
        assert not any(s.text.startswith("Done: your messages") for s in fake.sent_to(group))
        assert await fake.post_update(url, forged, secret=secret, update_id=11) == 200
        reply = await fake.wait_reply(group, forged["message"]["message_id"])
        assert reply.text.startswith("Done: your messages here are no longer used")
        assert [status for _, status in fake.webhook_deliveries] == [200]


# --- invariant 1 ------------------------------------------------------------------------------

def _canary(tag: str) -> str:
    return f"canary{tag}{secrets.token_hex(6)}"


async def test_invariant_1_no_text_or_names_in_data_dir_or_logs(
    fake: FakeTelegram, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = [_canary(t) for t in ("said", "edit", "notin", "topic", "caption", "dm", "fail")]
    first, last, handle = _canary("First"), _canary("Last"), _canary("handle")
    async with running(fake, config) as scene:
        group, forum = scene.group, fake.group(_canary("Title"), forum=True)
        alice = fake.user(first, last, username=handle)
        carol = fake.user(_canary("Carol"))
        fake.set_status(group, alice, "administrator")
        await scene.ask(group, alice, "/optin")
        await scene.ask(forum, alice, "/optin")
        topic = fake.create_topic(forum, alice, _canary("Topic"))
        mid = fake.say(group, alice, f"Plan: {texts[0]} ships Friday, tests by Thursday.")
        fake.edit(group, alice, mid, f"Plan: {texts[1]} ships Friday, tests by Thursday.")
        fake.say(group, carol, f"not opted in {texts[2]}")
        fake.say(forum, alice, f"In the topic {texts[3]} we decided.", thread=topic)
        fake.say(group, alice, f"{texts[4]} photo", caption=True)
        fake.forbid_dm(alice)
        for command in ("/summarize", "/summarize private", "/status", "/policy redact on"):
            await scene.ask(group, alice, command)
        await scene.ask(forum, alice, "/summarize", thread=topic)
        fake.fail_next("sendMessage", FAST.attempts, "bad_gateway")
        fake.say(group, alice, f"/summarize 3 {texts[6]}")
        await scene.settle()
        summaries = [s.text for s in fake.sent if s.text.startswith("Summary")]
        assert len(summaries) == 2 and texts[1] in summaries[0] and texts[3] in summaries[1]
        fake.remove_bot(forum)
        await scene.settle()
    needles = [*texts, first, last, handle, fake.token, *summaries]
    needles += [line for s in summaries for line in s.splitlines()[1:-1]]
    for path in config.storage.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [n for n in needles if n.encode() in data], path
    assert any(r.name.startswith("telegram") for r in caplog.records)  # PTB did log
    for record in caplog.records:
        rendered = record.getMessage() + (record.exc_text or "")
        assert not [n for n in needles if n in rendered], (record.name, rendered)


# --- units: formatting and translation -----------------------------------------------------

def test_escaping_covers_exactly_what_telegram_reserves() -> None:
    assert escape("a < b && c > \"d\"") == "a &lt; b &amp;&amp; c &gt; \"d\""
    assert parse_html(escape("<b>&amp;</b> \"x\"")) == "<b>&amp;</b> \"x\""


@pytest.mark.parametrize("line", ["<&>" * 3000, "x" * 9000, "word " * 2000, "😀" * 3000])
def test_split_parts_fit_and_reassemble(line: str) -> None:
    text = f"Summary header\n{line}\n" + "\n".join(f"- P{i}: a & b < c" for i in range(300))
    parts = split_plain(text, first_reserve=7)
    assert len(parts) >= 2
    assert escaped_length(parts[0]) <= MESSAGE_LIMIT - 7
    assert all(escaped_length(p) <= MESSAGE_LIMIT for p in parts)
    # Nothing is lost except the separator at each cut (a newline or a space).
    assert sum(len(p) for p in parts) >= len(text) - 2 * len(parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == \
        text.replace(" ", "").replace("\n", "")


def test_rendered_parts_are_valid_html_and_within_the_limit() -> None:
    text = "Summary <of> the last 3 messages & more:\n" + "\n".join(
        f"- <b>P{i}</b>: if x < y && y > z then &amp; {'é' * 40}" for i in range(400))
    parts = render_html(text, bold_first_line=True)
    assert len(parts) >= 3
    assert parts[0].html.startswith("<b>Summary &lt;of&gt; the last 3 messages &amp; more:</b>")
    for part in parts:
        assert len(part.html.encode("utf-16-le")) // 2 <= MESSAGE_LIMIT
        assert parse_html(part.html) == part.plain
    assert "\n".join(p.plain for p in parts) == text


def _update(data: dict[str, Any]) -> Update:
    update = Update.de_json({"update_id": 1, **data}, PtbBot("1:x"))
    assert update is not None
    return update


def _msg(chat: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
    return {"message_id": 7, "date": int(datetime.now(UTC).timestamp()), "chat": chat,
            "from": {"id": 55, "is_bot": False, "first_name": "Ann", "last_name": "Lee",
                     "username": "ann"}, "text": text, **extra}


GROUP = {"id": -100123, "type": "supergroup", "title": "G"}


def test_translate_messages_commands_and_identities() -> None:
    event = translate(_update({"message": _msg(GROUP, "hello there")}), ME)
    assert isinstance(event, ChatMessage)
    assert (event.chat.chat_id, event.message_id, event.sender.user_id) == ("-100123", "7", "55")
    assert (event.sender.display_name, event.sender.handle) == ("Ann Lee", "ann")
    command = translate(_update({"message": _msg(GROUP, "/Summarize@HushbriefBot 50 private")}),
                        ME)
    assert isinstance(command, CommandReceived)
    assert (command.name, command.args) == ("summarize", ("50", "private"))
    assert translate(_update({"message": _msg(GROUP, "/summarize@otherbot")}), ME) is None
    plain = translate(_update({"message": _msg(GROUP, "/usr/bin is a directory")}), ME)
    assert isinstance(plain, ChatMessage)
    private = translate(_update({"message": _msg(
        {"id": 55, "type": "private", "first_name": "Ann"}, "/start hi")}), ME)
    assert isinstance(private, CommandReceived) and not private.chat.is_group
    assert private.args == ("hi",)
    # Bots, this one included, are never members.
    bot_msg = _msg(GROUP, "beep")
    bot_msg["from"] = {"id": BOT_ID, "is_bot": True, "first_name": "Hushbrief"}
    assert translate(_update({"message": bot_msg}), ME) is None
    channel = {"id": -100999, "type": "channel", "title": "C"}
    assert translate(_update({"channel_post": _msg(channel, "post")}), ME) is None


def test_translate_topics_replies_and_edits() -> None:
    creation = {"message_id": 40, "date": 1, "chat": {**GROUP, "is_forum": True},
                "message_thread_id": 40, "forum_topic_created": {"name": "T",
                                                                  "icon_color": 1}}
    in_topic = _msg({**GROUP, "is_forum": True}, "hi", message_thread_id=40,
                    is_topic_message=True, reply_to_message=creation)
    event = translate(_update({"message": in_topic}), ME)
    assert isinstance(event, ChatMessage)
    assert (event.thread_id, event.reply_to) == ("40", None)
    replied = {**creation, "message_id": 41, "forum_topic_created": None, "text": "q"}
    del replied["forum_topic_created"]
    answer = translate(_update({"message": {**in_topic, "reply_to_message": replied}}), ME)
    assert isinstance(answer, ChatMessage) and answer.reply_to == "41"
    # A reply thread in an ordinary group is not a topic.
    ordinary = translate(_update({"message": _msg(GROUP, "x", message_thread_id=3)}), ME)
    assert isinstance(ordinary, ChatMessage) and ordinary.thread_id is None
    edited = translate(_update({"edited_message": _msg(GROUP, "fixed", edit_date=2)}), ME)
    assert isinstance(edited, MessageEdited) and edited.text == "fixed"
    assert translate(_update({"edited_message": _msg(GROUP, "/summarize", edit_date=2)}),
                     ME) is None


def test_translate_membership_changes() -> None:
    def change(old: str, new: str) -> BotMembership | None:
        bot = {"id": BOT_ID, "is_bot": True, "first_name": "H"}
        member = {"kicked": {"until_date": 0}}.get(new, {})
        result = translate(_update({"my_chat_member": {
            "chat": GROUP, "from": {"id": 1, "is_bot": False, "first_name": "A"}, "date": 1,
            "old_chat_member": {"status": old, "user": bot},
            "new_chat_member": {"status": new, "user": bot, **member}}}), ME)
        assert result is None or isinstance(result, BotMembership)
        return result

    assert change("member", "kicked") == BotMembership(ChatRef("telegram", "-100123"),
                                                       present=False)
    left = change("member", "left")
    assert left is not None and not left.present
    joined = change("left", "member")
    assert joined is not None and joined.present and joined.joined and not joined.admin
    migrated = translate(_update({"message": {**_msg(GROUP, "x"), "text": None,
                                              "migrate_to_chat_id": -100777}}), ME)
    assert isinstance(migrated, BotMembership) and not migrated.present
