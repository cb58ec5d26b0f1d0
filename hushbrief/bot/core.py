"""The platform-neutral bot: events in, outcomes out.

``Hushbrief.handle`` takes one neutral event and the platform it came from and
returns what to post. It decides everything a summary bot must decide — who
opted in, what the chat's policy allows, which messages may be used — and
leaves the talking to the adapters. Expected refusals are values (a ``Reply``
of kind REFUSAL with one sentence that tells the user what to do), never
exceptions.

Logging: events, counts, sizes, durations and pseudonymous chat tags only.
Never message text, names or summaries (invariant 1; ``tests/test_invariants.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hushbrief.bot.events import (
    ChatMessage,
    ChatRef,
    CommandReceived,
    DirectMessage,
    Event,
    MessageDeleted,
    MessageEdited,
    Outcome,
    Reply,
    ReplyKind,
)
from hushbrief.bot.platform import (
    ActivityIndicator,
    DirectMessages,
    HistorySource,
    Platform,
    Visibility,
)
from hushbrief.bot.policy import (
    ConsentMode,
    Delivery,
    Policy,
    PolicyValueError,
    Processing,
    Who,
    format_duration,
    parse_duration,
    parse_policy_value,
    render_policy,
)
from hushbrief.bot.processing import ProcessedSummary, ProcessingError, Processor
from hushbrief.bot.pseudonyms import Speaker, pseudonymize, restore
from hushbrief.bot.ratelimit import RateLimiter
from hushbrief.bot.storage import StorageError
from hushbrief.bot.window import BufferedMessage, MessageWindow, Selected, Selection
from hushbrief.engines.base import SummaryOptions

log = logging.getLogger("hushbrief.core")


class ConsentRepository(Protocol):
    def opt_in(self, platform: str, chat_id: str, user_id: str) -> bool: ...
    def opt_out(self, platform: str, chat_id: str, user_id: str) -> bool: ...
    def is_opted_in(self, platform: str, chat_id: str, user_id: str) -> bool: ...
    def opted_in_among(self, platform: str, chat_id: str, user_ids: Any) -> set[str]: ...
    def count(self, platform: str, chat_id: str) -> int: ...
    def forget(self, platform: str, user_id: str) -> int: ...


class PolicyRepository(Protocol):
    def overrides(self, platform: str, chat_id: str) -> dict[str, Any]: ...
    def set(self, platform: str, chat_id: str, key: str, value: Any) -> None: ...
    def reset(self, platform: str, chat_id: str) -> None: ...


HELP = (
    "I summarize this chat for members who opted in. Only their messages are ever used, "
    "and names become pseudonyms before anything is processed.\n"
    "/optin — let your messages in this chat be summarized\n"
    "/optout — stop; I drop your messages from memory at once\n"
    "/forgetme — opt out of every chat\n"
    "/summarize [N | 3h | private] — summarize the last N messages or hours "
    "(reply to a message to start there; private sends it to you directly)\n"
    "/status — your consent and this chat's settings\n"
    "/privacy — what is stored and where summaries are made\n"
    "/policy — this chat's settings; admins change them with /policy <key> <value>"
)


PRIVATE_HELP = (
    "I make summaries of group chats for the members who opted in, and nothing else: only "
    "their messages are used, names become pseudonyms before anything is processed, and "
    "no message is ever stored.\n"
    "Add me to a group; there, each member who agrees sends /optin, and anyone who opted "
    "in can send /summarize (or /summarize private to get it here).\n"
    "/forgetme — opt out of every chat\n"
    "/privacy — what is stored and where summaries are made"
)


@dataclass(frozen=True, slots=True)
class _Request:
    selection: Selection
    private: bool
    clamped: str | None
    """Why the selection was made smaller than asked, for the summary header."""
    label: str


@dataclass(frozen=True, slots=True)
class LastSummary:
    """What ``/status`` reports about a chat's last summary: how, never what."""

    engine: str
    where: str
    """Says the measurement and dev attestation when there are any."""


class Hushbrief:
    """The bot's decisions, shared by every adapter."""

    def __init__(
        self,
        *,
        consent: ConsentRepository,
        policies: PolicyRepository,
        defaults: Policy,
        window: MessageWindow,
        processors: Mapping[Processing, Processor],
        chat_tag: Callable[[ChatRef], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._consent = consent
        self._policies = policies
        self._defaults = defaults
        self._window = window
        self._processors = dict(processors)
        self._tag = chat_tag
        self._clock = clock
        self._chat_rate = RateLimiter()
        self._member_rate = RateLimiter()
        self._last: dict[tuple[str, str], LastSummary] = {}

    # --- entry points ------------------------------------------------------------------

    async def handle(self, event: Event, platform: Platform) -> list[Outcome]:
        """Decide what to do about one event. Never raises for expected conditions."""
        try:
            if isinstance(event, CommandReceived):
                return await self._command(event, platform)
            if isinstance(event, ChatMessage):
                await self._ingest(event, platform)
            elif isinstance(event, MessageEdited):
                await self._edited(event, platform)
            elif isinstance(event, MessageDeleted):
                self._window.delete(_key(event.chat), event.message_id)
            return []
        except StorageError as exc:
            # Fail closed: without the consent flags nothing is buffered or summarized.
            log.warning("storage_failed type=%s", type(exc).__name__)
            if isinstance(event, CommandReceived):
                return [self._refuse(event, "I can't reach my database right now, so nothing "
                                            "was changed or sent; please try again shortly.")]
            return []
        except Exception as exc:  # the bot must keep running for every other chat
            log_exception("event_failed", exc)
            if isinstance(event, CommandReceived):
                return [self._refuse(event, "Something went wrong on my side and nothing was "
                                            "sent anywhere; please try again in a moment.")]
            return []

    def chat_tag(self, chat: ChatRef) -> str:
        """The short pseudonymous tag log lines use for ``chat``."""
        return self._tag(chat)

    def chat_gone(self, chat: ChatRef) -> None:
        """The bot left or was removed from ``chat``: drop everything held in memory for it."""
        self._window.drop_chat(_key(chat))
        self._last.pop(_key(chat), None)
        log.info("chat_gone chat=%s", self._tag(chat))

    def sweep(self) -> int:
        """Drop expired messages and idle rate-limit entries; call it periodically."""
        now = self._clock()
        self._chat_rate.sweep(now)
        self._member_rate.sweep(now)
        return self._window.expire(now)

    # --- messages --------------------------------------------------------------------

    async def _policy(self, chat: ChatRef) -> Policy:
        overrides = await asyncio.to_thread(self._policies.overrides, chat.platform, chat.chat_id)
        return self._defaults.with_overrides(overrides)

    async def _ingest(self, msg: ChatMessage, platform: Platform) -> None:
        if not msg.chat.is_group or isinstance(platform, HistorySource):
            return  # history platforms fetch on demand; nothing is buffered
        policy = await self._policy(msg.chat)
        if not policy.summaries:
            return  # no summaries here: holding text in memory would serve nobody
        opted_in = await asyncio.to_thread(
            self._consent.is_opted_in, msg.chat.platform, msg.chat.chat_id, msg.sender.user_id
        )
        self._window.add(msg, opted_in=opted_in, max_messages=policy.buffer_messages,
                         ttl=policy.buffer_ttl)

    async def _edited(self, ev: MessageEdited, platform: Platform) -> None:
        if isinstance(platform, HistorySource):
            return
        opted_in = await asyncio.to_thread(
            self._consent.is_opted_in, ev.chat.platform, ev.chat.chat_id, ev.sender.user_id
        )
        if opted_in:
            self._window.edit(_key(ev.chat), ev.message_id, ev.text)
        else:
            # Edited after opting out: whatever text we might hold must go.
            self._window.purge_member(_key(ev.chat), ev.sender.user_id)

    # --- commands --------------------------------------------------------------------

    async def _command(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        handler = {
            "help": self._help, "start": self._help,
            "optin": self._optin, "optout": self._optout, "forgetme": self._forgetme,
            "status": self._status, "privacy": self._privacy,
            "summarize": self._summarize, "summary": self._summarize,
            "policy": self._policy_cmd,
        }.get(cmd.name)
        if handler is None:
            return [self._refuse(cmd, f"I don't know /{cmd.name}; send /help to see what I "
                                      "can do.")]
        log.info("command name=%s chat=%s", cmd.name, self._tag(cmd.chat))
        return await handler(cmd, platform)

    def _reply(self, cmd: CommandReceived, text: str, kind: ReplyKind = ReplyKind.INFO) -> Reply:
        return Reply(chat=cmd.chat, text=text, kind=kind, thread_id=cmd.thread_id,
                     reply_to=cmd.message_id)

    def _refuse(self, cmd: CommandReceived, sentence: str) -> Reply:
        return self._reply(cmd, sentence, ReplyKind.REFUSAL)

    async def _help(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        if not cmd.chat.is_group:
            return [self._reply(cmd, PRIVATE_HELP)]
        return [self._reply(cmd, HELP)]

    async def _optin(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        if not cmd.chat.is_group:
            return [self._refuse(cmd, "Send /optin in the group chat whose summaries may use "
                                      "your messages.")]
        changed = await asyncio.to_thread(
            self._consent.opt_in, cmd.chat.platform, cmd.chat.chat_id, cmd.sender.user_id
        )
        log.info("consent change=optin changed=%s chat=%s", changed, self._tag(cmd.chat))
        if not changed:
            return [self._reply(cmd, "You have already opted in here; /optout undoes it.")]
        return [self._reply(cmd, "Thanks: from now on your messages in this chat may be used "
                                 "for summaries (earlier ones were never kept). "
                                 "/optout undoes it.")]

    async def _optout(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        if not cmd.chat.is_group:
            return [self._refuse(cmd, "Send /optout in the group chat you want to leave out of "
                                      "summaries, or /forgetme to leave every chat.")]
        changed = await asyncio.to_thread(
            self._consent.opt_out, cmd.chat.platform, cmd.chat.chat_id, cmd.sender.user_id
        )
        # Purge even if no flag changed: it costs nothing and can only remove text.
        purged = self._window.purge_member(_key(cmd.chat), cmd.sender.user_id)
        log.info("consent change=optout changed=%s purged=%d chat=%s", changed, purged,
                 self._tag(cmd.chat))
        if not changed:
            return [self._reply(cmd, "You had not opted in here, so none of your messages "
                                     "are used.")]
        return [self._reply(cmd, f"Done: your messages here are no longer used, and I dropped "
                                 f"{_n(purged, 'message')} of yours from memory.")]

    async def _forgetme(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        removed = await asyncio.to_thread(
            self._consent.forget, cmd.chat.platform, cmd.sender.user_id
        )
        purged = self._window.purge_member_everywhere(cmd.chat.platform, cmd.sender.user_id)
        log.info("consent change=forget removed=%d purged=%d", removed, purged)
        return [self._reply(cmd, f"Done: I removed your consent from {_n(removed, 'chat')} and "
                                 f"dropped {_n(purged, 'message')} of yours from memory. "
                                 "Nothing else about you is stored.")]

    async def _status(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        if not cmd.chat.is_group:
            return [self._reply(cmd, "Send /status in a group chat to see your consent and its "
                                     "settings there; /forgetme works here too.")]
        chat = cmd.chat
        opted_in, members, policy = await asyncio.gather(
            asyncio.to_thread(self._consent.is_opted_in, chat.platform, chat.chat_id,
                              cmd.sender.user_id),
            asyncio.to_thread(self._consent.count, chat.platform, chat.chat_id),
            self._policy(chat),
        )
        lines = [
            "You have opted in here; /optout undoes it." if opted_in else
            "You have not opted in here, so your messages are never used; /optin changes that.",
            f"{_n(members, 'member')} of this chat opted in.",
            f"Summaries are {'on' if policy.summaries else 'off'}; "
            f"{_processing_phrase(policy.processing)}; delivery: {policy.delivery}.",
        ]
        if not isinstance(platform, HistorySource):
            count, _ = self._window.stats(_key(chat))
            lines.append(f"I hold {_n(count, 'recent message')} of this chat in memory only, "
                         f"each for at most {_span_words(policy.buffer_ttl)}.")
        if isinstance(platform, Visibility):
            problem = await platform.visibility_problem(chat)
            if problem:
                lines.append(problem)
        last = self._last.get(_key(chat))
        if last is not None:
            # ``where`` already names the measurement (and dev attestation) when there is one.
            lines.append(f"The last summary here was made by the {last.engine} engine "
                         f"{last.where}.")
        return [self._reply(cmd, "\n".join(lines))]

    async def _privacy(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        policy = await self._policy(cmd.chat) if cmd.chat.is_group else self._defaults
        memory = (
            "Messages are read from the chat's history only when someone asks for a summary."
            if isinstance(platform, HistorySource) else
            "Messages of members who opted in stay in memory only, for at most "
            f"{_span_words(policy.buffer_ttl)}, and are lost when I restart."
        )
        where = {
            Processing.LOCAL: "Summaries of this chat are made on this bot's own host; "
                              "nothing leaves it.",
            Processing.PRIVATE: "Summaries of this chat are sent encrypted through an Oblivious "
                                "HTTP relay to a backend whose code is checked by hardware "
                                "attestation and a transparency log before anything is sent: "
                                "the relay cannot read them and the backend cannot tell who "
                                "asked.",
        }[policy.processing]
        processor = self._processors.get(policy.processing)
        if processor is not None and processor.privacy_note:
            where += " " + processor.privacy_note
        return [self._reply(cmd, (
            "What I store: whether each member opted in, and each chat's settings, under keyed "
            "hashes of the chat and member IDs. Never a message, a name or a summary.\n"
            f"{memory}\n"
            "Before a summary is made, names become P1, P2, …"
            + (" and e-mail addresses, phone numbers and links are removed" if policy.redact
               else "")
            + f". {where}\n"
            "Messages of members who have not opted in are never used. "
            "/optout or /forgetme takes effect at once."
        ))]

    async def _policy_cmd(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        if not cmd.chat.is_group:
            return [self._refuse(cmd, "Send /policy in the group chat whose settings you want "
                                      "to see or change.")]
        chat = cmd.chat
        if not cmd.args:
            overrides = await asyncio.to_thread(self._policies.overrides, chat.platform,
                                                chat.chat_id)
            policy = self._defaults.with_overrides(overrides)
            rows = [f"{key} = {value}{'' if key in overrides else ' (default)'} — {meaning}"
                    for key, value, meaning in render_policy(policy)]
            return [self._reply(cmd, "This chat's settings (admins change them with "
                                     "/policy <key> <value>, or /policy reset):\n"
                                + "\n".join(rows))]
        if not await platform.is_admin(chat, cmd.sender.user_id):
            log.info("policy refused=not_admin chat=%s", self._tag(chat))
            return [self._refuse(cmd, "Only this chat's admins can change its settings; "
                                      "/policy shows them to everyone.")]
        if len(cmd.args) == 1 and cmd.args[0].lower() == "reset":
            await asyncio.to_thread(self._policies.reset, chat.platform, chat.chat_id)
            await self._apply_window_limits(chat)
            return [self._reply(cmd, "Done: every setting of this chat is back to its default.")]
        if len(cmd.args) != 2:
            return [self._refuse(cmd, "Use /policy <key> <value>, for example "
                                      "/policy summaries off; /policy lists the keys.")]
        try:
            key, value = parse_policy_value(cmd.args[0], cmd.args[1])
        except PolicyValueError as exc:
            return [self._refuse(cmd, str(exc))]
        await asyncio.to_thread(self._policies.set, chat.platform, chat.chat_id, key, value)
        policy = await self._apply_window_limits(chat)
        if key == "summaries" and not value:
            # Nothing may be summarized here now, so nothing needs to stay in memory.
            self._window.drop_chat(_key(chat))
        log.info("policy changed key=%s chat=%s", key, self._tag(chat))
        shown = next(v for k, v, _ in render_policy(policy) if k == key)
        return [self._reply(cmd, f"Done: {key} is now {shown}.")]

    async def _apply_window_limits(self, chat: ChatRef) -> Policy:
        policy = await self._policy(chat)
        self._window.configure(_key(chat), max_messages=policy.buffer_messages,
                               ttl=policy.buffer_ttl)
        return policy

    # --- summaries -------------------------------------------------------------------

    def _parse_summarize(self, cmd: CommandReceived, policy: Policy, now: float) -> _Request | str:
        count: int | None = None
        span: int | None = None
        private = False
        for arg in cmd.args:
            low = arg.lower()
            if low.isdigit() and count is None:
                count = int(low)
                if count == 0:
                    return "Ask for at least one message, for example /summarize 50."
            elif (seconds := parse_duration(low)) is not None and span is None:
                span = seconds
                if span == 0:
                    return "Ask for a time span longer than zero, for example /summarize 3h."
            elif low in ("private", "dm") and not private:
                private = True
            else:
                return ("/summarize takes a number of messages (50), a time span (3h or 2d) "
                        "and/or the word private, for example /summarize 3h private.")
        clamped = None
        if count is not None and count > policy.max_messages:
            clamped = f"limited to {policy.max_messages} messages by this chat's policy"
            count = policy.max_messages
        if span is not None and span > policy.max_span:
            clamped = f"limited to {format_duration(policy.max_span)} by this chat's policy"
            span = policy.max_span
        if cmd.reply_to is not None:
            label = "since the message you replied to"
        elif count is not None:
            label = f"of the last {_n(count, 'message')}"
        else:
            label = f"of the last {_span_words(span or policy.max_span)}"
        return _Request(
            selection=Selection(
                limit=count or policy.max_messages,
                since=now - (span or policy.max_span),
                from_message=cmd.reply_to,
            ),
            private=private or policy.delivery is Delivery.PRIVATE,
            clamped=clamped,
            label=label,
        )

    async def _summarize(self, cmd: CommandReceived, platform: Platform) -> list[Outcome]:
        chat = cmd.chat
        if not chat.is_group:
            return [self._refuse(cmd, "Send /summarize in the group chat you want summarized; "
                                      "add private to get the summary here.")]
        now = self._clock()
        policy, opted_in = await asyncio.gather(
            self._policy(chat),
            asyncio.to_thread(self._consent.is_opted_in, chat.platform, chat.chat_id,
                              cmd.sender.user_id),
        )
        if not policy.summaries:
            return [self._refuse(cmd, "Summaries are switched off in this chat; an admin can "
                                      "switch them on with /policy summaries on.")]
        if not opted_in:
            return [self._refuse(cmd, "Please /optin first: only members who opted in can ask "
                                      "for summaries.")]
        if policy.who is Who.ADMINS and not await platform.is_admin(chat, cmd.sender.user_id):
            return [self._refuse(cmd, "In this chat only admins may ask for summaries.")]
        request = self._parse_summarize(cmd, policy, now)
        if isinstance(request, str):
            return [self._refuse(cmd, request)]
        if request.private:
            if not isinstance(platform, DirectMessages):
                return [self._refuse(cmd, "I can't send direct messages on this platform; ask "
                                          "for the summary without private.")]
            if not await platform.can_message_directly(cmd.sender.user_id):
                return [self._refuse(cmd, "I can't message you directly yet: open a private "
                                          "chat with me and press Start, then ask again.")]
        processor = self._processors.get(policy.processing)
        if processor is None:
            return [self._refuse(cmd, _unavailable(policy.processing))]
        chat_key = (chat.platform, self._tag(chat))
        member_key = (chat_key, cmd.sender.user_id)
        wait = max(self._chat_rate.retry_after(chat_key, policy.chat_rate, now),
                   self._member_rate.retry_after(member_key, policy.member_rate, now))
        if wait > 0:
            log.info("summarize refused=rate_limited chat=%s", self._tag(chat))
            return [self._refuse(cmd, f"That is as many summaries as this chat allows per hour; "
                                      f"try again in {_minutes(wait)}.")]

        selected = await self._collect(cmd, platform, request.selection, now)
        if not selected.anchor_found:
            return [self._refuse(cmd, "I no longer hold the message you replied to (I keep "
                                      "messages for a limited time); ask for a number of "
                                      "messages or hours instead.")]
        if policy.consent is ConsentMode.REQUIRE_ALL and selected.left_out:
            return [self._refuse(cmd, f"{_n(selected.left_out, 'message')} here "
                                      f"{'is' if selected.left_out == 1 else 'are'} from members "
                                      "who have not opted in, and this chat summarizes only when "
                                      "everyone has; ask them to /optin or pick fewer messages.")]
        if not selected.messages and selected.undecryptable:
            return [self._refuse(cmd, "I couldn't decrypt those messages: they were sent "
                                      "before I joined, or their keys never reached me.")]
        if not selected.messages:
            problem = (await platform.visibility_problem(chat)
                       if isinstance(platform, Visibility) else None)
            return [self._refuse(cmd, problem or "There is nothing to summarize yet: I only "
                                                 "use messages that members wrote after they "
                                                 "opted in.")]

        self._chat_rate.record(chat_key, now)
        self._member_rate.record(member_key, now)
        if isinstance(platform, ActivityIndicator):
            await platform.show_working(chat, cmd.thread_id)
        started = time.perf_counter()
        pseudo = pseudonymize(
            [Speaker(m.user_id or "", m.display_name or "", m.handle, m.text or "", m.timestamp,
                     m.message_id, m.reply_to) for m in selected.messages],
            redact_pii=policy.redact,
        )
        try:
            result = await processor.summarize(pseudo.turns,
                                               SummaryOptions(max_words=policy.length))
        except ProcessingError as exc:
            log.info("summarize failed=%s chat=%s", type(exc).__name__, self._tag(chat))
            return [self._refuse(cmd, str(exc))]
        elapsed = time.perf_counter() - started
        log.info("summarize done messages=%d left_out=%d engine=%s processing=%s ms=%.1f chat=%s",
                 len(selected.messages), selected.left_out, result.engine, policy.processing,
                 elapsed * 1000, self._tag(chat))
        self._last[_key(chat)] = LastSummary(result.engine, result.where)
        text = self._format_summary(request, selected, result, restore(result.text, pseudo.names))
        if request.private:
            return [
                DirectMessage(platform=chat.platform, user_id=cmd.sender.user_id, text=text,
                              fallback=self._refuse(cmd, "I couldn't deliver your summary "
                                                         "privately: open a private chat with me "
                                                         "and press Start, then ask again.")),
                self._reply(cmd, "I sent you the summary in a direct message."),
            ]
        return [self._reply(cmd, text, ReplyKind.SUMMARY)]

    async def _collect(
        self, cmd: CommandReceived, platform: Platform, selection: Selection, now: float
    ) -> Selected:
        chat = cmd.chat
        if not isinstance(platform, HistorySource):
            return self._window.select(_key(chat), cmd.thread_id, selection, now=now)
        fetched = await platform.fetch_history(
            chat, cmd.thread_id, limit=selection.limit, since=selection.since,
            from_message=selection.from_message,
        )
        history = fetched.messages
        if selection.from_message is not None and not any(
            m.message_id == selection.from_message for m in history
        ):
            return Selected([], 0, anchor_found=False)
        senders = {m.sender.user_id for m in history}
        allowed = await asyncio.to_thread(
            self._consent.opted_in_among, chat.platform, chat.chat_id, senders
        )
        kept = [BufferedMessage(m.message_id, m.timestamp, m.sender.user_id,
                                m.sender.display_name, m.sender.handle, m.text, m.reply_to)
                for m in history if m.sender.user_id in allowed]
        return Selected(kept, len(history) - len(kept), undecryptable=fetched.undecryptable)

    @staticmethod
    def _format_summary(
        request: _Request, selected: Selected, result: ProcessedSummary, body: str
    ) -> str:
        head = f"Summary {request.label} ({_n(len(selected.messages), 'message')} used"
        if selected.left_out:
            verb = "was" if selected.left_out == 1 else "were"
            head += (f"; {_n(selected.left_out, 'message')} {verb} left out because "
                     f"{'its author has' if selected.left_out == 1 else 'their authors have'} "
                     "not opted in")
        if selected.undecryptable:
            head += f"; {_n(selected.undecryptable, 'message')} could not be decrypted"
        head += ")"
        if request.clamped:
            head += f", {request.clamped}"
        return f"{head}:\n{body}\nMade {result.where}."


def _key(chat: ChatRef) -> tuple[str, str]:
    return (chat.platform, chat.chat_id)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _span_words(seconds: int) -> str:
    """3h → "3 hours"; the reader of a summary should not have to parse "3h"."""
    if seconds == 86400:
        return "24 hours"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return unit if count == 1 else _n(count, unit)
    return _n(seconds, "second")


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return _n(minutes, "minute")


def _processing_phrase(processing: Processing) -> str:
    if processing is Processing.LOCAL:
        return "processing: local (on this bot's host)"
    return "processing: private (encrypted, through a relay, to an attested backend)"


def _unavailable(processing: Processing) -> str:
    if processing is Processing.PRIVATE:
        return ("Private processing is not set up on this bot, so nothing was sent; an admin "
                "can choose /policy processing local, or the operator can configure a relay.")
    return ("Local processing is not available on this bot; an admin can choose "
            "/policy processing private.")


def log_exception(event: str, exc: BaseException) -> None:
    """Log where an unexpected error happened, never what it said.

    Exception messages can quote their inputs (a KeyError holding a message, an
    engine error echoing text), so only the type and the code locations are kept.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    where = " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
    log.error("%s type=%s at=%s", event, type(exc).__name__, where or "?")
