"""The Telegram adapter: python-telegram-bot in, the core's decisions out.

``TelegramAdapter`` owns the PTB ``Application`` (polling or webhook), turns
each update into a neutral event (``updates.translate``), hands it to
``Hushbrief.handle`` and carries out the outcomes: replies in the same chat and
forum topic, direct messages with a fallback in the group, "typing…" while a
summary is made. It answers the core's questions about Telegram (``Platform``,
``DirectMessages``, ``ActivityIndicator``, ``Visibility``).

Ordering and concurrency: PTB hands updates over one at a time; the adapter
puts each on its chat's *lane* and returns at once. A lane runs its chat's
events strictly in order (an ``/optin`` is recorded before the next message is
buffered), while different chats proceed side by side, so one slow summary
never holds up the other chats.

Decisions documented here, because Telegram forces them:

* ``can_message_directly`` answers True without asking Telegram. The Bot API has
  no side-effect-free probe (``sendChatAction`` would show "typing…" in the
  member's private chat), and when the DM does fail (403: the member never
  pressed Start, or blocked the bot) the core's ``fallback`` is posted in the
  group with a ``t.me/<bot>?start=hi`` link that opens the private chat — more
  helpful than a refusal before the fact. The group's "I sent you the summary"
  note is then withheld, since it would be untrue.
* Anonymous admins and channels: see ``updates`` (they are admins for
  ``/policy`` but can neither opt in nor ask for summaries).
* Privacy mode: read from ``getMe`` at start. With it on, the bot sees only
  commands in groups where it is not an admin; ``visibility_problem`` says so.

Logging: operations, counts, reason codes and per-process pseudonymous chat
tags; never text, names or Telegram's error descriptions (``redaction``).
The adapter writes nothing to disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    ChatMember,
    LinkPreviewOptions,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, ExtBot, TypeHandler

from hushbrief.adapters.telegram.delivery import (
    DeliveryError,
    Migrated,
    Rejected,
    RetryPolicy,
    Unreachable,
    call,
)
from hushbrief.adapters.telegram.formatting import render_html
from hushbrief.adapters.telegram.redaction import (
    TokenRedaction,
    install_ptb_filter,
    install_token_filter,
    remove_token_filter,
)
from hushbrief.adapters.telegram.updates import (
    ALLOWED_UPDATES,
    GROUP_COMMANDS,
    PLATFORM,
    PRIVATE_COMMANDS,
    SHARED_IDENTITY_COMMANDS,
    SHARED_IDENTITY_REFUSAL,
    BotIdentity,
    BotMembership,
    Translated,
    is_shared_identity,
    translate,
)
from hushbrief.bot.config import TelegramConfig
from hushbrief.bot.core import Hushbrief
from hushbrief.bot.events import (
    ChatRef,
    CommandReceived,
    DirectMessage,
    Outcome,
    Reply,
    ReplyKind,
)
from hushbrief.listen import parse_listen

log = logging.getLogger("hushbrief.telegram")

PRIVACY_MODE_PROBLEM = (
    "I can only see commands here because privacy mode is on: turn it off with BotFather "
    "(/setprivacy → Disable) and re-add me, or make me an admin."
)
HELLO = (
    "Hello! I summarize this chat only for members who opt in: send /optin to let your "
    "messages be used (I keep nothing from anyone else), and /help to see what I can do."
)
START_INTRO = (
    "Hello! I work in group chats: add me to a group, and members who agree send /optin "
    "there. A summary asked for with /summarize private arrives here."
)
START_PAYLOAD = "hi"

TYPING_REFRESH = 4.5
"""Telegram shows "typing…" for about five seconds per sendChatAction."""
TYPING_MAX = 90.0
"""Stop refreshing "typing…" after this long even if no reply came."""

_ADMIN_STATUSES = frozenset({ChatMember.OWNER, ChatMember.ADMINISTRATOR})
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

K = TypeVar("K")
V = TypeVar("V")

_App = Application[ExtBot[None], ContextTypes.DEFAULT_TYPE, dict[Any, Any], dict[Any, Any],
                   dict[Any, Any], None]


class TelegramStartError(Exception):
    """The adapter could not start; the message is one line for the operator."""


class _Expiring(Generic[K, V]):
    """A small LRU map whose entries expire: admin statuses change, memory must stay bounded."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = (time.monotonic() + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)


class TelegramAdapter:
    """Runs the bot on Telegram: ``await start()``, later ``await stop()``.

    ``poll_timeout`` is getUpdates' long-poll time; ``retry`` bounds retries of
    sends (see ``delivery``); ``drain_timeout`` is how long ``stop`` lets
    events already received finish. ``data_dir`` is accepted for symmetry with
    other adapters; nothing is written there.
    """

    def __init__(
        self,
        config: TelegramConfig,
        core: Hushbrief,
        *,
        data_dir: Path | None = None,
        poll_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        drain_timeout: float = 10.0,
        status_ttl: float = 60.0,
    ) -> None:
        self._config = config
        self._core = core
        self._data_dir = data_dir
        self._poll_timeout = poll_timeout
        self._retry = retry or RetryPolicy()
        # Questions (is this member an admin?) must answer fast: fewer, shorter retries.
        self._query_retry = replace(self._retry, attempts=2, max_flood_wait=5.0)
        self._drain_timeout = drain_timeout
        self._app: _App | None = None
        self._me: BotIdentity | None = None
        self._reads_all = True
        self._statuses: _Expiring[tuple[str, int], str] = _Expiring(status_ttl, 4096)
        self._lanes: dict[str, deque[Translated]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._typing: dict[tuple[str, str | None], asyncio.Task[None]] = {}
        self._handled = 0
        self._token_filter: TokenRedaction | None = None
        self._salt = secrets.token_bytes(16)

    # --- lifecycle --------------------------------------------------------------------

    @property
    def name(self) -> str:
        return PLATFORM

    @property
    def bot_username(self) -> str:
        """The bot's @username (without the @), known after ``start``."""
        if self._me is None:
            raise RuntimeError("the adapter has not started")
        return self._me.username

    @property
    def updates_handled(self) -> int:
        """Updates fully dealt with (ignored ones included); for tests and benchmarks."""
        return self._handled

    async def start(self) -> None:
        """Connect (``getMe``), publish the command menus, then poll or serve the webhook.

        Raises ``TelegramStartError`` with one line for the operator.
        """
        if self._app is not None:
            raise RuntimeError("the adapter is already running")
        cfg = self._config
        if not cfg.token:
            raise TelegramStartError("[telegram] token is empty; get one from BotFather")
        webhook = self._webhook_settings() if cfg.mode == "webhook" else None
        install_ptb_filter()
        self._token_filter = install_token_filter(cfg.token)
        app: _App = (
            ApplicationBuilder()
            .token(cfg.token)
            .base_url(cfg.api_base_url)
            .job_queue(None)
            .connect_timeout(10.0).read_timeout(20.0).write_timeout(20.0).pool_timeout(10.0)
            .get_updates_connect_timeout(10.0).get_updates_read_timeout(10.0)
            .get_updates_pool_timeout(10.0)
            .build()
        )
        app.add_handler(TypeHandler(Update, self._on_update))
        app.add_error_handler(self._on_error)
        self._app = app
        try:
            await self._connect(app)
            await self._publish_commands(app)
            await app.start()
            updater = app.updater
            assert updater is not None
            # drop_pending_updates=False: commands sent while the bot was down are still
            # answered (Telegram keeps updates for 24 hours); none is lost silently.
            if webhook is None:
                await updater.start_polling(
                    poll_interval=0.0, timeout=max(0, round(self._poll_timeout)),
                    bootstrap_retries=2, allowed_updates=list(ALLOWED_UPDATES),
                    drop_pending_updates=False, error_callback=self._on_poll_error)
            else:
                host, port, path = webhook
                await updater.start_webhook(
                    listen=host, port=port, url_path=path, webhook_url=cfg.webhook_url,
                    secret_token=cfg.webhook_secret, allowed_updates=list(ALLOWED_UPDATES),
                    bootstrap_retries=2, drop_pending_updates=False)
        except TelegramError as exc:
            await self.stop()
            raise TelegramStartError(f"Telegram could not be set up ({type(exc).__name__}); "
                                     "check [telegram] and the network") from None
        except BaseException:
            await self.stop()
            raise
        log.info("telegram started mode=%s privacy_mode=%s", cfg.mode,
                 "off" if self._reads_all else "on")
        if not self._reads_all:
            log.warning("telegram privacy mode is on: in groups where the bot is not an admin "
                        "it sees only commands; disable it with BotFather (/setprivacy)")

    def _webhook_settings(self) -> tuple[str, int, str]:
        cfg = self._config
        if not cfg.webhook_url or not cfg.webhook_secret:
            raise TelegramStartError('[telegram] mode = "webhook" needs webhook_url and '
                                     "webhook_secret")
        try:
            host, port = parse_listen(cfg.webhook_listen)
        except ValueError as exc:
            raise TelegramStartError(f"[telegram] webhook_listen: {exc}") from None
        # The local server answers on the public URL's path, which is what a reverse
        # proxy in front of it usually forwards unchanged.
        path = urlsplit(cfg.webhook_url).path.lstrip("/")
        return host, port, path

    async def _connect(self, app: _App) -> None:
        try:
            await app.initialize()  # getMe
        except InvalidToken:
            raise TelegramStartError("Telegram rejected [telegram] token; copy it again from "
                                     "BotFather") from None
        me = app.bot.bot
        if not me.username:
            raise TelegramStartError("Telegram's getMe returned no bot username")
        self._me = BotIdentity(me.id, me.username)
        self._reads_all = bool(me.can_read_all_group_messages)

    async def _publish_commands(self, app: _App) -> None:
        """The "/" menus: group commands in groups, a shorter list in private chats."""
        menus = (
            (BotCommandScopeAllGroupChats(), GROUP_COMMANDS, "groups"),
            (BotCommandScopeAllPrivateChats(), PRIVATE_COMMANDS, "private"),
        )
        for scope, commands, label in menus:
            listed = [BotCommand(name, description) for name, description in commands]
            try:
                await call("setMyCommands", partial(app.bot.set_my_commands, listed, scope=scope),
                           self._retry)
            except DeliveryError as exc:  # a missing menu is cosmetic: keep running
                log.warning("telegram_commands_failed scope=%s reason=%s", label, exc)

    async def stop(self) -> None:
        """Stop taking updates, let received events finish (bounded), close the connection."""
        app = self._app
        if app is None:
            return
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()  # hands every update already fetched to the lanes
            if self._lane_tasks:
                _, late = await asyncio.wait(set(self._lane_tasks), timeout=self._drain_timeout)
                for task in late:
                    task.cancel()
                if late:
                    log.warning("telegram_stop_cancelled chats=%d", len(late))
                    await asyncio.gather(*late, return_exceptions=True)
            for task in list(self._typing.values()):
                task.cancel()
            self._typing.clear()
            await app.shutdown()
        finally:
            self._app = None
            if self._token_filter is not None:
                remove_token_filter(self._token_filter)
                self._token_filter = None
            log.info("telegram stopped")

    # --- updates in --------------------------------------------------------------------

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        me = self._me
        if me is None:
            return
        try:
            item = translate(update, me)
        except Exception as exc:  # a malformed update must not stop the others
            log.error("telegram_update_unreadable type=%s update=%d", type(exc).__name__,
                      update.update_id)
            item = None
        if item is None:
            self._handled += 1
            return
        key = item.chat.chat_id
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(item)
            return
        lane = self._lanes[key] = deque([item])
        task = asyncio.create_task(self._run_lane(key, lane), name="hushbrief-telegram-lane")
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _run_lane(self, key: str, lane: deque[Translated]) -> None:
        try:
            while lane:
                item = lane.popleft()
                try:
                    await self._handle(item)
                except Exception as exc:  # the lane, and the bot, keep going
                    log.error("telegram_event_failed type=%s chat=%s", type(exc).__name__,
                              self._tag(key))
                finally:
                    self._handled += 1
        finally:
            # No await between the emptiness check above and this: no event can slip in.
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """PTB's error handler: the exception's type and the update ID, nothing else."""
        update_id = update.update_id if isinstance(update, Update) else -1
        log.error("telegram_update_failed type=%s update=%d", type(context.error).__name__,
                  update_id)

    def _on_poll_error(self, exc: TelegramError) -> None:
        # PTB keeps polling with backoff; its own record of this is scrubbed by redaction.
        log.warning("telegram_poll_failed type=%s", type(exc).__name__)

    async def _handle(self, item: Translated) -> None:
        if isinstance(item, BotMembership):
            await self._membership(item)
            return
        if (isinstance(item, CommandReceived) and item.name in SHARED_IDENTITY_COMMANDS
                and is_shared_identity(item.sender.user_id)):
            await self._deliver([Reply(item.chat, SHARED_IDENTITY_REFUSAL, ReplyKind.REFUSAL,
                                       thread_id=item.thread_id, reply_to=item.message_id)])
            return
        outcomes = await self._core.handle(item, self)
        if isinstance(item, CommandReceived) and item.name == "start" and not item.chat.is_group:
            outcomes = [replace(o, text=f"{START_INTRO}\n\n{o.text}")
                        if isinstance(o, Reply) else o for o in outcomes]
        await self._deliver(outcomes)

    async def _membership(self, change: BotMembership) -> None:
        assert self._me is not None
        self._statuses.discard((change.chat.chat_id, self._me.id))
        if not change.present:
            self._core.chat_gone(change.chat)
            log.info("telegram_left chat=%s", self._tag(change.chat.chat_id))
            return
        if change.joined:
            log.info("telegram_joined admin=%s chat=%s", change.admin,
                     self._tag(change.chat.chat_id))
            problem = None if change.admin else await self.visibility_problem(change.chat)
            text = HELLO if problem is None else f"{HELLO}\n{problem}"
            await self._deliver([Reply(change.chat, text)])

    # --- outcomes out --------------------------------------------------------------------

    async def _deliver(self, outcomes: Sequence[Outcome]) -> None:
        withheld: set[tuple[str, str | None]] = set()
        for outcome in outcomes:
            if isinstance(outcome, DirectMessage):
                if await self._send_direct(outcome) or outcome.fallback is None:
                    continue
                fallback = outcome.fallback
                link = f"https://t.me/{self.bot_username}?start={START_PAYLOAD}"
                await self._post(replace(fallback, text=f"{fallback.text}\n{link}"))
                # The core's "I sent you the summary privately" answers the same command.
                withheld.add((fallback.chat.chat_id, fallback.reply_to))
            elif (outcome.chat.chat_id, outcome.reply_to) in withheld:
                log.info("telegram_withheld reason=dm_failed chat=%s",
                         self._tag(outcome.chat.chat_id))
            else:
                await self._post(outcome)

    async def _post(self, reply: Reply) -> None:
        chat_id = reply.chat.chat_id
        self._stop_typing(chat_id, reply.thread_id)
        try:
            await self._send(int(chat_id), reply.text, kind=reply.kind,
                             thread_id=reply.thread_id, reply_to=reply.reply_to)
        except Unreachable:
            log.info("telegram_send_failed kind=%s reason=forbidden chat=%s", reply.kind,
                     self._tag(chat_id))
            if reply.chat.is_group:
                self._core.chat_gone(reply.chat)  # removed: nothing there is ours to keep
        except DeliveryError as exc:
            log.error("telegram_send_failed kind=%s reason=%s chat=%s", reply.kind, exc,
                      self._tag(chat_id))

    async def _send_direct(self, dm: DirectMessage) -> bool:
        if is_shared_identity(dm.user_id) or not dm.user_id.isdigit():
            return False
        try:
            await self._send(int(dm.user_id), dm.text, kind=dm.kind)
        except (Unreachable, Rejected) as exc:
            log.info("telegram_dm_failed reason=%s", exc)
            return False
        except DeliveryError as exc:
            log.error("telegram_dm_failed reason=%s", exc)
            return False
        return True

    async def _send(
        self,
        chat_id: int,
        text: str,
        *,
        kind: ReplyKind,
        thread_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Send ``text`` as one or more messages; the first answers ``reply_to``."""
        app = self._app
        if app is None:
            raise DeliveryError("stopped")
        parts = render_html(text, bold_first_line=kind is ReplyKind.SUMMARY)
        thread = int(thread_id) if thread_id and thread_id.isdigit() else None
        for index, part in enumerate(parts):
            answer = None
            if index == 0 and reply_to and reply_to.isdigit():
                answer = ReplyParameters(int(reply_to), allow_sending_without_reply=True)
            send = partial(app.bot.send_message, chat_id, part.html, parse_mode=ParseMode.HTML,
                           message_thread_id=thread, reply_parameters=answer,
                           link_preview_options=_NO_PREVIEW)
            try:
                await call("sendMessage", send, self._retry)
            except Rejected as exc:
                if exc.reason != "entities":
                    raise
                # Our escaping should make this impossible; if Telegram still cannot parse
                # the HTML, the same words go out unformatted rather than not at all.
                log.warning("telegram_html_rejected chat=%s", self._tag(str(chat_id)))
                await call("sendMessage", partial(
                    app.bot.send_message, chat_id, part.plain, message_thread_id=thread,
                    reply_parameters=answer, link_preview_options=_NO_PREVIEW), self._retry)
            except Migrated as exc:
                log.info("telegram_migrated chat=%s", self._tag(str(chat_id)))
                chat_id = exc.new_chat_id
                await call("sendMessage", partial(
                    app.bot.send_message, chat_id, part.html, parse_mode=ParseMode.HTML,
                    message_thread_id=thread, reply_parameters=answer,
                    link_preview_options=_NO_PREVIEW), self._retry)
        log.info("telegram_sent kind=%s parts=%d chat=%s", kind, len(parts),
                 self._tag(str(chat_id)))

    # --- what the core may ask -----------------------------------------------------------

    async def is_admin(self, chat: ChatRef, user_id: str) -> bool:
        """Creator or administrator (``getChatMember``, cached briefly).

        ``chat:<this chat's id>`` is an anonymous admin posting as the group: only
        admins can do that, so it is an admin of this chat and of no other.
        """
        if is_shared_identity(user_id):
            return chat.is_group and user_id == f"chat:{chat.chat_id}"
        if not chat.is_group or not user_id.isdigit():
            return False
        return await self._status(chat.chat_id, int(user_id)) in _ADMIN_STATUSES

    async def can_message_directly(self, user_id: str) -> bool:
        """Optimistic (see the module docstring): a failed DM falls back to the group."""
        return not is_shared_identity(user_id)

    async def show_working(self, chat: ChatRef, thread_id: str | None) -> None:
        """Show "typing…" (in the topic) until the reply is posted, at most ``TYPING_MAX``."""
        key = (chat.chat_id, thread_id)
        self._stop_typing(*key)
        self._typing[key] = asyncio.create_task(self._keep_typing(key),
                                                name="hushbrief-telegram-typing")

    async def visibility_problem(self, chat: ChatRef) -> str | None:
        """The privacy-mode sentence when this bot cannot see the group's messages."""
        if self._reads_all or not chat.is_group or self._me is None:
            return None
        status = await self._status(chat.chat_id, self._me.id)
        if status is None or status in _ADMIN_STATUSES:
            return None  # admins see every message; if Telegram did not answer, claim nothing
        return PRIVACY_MODE_PROBLEM

    async def _status(self, chat_id: str, user_id: int) -> str | None:
        key = (chat_id, user_id)
        cached = self._statuses.get(key)
        if cached is not None:
            return cached
        app = self._app
        if app is None:
            return None
        try:
            member = await call("getChatMember",
                                partial(app.bot.get_chat_member, int(chat_id), user_id),
                                self._query_retry)
        except DeliveryError as exc:
            log.info("telegram_status_unknown reason=%s chat=%s", exc, self._tag(chat_id))
            return None
        self._statuses.put(key, member.status)
        return member.status

    async def _keep_typing(self, key: tuple[str, str | None]) -> None:
        chat_id, thread_id = key
        thread = int(thread_id) if thread_id and thread_id.isdigit() else None
        deadline = time.monotonic() + TYPING_MAX
        try:
            while time.monotonic() < deadline and self._app is not None:
                try:
                    await self._app.bot.send_chat_action(int(chat_id), ChatAction.TYPING,
                                                         message_thread_id=thread)
                except TelegramError as exc:  # cosmetic: never retried, never fatal
                    log.info("telegram_typing_failed type=%s", type(exc).__name__)
                    return
                await asyncio.sleep(TYPING_REFRESH)
        finally:
            if self._typing.get(key) is asyncio.current_task():
                del self._typing[key]

    def _stop_typing(self, chat_id: str, thread_id: str | None) -> None:
        task = self._typing.pop((chat_id, thread_id), None)
        if task is not None:
            task.cancel()

    def _tag(self, chat_id: str) -> str:
        """A pseudonymous chat tag, stable for this process only."""
        return hashlib.blake2b(chat_id.encode(), key=self._salt, digest_size=5).hexdigest()
