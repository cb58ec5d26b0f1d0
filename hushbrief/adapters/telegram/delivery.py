"""Bot API calls with bounded retries, and the adapter's small exception tree.

PTB raises its own exceptions for every failure; they are translated here, once,
into what the adapter must decide between:

* ``Unreachable`` (403 Forbidden): the bot was removed from the group, or the
  member never started or blocked the bot. Retrying cannot help; the caller
  forgets the chat or falls back to posting in the group.
* ``Rejected`` (400 Bad Request): Telegram refused the request as such.
* ``Migrated``: the group became a supergroup; send again to ``new_chat_id``.
* ``GaveUp``: flood control or the network outlasted the retry budget.

What is retried, and how long:

* 429 ``RetryAfter``: wait exactly what Telegram says (plus a little slack), at
  most ``max_flood_wait`` seconds per wait, at most ``attempts`` calls.
* ``TimedOut`` / ``NetworkError`` (connection reset, 502 from Telegram's front
  end): exponential backoff from ``base_delay``, capped at ``max_delay``.
  A send whose response was lost may arrive twice; for a chat bot a duplicate
  is better than a summary silently lost.

Nothing here logs content: only the operation, the reason and the wait.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

log = logging.getLogger("hushbrief.telegram")

T = TypeVar("T")


class DeliveryError(Exception):
    """A Bot API call did not succeed. The message is a reason code, never Telegram's text."""


class Unreachable(DeliveryError):
    """403: removed from the group, or the member has not started (or has blocked) the bot."""


class Rejected(DeliveryError):
    """400: Telegram refused the request itself; ``entities`` if it could not parse our HTML."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Migrated(DeliveryError):
    """The group was upgraded to a supergroup, which has a new chat ID."""

    def __init__(self, new_chat_id: int) -> None:
        super().__init__("migrated")
        self.new_chat_id = new_chat_id


class GaveUp(DeliveryError):
    """Flood control or network failures outlasted the retry budget."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    """Calls in total, the first included."""
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_flood_wait: float = 120.0
    """A longer RetryAfter is not waited for: the bot would look dead meanwhile."""
    flood_slack: float = 0.1


def retry_after_seconds(exc: RetryAfter) -> float:
    """``exc.retry_after`` in seconds, whichever type this PTB version returns."""
    with warnings.catch_warnings():
        # PTB 22 warns that the attribute will become a timedelta; both are handled.
        warnings.simplefilter("ignore")
        value = exc.retry_after
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


async def call(
    op: str,
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``fn`` (one Bot API call) until it succeeds or the policy says stop."""
    delay = policy.base_delay
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            return await fn()
        except RetryAfter as exc:
            wait = retry_after_seconds(exc) + policy.flood_slack
            if last or wait > policy.max_flood_wait:
                log.warning("telegram_gave_up op=%s reason=flood wait=%.1f attempt=%d",
                            op, wait, attempt)
                raise GaveUp("flood") from None
            log.info("telegram_retry op=%s reason=flood wait=%.1f attempt=%d", op, wait, attempt)
            await sleep(wait)
        except ChatMigrated as exc:
            raise Migrated(int(exc.new_chat_id)) from None
        except Forbidden:
            raise Unreachable("forbidden") from None
        except BadRequest as exc:  # a NetworkError subclass in PTB: must come first
            reason = "entities" if "parse entities" in exc.message.lower() else "bad_request"
            raise Rejected(reason) from None
        except NetworkError as exc:  # TimedOut included
            if last:
                log.warning("telegram_gave_up op=%s reason=%s attempt=%d", op,
                            type(exc).__name__, attempt)
                raise GaveUp("network") from None
            log.info("telegram_retry op=%s reason=%s wait=%.2f attempt=%d", op,
                     type(exc).__name__, delay, attempt)
            await sleep(delay)
            delay = min(policy.max_delay, delay * 2)
        except TelegramError as exc:  # InvalidToken, Conflict, EndPointNotFound, …
            log.warning("telegram_gave_up op=%s reason=%s attempt=%d", op,
                        type(exc).__name__, attempt)
            raise GaveUp(type(exc).__name__) from None
    raise AssertionError("unreachable: the last attempt returns or raises")
