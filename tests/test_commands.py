"""Every command and policy combination, through the real core, storage and engine."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest

from hushbrief.adapters.console.chat import ConsoleChat
from hushbrief.bot.app import Bot
from hushbrief.bot.events import (
    ChatMessage,
    ChatRef,
    CommandReceived,
    DirectMessage,
    Member,
    MessageDeleted,
    MessageEdited,
    Reply,
    ReplyKind,
)
from hushbrief.bot.platform import FetchedHistory
from hushbrief.bot.policy import POLICY_KEYS
from tests.conftest import ChatDriver, Clock

CHAT = ChatRef("console", "demo-group")


async def optin_all(chat: ChatDriver, *members: str) -> None:
    for m in members:
        await chat.say(m, "/optin")


# --- help, unknown, private chats -------------------------------------------------------

async def test_help_lists_every_command(chat: ChatDriver) -> None:
    text = await chat.ask("bob", "/help")
    for cmd in ("/optin", "/optout", "/forgetme", "/summarize", "/status", "/privacy", "/policy"):
        assert cmd in text


async def test_unknown_command_is_one_sentence_pointing_to_help(chat: ChatDriver) -> None:
    text = await chat.refused("bob", "/frobnicate")
    assert "/help" in text and text.count("\n") == 0


@pytest.mark.parametrize("command", ["/optin", "/optout", "/summarize", "/policy", "/status"])
async def test_group_commands_in_a_private_chat_explain_where_to_send_them(
    bot: Bot, command: str
) -> None:
    dm = ChatRef("console", "dm-bob", is_group=False)
    name = command[1:]
    out = await bot.core.handle(
        CommandReceived(dm, "1", Member("bob", "bob"), name, (), 0.0), _Platform())
    assert len(out) == 1 and "group" in out[0].text


# --- opt-in and opt-out -----------------------------------------------------------------

async def test_optin_twice_and_optout_when_not_opted_in(chat: ChatDriver) -> None:
    assert "from now on" in await chat.ask("bob", "/optin")
    assert "already" in await chat.ask("bob", "/optin")
    assert "no longer used" in await chat.ask("bob", "/optout")
    assert "had not opted in" in await chat.ask("bob", "/optout")


async def test_only_messages_written_after_optin_are_used(chat: ChatDriver) -> None:
    await chat.say("alice", "/optin")
    await chat.say("bob", "Early words about the budget spreadsheet.")
    await chat.say("bob", "/optin")
    await chat.say("bob", "Later words about the venue booking.")
    text = await chat.summary("alice")
    assert "venue" in text and "budget" not in text
    assert "1 message was left out" in text


async def test_optout_drops_buffered_messages_from_the_next_summary(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "We should rent the bigger room for the meetup.")
    await chat.say("bob", "The bigger room costs more but fits everyone comfortably.")
    assert "bigger room costs" in await chat.summary("alice")
    assert "dropped 1 message" in await chat.ask("bob", "/optout")
    text = await chat.summary("alice")
    assert "bigger room costs" not in text and "bob" not in text.split(":\n", 1)[1]
    assert "1 message was left out" in text


async def test_forgetme_removes_consent_everywhere(bot: Bot, chat: ChatDriver) -> None:
    platform = chat.chat.platform
    other = ChatRef("console", "other-group")
    await chat.say("bob", "/optin")
    await bot.core.handle(CommandReceived(other, "1", Member("bob", "bob"), "optin", (), 1.0),
                          platform)
    await chat.say("bob", "A message in the first group about tickets.")
    text = await chat.ask("bob", "/forgetme")
    assert "2 chats" in text and "1 message" in text
    assert "not opted in" in await chat.ask("bob", "/status")
    out = await bot.core.handle(
        CommandReceived(other, "2", Member("bob", "bob"), "status", (), 2.0), platform)
    assert "not opted in" in out[0].text


# --- status and privacy -----------------------------------------------------------------

async def test_status_reports_consent_counts_policy_and_memory(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "Something to remember about the keys.")
    text = await chat.ask("alice", "/status")
    assert "You have opted in" in text
    assert "2 members of this chat opted in" in text
    assert "Summaries are on" in text and "local" in text
    assert "1 recent message" in text
    await chat.summary("alice")
    assert ("last summary here was made by the extractive engine on this bot's host"
            in await chat.ask("alice", "/status"))


async def test_privacy_says_what_is_stored_and_where_processing_happens(chat: ChatDriver) -> None:
    text = await chat.ask("carol", "/privacy")
    assert "Never a message, a name or a summary" in text
    assert "made on this bot's own host" in text
    await chat.say("alice", "/policy redact on")
    assert "links are removed" in await chat.ask("carol", "/privacy")


# --- summarize selection ----------------------------------------------------------------

async def test_summarize_last_n_messages(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    for line in ["The printer needs new toner.", "Parking permits expire in May.",
                 "Who covers the holiday rota?", "We ran out of coffee beans.",
                 "The deployment pipeline is green again.",
                 "Security audit findings arrive on Monday."]:
        await chat.say("bob", line)
    text = await chat.summary("alice", "/summarize 2")
    assert "last 2 messages" in text
    assert "deployment" in text and "audit" in text and "coffee" not in text


async def test_summarize_time_span(chat: ChatDriver, clock: Clock) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "Old note about the printer toner.")
    clock.advance(3 * 3600)
    await chat.say("bob", "Fresh note about the coffee machine.")
    text = await chat.summary("alice", "/summarize 2h")
    assert "last 2 hours" in text and "coffee" in text and "toner" not in text


async def test_summarize_as_reply_starts_at_that_message(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "First topic: the printer is broken.")  # message 3
    await chat.say("bob", "Second topic: lunch order for Friday.")  # message 4
    await chat.say("alice", "Third topic: vacation planning spreadsheet.")  # message 5
    text = await chat.summary("alice", "^4 /summarize")
    assert "since the message you replied to" in text
    assert "lunch" in text and "vacation" in text and "printer" not in text


async def test_summarize_reply_to_unknown_message(chat: ChatDriver) -> None:
    await optin_all(chat, "alice")
    await chat.say("alice", "Hello there everyone.")
    assert "no longer hold" in await chat.refused("alice", "^999 /summarize")


@pytest.mark.parametrize("args", ["banana", "0", "3x", "5 5", "3h 2h", "private private"])
async def test_summarize_malformed_arguments(chat: ChatDriver, args: str) -> None:
    await optin_all(chat, "alice")
    text = await chat.refused("alice", f"/summarize {args}")
    assert "\n" not in text and "/summarize" in text


async def test_summarize_clamps_to_policy_and_says_so(chat: ChatDriver) -> None:
    await optin_all(chat, "alice")
    await chat.say("alice", "/policy max_messages 3")
    for i in range(5):
        await chat.say("alice", f"Line {i} of the retrospective notes.")
    text = await chat.summary("alice", "/summarize 50")
    assert "limited to 3 messages" in text and "Line 1" not in text


async def test_summarize_with_nothing_to_summarize(chat: ChatDriver) -> None:
    await optin_all(chat, "alice")
    assert "nothing to summarize" in await chat.refused("alice", "/summarize")


async def test_summarize_requires_optin(chat: ChatDriver) -> None:
    assert "/optin first" in await chat.refused("carol", "/summarize")


async def test_summarize_private_sends_a_direct_message(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "The venue confirmed our booking for Saturday.")
    out = await chat.say("alice", "/summarize private")
    assert isinstance(out[0], DirectMessage) and out[0].user_id == "alice"
    assert "venue" in out[0].text
    assert isinstance(out[1], Reply) and "direct message" in out[1].text


async def test_summarize_in_threads_only_sees_the_thread(bot: Bot, clock: Clock) -> None:
    platform = _Platform()
    core = bot.core
    alice = Member("alice", "alice")
    await core.handle(CommandReceived(CHAT, "1", alice, "optin", (), clock()), platform)
    await core.handle(ChatMessage(CHAT, "2", alice, "Main chat talk about parking.", clock()),
                      platform)
    await core.handle(ChatMessage(CHAT, "3", alice, "Thread talk about the logo colours.",
                                  clock(), thread_id="t1"), platform)
    out = await core.handle(
        CommandReceived(CHAT, "4", alice, "summarize", (), clock(), thread_id="t1"), platform)
    assert isinstance(out[0], Reply) and out[0].thread_id == "t1"
    assert "logo" in out[0].text and "parking" not in out[0].text


# --- policy -----------------------------------------------------------------------------

async def test_policy_show_lists_every_key_with_defaults(chat: ChatDriver) -> None:
    text = await chat.ask("bob", "/policy")
    for key in POLICY_KEYS:
        assert f"{key} = " in text
    assert "(default)" in text


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("summaries", "off", "off"), ("who", "admins", "admins"),
    ("consent", "require-all", "require-all"), ("delivery", "private", "private"),
    ("processing", "local", "local"), ("max_messages", "50", "50"),
    ("max_span", "6h", "6h"), ("buffer_messages", "100", "100"),
    ("buffer_ttl", "2h", "2h"), ("chat_rate", "3", "3"), ("member_rate", "2", "2"),
    ("redact", "on", "on"), ("length", "60", "60"),
])
async def test_admin_sets_every_key(chat: ChatDriver, key: str, value: str, shown: str) -> None:
    assert f"{key} is now {shown}" in await chat.ask("alice", f"/policy {key} {value}")
    text = await chat.ask("bob", "/policy")
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{key} = "))
    assert line.startswith(f"{key} = {shown} —"), line


@pytest.mark.parametrize(("key", "value"), [
    ("summaries", "maybe"), ("who", "everyone"), ("consent", "some"), ("delivery", "email"),
    ("processing", "cloud"), ("max_messages", "0"), ("max_messages", "99999"),
    ("max_span", "10y"), ("buffer_ttl", "30d"), ("chat_rate", "-1"), ("length", "5"),
    ("colour", "blue"),
])
async def test_admin_gets_one_sentence_for_bad_values(
    chat: ChatDriver, key: str, value: str
) -> None:
    text = await chat.refused("alice", f"/policy {key} {value}")
    assert "\n" not in text and text.endswith(".")


async def test_policy_usage_and_reset(chat: ChatDriver) -> None:
    assert "/policy <key> <value>" in await chat.refused("alice", "/policy summaries")
    await chat.say("alice", "/policy length 40")
    assert "back to its default" in await chat.ask("alice", "/policy reset")
    assert "length = 120 (default)" in await chat.ask("alice", "/policy")


async def test_summaries_off_refuses_and_keeps_nothing_in_memory(
    bot: Bot, chat: ChatDriver
) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "Buffered before the switch.")
    await chat.say("alice", "/policy summaries off")
    assert bot.window.stats(("console", "demo-group"))[0] == 0
    await chat.say("bob", "Sent while summaries are off.")
    assert bot.window.stats(("console", "demo-group"))[0] == 0
    assert "switched off" in await chat.refused("alice", "/summarize")
    await chat.say("alice", "/policy summaries on")
    await chat.say("bob", "Sent after summaries came back on about the roadmap.")
    text = await chat.summary("alice")
    assert "roadmap" in text and "switch" not in text


async def test_who_admins(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "Notes about the conference talk proposal.")
    await chat.say("alice", "/policy who admins")
    assert "only admins" in await chat.refused("bob", "/summarize")
    assert "conference" in await chat.summary("alice")


async def test_consent_require_all(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "/policy consent require-all")
    await chat.say("carol", "Not opted in at all.")  # message 4
    await chat.say("bob", "Opted-in text about the garden party.")  # message 5
    text = await chat.refused("alice", "/summarize")
    assert "1 message here is from members who have not opted in" in text
    # A selection that does not include carol's message is fine.
    assert "garden" in await chat.summary("alice", "^5 /summarize")


async def test_delivery_private_policy(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "/policy delivery private")
    await chat.say("bob", "Text about the hackathon prizes.")
    out = await chat.say("bob", "/summarize")
    assert isinstance(out[0], DirectMessage) and out[0].user_id == "bob"


async def test_processing_private_without_relay_refuses_and_never_falls_back(
    chat: ChatDriver,
) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "Text that must not be processed anywhere unexpected.")
    await chat.say("alice", "/policy processing private")
    text = await chat.refused("alice", "/summarize")
    assert "nothing was sent" in text and "/policy processing local" in text


async def test_length_policy_bounds_the_summary(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "/policy length 20")
    for i in range(30):
        await chat.say("bob" if i % 2 else "alice",
                       f"Point {i}: we discussed the supplier contract renewal and costs {i}.")
    text = await chat.summary("alice")
    body = text.split(":\n", 1)[1].rsplit("\nMade", 1)[0]
    words = [w for w in body.split() if w not in {"-", "alice:", "bob:"}]
    assert len(words) <= 20


async def test_redact_policy_removes_contact_details(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "/policy redact on")
    await chat.say("bob", "Mail me at bob@example.org or call +49 30 1234567, see https://x.io/a")
    text = await chat.summary("alice")
    assert "bob@example.org" not in text and "1234567" not in text and "x.io" not in text
    assert "[email]" in text and "[phone]" in text and "[link]" in text


# --- rate limits ------------------------------------------------------------------------

async def test_member_rate_limit(chat: ChatDriver, clock: Clock) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "/policy member_rate 2")
    await chat.say("bob", "Something worth summarizing about the rota.")
    await chat.summary("bob")
    await chat.summary("bob")
    text = await chat.refused("bob", "/summarize")
    assert "try again in" in text and "minute" in text
    await chat.summary("alice")  # another member still may
    clock.advance(3601)
    await chat.say("bob", "Something else about the rota.")
    await chat.summary("bob")


async def test_chat_rate_limit(chat: ChatDriver) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "/policy chat_rate 1")
    await chat.say("bob", "Text about the new office plants.")
    await chat.summary("bob")
    assert "per hour" in await chat.refused("alice", "/summarize")


# --- window: edits, deletions, TTL ------------------------------------------------------

async def test_edits_replace_and_deletions_remove(bot: Bot, clock: Clock) -> None:
    platform = _Platform()
    bob = Member("bob", "bob")
    await bot.core.handle(CommandReceived(CHAT, "1", bob, "optin", (), clock()), platform)
    await bot.core.handle(ChatMessage(CHAT, "2", bob, "Meet at the old station.", clock()),
                          platform)
    await bot.core.handle(ChatMessage(CHAT, "3", bob, "Bring the blue folder.", clock()),
                          platform)
    await bot.core.handle(MessageEdited(CHAT, "2", bob, "Meet at the new harbour.", clock()),
                          platform)
    await bot.core.handle(MessageDeleted(CHAT, "3"), platform)
    out = await bot.core.handle(CommandReceived(CHAT, "4", bob, "summarize", (), clock()),
                                platform)
    assert "harbour" in out[0].text
    assert "station" not in out[0].text and "folder" not in out[0].text


async def test_buffer_ttl_expires_messages(bot: Bot, chat: ChatDriver, clock: Clock) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("alice", "/policy buffer_ttl 1h")
    await chat.say("bob", "Short-lived text about the parcel.")
    clock.advance(3700)
    assert bot.core.sweep() == 1
    assert bot.window.stats(("console", "demo-group")) == (0, 0)
    assert "nothing to summarize" in await chat.refused("alice", "/summarize")


async def test_buffer_messages_policy_bounds_the_window(bot: Bot, chat: ChatDriver) -> None:
    await optin_all(chat, "alice")
    await chat.say("alice", "/policy buffer_messages 10")
    for i in range(25):
        await chat.say("alice", f"Message {i}")
    assert bot.window.stats(("console", "demo-group"))[0] == 10


# --- the bot keeps running --------------------------------------------------------------

async def test_unexpected_error_is_one_sentence_and_the_bot_goes_on(chat: ChatDriver) -> None:
    class Broken(_Platform):
        async def is_admin(self, chat: ChatRef, user_id: str) -> bool:
            raise RuntimeError("platform exploded")

    good = chat.chat.platform
    chat.chat.platform = Broken()  # type: ignore[assignment]
    text = await chat.refused("alice", "/policy summaries off")
    assert "nothing was sent" in text
    chat.chat.platform = good
    assert "summaries is now off" in await chat.ask("alice", "/policy summaries off")


class _Platform:
    """A platform with only the mandatory abilities; alice is the admin."""

    name = "console"

    async def is_admin(self, chat: ChatRef, user_id: str) -> bool:
        return user_id == "alice"


class _HistoryPlatform(_Platform):
    def __init__(self, history: Sequence[ChatMessage], undecryptable: int = 0) -> None:
        self.history = list(history)
        self.undecryptable = undecryptable
        self.asked: list[int] = []

    async def fetch_history(self, chat: ChatRef, thread_id: str | None, *, limit: int,
                            since: float | None, from_message: str | None
                            ) -> FetchedHistory:
        self.asked.append(limit)
        msgs = [m for m in self.history if m.thread_id == thread_id
                and (since is None or m.timestamp >= since)]
        return FetchedHistory(msgs[-limit:], undecryptable=self.undecryptable)


async def test_history_platform_filters_by_consent_and_buffers_nothing(
    bot: Bot, clock: Clock
) -> None:
    alice, carol = Member("alice", "Alice"), Member("carol", "Carol")
    history = [
        ChatMessage(CHAT, "10", alice, "History line about the tram strike.", clock()),
        ChatMessage(CHAT, "11", carol, "carol's private remark about her salary", clock()),
    ]
    platform = _HistoryPlatform(history)
    await bot.core.handle(CommandReceived(CHAT, "1", alice, "optin", (), clock()), platform)
    for m in history:
        await bot.core.handle(m, platform)
    assert len(bot.window) == 0
    out = await bot.core.handle(CommandReceived(CHAT, "12", alice, "summarize", ("5",), clock()),
                                platform)
    assert platform.asked == [5]
    assert "tram strike" in out[0].text and "salary" not in out[0].text
    assert "1 message was left out" in out[0].text


def test_console_chat_rejects_lines_without_a_member(bot: Bot) -> None:
    chat = ConsoleChat(core=bot.core, out=io.StringIO())
    with pytest.raises(ValueError, match="member: text"):
        chat.parse("no colon here")
    assert chat.parse("# a comment") is None
    assert chat.parse("Bob: hi") == ("bob", "hi")
    assert ReplyKind.SUMMARY.value == "summary"


async def test_database_outage_fails_closed_with_one_sentence(
    bot: Bot, chat: ChatDriver, tmp_path_factory: pytest.TempPathFactory
) -> None:
    await optin_all(chat, "alice", "bob")
    await chat.say("bob", "Buffered while the database was fine.")
    from hushbrief.bot.storage import Database

    # Point the stores at a PostgreSQL port where nothing listens: a real outage.
    dead = Database("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)
    bot.core._consent._db = dead  # type: ignore[attr-defined]
    bot.core._policies._db = dead  # type: ignore[attr-defined]
    try:
        text = await chat.refused("alice", "/summarize")
        assert "can't reach my database" in text
        await chat.say("bob", "Sent during the outage about the secret plan.")
    finally:
        dead.dispose()
    count, _ = bot.window.stats(("console", "demo-group"))
    assert count == 1  # the message sent during the outage was not buffered


async def test_history_platforms_report_undecryptable_messages(bot: Bot, clock: Clock) -> None:
    alice = Member("alice", "Alice")
    history = [ChatMessage(CHAT, "10", alice, "Readable line about the harbour tour.", clock())]
    platform = _HistoryPlatform(history, undecryptable=4)
    await bot.core.handle(CommandReceived(CHAT, "1", alice, "optin", (), clock()), platform)
    out = await bot.core.handle(CommandReceived(CHAT, "2", alice, "summarize", (), clock()),
                                platform)
    assert "4 messages could not be decrypted" in out[0].text and "harbour" in out[0].text
    nothing = _HistoryPlatform([], undecryptable=2)
    out = await bot.core.handle(CommandReceived(CHAT, "3", alice, "summarize", (), clock()),
                                nothing)
    assert out[0].kind is ReplyKind.REFUSAL and "couldn't decrypt" in out[0].text
