"""The Matrix adapter: matrix-nio in, the core's decisions out.

``MatrixAdapter`` logs the bot's device in once and reuses it (``session``),
keeps a ``/sync`` loop running as a background task, turns commands into the
core's ``CommandReceived`` (``commands``), answers the core's questions about
Matrix (``Platform``, ``HistorySource``, ``DirectMessages``, ``ActivityIndicator``)
and carries out its outcomes: notices in the room, in the thread, as replies;
summaries by direct message in an encrypted DM room.

End-to-end encryption and device trust
--------------------------------------
E2EE is always on: the bot has its own device, its Olm/Megolm keys live in nio's
store (pickled under ``[matrix] store_key`` or a generated ``store.key``), and it
reads encrypted rooms with keys the members' clients share with it.

The bot cannot take part in interactive verification (emoji/QR), so it uses
*trust on first use without verification*: it decrypts every message whose room
key it received, whether or not the sending device is verified, and when it
sends it shares its room key with every device of every member, marking
unverified ones "ignored" (``room_send(..., ignore_unverified_devices=True)``).
The alternative — only verified devices — would make the bot deaf and mute in
every room whose members have not each verified it, i.e. nearly all of them.

The trade-off: a device added to a member's account by someone who controls the
member's homeserver would receive the bot's answers in that room, and the bot
would read that device's messages as the member's. That is exactly the exposure
every member already accepts from the other members' clients (Element shares
with unverified devices by default, and every member receives every message),
and the bot's answers only ever contain what members who opted in wrote in the
same room. Members see the bot's device as unverified; that is expected.

Which events are commands
-------------------------
Only events that arrive through ``/sync`` after the adapter started: nothing
from the first sync after a (re)start — it only loads room state — and nothing
whose ``origin_server_ts`` is more than ``clock_skew`` seconds before the start
(late federation can deliver old events). The sync token is persisted in nio's
store, so a restart resumes where it left off and commands sent while the bot
was down are not answered, neither then nor later. Ordinary messages produce no
events at all: history is fetched from the homeserver when a summary is asked for.

Ordering and concurrency: like the Telegram adapter, each room has a *lane* that
runs its events strictly in order (an ``!optin`` is recorded before the
``!summarize`` after it is handled) while rooms proceed side by side, and the
sync loop never waits for a summary.

Invites, kicks, DMs: see ``rooms`` for who may invite the bot, who is an admin
and what counts as a direct chat, and ``direct`` for the DM rooms it delivers to.
An invite from anyone else is declined. When the bot is kicked or banned, the core
forgets the room (``chat_gone``) and the adapter forgets it on the server too, so
nio's store keeps no trace of it.

Delivery: ``m.notice`` (the bot convention: clients render it as a bot's, other
bots do not answer notices, so two bots never loop), plain ``body`` and escaped
HTML ``formatted_body``; in the command's thread when it came from one, and as a
reply to the command. ``!`` replaces ``/`` in the bot's own sentences
(``formatting``). Sends go through nio with bounded retries and a fixed
transaction ID, so a retried send is deduplicated by the homeserver.

Logging: operations, counts, durations, reason codes and the core's pseudonymous
chat tags; never text, names, room or user IDs (``logfilter`` does the same for
nio). Files written: ``session.json``, ``store.key`` and nio's store, all under
``<data_dir>/matrix/`` — see ``session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Final

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    MegolmEvent,
    SyncError,
    SyncResponse,
    UnknownAccountDataEvent,
)
from nio.exceptions import LocalProtocolError

from hushbrief.adapters.matrix.commands import (
    BotNames,
    localpart,
    parse,
    relations,
)
from hushbrief.adapters.matrix.direct import DirectChats
from hushbrief.adapters.matrix.errors import ApiError, MatrixError, MatrixStartError
from hushbrief.adapters.matrix.formatting import (
    MATRIX_HELP_NOTE,
    message_content,
    render,
    to_bang,
)
from hushbrief.adapters.matrix.history import FetchStats, HistoryReader, MatrixHistory
from hushbrief.adapters.matrix.logfilter import install_nio_filter
from hushbrief.adapters.matrix.rooms import RoomState, inviter_allowed
from hushbrief.adapters.matrix.session import (
    STORE_DIR,
    Session,
    load_or_create_store_key,
    load_session,
    matrix_dir,
    save_session,
)
from hushbrief.adapters.matrix.transport import RetryPolicy, Transport, call_nio
from hushbrief.bot.config import MatrixConfig
from hushbrief.bot.core import Hushbrief
from hushbrief.bot.events import (
    ChatRef,
    CommandReceived,
    DirectMessage,
    Member,
    Outcome,
    Reply,
    ReplyKind,
)

log = logging.getLogger("hushbrief.matrix")

PLATFORM: Final = "matrix"

HELLO = (
    "Hello! I summarize this room only for members who opt in: send !optin to let your "
    "messages be used (I keep nothing from anyone else), and !help to see what I can do."
)
DM_HELLO = (
    "Hello! Summaries you ask for with !summarize private in a room arrive here. "
    "Send !help to see what I can do."
)
DM_FAILED = (
    "I couldn't deliver your summary privately (I could not reach you in a direct chat); "
    "please try again later, or ask without private."
)

TYPING_MS: Final = 30_000
TYPING_REFRESH: Final = 25.0
TYPING_MAX: Final = 120.0
KEY_REQUESTS_PER_FETCH: Final = 20
KEY_REQUEST_MEMORY: Final = 4096

INITIAL_SYNC_TIMEOUT: Final = 120.0

_STATE_TIMELINE_LIMIT = 1
_LIVE_TIMELINE_LIMIT = 100


def _sync_filter(timeline_limit: int) -> dict[str, Any]:
    # Presence, typing, receipts and per-room account data are never used; leaving them
    # out keeps every sync small. Members are not lazy-loaded: display names, member
    # counts (DM detection) and key sharing all need the full member list.
    return {
        "presence": {"not_types": ["*"]},
        "account_data": {"types": ["m.direct"]},
        "room": {
            "timeline": {"limit": timeline_limit},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "state": {"lazy_load_members": False},
        },
    }


Job = Callable[[], Awaitable[None]]


class MatrixAdapter:
    """Runs the bot on Matrix: ``await start()``, later ``await stop()``.

    ``poll_timeout`` is the ``/sync`` long-poll time; ``retry`` bounds retries of
    every call (see ``transport``); ``drain_timeout`` is how long ``stop`` lets
    commands already received finish; ``clock_skew`` how far before the start an
    event's timestamp may lie and still be a command. ``on_history`` receives each
    history fetch's counts and timings (benchmarks, metrics): never content.
    """

    def __init__(
        self,
        config: MatrixConfig,
        core: Hushbrief,
        *,
        data_dir: Path,
        poll_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        drain_timeout: float = 10.0,
        clock_skew: float = 60.0,
        page_size: int = 100,
        room_wait: float = 20.0,
        on_history: Callable[[FetchStats], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._core = core
        self._data_dir = data_dir
        self._poll_ms = max(0, int(poll_timeout * 1000))
        self._retry = retry or RetryPolicy()
        self._drain_timeout = drain_timeout
        self._clock_skew = clock_skew
        self._page_size = page_size
        self._room_wait = room_wait
        self._on_history = on_history
        self._clock = clock
        self._client: AsyncClient | None = None
        self._http: Transport | None = None
        self._reader: HistoryReader | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._started_ms = 0
        self._display_name: str | None = None
        self._rooms: dict[str, RoomState] = {}
        self._direct: DirectChats | None = None
        self._invites_seen: set[str] = set()
        self._lanes: dict[str, deque[Job]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._typing: dict[str, asyncio.Task[None]] = {}
        self._keys_requested: deque[str] = deque(maxlen=KEY_REQUEST_MEMORY)
        self._tick = asyncio.Event()
        self._handled = 0

    # --- lifecycle --------------------------------------------------------------------

    @property
    def name(self) -> str:
        return PLATFORM

    @property
    def user_id(self) -> str:
        """The bot's user ID, known after ``start``."""
        if self._client is None:
            raise RuntimeError("the adapter has not started")
        return str(self._client.user_id)

    @property
    def device_id(self) -> str:
        if self._client is None:
            raise RuntimeError("the adapter has not started")
        return str(self._client.device_id)

    @property
    def commands_handled(self) -> int:
        """Commands fully dealt with, answered or not; for tests and benchmarks."""
        return self._handled

    async def start(self) -> None:
        """Log in (or reuse the stored device), load room state, start the sync loop.

        Returns once the adapter is running. Raises ``MatrixStartError`` with one line
        for the operator.
        """
        if self._client is not None:
            raise RuntimeError("the adapter is already running")
        cfg = self._config
        homeserver = cfg.homeserver.rstrip("/")
        if not homeserver or not cfg.user_id:
            raise MatrixStartError("[matrix] homeserver and user_id must be set")
        install_nio_filter()
        # A stopped adapter may be started again: nothing of the last run's rooms is kept.
        self._rooms.clear()
        self._invites_seen.clear()
        root = matrix_dir(self._data_dir)
        store_key = load_or_create_store_key(root, cfg.store_key)
        stored = load_session(root)
        if stored is not None and (stored.user_id != cfg.user_id
                                   or stored.homeserver != homeserver):
            log.warning("matrix_session_ignored reason=account_changed")
            stored = None
        if stored is not None and not (
                root / STORE_DIR / f"{stored.user_id}_{stored.device_id}.db").exists():
            # The device's keys are gone: reusing its ID with a new Olm account would be
            # refused by the homeserver (its keys are already published).
            if not (cfg.password or cfg.access_token):
                raise MatrixStartError(f"nio's store for the stored device is missing from "
                                       f"{root / STORE_DIR}; set [matrix] password to log in "
                                       "a new device")
            log.warning("matrix_store_missing action=new_login")
            stored = None
        if stored is None and not (cfg.password or cfg.access_token):
            raise MatrixStartError("[matrix] needs a password or an access_token for the first "
                                   "login (afterwards the stored device is reused)")
        client_config = AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=True, pickle_key=store_key,
            # nio's own retries inside its calls, bounded so that with ours on top
            # (transport.call_nio) a failing homeserver is given up on in seconds.
            max_limit_exceeded=2, max_timeouts=2, backoff_factor=0.25,
            max_timeout_retry_wait_time=5.0, request_timeout=30.0,
        )
        try:
            session = await self._login(homeserver, root, client_config, stored)
            client = self._client
            assert client is not None
            self._http = Transport(client, self._retry)
            self._reader = HistoryReader(
                self._http, client.decrypt_event, page_size=self._page_size,
                on_undecryptable=self._request_keys, on_stats=self._on_history)
            self._direct = DirectChats(client, self._http, self._retry, rooms=self._rooms,
                                       wait_for=self._wait_for, tag=self._tag)
            if client.should_upload_keys:
                await call_nio("keys_upload", client.keys_upload, self._retry)
            await self._direct.load()
            self._display_name = await self._own_display_name()
            self._started_ms = int(self._clock() * 1000)
            await self._initial_sync()
        except MatrixStartError:
            await self._close()
            raise
        except MatrixError as exc:
            await self._close()
            raise MatrixStartError(f"Matrix could not be set up ({exc}); check [matrix] and "
                                   "the homeserver") from None
        except BaseException:
            await self._close()
            raise
        self._sync_task = asyncio.create_task(self._sync_loop(), name="hushbrief-matrix-sync")
        log.info("matrix started rooms=%d new_device=%s", len(self._rooms),
                 stored is None or stored.device_id != session.device_id)

    async def _login(self, homeserver: str, root: Path, client_config: Any,
                     stored: Session | None) -> Session:
        cfg = self._config
        store_path = str(root / STORE_DIR)
        if stored is not None:
            client = self._new_client(homeserver, client_config, store_path, stored.device_id)
            self._open_store(client, stored.user_id, stored.device_id, stored.access_token)
            try:
                who = await call_nio("whoami", client.whoami, self._retry)
            except ApiError as exc:
                if exc.errcode != "M_UNKNOWN_TOKEN" or not (cfg.password or cfg.access_token):
                    raise MatrixStartError(
                        f"The homeserver refused the stored Matrix session ({exc}); delete "
                        f"{root / 'session.json'} to log in a new device") from None
                log.warning("matrix_session_invalid reason=%s action=new_login", exc)
                await self._close()
            else:
                if who.user_id == stored.user_id:
                    return stored
                raise MatrixStartError("The stored Matrix session belongs to another account; "
                                       f"delete {root / 'session.json'}")
        client = self._new_client(homeserver, client_config, store_path, None)
        if cfg.password:
            try:
                resp = await call_nio(
                    "login", lambda: client.login(cfg.password, device_name=cfg.device_name),
                    self._retry, idempotent=False)
            except ApiError as exc:
                raise MatrixStartError(f"The homeserver refused [matrix] password for "
                                       f"[matrix] user_id ({exc})") from None
            session = Session(homeserver, str(resp.user_id), str(resp.device_id),
                              str(resp.access_token))
        else:
            client.access_token = cfg.access_token
            try:
                who = await call_nio("whoami", client.whoami, self._retry)
            except ApiError as exc:
                raise MatrixStartError(f"The homeserver refused [matrix] access_token ({exc})"
                                       ) from None
            if not who.device_id:
                raise MatrixStartError("[matrix] access_token has no device (an appservice "
                                       "token?); use a password or a token from a login")
            session = Session(homeserver, str(who.user_id), str(who.device_id),
                              cfg.access_token)
            self._open_store(client, session.user_id, session.device_id, session.access_token)
        if session.user_id != cfg.user_id:
            raise MatrixStartError("The homeserver logged in another account than "
                                   "[matrix] user_id; check the configuration")
        save_session(root, session)
        log.info("matrix_logged_in new_device=true")
        return session

    def _new_client(self, homeserver: str, client_config: Any, store_path: str,
                    device_id: str | None) -> AsyncClient:
        client = AsyncClient(homeserver, self._config.user_id, device_id=device_id,
                             store_path=store_path, config=client_config)
        self._client = client
        return client

    @staticmethod
    def _open_store(client: AsyncClient, user_id: str, device_id: str, token: str) -> None:
        try:
            client.restore_login(user_id, device_id, token)  # opens nio's store
        except Exception as exc:  # vodozemac and peewee raise their own types
            raise MatrixStartError(
                f"nio's store could not be opened ({type(exc).__name__}); is [matrix] "
                "store_key (or store.key) the one it was created with?") from None
        if client.olm is None:
            raise MatrixStartError("matrix-nio has no end-to-end encryption support; install "
                                   "matrix-nio[e2e]")

    async def stop(self) -> None:
        """Stop syncing, let commands already received finish (bounded), close the client."""
        if self._client is None:
            return
        try:
            task, self._sync_task = self._sync_task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._lane_tasks:
                _, late = await asyncio.wait(set(self._lane_tasks), timeout=self._drain_timeout)
                for lane in late:
                    lane.cancel()
                if late:
                    log.warning("matrix_stop_cancelled rooms=%d", len(late))
                    await asyncio.gather(*late, return_exceptions=True)
            pending = list(self._typing.values()) + list(self._background)
            for other in pending:
                other.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._typing.clear()
        finally:
            await self._close()
            log.info("matrix stopped")

    async def _close(self) -> None:
        client, self._client = self._client, None
        self._http = self._reader = self._direct = None
        if client is None:
            return
        with contextlib.suppress(Exception):
            await client.close()
        store = getattr(client, "store", None)
        database = getattr(store, "database", None)
        if database is not None:
            with contextlib.suppress(Exception):
                database.close()

    # --- sync ----------------------------------------------------------------------------

    async def _initial_sync(self) -> None:
        """Load every room's full state; nothing in this sync is treated as a command."""
        client = self._require_client()
        # nio sends a full-state sync without any HTTP timeout; bound it here.
        resp = await call_nio("sync", lambda: asyncio.wait_for(client.sync(
            timeout=0, sync_filter=_sync_filter(_STATE_TIMELINE_LIMIT), full_state=True),
            INITIAL_SYNC_TIMEOUT), self._retry)
        await self._after_sync(resp, initial=True)

    async def _sync_loop(self) -> None:
        client = self._require_client()
        delay = self._retry.base_delay
        live_filter = _sync_filter(_LIVE_TIMELINE_LIMIT)
        while True:
            try:
                resp = await client.sync(timeout=self._poll_ms, sync_filter=live_filter)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network trouble: the loop is the bot's heartbeat
                log.warning("matrix_sync_failed reason=%s wait=%.1f", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(self._retry.max_delay * 4, delay * 2)
                continue
            if isinstance(resp, SyncError):
                code = resp.status_code or "M_UNKNOWN"
                if code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
                    log.error("matrix_sync_stopped reason=%s: the device was logged out; "
                              "delete session.json and restart to log in again", code)
                    return
                wait = max(delay, (resp.retry_after_ms or 0) / 1000)
                log.warning("matrix_sync_failed reason=%s wait=%.1f", code, wait)
                await asyncio.sleep(wait)
                delay = min(self._retry.max_delay * 4, delay * 2)
                continue
            delay = self._retry.base_delay
            try:
                await self._after_sync(resp, initial=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad sync must not end the loop
                log.error("matrix_sync_handling_failed type=%s", type(exc).__name__)

    async def _after_sync(self, resp: SyncResponse, *, initial: bool) -> None:
        await self._encryption_housekeeping()
        for event in resp.account_data_events:
            if (isinstance(event, UnknownAccountDataEvent) and event.type == "m.direct"
                    and self._direct is not None):
                self._direct.update(event.content)
        for room_id, info in resp.rooms.leave.items():
            self._left(room_id, info)
        for room_id, info in resp.rooms.invite.items():
            self._invited(room_id, info)
        for room_id, info in resp.rooms.join.items():
            self._joined(room_id, info, initial=initial)
        # Wake whoever waits for a room to appear (a new DM, a room just joined).
        self._tick.set()
        self._tick = asyncio.Event()

    async def _encryption_housekeeping(self) -> None:
        """What ``sync_forever`` does after each sync and a bare ``sync()`` does not."""
        client = self._require_client()
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("to_device", client.send_to_device_messages)]
        if client.should_upload_keys:
            steps.append(("keys_upload", client.keys_upload))
        if client.should_query_keys:
            steps.append(("keys_query", client.keys_query))
        if client.should_claim_keys:
            users = client.get_users_for_key_claiming()
            steps.append(("keys_claim", lambda: client.keys_claim(users)))
        for op, step in steps:
            try:
                await call_nio(op, step, self._retry)
            except MatrixError as exc:  # the next sync tries again
                log.warning("matrix_e2ee_step_failed op=%s reason=%s", op, exc)

    def _joined(self, room_id: str, info: Any, *, initial: bool) -> None:
        known = room_id in self._rooms
        state = self._rooms.setdefault(room_id, RoomState())
        for event in info.state:
            _apply_state(state, event)
        names: BotNames | None = None
        undecryptable: list[Any] = []
        for event in info.timeline.events:
            _apply_state(state, event)
            if isinstance(event, MegolmEvent):
                undecryptable.append(event)
                continue
            if initial:
                continue
            if names is None:
                names = self._names(room_id)
            command = self._command(room_id, event, names)
            if command is not None:
                self._enqueue(room_id, partial(self._run_command, command))
        if undecryptable and not initial:
            log.info("matrix_undecryptable_live count=%d chat=%s", len(undecryptable),
                     self._tag(room_id))
            self._request_keys(undecryptable)
        if info.timeline.limited and known and not initial:
            # Commands in the gap were never seen; rare with a 100-event timeline.
            log.info("matrix_timeline_gap chat=%s", self._tag(room_id))

    def _command(self, room_id: str, event: Any, names: BotNames) -> CommandReceived | None:
        source = getattr(event, "source", None)
        if not isinstance(source, Mapping) or source.get("type") != "m.room.message":
            return None
        sender, ts, event_id = source.get("sender"), source.get("origin_server_ts"), \
            source.get("event_id")
        content = source.get("content")
        if not (isinstance(sender, str) and isinstance(ts, int) and isinstance(event_id, str)
                and isinstance(content, Mapping)) or sender == names.user_id:
            return None
        direct = self._is_direct(room_id)
        parsed = parse(content, names, direct=direct)
        if parsed is None:
            return None
        if ts < self._started_ms - self._clock_skew * 1000:
            log.info("matrix_command_ignored reason=before_start chat=%s", self._tag(room_id))
            return None
        rel = relations(content)
        name, args = parsed
        return CommandReceived(
            chat=ChatRef(PLATFORM, room_id, is_group=not direct), message_id=event_id,
            sender=self._member(room_id, sender), name=name, args=args, timestamp=ts / 1000,
            thread_id=rel.thread_id, reply_to=rel.reply_to)

    def _invited(self, room_id: str, info: Any) -> None:
        if room_id in self._invites_seen:
            return
        me = self._require_client().user_id
        inviter: str | None = None
        is_direct = False
        for event in info.invite_state:
            # nio moves an invite member event's content out of ``source``: use its fields.
            if (isinstance(event, InviteMemberEvent) and event.state_key == me
                    and event.membership == "invite" and isinstance(event.sender, str)):
                inviter = event.sender
                content = event.content
                is_direct = isinstance(content, Mapping) and content.get("is_direct") is True
        if inviter is None:
            return
        self._invites_seen.add(room_id)
        self._enqueue(room_id, lambda: self._answer_invite(room_id, inviter, is_direct))

    def _left(self, room_id: str, info: Any) -> None:
        me = self._require_client().user_id
        reason = "left"
        for event in list(info.state) + list(info.timeline.events):
            source = getattr(event, "source", None)
            if (isinstance(source, Mapping) and source.get("type") == "m.room.member"
                    and source.get("state_key") == me):
                content = source.get("content")
                membership = content.get("membership") if isinstance(content, Mapping) else None
                if membership == "ban":
                    reason = "banned"
                elif membership == "leave":
                    reason = "left" if source.get("sender") == me else "kicked"
        was_joined = self._rooms.pop(room_id, None) is not None
        self._invites_seen.discard(room_id)
        self._core.chat_gone(ChatRef(PLATFORM, room_id))
        log.info("matrix_left reason=%s chat=%s", reason, self._tag(room_id))
        if was_joined or reason != "left":
            self._enqueue(room_id, lambda: self._forget(room_id))

    # --- lanes ---------------------------------------------------------------------------

    def _enqueue(self, room_id: str, job: Job) -> None:
        lane = self._lanes.get(room_id)
        if lane is not None:
            lane.append(job)
            return
        lane = self._lanes[room_id] = deque([job])
        task = asyncio.create_task(self._run_lane(room_id, lane), name="hushbrief-matrix-lane")
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _run_lane(self, room_id: str, lane: deque[Job]) -> None:
        try:
            while lane:
                job = lane.popleft()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the lane, and the bot, keep going
                    log.error("matrix_event_failed type=%s chat=%s", type(exc).__name__,
                              self._tag(room_id))
        finally:
            # No await between the emptiness check above and this: no job can slip in.
            if self._lanes.get(room_id) is lane:
                del self._lanes[room_id]

    # --- jobs ----------------------------------------------------------------------------

    async def _run_command(self, cmd: CommandReceived) -> None:
        try:
            outcomes = await self._core.handle(cmd, self)
            await self._deliver(self._adapt(cmd, outcomes), cmd)
        finally:
            self._handled += 1

    async def _answer_invite(self, room_id: str, inviter: str, is_direct: bool) -> None:
        client = self._require_client()
        if not inviter_allowed(inviter, self._config.allowed_inviters):
            log.info("matrix_invite_declined reason=inviter_not_allowed chat=%s",
                     self._tag(room_id))
            try:
                await call_nio("leave", lambda: client.room_leave(room_id), self._retry)
            except MatrixError as exc:
                log.warning("matrix_decline_failed reason=%s chat=%s", exc, self._tag(room_id))
            client.invited_rooms.pop(room_id, None)
            self._invites_seen.discard(room_id)
            return
        try:
            await call_nio("join", lambda: client.join(room_id), self._retry)
        except MatrixError as exc:
            log.warning("matrix_join_failed reason=%s chat=%s", exc, self._tag(room_id))
            self._invites_seen.discard(room_id)
            return
        log.info("matrix_joined direct=%s chat=%s", is_direct, self._tag(room_id))
        if is_direct:
            await self._require_direct().record(inviter, room_id)
        if not await self._wait_for(lambda: room_id in client.rooms and room_id in self._rooms):
            log.warning("matrix_room_not_synced chat=%s", self._tag(room_id))
            return
        direct = self._is_direct(room_id)
        await self._post(Reply(ChatRef(PLATFORM, room_id, is_group=not direct),
                               DM_HELLO if direct else HELLO))

    async def _forget(self, room_id: str) -> None:
        client = self._require_client()
        try:
            # Forgetting also drops the room from nio's store of encrypted rooms.
            await call_nio("forget", lambda: client.room_forget(room_id), self._retry)
        except MatrixError as exc:
            log.info("matrix_forget_failed reason=%s chat=%s", exc, self._tag(room_id))
        client.rooms.pop(room_id, None)

    # --- outcomes out --------------------------------------------------------------------

    def _adapt(self, cmd: CommandReceived, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Matrix wording: ``!`` commands in the bot's sentences, the help note, DM fallback."""
        adapted: list[Outcome] = []
        noted = False
        for outcome in outcomes:
            if outcome.kind is not ReplyKind.SUMMARY:
                outcome = replace(outcome, text=to_bang(outcome.text))
            if (isinstance(outcome, Reply) and cmd.name in ("help", "start") and not noted):
                outcome = replace(outcome, text=f"{outcome.text}\n{MATRIX_HELP_NOTE}")
                noted = True
            if isinstance(outcome, DirectMessage) and outcome.fallback is not None:
                outcome = replace(outcome, fallback=replace(outcome.fallback, text=DM_FAILED))
            adapted.append(outcome)
        return adapted

    async def _deliver(self, outcomes: Sequence[Outcome], cmd: CommandReceived) -> None:
        withheld: set[tuple[str, str | None]] = set()
        for outcome in outcomes:
            if isinstance(outcome, DirectMessage):
                if await self._send_direct(outcome) or outcome.fallback is None:
                    continue
                await self._post(outcome.fallback, mention=cmd.sender.user_id)
                # The core's "I sent you the summary privately" answers the same command.
                withheld.add((outcome.fallback.chat.chat_id, outcome.fallback.reply_to))
            elif (outcome.chat.chat_id, outcome.reply_to) in withheld:
                log.info("matrix_withheld reason=dm_failed chat=%s",
                         self._tag(outcome.chat.chat_id))
            else:
                mention = cmd.sender.user_id if outcome.reply_to == cmd.message_id else None
                await self._post(outcome, mention=mention)

    async def _post(self, reply: Reply, *, mention: str | None = None) -> bool:
        room_id = reply.chat.chat_id
        self._stop_typing(room_id)
        parts = render(reply.text, bold_first_line=reply.kind is ReplyKind.SUMMARY)
        for index, part in enumerate(parts):
            body = message_content(part)
            relates = _relates_to(reply.thread_id, reply.reply_to if index == 0 else None)
            if relates is not None:
                body["m.relates_to"] = relates
            # Intentional mentions: ping the member who asked, and nobody whose name
            # happens to appear in a summary.
            body["m.mentions"] = {"user_ids": [mention]} if mention and index == 0 else {}
            try:
                await self._send(room_id, body)
            except MatrixError as exc:
                gone = room_id not in self._rooms
                log.error("matrix_send_failed kind=%s reason=%s gone=%s chat=%s", reply.kind,
                          exc, gone, self._tag(room_id))
                if gone and reply.chat.is_group:
                    self._core.chat_gone(reply.chat)
                return False
        log.info("matrix_sent kind=%s parts=%d chat=%s", reply.kind, len(parts),
                 self._tag(room_id))
        return True

    async def _send(self, room_id: str, body: dict[str, Any]) -> None:
        client = self._require_client()
        if room_id not in client.rooms and not await self._wait_for(
                lambda: room_id in client.rooms):
            raise MatrixError("room_not_synced")
        # One transaction ID for every attempt: a send whose response was lost is
        # deduplicated by the homeserver instead of appearing twice.
        tx_id = str(uuid.uuid4())
        await call_nio("send", lambda: client.room_send(
            room_id, "m.room.message", body, tx_id=tx_id, ignore_unverified_devices=True),
            self._retry)

    async def _send_direct(self, dm: DirectMessage) -> bool:
        try:
            room_id = await self._require_direct().room_for(dm.user_id)
        except MatrixError as exc:
            log.info("matrix_dm_failed reason=%s", exc)
            return False
        return await self._post(Reply(ChatRef(PLATFORM, room_id, is_group=False), dm.text,
                                      kind=dm.kind))

    async def _own_display_name(self) -> str | None:
        client = self._require_client()
        try:
            resp = await call_nio("displayname", client.get_displayname, self._retry)
        except MatrixError:
            return None
        name = getattr(resp, "displayname", None)
        return name if isinstance(name, str) and name.strip() else None

    async def _wait_for(self, ready: Callable[[], bool]) -> bool:
        """Wait (up to ``room_wait``) until a sync has made ``ready()`` true."""
        deadline = time.monotonic() + self._room_wait
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0 or self._client is None:
                return ready()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), timeout=left)
        return True

    # --- what the core may ask -----------------------------------------------------------

    async def is_admin(self, chat: ChatRef, user_id: str) -> bool:
        """Power level at least min(state_default, power-levels level), or a v12 creator."""
        state = self._rooms.get(chat.chat_id)
        return state is not None and state.is_admin(user_id)

    async def fetch_history(
        self,
        chat: ChatRef,
        thread_id: str | None,
        *,
        limit: int,
        since: float | None,
        from_message: str | None,
    ) -> MatrixHistory:
        """The room's (or thread's) newest messages, decrypted in memory; see ``history``."""
        reader = self._reader
        if reader is None:
            raise MatrixError("stopped")
        room_id = chat.chat_id
        names = self._names(room_id)
        direct = self._is_direct(room_id)
        speakers: dict[str, Member] = {}

        def speaker(user_id: str) -> Member:
            member = speakers.get(user_id)
            if member is None:
                member = speakers[user_id] = self._member(room_id, user_id)
            return member

        def is_command(content: Mapping[str, Any]) -> bool:
            return parse(content, names, direct=direct) is not None

        history = await reader.read(
            chat, thread_id, bot_user_id=names.user_id, limit=limit, since=since,
            from_message=from_message, speaker=speaker, is_command=is_command)
        stats = history.stats
        log.info("matrix_history messages=%d undecryptable=%d events=%d pages=%d "
                 "fetch_ms=%.1f decrypt_ms=%.1f thread=%s chat=%s", len(history),
                 history.undecryptable, stats.events, stats.pages, stats.fetch_seconds * 1000,
                 stats.decrypt_seconds * 1000, thread_id is not None, self._tag(room_id))
        return history

    async def can_message_directly(self, user_id: str) -> bool:
        """Always: the bot can open an encrypted DM with any user it can invite."""
        return True

    async def show_working(self, chat: ChatRef, thread_id: str | None) -> None:
        """Show "typing…" in the room until the reply is posted, at most ``TYPING_MAX``."""
        room_id = chat.chat_id
        self._stop_typing(room_id)
        self._typing[room_id] = asyncio.create_task(self._keep_typing(room_id),
                                                    name="hushbrief-matrix-typing")

    async def _keep_typing(self, room_id: str) -> None:
        deadline = time.monotonic() + TYPING_MAX
        client = self._require_client()
        try:
            while time.monotonic() < deadline:
                try:
                    await client.room_typing(room_id, True, timeout=TYPING_MS)
                except Exception as exc:  # cosmetic: never retried, never fatal
                    log.info("matrix_typing_failed type=%s", type(exc).__name__)
                    return
                await asyncio.sleep(TYPING_REFRESH)
        finally:
            if self._typing.get(room_id) is asyncio.current_task():
                del self._typing[room_id]

    def _stop_typing(self, room_id: str) -> None:
        task = self._typing.pop(room_id, None)
        if task is None:
            return
        task.cancel()
        client = self._client
        if client is not None:
            self._spawn(client.room_typing(room_id, False), "typing_off")

    # --- helpers -------------------------------------------------------------------------

    def _request_keys(self, events: list[Any]) -> None:
        """Ask other devices for the room keys of events the bot could not decrypt.

        Usually nobody may answer (the bot was not in the room when those messages
        were sent), so requests are few: one per Megolm session, per process.
        """
        client = self._client
        if client is None:
            return
        asked = 0
        for event in events:
            session_id = getattr(event, "session_id", None)
            if not isinstance(session_id, str) or session_id in self._keys_requested:
                continue
            if asked >= KEY_REQUESTS_PER_FETCH:
                break
            self._keys_requested.append(session_id)
            asked += 1
            self._spawn(self._request_key(client, event), "key_request")
        if asked:
            log.info("matrix_key_requests sent=%d", asked)

    @staticmethod
    async def _request_key(client: AsyncClient, event: Any) -> None:
        with contextlib.suppress(LocalProtocolError):  # already asked in an earlier run
            await call_nio("key_request", lambda: client.request_room_key(event),
                           RetryPolicy(attempts=2))

    def _spawn(self, coro: Awaitable[Any], what: str) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("matrix_background_failed op=%s type=%s", what, type(exc).__name__)

        task = asyncio.create_task(run(), name=f"hushbrief-matrix-{what}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _names(self, room_id: str) -> BotNames:
        client = self._require_client()
        me = str(client.user_id)
        names = [self._display_name] if self._display_name else []
        room = client.rooms.get(room_id)
        user = room.users.get(me) if room is not None else None
        room_name = getattr(user, "display_name", None)
        if isinstance(room_name, str) and room_name:
            names.append(room_name)
        return BotNames(me, tuple(names))

    def _member(self, room_id: str, user_id: str) -> Member:
        handle = localpart(user_id)
        client = self._client
        room = client.rooms.get(room_id) if client is not None else None
        name = room.user_name(user_id) if room is not None else None
        return Member(user_id, name if isinstance(name, str) and name else handle, handle)

    def _is_direct(self, room_id: str) -> bool:
        return self._direct is not None and self._direct.is_direct(room_id)

    def _tag(self, room_id: str) -> str:
        return self._core.chat_tag(ChatRef(PLATFORM, room_id))

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise MatrixError("stopped")
        return self._client

    def _require_direct(self) -> DirectChats:
        if self._direct is None:
            raise MatrixError("stopped")
        return self._direct


def _apply_state(state: RoomState, event: Any) -> None:
    source = getattr(event, "source", None)
    if not isinstance(source, Mapping):
        return
    event_type, state_key = source.get("type"), source.get("state_key")
    sender, content = source.get("sender"), source.get("content")
    if (isinstance(event_type, str) and isinstance(state_key, str)
            and isinstance(content, Mapping)):
        state.apply(event_type, state_key, sender if isinstance(sender, str) else "", content)


def _relates_to(thread_id: str | None, reply_to: str | None) -> dict[str, Any] | None:
    """A reply to ``reply_to``, inside ``thread_id`` if given.

    In a thread, ``is_falling_back`` is False when the bot really answers a message
    (clients show the reply), True when ``m.in_reply_to`` is only there for clients
    without threads.
    """
    if thread_id is not None:
        return {"rel_type": "m.thread", "event_id": thread_id,
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or thread_id}}
    if reply_to is not None:
        return {"m.in_reply_to": {"event_id": reply_to}}
    return None
