"""Keyed hashing of chat and user identifiers, and the key it needs.

This module owns the only way a chat or user identifier is turned into something
that may be stored or logged:

* `IdentifierHasher.chat` / `IdentifierHasher.user`: HMAC-SHA256 under a secret key,
  32 raw bytes, domain-separated by kind and platform. A user's hash does not depend
  on the chat, so ``/forgetme`` can find that user in every chat. Without the key, a
  stolen database does not say who is in which chat.
* `IdentifierHasher.log_tag`: 8 hex characters from a separate HMAC domain, for log
  lines. It cannot be matched against the database's hashes.
* `load_or_create_key`: the key from the configuration, or from
  ``<data_dir>/identifier.key``, created once, atomically, readable by the owner only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import string
import time
from pathlib import Path
from typing import Final, Literal

from hushbrief.bot.storage import HASH_BYTES, IdentifierKeyError, KeyFileError
from hushbrief.durable import fsync_dir, open_flags, write_new_file

__all__ = [
    "KEY_BYTES",
    "KEY_FILE_NAME",
    "IdentifierHasher",
    "IdentifierKeyError",
    "KeyFileError",
    "load_or_create_key",
    "parse_key",
]

log = logging.getLogger(__name__)

KEY_BYTES: Final = 32
"""Length of a generated key, and the minimum length of a configured one."""
KEY_FILE_NAME: Final = "identifier.key"

IdKind = Literal["chat", "user"]

# Platform names are short fixed words ("telegram", "matrix", "console"); forbidding
# NUL keeps the "kind NUL platform NUL id" encoding unambiguous.
_PLATFORM: Final = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_LOG_TAG_CHARS: Final = 8
# How long a reader waits for a racing creator to finish writing the key file
# (only relevant where hard links are unavailable; see _create_key_file).
_PARTIAL_FILE_WAIT: Final = 2.0


class IdentifierHasher:
    """Turns raw platform identifiers into stored hashes and log tags."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise IdentifierKeyError(f"The identifier key must be at least {KEY_BYTES} bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "IdentifierHasher(<key hidden>)"

    def _mac(self, domain: bytes, platform: str, identifier: str) -> bytes:
        if not isinstance(platform, str) or not _PLATFORM.fullmatch(platform):
            raise ValueError("platform must be a short lowercase name such as 'telegram'")
        if not isinstance(identifier, str):
            # An int and its str would hash differently; refuse instead of guessing.
            raise TypeError("identifiers must be passed as str")
        if not identifier:
            raise ValueError("identifier must not be empty")
        message = domain + b"\0" + platform.encode("ascii") + b"\0" + identifier.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def chat(self, platform: str, chat_id: str) -> bytes:
        """The stored form of a chat (room) identifier: 32 bytes."""
        return self._mac(b"chat", platform, chat_id)

    def user(self, platform: str, user_id: str) -> bytes:
        """The stored form of a user identifier: 32 bytes, the same in every chat."""
        return self._mac(b"user", platform, user_id)

    def log_tag(self, platform: str, identifier: str, *, kind: IdKind = "chat") -> str:
        """A short pseudonym for log lines: stable per identifier, unrelated to the stored hash."""
        domain = b"log-chat" if kind == "chat" else b"log-user"
        return self._mac(domain, platform, identifier).hex()[:_LOG_TAG_CHARS]


assert hashlib.sha256().digest_size == HASH_BYTES


def parse_key(text: str, *, source: str = "The configured identifier key") -> bytes:
    """Decode a hex key of at least `KEY_BYTES` bytes; the error names ``source`` only."""
    try:
        key = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise IdentifierKeyError(f"{source} is not valid hex") from None
    if len(key) < KEY_BYTES:
        raise IdentifierKeyError(
            f"{source} is too short: it needs at least {KEY_BYTES} bytes "
            f"({2 * KEY_BYTES} hex digits)"
        )
    return key


def load_or_create_key(data_dir: Path, configured: str | None) -> bytes:
    """The identifier key: configured, or read from or created in ``data_dir``.

    A configured key (hex, at least 32 bytes) wins and the key file is not touched.
    Otherwise ``<data_dir>/identifier.key`` is read, or created at first start with
    mode 0600 (``data_dir`` with 0700). Several processes starting at once all end up
    with the same key. An existing file that group or others may access, that is not
    a regular file, or that does not hold a valid key is refused with `KeyFileError`.
    """
    if configured is not None and configured.strip():
        return parse_key(configured)
    path = data_dir / KEY_FILE_NAME
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(
            f"The data directory {data_dir} cannot be created ({exc.strerror})"
        ) from None
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    return _create_key_file(path)




def _read_key_file(path: Path) -> bytes:
    """Read and check the key file; FileNotFoundError if it does not exist."""
    deadline = time.monotonic() + _PARTIAL_FILE_WAIT
    while True:
        try:
            fd = os.open(path, open_flags(os.O_RDONLY))
        except FileNotFoundError:
            raise
        except OSError as exc:
            # ELOOP from O_NOFOLLOW lands here too: a symlink could point the bot
            # at a key someone else controls.
            raise KeyFileError(
                f"The identifier key file {path} cannot be opened ({exc.strerror}); "
                "it must be a regular file, not a symbolic link"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"The identifier key file {path} is not a regular file")
            if os.name == "posix" and info.st_mode & 0o077:
                raise KeyFileError(
                    f"The identifier key file {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
                )
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        text = raw.decode("ascii", errors="replace")
        # A fresh file holding a strict prefix of a key may be one that a racing
        # process created but has not finished writing (only where hard links are
        # unavailable); wait briefly for it. Old or garbled files fail at once.
        digits = "".join(text.split())
        maybe_partial = (
            len(digits) < 2 * KEY_BYTES
            and all(c in string.hexdigits for c in digits)
            and time.time() - info.st_mtime < _PARTIAL_FILE_WAIT
        )
        if maybe_partial and time.monotonic() < deadline:
            time.sleep(0.02)
            continue
        try:
            return parse_key(text, source=f"The identifier key file {path}")
        except IdentifierKeyError as exc:
            raise KeyFileError(str(exc)) from None


def _create_key_file(path: Path) -> bytes:
    """Create the key file atomically and return the key that ends up in it.

    The key is written to a private temporary file which is then hard-linked to its
    final name: link() fails if the name exists, so a racing process either wins or
    reads the winner's complete file, never a half-written one.
    """
    content = (secrets.token_bytes(KEY_BYTES).hex() + "\n").encode("ascii")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        write_new_file(tmp, content)
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        except OSError:
            # No hard links here (some network or FUSE file systems): fall back to
            # an exclusive create of the final name; readers tolerate a short
            # window in which the file is still being written.
            try:
                write_new_file(path, content)
                created = True
            except FileExistsError:
                created = False
    except OSError as exc:
        raise KeyFileError(
            f"The identifier key file {path} cannot be created ({exc.strerror})"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if created:
        fsync_dir(path.parent)
        log.info("Created a new identifier key file at %s", path)
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        raise KeyFileError(
            f"The identifier key file {path} disappeared while it was being created"
        ) from None



