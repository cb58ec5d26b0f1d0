"""The gateway's HPKE keys: made in memory at start, rotated, never written anywhere.

DESIGN.md §5: the backend generates its key inside the TEE at start-up, and
the evidence bundle binds exactly the key configurations it publishes. So the
private key exists only in this process's memory: it is derived from
``os.urandom`` (RFC 9180 §7.1.3 ``DeriveKeyPair``), held by a :class:`KeyRing`
that refuses to be pickled and whose ``repr`` shows key identifiers only, and
dropped when it retires. (Python cannot zero memory it has let go of; dropping
every reference is the most it can do, and the TEE's memory encryption covers
the rest.)

Rotation. ``rotate()`` (or the clock, every ``rotate_every`` seconds) makes a
new key with the next free key identifier (mod 256, skipping identifiers still
in use, RFC 9458 §3.1). The previous key stays *accepted* for ``key_grace``
seconds, so that clients holding the old configuration — and an evidence
bundle that has not yet expired — keep working; then it is dropped.

Advertisement. ``GET /.well-known/ohttp-gateway`` lists only the *current*
key, also during a grace period. RFC 9458 clients use the first configuration
they support, so listing the previous key would be dead weight at best, and at
worst a client that prefers its cached key would keep using a key that is
about to go; and the bundle then binds exactly one key, the one new requests
should use. The previous key is accepted, not offered.

The first identifier is random rather than 0: after a restart (new key, same
identifier), a client with a stale configuration would fail to decrypt
(an opaque 400) instead of getting the ``ohttp-key`` problem that tells it to
refetch; a random start makes that collision unlikely.

Time comes from an injectable ``clock`` so tests can move it; the checks are
made lazily on every use as well as by the application's background task, so
a key never serves past its time even if the task is late.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from hushbrief.ohttp.encapsulation import Gateway
from hushbrief.ohttp.keyconfig import (
    DEFAULT_SUITES,
    KemId,
    KeyConfig,
    ServerKey,
    SymmetricSuite,
    encode_key_configs,
    generate_server_key,
)

__all__ = ["KeyRing"]

Clock = Callable[[], float]
Entropy = Callable[[int], bytes]

_IKM_BYTES = 32
"""Input keying material per key: RFC 9180 asks for at least Nsk (32 for X25519) bytes."""


@dataclass(slots=True)
class _Retired:
    key: ServerKey
    until: float
    """The clock time after which the key is no longer accepted."""


class KeyRing:
    """The current gateway key and the retired ones still in their grace period."""

    __slots__ = (
        "_accepted_ids", "_current", "_current_since", "_entropy", "_gateway",
        "_kem", "_lock", "_retired", "_suites", "clock", "key_grace", "rotate_every",
    )

    def __init__(
        self,
        *,
        key_grace: float,
        rotate_every: float = 0.0,
        clock: Clock = time.time,
        entropy: Entropy = os.urandom,
        kem: KemId = KemId.X25519_SHA256,
        suites: Sequence[SymmetricSuite] = DEFAULT_SUITES,
    ) -> None:
        if key_grace < 0 or rotate_every < 0:
            raise ValueError("key_grace and rotate_every must not be negative")
        self.key_grace = float(key_grace)
        self.rotate_every = float(rotate_every)
        self.clock = clock
        self._entropy = entropy
        self._kem = kem
        self._suites = tuple(suites)
        self._lock = threading.Lock()
        self._retired: list[_Retired] = []
        self._current = self._new_key(entropy(1)[0])
        self._current_since = clock()
        self._gateway: Gateway | None = None
        self._accepted_ids: tuple[int, ...] = ()

    # A key ring never leaves the process: no pickling, no copying, no secrets in repr.
    def __reduce__(self) -> NoReturn:
        raise TypeError("KeyRing holds private keys and cannot be pickled or copied")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("KeyRing holds private keys and cannot be pickled or copied")

    def __repr__(self) -> str:
        retired = [r.key.config.key_id for r in self._retired]
        return f"KeyRing(current={self._current.config.key_id}, retired={retired})"

    def _new_key(self, key_id: int) -> ServerKey:
        return generate_server_key(key_id, ikm=self._entropy(_IKM_BYTES), kem=self._kem,
                                   suites=self._suites)

    # --- time-driven upkeep ---

    def next_rotation(self) -> float | None:
        """When the current key is due to be replaced, or None if rotation is off."""
        if not self.rotate_every:
            return None
        return self._current_since + self.rotate_every

    def maintain(self) -> float | None:
        """Rotate if due and drop keys whose grace ended.

        Returns the seconds until the next such event (None: nothing scheduled),
        for the background task to sleep on.
        """
        with self._lock:
            now = self.clock()
            due = self.next_rotation()
            if due is not None and now >= due:
                self._rotate_locked(now)
            self._retired = [r for r in self._retired if r.until > now]
            events = [r.until for r in self._retired]
            if (due := self.next_rotation()) is not None:
                events.append(due)
        return max(0.0, min(events) - now) if events else None

    def rotate(self) -> KeyConfig:
        """Replace the current key now; the old one is accepted for ``key_grace``."""
        with self._lock:
            self._rotate_locked(self.clock())
            return self._current.config

    def _rotate_locked(self, now: float) -> None:
        self._retired = [r for r in self._retired if r.until > now]
        if self.key_grace > 0:
            self._retired.append(_Retired(self._current, now + self.key_grace))
        used = {r.key.config.key_id for r in self._retired}
        used.add(self._current.config.key_id)
        if len(used) >= 256:
            # Only with a grace far longer than the rotation period: the oldest
            # retired key goes early rather than two keys sharing an identifier.
            oldest = self._retired.pop(0)
            used.discard(oldest.key.config.key_id)
        key_id = self._current.config.key_id
        for _ in range(256):
            key_id = (key_id + 1) % 256
            if key_id not in used:
                break
        self._current = self._new_key(key_id)
        self._current_since = now

    # --- what the gateway uses ---

    @property
    def current(self) -> KeyConfig:
        self.maintain()
        return self._current.config

    def accepted_ids(self) -> tuple[int, ...]:
        """Key identifiers a request may use now: the current one first."""
        self.maintain()
        with self._lock:
            return (self._current.config.key_id,
                    *(r.key.config.key_id for r in reversed(self._retired)))

    def key_configs(self) -> bytes:
        """The ``application/ohttp-keys`` body to advertise: the current key only."""
        return encode_key_configs([self.current])

    def valid_until(self) -> float:
        """How long a client may use the advertised key: rotation plus grace, or forever."""
        due = self.next_rotation()
        return math.inf if due is None else due + self.key_grace

    def gateway(self) -> Gateway:
        """An OHTTP gateway over the accepted keys (rebuilt when they change)."""
        self.maintain()
        with self._lock:
            keys = [self._current, *(r.key for r in reversed(self._retired))]
            ids = tuple(k.config.key_id for k in keys)
            if self._gateway is None or ids != self._accepted_ids:
                # The old Gateway held the dropped keys: replacing it drops
                # the last reference to their private bytes.
                self._gateway = Gateway(keys)
                self._accepted_ids = ids
            return self._gateway
