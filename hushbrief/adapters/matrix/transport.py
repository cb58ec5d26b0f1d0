"""Homeserver calls with bounded retries, and the translation of their failures.

Two kinds of calls go through here:

* ``Transport.request``: client-server API requests the adapter makes itself
  (``/messages`` and ``/relations`` pagination, single events, ``m.direct``
  account data). They go over nio's own aiohttp session (``AsyncClient.send``,
  which does not feed the response to nio's state machine), with the access
  token in the ``Authorization`` header, never in a URL that could be logged.
  The adapter parses and decrypts what comes back itself, so fetching and
  decrypting can be timed and accounted for separately.
* ``call_nio``: nio's high-level methods (``room_send``, ``join``,
  ``room_create``, …), whose expected failures come back as values
  (``RoomSendError`` …) and whose network failures come up as exceptions.

What is retried, and how long:

* ``M_LIMIT_EXCEEDED`` / HTTP 429: wait what the server says (``retry_after_ms``
  or ``Retry-After``, plus a little slack), at most ``max_rate_wait`` seconds per
  wait, at most ``attempts`` calls. A longer wait is not attempted: the bot would
  look dead meanwhile, and the user is better served by "try again later".
* Connection errors, timeouts and 502/503/504: exponential backoff from
  ``base_delay`` capped at ``max_delay`` — only for idempotent calls (GET, PUT
  with a transaction ID, joining). A POST that creates something (a room) is not
  repeated after a lost response, since the first one may have succeeded.

nio retries inside its own calls too (``AsyncClientConfig.max_limit_exceeded``,
``max_timeouts``); the adapter bounds those counts, so the product of both
layers stays small. Nothing here logs content: the operation, a reason code,
the wait and the attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from nio import AsyncClient, ErrorResponse
from nio.exceptions import LocalProtocolError, SendRetryError

from hushbrief.adapters.matrix.errors import ApiError, GaveUp, MatrixError

log = logging.getLogger("hushbrief.matrix")

Sleep = Callable[[float], Awaitable[None]]

_TRANSIENT_STATUS = frozenset({502, 503, 504})
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    """Calls in total, the first included."""
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_rate_wait: float = 30.0
    """A longer ``retry_after_ms`` is not waited for."""
    rate_slack: float = 0.05


def api_path(version: str, *segments: str, query: Mapping[str, str | int] | None = None) -> str:
    """``/_matrix/client/<version>/<segments…>?<query>``, each segment percent-encoded.

    Room and event IDs contain ``!``, ``$``, ``:`` and (in old room versions) ``/``,
    so every segment is quoted with no safe characters.
    """
    path = f"/_matrix/client/{version}/" + "/".join(quote(s, safe="") for s in segments)
    if query:
        path += "?" + urlencode({k: str(v) for k, v in query.items()})
    return path


class Transport:
    """Raw client-server requests over nio's session, with ``RetryPolicy`` applied."""

    def __init__(self, client: AsyncClient, policy: RetryPolicy, *,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._client = client
        self._policy = policy
        self._sleep = sleep

    async def request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request until it succeeds or the policy says stop; the JSON body back.

        Raises ``ApiError`` (the server refused), ``GaveUp`` (rate limits or the network
        outlasted the retries).
        """
        policy = self._policy
        delay = policy.base_delay
        data = json.dumps(body, separators=(",", ":")) if body is not None else None
        for attempt in range(1, policy.attempts + 1):
            last = attempt == policy.attempts
            headers = {"Content-Type": "application/json"}
            if self._client.access_token:
                headers["Authorization"] = f"Bearer {self._client.access_token}"
            try:
                resp = await self._client.send(method, path, data, headers, timeout=timeout)
                try:
                    raw = await resp.read()
                    status = int(resp.status)
                    retry_header = resp.headers.get("Retry-After")
                finally:
                    resp.release()
            except _NETWORK_ERRORS as exc:
                if last or not idempotent:
                    log.warning("matrix_gave_up op=%s reason=%s attempt=%d", op,
                                type(exc).__name__, attempt)
                    raise GaveUp("network") from None
                log.info("matrix_retry op=%s reason=%s wait=%.2f attempt=%d", op,
                         type(exc).__name__, delay, attempt)
                await self._sleep(delay)
                delay = min(policy.max_delay, delay * 2)
                continue
            parsed = _json_object(raw)
            if status == 200:
                return parsed
            errcode = parsed.get("errcode")
            errcode = errcode if isinstance(errcode, str) else f"HTTP_{status}"
            if status == 429 or errcode == "M_LIMIT_EXCEEDED":
                wait = _retry_after(parsed, retry_header) + policy.rate_slack
                if last or wait > policy.max_rate_wait:
                    log.warning("matrix_gave_up op=%s reason=rate_limited wait=%.1f attempt=%d",
                                op, wait, attempt)
                    raise GaveUp("rate_limited")
                log.info("matrix_retry op=%s reason=rate_limited wait=%.2f attempt=%d", op,
                         wait, attempt)
                await self._sleep(wait)
                continue
            if status in _TRANSIENT_STATUS and idempotent and not last:
                log.info("matrix_retry op=%s reason=http_%d wait=%.2f attempt=%d", op, status,
                         delay, attempt)
                await self._sleep(delay)
                delay = min(policy.max_delay, delay * 2)
                continue
            raise ApiError(errcode, status)
        raise AssertionError("unreachable: the last attempt returns or raises")


async def call_nio(
    op: str,
    fn: Callable[[], Awaitable[Any]],
    policy: RetryPolicy,
    *,
    idempotent: bool = True,
    sleep: Sleep = asyncio.sleep,
) -> Any:
    """Run one nio call (which retried on its own, boundedly) and translate what it returns.

    An ``ErrorResponse`` becomes ``ApiError(errcode)``; a rate limit or a network
    failure that outlasted nio's own retries is retried here within ``policy``.
    nio's local refusals (``LocalProtocolError``: an unknown room, a missing login;
    ``SendRetryError``: members could not be synced for encryption) become
    ``MatrixError`` with the exception's type name.
    """
    delay = policy.base_delay
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            resp = await fn()
        except _NETWORK_ERRORS as exc:
            if last or not idempotent:
                log.warning("matrix_gave_up op=%s reason=%s attempt=%d", op,
                            type(exc).__name__, attempt)
                raise GaveUp("network") from None
            log.info("matrix_retry op=%s reason=%s wait=%.2f attempt=%d", op,
                     type(exc).__name__, delay, attempt)
            await sleep(delay)
            delay = min(policy.max_delay, delay * 2)
            continue
        except (LocalProtocolError, SendRetryError) as exc:
            raise MatrixError(type(exc).__name__) from None
        if not isinstance(resp, ErrorResponse):
            return resp
        errcode = resp.status_code if isinstance(resp.status_code, str) else "M_UNKNOWN"
        if errcode == "M_LIMIT_EXCEEDED" or _http_status(resp) == 429:
            wait = (resp.retry_after_ms or 1000) / 1000 + policy.rate_slack
            if last or wait > policy.max_rate_wait:
                log.warning("matrix_gave_up op=%s reason=rate_limited wait=%.1f attempt=%d",
                            op, wait, attempt)
                raise GaveUp("rate_limited")
            log.info("matrix_retry op=%s reason=rate_limited wait=%.2f attempt=%d", op, wait,
                     attempt)
            await sleep(wait)
            continue
        raise ApiError(errcode, _http_status(resp))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _retry_after(body: Mapping[str, Any], header: str | None) -> float:
    ms = body.get("retry_after_ms")
    if isinstance(ms, int | float) and not isinstance(ms, bool) and ms >= 0:
        return float(ms) / 1000
    if header is not None and header.strip().isdigit():
        return float(header.strip())
    return 1.0


def _http_status(resp: Any) -> int | None:
    transport = getattr(resp, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None
