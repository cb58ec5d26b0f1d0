"""Per-chat and per-member summary rate limits, in memory.

A sliding one-hour log of when summaries were granted. It lives in the
process, like the message window: with several bot replicas each enforces its
own share, which errs on the side of more summaries, never of leaking any.
Keys are whatever the caller passes; nothing here is ever written out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

WINDOW = 3600.0


class RateLimiter:
    def __init__(self, window: float = WINDOW) -> None:
        self._window = window
        self._log: dict[Hashable, deque[float]] = {}

    def _recent(self, key: Hashable, now: float) -> deque[float]:
        log = self._log.get(key)
        if log is None:
            return deque()
        while log and log[0] <= now - self._window:
            log.popleft()
        if not log:
            del self._log[key]
        return log

    def retry_after(self, key: Hashable, limit: int, now: float) -> float:
        """Seconds until ``key`` may act again under ``limit`` per window; 0 if it may now."""
        log = self._recent(key, now)
        if len(log) < limit:
            return 0.0
        # The oldest entries that keep the count at the limit must age out first.
        return log[len(log) - limit] + self._window - now

    def record(self, key: Hashable, now: float) -> None:
        self._log.setdefault(key, deque()).append(now)

    def sweep(self, now: float) -> None:
        """Forget keys with nothing in the window, so memory follows activity."""
        for key in list(self._log):
            self._recent(key, now)

    def __len__(self) -> int:
        return len(self._log)
