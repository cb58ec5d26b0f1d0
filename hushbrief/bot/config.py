"""Configuration: one TOML file, overridable by ``HUSHBRIEF_<SECTION>_<KEY>`` variables.

Every key has a type, a default and, where it matters, a range or a set of
choices. Loading is strict: an unknown section or key, a wrong type or a value
out of range stops the bot with one line that names the file (or the
environment variable), the key, and what was expected. A typo in a privacy
setting must never be silently ignored.

``config.example.toml`` documents the same keys; a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hushbrief.bot.policy import (
    POLICY_KEYS,
    Policy,
    PolicyValueError,
    Processing,
)
from hushbrief.listen import parse_listen
from hushbrief.tomlconfig import (
    Check,
    ConfigError,
    boolean,
    choice,
    int_table,
    integer,
    load_sections,
    number,
    path,
    string,
    string_list,
    url,
)

SERVICE_SECTIONS = frozenset({"backend"})
"""Sections of the same file that other processes own and validate."""

__all__ = ["Config", "ConfigError", "known_keys", "load_config"]


@dataclass(frozen=True, slots=True)
class StorageConfig:
    data_dir: Path = Path("~/.local/share/hushbrief")
    database_url: str = ""
    """Empty: SQLite at ``<data_dir>/hushbrief.db``."""
    identifier_key: str = ""
    """Hex HMAC key for identifiers; empty: generated into ``<data_dir>/identifier.key``."""

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'hushbrief.db'}"


@dataclass(frozen=True, slots=True)
class ProcessingConfig:
    mode: Processing = Processing.PRIVATE
    """Where chats process summaries unless their admins choose otherwise."""
    engine: str = "extractive"
    """The embedded engine for local processing."""
    relay_url: str = ""
    """The OHTTP relay in front of the backend; empty: private processing unavailable."""
    private_engine: str = "extractive"
    """The engine the backend is asked to use."""
    timeout: float = 60.0
    """Seconds to wait for the relay and backend."""


@dataclass(frozen=True, slots=True)
class WindowConfig:
    max_bytes_per_chat: int = 2_000_000
    """Memory cap for one chat's buffered messages, whatever its policy says."""
    max_chats: int = 10_000
    """How many chats may have buffered messages at once; the idlest is dropped first."""
    sweep_interval: int = 60
    """Seconds between sweeps that drop expired messages from memory."""


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    enabled: bool = False
    token: str = ""
    """From BotFather; better in HUSHBRIEF_TELEGRAM_TOKEN."""
    api_base_url: str = "https://api.telegram.org/bot"
    """python-telegram-bot's base_url (the token is appended): a self-hosted Bot API server."""
    mode: str = "polling"
    """"polling" (getUpdates) or "webhook"."""
    webhook_url: str = ""
    """The public HTTPS URL Telegram posts updates to (webhook mode)."""
    webhook_listen: str = "127.0.0.1:8443"
    """Where the webhook server listens (behind a TLS-terminating proxy)."""
    webhook_secret: str = ""
    """Telegram sends it in X-Telegram-Bot-Api-Secret-Token; required in webhook mode."""


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    enabled: bool = False
    homeserver: str = ""
    """The homeserver's base URL, e.g. https://matrix.example.org."""
    user_id: str = ""
    """The bot's account, e.g. @hushbrief:example.org."""
    password: str = ""
    """Used once to log in a device; afterwards the device is reused. Secret."""
    access_token: str = ""
    """Instead of a password: a token of an existing login. Secret."""
    device_name: str = "Hushbrief"
    allowed_inviters: tuple[str, ...] = ()
    """Who may invite the bot: user IDs (@alice:example.org) or whole servers (:example.org)."""
    store_key: str = ""
    """Encrypts the device's keys at rest; empty: generated into <data_dir>/matrix/store.key."""


@dataclass(frozen=True, slots=True)
class AttestationConfig:
    platforms: tuple[str, ...] = ("sev-snp", "tdx", "nitro")
    """Hardware platforms whose evidence the bot accepts."""
    measurements: tuple[str, ...] = ()
    """Hex measurements accepted; empty: any measurement the transparency log holds."""
    log_origin: str = ""
    """The transparency log's origin line; with log_key, measurements must be in that log."""
    log_key: str = ""
    """The log's note verifier key, "<name>+<key id>+<base64 key>"."""
    log_url: str = ""
    """The log's server, asked for consistency proofs when a newer checkpoint appears."""
    allow_dev: bool = False
    """Accept the dev platform (no hardware protects it): local runs and tests only."""
    snp_min_tcb: dict[str, int] = field(default_factory=dict)
    """Minimum SEV-SNP TCB components, e.g. { bootloader = 3, snp = 8, microcode = 115 }."""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    storage: StorageConfig = field(default_factory=StorageConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    matrix: MatrixConfig = field(default_factory=MatrixConfig)
    policy_defaults: Policy = field(default_factory=Policy)
    attestation: AttestationConfig = field(default_factory=AttestationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "defaults"
    """Where the configuration came from, for messages."""

    def default_policy(self) -> Policy:
        """The policy of a chat that changed nothing: ``[policy_defaults]`` plus the mode."""
        return replace(self.policy_defaults, processing=self.processing.mode)


# --- validation -------------------------------------------------------------------------

def _db_url(v: Any) -> str:
    s = string(v)
    if s and not s.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ValueError('empty, or a URL starting with "sqlite:///" or "postgresql://"')
    return s


def _hex_key(v: Any) -> str:
    s = string(v).strip()
    if s:
        try:
            raw = bytes.fromhex(s)
        except ValueError:
            raise ValueError("empty, or at least 64 hex digits") from None
        if len(raw) < 32:
            raise ValueError("empty, or at least 64 hex digits")
    return s


def _hex_list(v: Any) -> tuple[str, ...]:
    values = string_list()(v)
    for value in values:
        try:
            bytes.fromhex(value)
        except ValueError:
            raise ValueError("a list of hex measurements") from None
    return tuple(value.lower() for value in values)


def _matrix_user(v: Any) -> str:
    s = string(v)
    if s and not (s.startswith("@") and ":" in s):
        raise ValueError('empty, or a Matrix user ID such as "@hushbrief:example.org"')
    return s


def _inviters(v: Any) -> tuple[str, ...]:
    values: tuple[str, ...] = string_list()(v)
    for value in values:
        if not (value.startswith(":") or (value.startswith("@") and ":" in value)):
            raise ValueError('a list of user IDs ("@alice:example.org") or servers '
                             '(":example.org")')
    return values


def _listen(v: Any) -> str:
    try:
        parse_listen(string(v))
    except ValueError:
        raise ValueError('"HOST:PORT", such as "127.0.0.1:8443" or "[::1]:8443"') from None
    return str(v)


def _webhook_secret(v: Any) -> str:
    # Telegram accepts 1-256 characters from A-Z, a-z, 0-9, _ and - for the secret token.
    s = string(v)
    if s and (len(s) > 256 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in s)):
        raise ValueError("empty, or 1-256 characters from A-Z, a-z, 0-9, _ and -")
    return s


def _processing(v: Any) -> Processing:
    return Processing(choice("local", "private")(v))


def _policy_check(key: str) -> Check:
    spec = POLICY_KEYS[key]
    default = getattr(Policy(), key)

    def check(v: Any) -> Any:
        # TOML gives native bools and ints; the environment and durations give strings.
        # Either way the value goes through the same parser an admin's /policy uses,
        # so the operator's defaults obey the same ranges.
        if isinstance(v, bool):
            raw = "on" if v else "off"
        elif isinstance(v, int) and not isinstance(default, bool):
            raw = f"{v}s" if key in ("max_span", "buffer_ttl") else str(v)
        elif isinstance(v, str):
            raw = v
        else:
            raise ValueError(_policy_expected(key))
        try:
            return spec.parse(raw)
        except PolicyValueError:
            raise ValueError(_policy_expected(key)) from None
    return check


def _policy_expected(key: str) -> str:
    hint = POLICY_KEYS[key].admin_hint
    if key in ("summaries", "redact"):
        return "true or false"
    if "|" in hint:
        return "one of " + ", ".join(f'"{c}"' for c in hint.split("|"))
    if key in ("max_span", "buffer_ttl"):
        return f'a duration such as "6h" or "2d" ({hint})'
    return f"a whole number ({hint})"


_SCHEMA: dict[str, tuple[type[Any], dict[str, Check]]] = {
    "storage": (StorageConfig, {
        "data_dir": path, "database_url": _db_url, "identifier_key": _hex_key,
    }),
    "processing": (ProcessingConfig, {
        "mode": _processing, "engine": choice("extractive"),
        "relay_url": url("http", "https"), "private_engine": choice("extractive", "openai"),
        "timeout": number(1, 600),
    }),
    "window": (WindowConfig, {
        "max_bytes_per_chat": integer(10_000, 1_000_000_000),
        "max_chats": integer(1, 10_000_000),
        "sweep_interval": integer(1, 3600),
    }),
    "telegram": (TelegramConfig, {
        "enabled": boolean, "token": string, "api_base_url": url("http", "https", empty=False),
        "mode": choice("polling", "webhook"), "webhook_url": url("https", "http"),
        "webhook_listen": _listen, "webhook_secret": _webhook_secret,
    }),
    "matrix": (MatrixConfig, {
        "enabled": boolean, "homeserver": url("http", "https"), "user_id": _matrix_user,
        "password": string, "access_token": string, "device_name": string,
        "allowed_inviters": _inviters, "store_key": string,
    }),
    # A chat's processing default is [processing] mode, so it is not repeated here.
    "policy_defaults": (Policy, {k: _policy_check(k) for k in POLICY_KEYS if k != "processing"}),
    "attestation": (AttestationConfig, {
        "platforms": string_list("sev-snp", "tdx", "nitro"),
        "measurements": _hex_list,
        "log_origin": string,
        "log_key": string,
        "log_url": url("http", "https"),
        "allow_dev": boolean,
        "snp_min_tcb": int_table(("bootloader", "tee", "snp", "microcode", "fmc"), 0, 255),
    }),
    "logging": (LoggingConfig, {"level": choice("debug", "info", "warning", "error")}),
}


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read ``path`` (if given), apply ``HUSHBRIEF_*`` overrides, validate everything.

    Relative paths in the file are taken relative to the file's directory, so a
    configuration means the same thing whatever directory the bot starts in.
    """
    env = os.environ if environ is None else environ
    doc = load_sections(path, env, {name: checks for name, (_, checks) in _SCHEMA.items()},
                        others=SERVICE_SECTIONS)
    sections, source, base = doc.sections, doc.source, doc.base

    storage = sections["storage"]
    if "data_dir" in storage:
        data_dir = storage["data_dir"].expanduser()
        storage["data_dir"] = data_dir if data_dir.is_absolute() else base / data_dir

    storage.setdefault("data_dir", StorageConfig().data_dir.expanduser())
    built = {name: cls(**sections[name]) for name, (cls, _) in _SCHEMA.items()}
    return Config(**built, source=source)


def known_keys() -> dict[str, list[str]]:
    """Every section and its keys, in the order ``config.example.toml`` documents them."""
    return {name: list(checks) for name, (_, checks) in _SCHEMA.items()}
