"""The backend's settings: the ``[backend]`` section of the shared TOML file.

One configuration file serves every Hushbrief process (see
:mod:`hushbrief.tomlconfig`); the backend validates ``[backend]`` and leaves every
other section to its owner. ``HUSHBRIEF_BACKEND_<KEY>`` environment variables
override the file, which is the intended way to pass ``openai_api_key``.

Durations (``replay_window``, ``rotate_every``, ``key_grace``, ``bundle_ttl``,
``openai_timeout``, ``openai_total_timeout``) are seconds, or strings such as
``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hushbrief.tomlconfig import (
    Check,
    ConfigError,
    choice,
    integer,
    load_sections,
    read_toml,
    string,
    url,
)

__all__ = [
    "ENGINES",
    "BackendSettings",
    "ConfigError",
    "known_keys",
    "load_backend_settings",
    "parse_duration",
    "parse_rotate_every",
]

SECTION = "backend"
ENGINES = ("extractive", "openai")

_DURATION = re.compile(r"^(\d{1,9})\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str | int) -> int:
    """``90`` or ``"90s"`` → 90; ``"15m"`` → 900; ``"6h"`` → 21600; ``"1d"`` → 86400.

    Raises ValueError for anything else (also for booleans and negative numbers).
    """
    if isinstance(raw, bool):
        raise ValueError("a duration")
    if isinstance(raw, int):
        if raw < 0:
            raise ValueError("a duration")
        return raw
    m = _DURATION.match(raw.strip().lower())
    if m is None:
        raise ValueError("a duration")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def duration(low: int, high: int, *, zero: bool = False) -> Check:
    """A tomlconfig check for a duration from ``low`` to ``high`` seconds (or 0 if ``zero``)."""
    shown = f'seconds, or a duration such as "90s", "15m" or "6h", from {low} to {high} s'
    expected = ("0 (never), or " if zero else "") + shown

    def check(v: Any) -> int:
        if not isinstance(v, int | str):
            raise ValueError(expected)
        try:
            seconds = parse_duration(v)
        except ValueError:
            raise ValueError(expected) from None
        if (seconds == 0 and zero) or low <= seconds <= high:
            return seconds
        raise ValueError(expected)
    return check


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """Everything the backend process needs; defaults are safe for a local run."""

    engine: str = "extractive"
    """The default engine: "extractive" (always available) or "openai" (also enables it)."""
    openai_base_url: str = ""
    """An OpenAI-compatible server inside the backend's trust boundary, e.g. http://127.0.0.1:8000/v1."""
    openai_model: str = ""
    openai_api_key: str = field(default="", repr=False)
    """Secret: pass it as HUSHBRIEF_BACKEND_OPENAI_API_KEY rather than in the file."""
    openai_timeout: int = 60
    """Seconds one chat-completions call may take."""
    openai_total_timeout: int = 300
    """Seconds a whole summary (every map and reduce call, retries included) may take."""
    openai_context_tokens: int = 8192
    """The model's context window; longer threads are summarized by map-reduce."""
    openai_max_tokens: int = 1024
    """Upper bound on the tokens one call may generate."""
    max_request_bytes: int = 4 * 1_048_576
    """Largest encapsulated request accepted (413 above)."""
    max_messages: int = 10_000
    replay_window: int = 60
    """Seconds the inner request's Date may differ from the gateway's clock (RFC 9458 §6.5)."""
    replay_entries: int = 100_000
    """Capacity of the register of recently seen encapsulated keys."""
    rotate_every: int = 0
    """Seconds between key rotations; 0: never."""
    key_grace: int = 600
    """Seconds the previous key stays accepted after a rotation."""
    bundle_ttl: int = 3600
    """Seconds an evidence bundle is valid (shorter if the key rotates before)."""
    concurrency: int = 0
    """Summaries computed at once; 0: the number of CPUs."""
    queue_limit: int = 64
    """Summaries that may wait for a free slot; beyond that the answer is an inner 503."""
    transparency_file: str = ""
    """A ``hushbrief log prove`` JSON file with this build's inclusion proof."""
    transparency_url: str = ""
    """A transparency log server (``hushbrief log serve``) to fetch the proof from."""
    transparency_refresh: int = 600
    """Seconds between fetches from ``transparency_url``."""

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines a request may name: extractive always, openai when configured."""
        return ("extractive", "openai") if self.engine == "openai" else ("extractive",)

    def effective_concurrency(self) -> int:
        return self.concurrency or (os.cpu_count() or 1)

    def public_engine_settings(self) -> dict[str, Any]:
        """The settings that decide what a summary is, without secrets (for the measurement)."""
        out: dict[str, Any] = {"engine": self.engine, "engines": list(self.engines)}
        if self.engine == "openai":
            out.update(
                openai_base_url=self.openai_base_url,
                openai_model=self.openai_model,
                openai_context_tokens=self.openai_context_tokens,
                openai_max_tokens=self.openai_max_tokens,
            )
        return out


_DAY = 86_400
_CHECKS: dict[str, Check] = {
    "engine": choice(*ENGINES),
    "openai_base_url": url("http", "https"),
    "openai_model": string,
    "openai_api_key": string,
    "openai_timeout": duration(1, 3600),
    "openai_total_timeout": duration(1, 4 * 3600),
    "openai_context_tokens": integer(512, 10_000_000),
    "openai_max_tokens": integer(16, 1_000_000),
    "max_request_bytes": integer(1024, 64 * 1_048_576),
    "max_messages": integer(1, 1_000_000),
    "replay_window": duration(1, 3600),
    "replay_entries": integer(100, 100_000_000),
    "rotate_every": duration(60, 365 * _DAY, zero=True),
    "key_grace": duration(0, 7 * _DAY),
    "bundle_ttl": duration(60, 30 * _DAY),
    "concurrency": integer(0, 4096),
    "queue_limit": integer(0, 1_000_000),
    "transparency_file": string,
    "transparency_url": url("http", "https"),
    "transparency_refresh": duration(10, _DAY),
}
assert set(_CHECKS) == {f.name for f in fields(BackendSettings)}


def parse_rotate_every(raw: str) -> int:
    """The CLI's ``--rotate-every``: the same rule as ``[backend] rotate_every``.

    Returns seconds (0: never); raises ValueError with what was expected.
    """
    return int(_CHECKS["rotate_every"](raw))


def known_keys() -> tuple[str, ...]:
    """The keys of ``[backend]``, in the order config.example.toml documents them."""
    return tuple(_CHECKS)


def load_backend_settings(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> BackendSettings:
    """Read ``[backend]`` from ``path`` (if given) and ``HUSHBRIEF_BACKEND_*``; validate.

    Every other section of the file belongs to another process (the bot's
    loader checks its own sections and knows ``[backend]`` as ours), so it is
    skipped here rather than rejected: the backend may run far from the bot,
    with a copy of the same file.
    """
    env = os.environ if environ is None else environ
    others: frozenset[str] = frozenset()
    if path is not None:
        others = frozenset(read_toml(path)) - {SECTION}
    doc = load_sections(path, env, {SECTION: _CHECKS}, others=others)
    values = doc.sections[SECTION]
    settings = BackendSettings(**values)
    where = doc.source
    if settings.engine == "openai":
        if not settings.openai_base_url:
            raise ConfigError(f"{where}: [backend] engine = \"openai\" needs openai_base_url")
        if not settings.openai_model:
            raise ConfigError(f"{where}: [backend] engine = \"openai\" needs openai_model")
    if settings.openai_total_timeout < settings.openai_timeout:
        raise ConfigError(
            f"{where}: [backend] openai_total_timeout must be at least openai_timeout")
    return settings
