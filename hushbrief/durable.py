"""Small files that must be private and survive a crash: keys, sessions, log records.

The identifier key, the transparency log's signing key and records, and the
Matrix device session all need the same three things: open without following
a symlink someone planted, create exclusively (so two processes starting at
once cannot both think they made the file), and reach the disk — the file's
bytes and its directory entry — before anyone relies on them.

This module imports nothing else of Hushbrief, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def open_flags(*extra: int) -> int:
    """``os.open`` flags that never follow a symlink and never leak to child processes."""
    flags = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for flag in extra:
        flags |= flag
    return flags


def write_new_file(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (it must not exist), write ``content``, fsync; ``mode`` exactly.

    Raises FileExistsError if the path exists, so callers can tell "I created it"
    from "someone else did".
    """
    fd = os.open(path, open_flags(os.O_WRONLY, os.O_CREAT, os.O_EXCL), mode)
    try:
        os.fchmod(fd, mode)  # the mode given to open() is narrowed by the umask
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make new directory entries durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
