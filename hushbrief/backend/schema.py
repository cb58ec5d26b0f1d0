"""The summarize API's JSON, version 1: strict parsing in, plain encoding out.

Request (the body of the inner ``POST /v1/summarize``)::

    {"version": 1,
     "messages": [{"speaker": "P1", "text": "…", "t": 0, "reply_to": null}, …],
     "options": {"engine": "extractive", "max_words": 120,
                 "language": "auto", "style": "bullets"}}

Response::

    {"version": 1, "summary": "…", "engine": "extractive", "measurement": "<hex>"}

Validation is strict because the backend is the last line of defence for
DESIGN.md invariant 4: a speaker that is not a pseudonym (``P1`` … ``P99999``)
is refused, so a buggy client cannot leak a display name or a user ID through
it. Unknown keys are refused too (a new field must come with a new version, not
slip through unread). ``options`` and each of its keys may be left out and then
take the defaults shown above (``engine``: the backend's configured default).

Every refusal is an :class:`~hushbrief.backend.errors.InvalidRequest` whose
message names the field (and the message's index) but never its content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from hushbrief.backend.errors import BadRequest, InvalidRequest
from hushbrief.engines.base import Style, SummaryOptions, Turn

__all__ = [
    "MAX_TEXT_CHARS",
    "VERSION",
    "SummarizeRequest",
    "encode_response",
    "parse_request",
]

VERSION = 1
MAX_TEXT_CHARS = 16_000
"""One message's text; more than Telegram (4096) or a long Matrix message carries."""
MAX_WORDS = (1, 5000)
MAX_T = 10 * 365 * 86_400.0
"""Ten years of seconds: a relative time beyond this is a bug, not a chat."""

_SPEAKER = re.compile(r"P[0-9]{1,5}")
_LANGUAGE = re.compile(r"auto|[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}")
_TOP_KEYS = frozenset({"version", "messages", "options"})
_MESSAGE_KEYS = frozenset({"speaker", "text", "t", "reply_to"})
_OPTION_KEYS = frozenset({"engine", "max_words", "language", "style"})


@dataclass(frozen=True, slots=True)
class SummarizeRequest:
    turns: tuple[Turn, ...]
    options: SummaryOptions
    engine: str


def parse_request(
    body: bytes, *, max_messages: int, engines: Sequence[str], default_engine: str
) -> SummarizeRequest:
    """Parse and validate a version-1 request body.

    Raises :class:`BadRequest` if the body is not UTF-8 JSON, and
    :class:`InvalidRequest` for any schema violation, including an ``engine``
    that is not among ``engines``.
    """
    try:
        # orjson: several times faster than json on a 10,000-message thread, strict
        # UTF-8, and it refuses NaN and Infinity, which are not JSON.
        doc = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError):
        # json's messages carry only positions, but none of it is useful to the
        # client beyond "not JSON", and none of it is logged.
        raise BadRequest("The request body is not UTF-8 JSON.") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("The request must be a JSON object.")
    _no_unknown_keys(doc, _TOP_KEYS, "the request")
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise InvalidRequest(f"version must be {VERSION}.")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array.")
    if len(messages) > max_messages:
        raise InvalidRequest(f"messages may hold at most {max_messages} items.")
    turns = tuple(_turn(i, m) for i, m in enumerate(messages))
    options, engine = _options(doc.get("options", {}), engines, default_engine)
    return SummarizeRequest(turns=turns, options=options, engine=engine)


def encode_response(summary: str, engine: str, measurement: str) -> bytes:
    doc = {"version": VERSION, "summary": summary, "engine": engine,
           "measurement": measurement}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_error(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode("utf-8")


# --- pieces ---------------------------------------------------------------------------




def _no_unknown_keys(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        # Key names are the client's schema, not chat content, but an unknown
        # key could be anything: say how many, not which.
        raise InvalidRequest(f"{where} has {len(unknown)} unknown key(s); "
                             f"allowed: {', '.join(sorted(allowed))}.")


def _turn(i: int, m: Any) -> Turn:
    # One call per message of a thread of up to 10,000: the checks stay inline and
    # the error text is only built when there is an error.
    if not isinstance(m, dict):
        raise InvalidRequest(f"messages[{i}] must be an object.")
    if not m.keys() <= _MESSAGE_KEYS:
        _no_unknown_keys(m, _MESSAGE_KEYS, f"messages[{i}]")
    speaker = m.get("speaker")
    if not isinstance(speaker, str) or _SPEAKER.fullmatch(speaker) is None:
        raise InvalidRequest(f"messages[{i}].speaker must be a pseudonym from P0 to P99999.")
    text = m.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"messages[{i}].text must be a string.")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"messages[{i}].text is longer than {MAX_TEXT_CHARS} characters.")
    t = m.get("t", 0)
    if type(t) is not float and (isinstance(t, bool) or not isinstance(t, int)):
        raise InvalidRequest(f"messages[{i}].t must be a number of seconds from 0 to "
                             f"{MAX_T:.0f}.")
    if not 0 <= t <= MAX_T:  # also false for NaN
        raise InvalidRequest(f"messages[{i}].t must be a number of seconds from 0 to "
                             f"{MAX_T:.0f}.")
    reply_to = m.get("reply_to")
    if reply_to is not None and (
        type(reply_to) is not int or not 0 <= reply_to < i
    ):
        raise InvalidRequest(f"messages[{i}].reply_to must be null or the index of an "
                             "earlier message.")
    return Turn(speaker=speaker, text=text, t=float(t), reply_to=reply_to)


def _options(
    raw: Any, engines: Sequence[str], default_engine: str
) -> tuple[SummaryOptions, str]:
    if not isinstance(raw, dict):
        raise InvalidRequest("options must be an object.")
    _no_unknown_keys(raw, _OPTION_KEYS, "options")
    engine = raw.get("engine", default_engine)
    if not isinstance(engine, str) or engine not in engines:
        raise InvalidRequest("options.engine must be one of: " + ", ".join(engines) + ".")
    max_words = raw.get("max_words", 120)
    low, high = MAX_WORDS
    if isinstance(max_words, bool) or not isinstance(max_words, int) or not (
        low <= max_words <= high
    ):
        raise InvalidRequest(f"options.max_words must be a whole number from {low} to {high}.")
    language = raw.get("language", "auto")
    if not isinstance(language, str) or _LANGUAGE.fullmatch(language) is None:
        raise InvalidRequest('options.language must be "auto" or a language tag such as "de".')
    style = raw.get("style", Style.BULLETS.value)
    if not isinstance(style, str) or style not in {s.value for s in Style}:
        raise InvalidRequest(
            "options.style must be one of: " + ", ".join(s.value for s in Style) + ".")
    return SummaryOptions(max_words=max_words, language=language, style=Style(style)), engine
