"""A Telegram Bot API server, emulated over real HTTP for the adapter's tests.

The real python-telegram-bot client talks to it exactly as to api.telegram.org:
``POST /bot<token>/<method>`` with form, multipart or JSON bodies, answered with
``{"ok": true, "result": …}`` or ``{"ok": false, "error_code": …, "description": …,
"parameters": {…}}``. What it emulates, and how faithfully:

* ``getUpdates``: long polling with Telegram's offset semantics (updates below
  ``offset`` are confirmed and dropped; the rest are returned, oldest first, up
  to ``limit``; with none, the request is held up to ``timeout`` seconds) and a
  remembered ``allowed_updates`` filter. While a webhook is set it answers 409,
  and pushed updates are POSTed to the webhook instead, with the secret header.
* ``sendMessage`` parses ``parse_mode=HTML`` as strictly as Telegram does
  (unknown tags, unbalanced tags and bare ``<``, ``>``, ``&`` are rejected with
  400 "can't parse entities"), measures the parsed text in UTF-16 code units
  against the 4096 limit, checks the reply target and forum topic, and records
  what a member would see.
* ``getMe`` (privacy mode configurable), ``getChatMember`` and
  ``getChatAdministrators`` (statuses per chat and user), ``sendChatAction``,
  ``setMyCommands``/``getMyCommands``/``deleteMyCommands`` per scope,
  ``setWebhook``/``deleteWebhook``/``getWebhookInfo``, ``close``, ``logOut``.
* 403 when the bot was removed from a group or a member never started the bot.

Failures are injected per method for the next N calls: 429 with
``retry_after``, 502 Bad Gateway, or a connection closed mid-response.

    fake = FakeTelegram()
    with fake.running():                       # real uvicorn on a loopback port
        group, alice = fake.group("Team"), fake.user("Alice")
        fake.say(group, alice, "/optin")
        [reply] = await fake.wait_sent(1)

The server runs in its own thread (``tests.servers.serve``); helpers may be
called from the test's thread at any time; shared state sits behind one lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import html
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.servers import serve

TOKEN = "4242424242:AAH-hushbrief-emulated-token-0000"
BOT_ID = 4242424242
BOT_USERNAME = "hushbriefbot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ANONYMOUS_BOT = {"id": 1087968824, "is_bot": True, "first_name": "Group",
                 "username": "GroupAnonymousBot"}
MESSAGE_LIMIT = 4096

# Form fields that are strings even when they look like numbers or JSON.
_STRING_FIELDS = frozenset({
    "text", "caption", "parse_mode", "url", "secret_token", "action", "language_code",
    "ip_address", "business_connection_id", "message_effect_id", "description",
    "short_description", "name", "title",
})
_HTML_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a",
                        "code", "pre", "tg-spoiler", "span", "blockquote", "tg-emoji"})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d{1,7}|#x[0-9A-Fa-f]{1,6});")
_UPDATE_KINDS = ("message", "edited_message", "channel_post", "edited_channel_post",
                 "my_chat_member", "chat_member", "callback_query", "inline_query")


class ApiError(Exception):
    """An error answer, in Telegram's words."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


@dataclass(frozen=True)
class User:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    is_bot: bool = False

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot,
                               "first_name": self.first_name}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        return out


@dataclass(frozen=True)
class Chat:
    id: int
    type: str = "supergroup"
    title: str | None = None
    is_forum: bool = False
    username: str | None = None
    first_name: str | None = None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.is_forum:
            out["is_forum"] = True
        return out


@dataclass(frozen=True)
class Sent:
    """A message the bot sent, as the emulator understood it."""

    message_id: int
    chat_id: int
    text: str
    """What members see: the text after HTML parsing."""
    raw: str
    """What the bot sent (HTML if parse_mode was HTML)."""
    parse_mode: str | None
    thread_id: int | None
    reply_to: int | None
    at: float


@dataclass
class Failure:
    kind: str
    """"retry_after" (429), "bad_gateway" (502) or "disconnect" (connection closed)."""
    retry_after: int = 1


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event


@dataclass
class _State:
    updates: deque[dict[str, Any]] = field(default_factory=deque)
    next_update_id: int = 700_000_001
    confirmed: int = 0
    allowed_updates: list[str] | None = None
    message_ids: dict[int, itertools.count[int]] = field(default_factory=dict)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    topics: dict[int, set[int]] = field(default_factory=dict)
    chats: dict[int, Chat] = field(default_factory=dict)
    users: dict[int, User] = field(default_factory=dict)
    statuses: dict[tuple[int, int], str] = field(default_factory=dict)
    removed_from: set[int] = field(default_factory=set)
    dm_forbidden: set[int] = field(default_factory=set)
    webhook: dict[str, Any] | None = None
    commands: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


class FakeTelegram:
    """The emulated Bot API and the helpers a test drives it with."""

    def __init__(self, *, token: str = TOKEN, username: str = BOT_USERNAME,
                 bot_id: int = BOT_ID, can_read_all_group_messages: bool = True) -> None:
        self.token = token
        self.bot = User(bot_id, "Hushbrief", username=username, is_bot=True)
        self.can_read_all_group_messages = can_read_all_group_messages
        self.base_url = ""
        self.sent: list[Sent] = []
        self.actions: list[tuple[int, str, int | None]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures_served: list[tuple[str, str, float]] = []
        self.pushed = 0
        """Updates pushed so far (to compare with the adapter's ``updates_handled``)."""
        self.webhook_deliveries: list[tuple[int, int]] = []
        """(update_id, HTTP status or 0 for a connection error) of every webhook POST."""
        self._lock = threading.Lock()
        self._state = _State()
        self._failures: dict[str, deque[Failure]] = {}
        self._waiters: list[_Waiter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._webhook_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "getme": self._get_me, "getupdates": self._get_updates,
            "setwebhook": self._set_webhook, "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info, "sendmessage": self._send_message,
            "sendchataction": self._send_chat_action, "getchatmember": self._get_chat_member,
            "getchatadministrators": self._get_chat_administrators,
            "setmycommands": self._set_my_commands, "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands, "close": self._true,
            "logout": self._true,
        }
        self.app: ASGIApp = _Disconnector(self, Starlette(
            routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])],
            lifespan=self._lifespan,
        ))

    # --- running ---------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeTelegram]:
        """Serve the emulator on a loopback port for the duration of the block."""
        with serve(self.app) as url:
            self.base_url = url
            self._closing = False
            try:
                yield self
            finally:
                # Release held long polls at once, so the server can stop without waiting.
                with self._lock:
                    self._closing = True
                    waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    waiter.loop.call_soon_threadsafe(waiter.event.set)
                self.base_url = ""

    @property
    def api_base_url(self) -> str:
        """What ``[telegram] api_base_url`` must be (PTB appends the token)."""
        return f"{self.base_url}/bot"

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        yield
        if self._webhook_task is not None:
            self._webhook_task.cancel()

    # --- the chat world: members, groups, topics ---------------------------------------

    def user(self, first_name: str, last_name: str | None = None, *,
             username: str | None = None) -> User:
        user = User(100_000 + next(self._ids), first_name, last_name, username)
        with self._lock:
            self._state.users[user.id] = user
        return user

    def group(self, title: str = "Test group", *, forum: bool = False,
              basic: bool = False) -> Chat:
        """A supergroup (or a basic group) that the bot is a member of."""
        n = next(self._ids)
        chat = Chat(-n if basic else -1_000_000_000_000 - n, "group" if basic else "supergroup",
                    title=title, is_forum=forum)
        with self._lock:
            self._state.chats[chat.id] = chat
        return chat

    def private_chat(self, user: User) -> Chat:
        chat = Chat(user.id, "private", first_name=user.first_name, username=user.username)
        with self._lock:
            self._state.chats[chat.id] = chat
        return chat

    def set_status(self, chat: Chat, user: User | int, status: str) -> None:
        """``creator``, ``administrator``, ``member``, ``left`` or ``kicked``; the bot too."""
        uid = user if isinstance(user, int) else user.id
        with self._lock:
            self._state.statuses[(chat.id, uid)] = status

    def forbid_dm(self, user: User) -> None:
        """The member never pressed Start (or blocked the bot): DMs to them get 403."""
        with self._lock:
            self._state.dm_forbidden.add(user.id)

    def fail_next(self, method: str, times: int = 1, kind: str = "retry_after", *,
                  retry_after: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``kind``."""
        if kind not in ("retry_after", "bad_gateway", "disconnect"):
            raise ValueError(kind)
        with self._lock:
            queue = self._failures.setdefault(method.lower(), deque())
            queue.extend(Failure(kind, retry_after) for _ in range(times))

    # --- updates ---------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        """Queue one update (``update_id`` is assigned) for getUpdates or the webhook."""
        with self._lock:
            update_id = self._state.next_update_id
            self._state.next_update_id += 1
            self.pushed += 1
            kinds = self._state.allowed_updates
            if kinds is None or _kind(update) in kinds:
                self._state.updates.append({"update_id": update_id, **update})
            waiters, self._waiters = self._waiters, []
            webhook = self._state.webhook is not None
        for waiter in waiters:
            waiter.loop.call_soon_threadsafe(waiter.event.set)
        if webhook:
            self._kick_webhook()
        return update_id

    def message(self, chat: Chat, sender: User | None, text: str, *, thread: int | None = None,
                reply_to: int | None = None, caption: bool = False,
                sender_chat: Chat | None = None, extra: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """A Message object as Telegram would send it (stored, so later replies can quote it)."""
        mid = self._next_message_id(chat.id)
        msg: dict[str, Any] = {"message_id": mid, "date": int(time.time()), "chat": chat.json()}
        if sender is not None:
            msg["from"] = sender.json()
        if sender_chat is not None:
            msg["sender_chat"] = sender_chat.json()
            msg["from"] = ANONYMOUS_BOT if sender_chat.id == chat.id else {
                "id": 136817688, "is_bot": True, "first_name": "Channel",
                "username": "Channel_Bot"}
        if caption:
            msg["caption"] = text
            msg["photo"] = [{"file_id": f"photo-{mid}", "file_unique_id": f"u{mid}",
                             "width": 90, "height": 90}]
        elif text:
            msg["text"] = text
            if text.startswith("/"):
                msg["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(text.split()[0])}]
        if thread is not None:
            msg["message_thread_id"] = thread
            msg["is_topic_message"] = True
        with self._lock:
            if chat.type == "private" and sender is not None:
                # Writing to the bot (pressing Start) is what lets it write back.
                self._state.dm_forbidden.discard(sender.id)
            if reply_to is not None:
                msg["reply_to_message"] = self._state.messages[(chat.id, reply_to)]
            elif thread is not None:
                # Telegram's implicit reply: every topic message answers the topic's creation.
                msg["reply_to_message"] = self._state.messages[(chat.id, thread)]
            if extra:
                msg.update(extra)
            stored = {k: v for k, v in msg.items() if k != "reply_to_message"}
            self._state.messages[(chat.id, mid)] = stored
        return msg

    def say(self, chat: Chat, user: User, text: str, **kwargs: Any) -> int:
        """``user`` posts ``text`` in ``chat``; returns the message ID."""
        msg = self.message(chat, user, text, **kwargs)
        self.push({"message": msg})
        return int(msg["message_id"])

    def say_as_group(self, chat: Chat, text: str, **kwargs: Any) -> int:
        """An anonymous admin posts on behalf of the group."""
        msg = self.message(chat, None, text, sender_chat=chat, **kwargs)
        self.push({"message": msg})
        return int(msg["message_id"])

    def say_as_channel(self, chat: Chat, channel: Chat, text: str, **kwargs: Any) -> int:
        msg = self.message(chat, None, text, sender_chat=channel, **kwargs)
        self.push({"message": msg})
        return int(msg["message_id"])

    def say_privately(self, user: User, text: str) -> int:
        return self.say(self.private_chat(user), user, text)

    def edit(self, chat: Chat, user: User, message_id: int, text: str) -> None:
        with self._lock:
            original = dict(self._state.messages[(chat.id, message_id)])
        original.pop("caption" if "caption" in original else "text", None)
        original["caption" if "photo" in original else "text"] = text
        original["edit_date"] = int(time.time())
        original["from"] = user.json()
        self.push({"edited_message": original})

    def create_topic(self, chat: Chat, creator: User, name: str = "Topic") -> int:
        """Create a forum topic; returns its thread ID (the creation message's ID)."""
        mid = self._next_message_id(chat.id)
        msg = {"message_id": mid, "date": int(time.time()), "chat": chat.json(),
               "from": creator.json(), "message_thread_id": mid, "is_topic_message": True,
               "forum_topic_created": {"name": name, "icon_color": 7322096}}
        with self._lock:
            self._state.messages[(chat.id, mid)] = msg
            self._state.topics.setdefault(chat.id, set()).add(mid)
        self.push({"message": msg})
        return mid

    def member_update(self, chat: Chat, old: str, new: str, *, by: User | None = None) -> int:
        """The bot's own status in ``chat`` changes (``my_chat_member``)."""
        with self._lock:
            self._state.statuses[(chat.id, self.bot.id)] = new
            if new in ("left", "kicked"):
                self._state.removed_from.add(chat.id)
            else:
                self._state.removed_from.discard(chat.id)
        actor = by or User(1, "Admin")
        return self.push({"my_chat_member": {
            "chat": chat.json(), "from": actor.json(), "date": int(time.time()),
            "old_chat_member": _member_json(self.bot.json(), old),
            "new_chat_member": _member_json(self.bot.json(), new)}})

    def remove_bot(self, chat: Chat, *, kicked: bool = True) -> int:
        return self.member_update(chat, "member", "kicked" if kicked else "left")

    def add_bot(self, chat: Chat, *, admin: bool = False) -> int:
        return self.member_update(chat, "left", "administrator" if admin else "member")

    # --- what the bot did ------------------------------------------------------------

    def sent_to(self, chat: Chat | User | int) -> list[Sent]:
        chat_id = chat if isinstance(chat, int) else chat.id
        with self._lock:
            return [s for s in self.sent if s.chat_id == chat_id]

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [params for name, params in self.calls if name == method.lower()]

    async def wait_sent(self, count: int, *, chat: Chat | User | int | None = None,
                        timeout: float = 10.0) -> list[Sent]:
        """Wait until the bot has sent ``count`` messages (to ``chat``); return them all."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.sent_to(chat) if chat is not None else list(self.sent)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} sent messages, got {len(got)}: "
                                     f"{[s.text[:80] for s in got]}")
            await asyncio.sleep(0.01)

    async def wait_reply(self, chat: Chat, message_id: int, *, timeout: float = 10.0) -> Sent:
        """Wait for the bot's message answering ``message_id`` in ``chat``."""
        deadline = time.monotonic() + timeout
        while True:
            for sent in self.sent_to(chat):
                if sent.reply_to == message_id:
                    return sent
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to message {message_id}; the bot sent "
                                     f"{[s.text[:80] for s in self.sent_to(chat)]}")
            await asyncio.sleep(0.01)

    async def wait_fetched(self, timeout: float = 10.0) -> None:
        """Wait until every pushed update was confirmed (getUpdates) or accepted (webhook)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = len(self._state.updates)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{pending} updates were never fetched")
            await asyncio.sleep(0.01)

    @property
    def pending_updates(self) -> int:
        with self._lock:
            return len(self._state.updates)

    @property
    def webhook(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self._state.webhook is None else dict(self._state.webhook)

    def commands(self, scope: str, language_code: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.commands.get((scope, language_code), []))

    @staticmethod
    async def post_update(url: str, update: dict[str, Any], *, secret: str | None,
                          update_id: int = 1) -> int:
        """POST an update to a webhook as Telegram does; returns the HTTP status."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(url, content=json.dumps(
                {"update_id": update_id, **update}), headers=headers)
        return response.status_code

    # --- HTTP ------------------------------------------------------------------------

    def take_failure(self, method: str) -> Failure | None:
        with self._lock:
            queue = self._failures.get(method.lower())
            if not queue:
                return None
            failure = queue.popleft()
            self.failures_served.append((method.lower(), failure.kind, time.monotonic()))
            return failure

    async def _endpoint(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return _error(ApiError(401, "Unauthorized"))
        method = request.path_params["method"].lower()
        try:
            params = await _parameters(request)
        except ValueError:
            return _error(ApiError(400, "Bad Request: can't parse request body"))
        with self._lock:
            self.calls.append((method, params))
        failure: Failure | None = request.scope.get("fake.failure")  # see _Disconnector
        if failure is not None and failure.kind == "retry_after":
            return _error(ApiError(429, f"Too Many Requests: retry after {failure.retry_after}",
                                   {"retry_after": failure.retry_after}))
        if failure is not None and failure.kind == "bad_gateway":
            return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", 502,
                            media_type="text/html")
        handler = self._handlers.get(method)
        if handler is None:
            return _error(ApiError(404, "Not Found: method not found"))
        try:
            result = await handler(params)
        except ApiError as exc:
            return _error(exc)
        return JSONResponse({"ok": True, "result": result})

    # --- methods ---------------------------------------------------------------------

    async def _true(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.bot.json(), "can_join_groups": True,
                "can_read_all_group_messages": self.can_read_all_group_messages,
                "supports_inline_queries": False, "can_connect_to_business": False,
                "has_main_web_app": False}

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                state = self._state
                if state.webhook is not None:
                    raise ApiError(409, "Conflict: can't use getUpdates method while webhook "
                                        "is active; use deleteWebhook to delete the webhook "
                                        "first")
                allowed = params.get("allowed_updates")
                if isinstance(allowed, list) and (allowed or None) != state.allowed_updates:
                    state.allowed_updates = allowed or None
                    if allowed:
                        # Telegram never delivers what the bot did not ask for.
                        state.updates = deque(u for u in state.updates if _kind(u) in allowed)
                if offset > 0:
                    while state.updates and state.updates[0]["update_id"] < offset:
                        state.updates.popleft()
                    state.confirmed = max(state.confirmed, offset - 1)
                ready = list(itertools.islice(state.updates, limit))
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0 or self._closing:
                    return ready
                waiter = _Waiter(asyncio.get_running_loop(), asyncio.Event())
                self._waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), remaining)

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        with self._lock:
            if not url:
                self._state.webhook = None
                return True
            secret = params.get("secret_token")
            if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
                raise ApiError(400, "Bad Request: secret token contains unallowed characters")
            self._state.webhook = {"url": url, "secret_token": secret,
                                   "allowed_updates": params.get("allowed_updates"),
                                   "max_connections": params.get("max_connections", 40)}
            if params.get("drop_pending_updates"):
                self._state.updates.clear()
        self._kick_webhook()
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._state.webhook = None
            if params.get("drop_pending_updates"):
                self._state.updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            hook = self._state.webhook or {}
            return {"url": hook.get("url", ""), "has_custom_certificate": False,
                    "pending_update_count": len(self._state.updates)}

    def _chat(self, chat_id: Any) -> Chat:
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        with self._lock:
            chat = self._state.chats.get(chat_id)
            if chat is not None:
                return chat
            user = self._state.users.get(chat_id)
        if chat_id > 0:
            return Chat(chat_id, "private", first_name=user.first_name if user else "User")
        raise ApiError(400, "Bad Request: chat not found")

    def _check_can_send(self, chat: Chat) -> None:
        with self._lock:
            if chat.type == "private" and chat.id in self._state.dm_forbidden:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            if chat.id in self._state.removed_from:
                raise ApiError(403, f"Forbidden: bot was kicked from the {chat.type} chat")

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        self._check_can_send(chat)
        raw = params.get("text")
        if not isinstance(raw, str):
            raise ApiError(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        text = parse_html(raw) if str(parse_mode).lower() == "html" else raw
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > MESSAGE_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        thread = params.get("message_thread_id")
        reply = params.get("reply_parameters") or {}
        if "reply_to_message_id" in params:
            reply = {"message_id": params["reply_to_message_id"],
                     "allow_sending_without_reply": params.get("allow_sending_without_reply")}
        reply_to = reply.get("message_id")
        with self._lock:
            if thread is not None and chat.is_forum and thread not in self._state.topics.get(
                    chat.id, set()):
                raise ApiError(400, "Bad Request: message thread not found")
            if reply_to is not None and (chat.id, reply_to) not in self._state.messages:
                if not reply.get("allow_sending_without_reply"):
                    raise ApiError(400, "Bad Request: message to be replied not found")
                reply_to = None
        mid = self._next_message_id(chat.id)
        msg: dict[str, Any] = {"message_id": mid, "from": self.bot.json(), "chat": chat.json(),
                               "date": int(time.time()), "text": text}
        if thread is not None and chat.is_forum:
            msg["message_thread_id"] = thread
            msg["is_topic_message"] = True
        with self._lock:
            self._state.messages[(chat.id, mid)] = msg
            self.sent.append(Sent(mid, chat.id, text, raw, parse_mode, thread, reply_to,
                                  time.monotonic()))
        return msg

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat = self._chat(params.get("chat_id"))
        self._check_can_send(chat)
        with self._lock:
            self.actions.append((chat.id, str(params.get("action")),
                                 params.get("message_thread_id")))
        return True

    def _member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        with self._lock:
            status = self._state.statuses.get((chat_id, user_id), "member")
            user = self._state.users.get(user_id)
        user_json = (self.bot.json() if user_id == self.bot.id else
                     user.json() if user else {"id": user_id, "is_bot": False,
                                               "first_name": "User"})
        return _member_json(user_json, status)

    async def _get_chat_member(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        user_id = params.get("user_id")
        if not isinstance(user_id, int):
            raise ApiError(400, "Bad Request: invalid user_id specified")
        with self._lock:
            if chat.id in self._state.removed_from:
                raise ApiError(403, "Forbidden: bot is not a member of the supergroup chat")
        return self._member(chat.id, user_id)

    async def _get_chat_administrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat = self._chat(params.get("chat_id"))
        with self._lock:
            ids = [uid for (cid, uid), status in self._state.statuses.items()
                   if cid == chat.id and status in ("creator", "administrator")]
        return [self._member(chat.id, uid) for uid in ids]

    @staticmethod
    def _scope(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return str(scope.get("type", "default")), str(params.get("language_code") or "")

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        with self._lock:
            self._state.commands[self._scope(params)] = commands
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.commands.get(self._scope(params), []))

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._state.commands.pop(self._scope(params), None)
        return True

    # --- webhook delivery --------------------------------------------------------------

    def _kick_webhook(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._ensure_webhook_task)

    def _ensure_webhook_task(self) -> None:
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_webhook())

    async def _deliver_webhook(self) -> None:
        """POST pending updates to the webhook one by one, in order, as Telegram does."""
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                with self._lock:
                    hook = self._state.webhook
                    if hook is None or not self._state.updates:
                        return
                    update = self._state.updates[0]
                headers = {"Content-Type": "application/json"}
                if hook.get("secret_token"):
                    headers[SECRET_HEADER] = str(hook["secret_token"])
                try:
                    response = await client.post(str(hook["url"]), content=json.dumps(update),
                                                 headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.webhook_deliveries.append((int(update["update_id"]), status))
                    if 200 <= status < 300 and self._state.updates and \
                            self._state.updates[0] is update:
                        self._state.updates.popleft()
                        self._state.confirmed = int(update["update_id"])
                        continue
                await asyncio.sleep(0.2)  # Telegram retries a failing webhook later

    def _next_message_id(self, chat_id: int) -> int:
        with self._lock:
            counter = self._state.message_ids.setdefault(chat_id, itertools.count(100))
            return next(counter)


# --- helpers ---------------------------------------------------------------------------

class _Disconnector:
    """ASGI middleware: a "disconnect" failure closes the connection mid-response."""

    def __init__(self, fake: FakeTelegram, app: ASGIApp) -> None:
        self._fake, self._app = fake, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["path"].rsplit("/", 1)[-1]
            failure = self._fake.take_failure(method)
            if failure is not None and failure.kind == "disconnect":
                # A promised body that never comes: the client sees the connection drop.
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", b"4096")]})
                await send({"type": "http.response.body", "body": b'{"ok": tr',
                            "more_body": True})
                return
            if failure is not None:
                scope = {**scope, "fake.failure": failure}
        await self._app(scope, receive, send)


def _error(exc: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return JSONResponse(body, status_code=exc.code)


def _coerce(name: str, value: str) -> Any:
    """Form values arrive as strings; PTB JSON-encodes every non-string parameter."""
    if name in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


async def _parameters(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {k: _coerce(k, v) for k, v in request.query_params.items()}
    body = await request.body()
    if not body:
        return params
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        params.update(data)
    elif ctype.startswith("application/x-www-form-urlencoded"):
        params.update({k: _coerce(k, v) for k, v in parse_qsl(body.decode(),
                                                               keep_blank_values=True)})
    elif ctype.startswith("multipart/form-data"):
        head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if not isinstance(name, str) or not isinstance(payload, bytes):
                continue
            if part.get_filename():
                params[name] = payload  # an uploaded file: kept as bytes
            else:
                params[name] = _coerce(name, payload.decode())
    else:
        raise ValueError(ctype)
    return params


def parse_html(raw: str) -> str:
    """Telegram's HTML parse mode, strictly: returns the text a member would see."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        offset = len(raw[:i].encode())
        if ch == "<":
            m = _TAG.match(raw, i)
            name = m.group(2).lower() if m else ""
            if m is None or name not in _HTML_TAGS:
                shown = name or raw[i + 1:i + 2]
                raise ApiError(400, f"Bad Request: can't parse entities: Unsupported start tag "
                                    f'"{shown}" at byte offset {offset}')
            if m.group(1):
                if not stack or stack[-1] != name:
                    expected = stack[-1] if stack else ""
                    raise ApiError(400, f"Bad Request: can't parse entities: Unmatched end tag "
                                        f'at byte offset {offset}, expected "</{expected}>", '
                                        f'found "</{name}>"')
                stack.pop()
            else:
                stack.append(name)
            i = m.end()
        elif ch == "&":
            m = _ENTITY.match(raw, i)
            if m is None:
                raise ApiError(400, "Bad Request: can't parse entities: Character '&' is "
                                    f"reserved and must be escaped at byte offset {offset}")
            out.append(html.unescape(m.group(0)))
            i = m.end()
        elif ch == ">":
            raise ApiError(400, "Bad Request: can't parse entities: Character '>' is reserved "
                                f"and must be escaped at byte offset {offset}")
        else:
            out.append(ch)
            i += 1
    if stack:
        raise ApiError(400, "Bad Request: can't parse entities: Can't find end tag "
                            f'corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def _kind(update: dict[str, Any]) -> str:
    return next((k for k in _UPDATE_KINDS if k in update), "unknown")


def _member_json(user: dict[str, Any], status: str) -> dict[str, Any]:
    """A ChatMember object with every field Telegram sends for that status."""
    if status == "creator":
        return {"status": status, "user": user, "is_anonymous": False}
    if status == "administrator":
        return {"status": status, "user": user, "can_be_edited": False, "is_anonymous": False,
                "can_manage_chat": True, "can_delete_messages": True,
                "can_manage_video_chats": True, "can_restrict_members": True,
                "can_promote_members": False, "can_change_info": True, "can_invite_users": True,
                "can_post_stories": False, "can_edit_stories": False,
                "can_delete_stories": False, "can_pin_messages": True,
                "can_manage_topics": True}
    if status == "kicked":
        return {"status": status, "user": user, "until_date": 0}
    if status in ("member", "left"):
        return {"status": status, "user": user}
    raise ValueError(f"unsupported status {status!r}")
