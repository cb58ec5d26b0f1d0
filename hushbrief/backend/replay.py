"""Anti-replay for the gateway (RFC 9458 §6.5): a Date check and a register of ``enc``.

An attacker who captured an encapsulated request (the relay, or anyone on the
path) could send it again and have the chat summarized twice. RFC 9458 §6.5
leaves the defence to the gateway; this module implements the one it sketches:

* **Freshness** (§6.5.1): the *inner* request carries a ``Date`` header. The
  gateway accepts it only within ``window`` seconds of its own clock. A
  missing, unparseable or out-of-window Date is answered (inside the
  encapsulation) with a 400 of the ``date`` problem type and the gateway's own
  ``Date``, so an honest client with a wrong clock can correct it and retry.
* **Uniqueness**: within that time, every processed request's encapsulated
  key ``enc`` (fresh per request: HPKE's ephemeral public key) is remembered
  until the request's Date leaves the window, that is until ``Date + window``.
  A second request with the same ``enc`` is a replay.

Only requests that were decrypted *and* passed the Date check are remembered,
so nobody can fill the register with garbage, and "each ``enc`` is processed at
most once" holds exactly: a request refused for its Date was never processed,
so a later copy of it (when its Date has become current) is its first
processing, not a replay.

Memory is bounded (``capacity`` entries of 32-byte ``enc`` values and a float —
never request content). If the register is full of live entries, the oldest is
evicted and its Date becomes a *floor*: from then on, only Dates after the floor
are accepted. A replay of the evicted request (whose Date is at or below the
floor) is therefore still refused, at the price of asking clients whose Date
lags behind the newest eviction to retry — which only happens under a flood of
more than ``capacity`` requests per window.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

__all__ = ["DateCheck", "ReplayRegister", "http_date", "parse_http_date"]


def http_date(now: float) -> str:
    """``now`` as an IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return format_datetime(datetime.fromtimestamp(int(now), UTC), usegmt=True)


def parse_http_date(value: bytes) -> float | None:
    """The Unix time of an HTTP date, or None.

    IMF-fixdate and the obsolete RFC 850 form are read; asctime, which carries
    no zone, is refused along with anything else zone-less: RFC 9110 §5.6.7
    has senders use IMF-fixdate, and a freshness check must not guess.
    """
    try:
        text = value.decode("ascii")
        parsed = parsedate_to_datetime(text)
    except (UnicodeDecodeError, ValueError, TypeError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        # HTTP dates are always GMT; a date without a zone is not one.
        return None
    return parsed.timestamp()


class DateCheck:
    """The freshness rule: ``|Date − now| ≤ window`` and ``Date > floor``."""

    __slots__ = ("window",)

    def __init__(self, window: float) -> None:
        self.window = window

    def fresh(self, date: float | None, now: float, floor: float) -> bool:
        return date is not None and abs(date - now) <= self.window and date > floor


class ReplayRegister:
    """Recently processed ``enc`` values with their expiry; bounded, oldest evicted first."""

    __slots__ = ("_capacity", "_entries", "_floor", "window")

    def __init__(self, window: float, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.window = window
        self._capacity = capacity
        # enc -> (Date of the request, expiry). Insertion order is arrival
        # order, so expired entries are mostly found at the front.
        self._entries: OrderedDict[bytes, tuple[float, float]] = OrderedDict()
        self._floor = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ReplayRegister(entries={len(self._entries)}, capacity={self._capacity})"

    @property
    def floor(self) -> float:
        """Dates at or below this are refused: their requests may have been evicted."""
        return self._floor

    def seen(self, enc: bytes, now: float) -> bool:
        """True if ``enc`` was processed and its request could still pass the Date check."""
        entry = self._entries.get(enc)
        return entry is not None and entry[1] >= now

    def add(self, enc: bytes, date: float, now: float) -> bool:
        """Remember a processed request; False if ``enc`` is already live (a replay).

        Call this only after decryption and the Date check succeeded, and
        without awaiting in between: check and insert are then one atomic step
        on the event loop, so two copies racing each other cannot both pass.
        """
        self.expire(now)
        if enc in self._entries:
            return False
        while len(self._entries) >= self._capacity:
            _, (evicted_date, _expiry) = self._entries.popitem(last=False)
            self._floor = max(self._floor, evicted_date)
        self._entries[enc] = (date, date + self.window)
        return True

    def expire(self, now: float) -> None:
        """Drop entries whose requests can no longer pass the Date check."""
        entries = self._entries
        while entries:
            enc, (_date, expiry) = next(iter(entries.items()))
            if expiry >= now:
                break
            del entries[enc]
        # Arrival order is not quite expiry order (Dates differ by up to the
        # window), so an expired straggler may wait behind a live entry. It
        # costs a slot at most: evicting it raises the floor only to a Date
        # that is already outside the window.
