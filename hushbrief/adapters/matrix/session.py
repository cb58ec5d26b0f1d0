"""What the Matrix adapter keeps on disk besides nio's store, and how it is written.

Everything lives in ``<data_dir>/matrix/`` (mode 0700):

* ``session.json`` (0600): the device the bot logged in once — homeserver, user ID,
  device ID, access token. Reusing it on every start keeps the same device, and
  with it the same Olm identity and the room keys in nio's store; logging in again
  would make a new device that cannot read anything shared with the old one.
* ``store.key`` (0600): the secret nio's store pickles its Olm account and Megolm
  sessions with, unless ``[matrix] store_key`` is configured. nio's default is the
  literal ``"DEFAULT_KEY"``, which would leave the keys that decrypt every room
  readable to anyone who copies the store.
* ``store/``: nio's SQLite store (``<user>_<device>.db``) and trust files. It holds
  keys, device lists, encrypted-room IDs, member IDs and the sync token; never a
  message's text.

Files are created the way the bot's identifier key is: exclusively (``O_EXCL``),
never through a symbolic link (``O_NOFOLLOW``), with mode 0600 set explicitly, and
refused on reading if group or others may access them. ``session.json`` is
replaced atomically (write a private temporary file, then ``rename``) so a crash
never leaves half a token behind; ``store.key`` is published with ``link``, which
fails if the name exists, so two processes starting at once end up with one key.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hushbrief.adapters.matrix.errors import MatrixStartError
from hushbrief.durable import fsync_dir, open_flags, write_new_file

SESSION_FILE: Final = "session.json"
STORE_KEY_FILE: Final = "store.key"
STORE_DIR: Final = "store"
_KEY_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in device of the bot's account."""

    homeserver: str
    user_id: str
    device_id: str
    access_token: str = field(repr=False)


def matrix_dir(data_dir: Path) -> Path:
    """``<data_dir>/matrix`` and its ``store/``, created with mode 0700."""
    root = data_dir / "matrix"
    try:
        for directory in (data_dir, root, root / STORE_DIR):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is narrowed by the umask but never widened; an existing
        # directory keeps whatever it had, so set it explicitly.
        os.chmod(root, 0o700)
        os.chmod(root / STORE_DIR, 0o700)
    except OSError as exc:
        raise MatrixStartError(f"The Matrix data directory {root} cannot be created "
                               f"({exc.strerror})") from None
    return root


def load_session(root: Path) -> Session | None:
    """The stored device, or None if there is none yet. A damaged file is an error."""
    path = root / SESSION_FILE
    try:
        raw = _read_private(path, "session file")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        session = Session(homeserver=str(doc["homeserver"]), user_id=str(doc["user_id"]),
                          device_id=str(doc["device_id"]),
                          access_token=str(doc["access_token"]))
    except (ValueError, KeyError, TypeError):
        raise MatrixStartError(f"The Matrix session file {path} is damaged; delete it to log "
                               "in a new device (encrypted history sent to the old one will "
                               "not be readable)") from None
    if not (session.user_id and session.device_id and session.access_token):
        raise MatrixStartError(f"The Matrix session file {path} is incomplete; delete it to "
                               "log in a new device")
    return session


def save_session(root: Path, session: Session) -> None:
    """Write ``session.json`` atomically with mode 0600."""
    path = root / SESSION_FILE
    content = json.dumps({
        "homeserver": session.homeserver, "user_id": session.user_id,
        "device_id": session.device_id, "access_token": session.access_token,
    }, indent=1).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        write_new_file(tmp, content)
        os.replace(tmp, path)
        fsync_dir(root)
    except OSError as exc:
        raise MatrixStartError(f"The Matrix session file {path} cannot be written "
                               f"({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_or_create_store_key(root: Path, configured: str) -> str:
    """The secret for nio's store: configured, or read from or created in ``store.key``."""
    if configured.strip():
        return configured.strip()
    path = root / STORE_KEY_FILE
    try:
        return _parse_key(_read_private(path, "store key file"), path)
    except FileNotFoundError:
        pass
    content = (secrets.token_bytes(_KEY_BYTES).hex() + "\n").encode("ascii")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        write_new_file(tmp, content)
        # link() fails if the name exists: a racing process either wins or we read its
        # complete file, never a half-written one.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            fsync_dir(root)
    except OSError as exc:
        raise MatrixStartError(f"The Matrix store key file {path} cannot be created "
                               f"({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    try:
        return _parse_key(_read_private(path, "store key file"), path)
    except FileNotFoundError:
        raise MatrixStartError(f"The Matrix store key file {path} disappeared while it was "
                               "being created") from None


def _parse_key(raw: bytes, path: Path) -> str:
    text = raw.decode("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES:
        raise MatrixStartError(f"The Matrix store key file {path} does not hold a valid key; "
                               "restore it from a backup (without it the stored keys are lost)")
    return text




def _read_private(path: Path, what: str) -> bytes:
    """Read a small owner-only file; FileNotFoundError if it does not exist."""
    try:
        fd = os.open(path, open_flags(os.O_RDONLY))
    except FileNotFoundError:
        raise
    except OSError as exc:
        # ELOOP from O_NOFOLLOW lands here: a symlink could point at someone else's file.
        raise MatrixStartError(f"The Matrix {what} {path} cannot be opened ({exc.strerror}); "
                               "it must be a regular file, not a symbolic link") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MatrixStartError(f"The Matrix {what} {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise MatrixStartError(
                f"The Matrix {what} {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)



