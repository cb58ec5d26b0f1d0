"""Chat policy: what a chat's admins allow, and how to read and write it.

A chat's effective policy is the operator's defaults (``[policy_defaults]`` and
``[processing] mode`` in the configuration) overlaid with whatever the chat's
admins changed with ``/policy <key> <value>``. Only the changed keys are stored,
so a chat that never touched a key follows the operator's default when it
changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any


class Who(StrEnum):
    """Who may ask for a summary (always among opted-in members)."""

    MEMBERS = "members"
    ADMINS = "admins"


class ConsentMode(StrEnum):
    SKIP = "skip"
    """Leave out the messages of members who have not opted in."""
    REQUIRE_ALL = "require-all"
    """Refuse the summary unless every speaker in the selection opted in."""


class Delivery(StrEnum):
    CHAT = "chat"
    PRIVATE = "private"


class Processing(StrEnum):
    PRIVATE = "private"
    """Through the OHTTP relay to the attested backend."""
    LOCAL = "local"
    """In the bot's own process; nothing leaves the bot's host."""


@dataclass(frozen=True, slots=True)
class Policy:
    summaries: bool = True
    who: Who = Who.MEMBERS
    consent: ConsentMode = ConsentMode.SKIP
    delivery: Delivery = Delivery.CHAT
    processing: Processing = Processing.LOCAL
    max_messages: int = 500
    """The most messages one summary may cover."""
    max_span: int = 24 * 3600
    """The longest time span (seconds) one summary may cover."""
    buffer_messages: int = 1000
    """How many messages per thread the in-memory window keeps (platforms without history)."""
    buffer_ttl: int = 24 * 3600
    """How long (seconds) a buffered message lives in memory."""
    chat_rate: int = 20
    """Summaries per hour in one chat."""
    member_rate: int = 5
    """Summaries per hour one member may ask for in one chat."""
    redact: bool = False
    """Replace e-mail addresses, phone numbers and links before processing."""
    length: int = 120
    """Target summary length in words."""

    def with_overrides(self, overrides: Mapping[str, Any]) -> Policy:
        """Return this policy with stored overrides applied; unknown keys are ignored."""
        known = {k: v for k, v in overrides.items() if k in POLICY_KEYS and v is not None}
        return replace(self, **{k: POLICY_KEYS[k].coerce(v) for k, v in known.items()})


class PolicyValueError(ValueError):
    """A value given for a policy key is not acceptable; the message is for the user."""


@dataclass(frozen=True, slots=True)
class PolicyKey:
    name: str
    help: str
    parse: Callable[[str], Any]
    """Parses what an admin typed; raises PolicyValueError with a user-facing sentence."""
    render: Callable[[Any], str]
    coerce: Callable[[Any], Any]
    """Turns a stored or configured value into the field's type."""
    admin_hint: str


_BOOL_WORDS = {"on": True, "yes": True, "true": True, "1": True,
               "off": False, "no": False, "false": False, "0": False}


def _parse_bool(name: str) -> Callable[[str], bool]:
    def parse(raw: str) -> bool:
        try:
            return _BOOL_WORDS[raw.lower()]
        except KeyError:
            raise PolicyValueError(f"{name} takes on or off.") from None
    return parse


def _parse_enum(name: str, enum: type[StrEnum]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return enum(raw.lower())
        except ValueError:
            choices = " or ".join(m.value for m in enum)
            raise PolicyValueError(f"{name} takes {choices}.") from None
    return parse


def _parse_int(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise PolicyValueError(f"{name} takes a whole number from {low} to {high}.")
        return int(raw)
    return parse


_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> int | None:
    """``90m`` → 5400; ``3h`` → 10800; ``2d`` → 172800. None if it is not a duration."""
    m = _DURATION.match(raw.strip().lower())
    if m is None:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _parse_span(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        seconds = parse_duration(raw)
        if seconds is None or not low <= seconds <= high:
            raise PolicyValueError(
                f"{name} takes a duration from {format_duration(low)} to "
                f"{format_duration(high)}, such as 6h or 2d."
            )
        return seconds
    return parse


def _on_off(value: Any) -> str:
    return "on" if value else "off"


def _str(value: Any) -> str:
    return str(value)


def _enum_coerce(enum: type[StrEnum]) -> Callable[[Any], Any]:
    return lambda v: enum(v)


# The limits below bound what an admin may set; the operator's own caps (memory)
# are enforced separately by the message window.
MAX_MESSAGES_CAP = 10_000
MAX_SPAN_CAP = 30 * 86400
BUFFER_MESSAGES_CAP = 10_000
BUFFER_TTL_CAP = 7 * 86400


def _keys() -> dict[str, PolicyKey]:
    ks = [
        PolicyKey("summaries", "whether anyone may ask for summaries in this chat",
                  _parse_bool("summaries"), _on_off, bool, "on|off"),
        PolicyKey("who", "who may ask for a summary: any opted-in member, or only admins",
                  _parse_enum("who", Who), _str, _enum_coerce(Who), "members|admins"),
        PolicyKey("consent", "skip: leave out members who have not opted in; "
                  "require-all: refuse unless every speaker opted in",
                  _parse_enum("consent", ConsentMode), _str, _enum_coerce(ConsentMode),
                  "skip|require-all"),
        PolicyKey("delivery", "post summaries in the chat, or send them by direct message",
                  _parse_enum("delivery", Delivery), _str, _enum_coerce(Delivery),
                  "chat|private"),
        PolicyKey("processing", "private: through the relay to the attested backend; "
                  "local: on this bot's host",
                  _parse_enum("processing", Processing), _str, _enum_coerce(Processing),
                  "private|local"),
        PolicyKey("max_messages", "the most messages one summary covers",
                  _parse_int("max_messages", 1, MAX_MESSAGES_CAP), _str, int,
                  f"1-{MAX_MESSAGES_CAP}"),
        PolicyKey("max_span", "the longest time span one summary covers",
                  _parse_span("max_span", 60, MAX_SPAN_CAP), format_duration, int,
                  "1m-30d"),
        PolicyKey("buffer_messages", "messages per thread kept in memory "
                  "(platforms that cannot fetch history)",
                  _parse_int("buffer_messages", 10, BUFFER_MESSAGES_CAP), _str, int,
                  f"10-{BUFFER_MESSAGES_CAP}"),
        PolicyKey("buffer_ttl", "how long a message stays in memory",
                  _parse_span("buffer_ttl", 60, BUFFER_TTL_CAP), format_duration, int,
                  "1m-7d"),
        PolicyKey("chat_rate", "summaries per hour in this chat",
                  _parse_int("chat_rate", 1, 1000), _str, int, "1-1000"),
        PolicyKey("member_rate", "summaries per hour for each member",
                  _parse_int("member_rate", 1, 1000), _str, int, "1-1000"),
        PolicyKey("redact", "replace e-mail addresses, phone numbers and links before processing",
                  _parse_bool("redact"), _on_off, bool, "on|off"),
        PolicyKey("length", "target length of a summary in words",
                  _parse_int("length", 20, 1000), _str, int, "20-1000"),
    ]
    return {k.name: k for k in ks}


POLICY_KEYS: dict[str, PolicyKey] = _keys()
assert set(POLICY_KEYS) == {f.name for f in fields(Policy)}, "every Policy field needs a key"


def parse_policy_value(key: str, raw: str) -> tuple[str, Any]:
    """Parse ``/policy <key> <value>``; raises PolicyValueError with a user-facing sentence."""
    spec = POLICY_KEYS.get(key.lower().replace("-", "_"))
    if spec is None:
        raise PolicyValueError(
            f"There is no policy key {key!r}; send /policy to see the keys."
        )
    return spec.name, spec.parse(raw)


def render_policy(policy: Policy) -> list[tuple[str, str, str]]:
    """(key, current value, what it means) for every key, in a stable order."""
    return [(k.name, k.render(getattr(policy, k.name)), k.help) for k in POLICY_KEYS.values()]


def policy_to_storage(value: Any) -> Any:
    """The value as stored: enums become their string, the rest stays."""
    return value.value if isinstance(value, StrEnum) else value
