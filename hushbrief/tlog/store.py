"""A file-backed transparency log of release records (DESIGN.md §5).

A log directory (mode 0700) holds::

    log.key        0600  the Ed25519 signer key, "PRIVATE+KEY+<origin>+<id>+<base64>\\n"
    log.pub        0644  its verifier key string, "<origin>+<id>+<base64>\\n" (what clients pin)
    records.jsonl  0644  the leaves: one canonical ReleaseRecord.leaf() per line, append-only

The Merkle tree (RFC 6962, :mod:`hushbrief.tlog.merkle`) is rebuilt from records.jsonl
when the log is opened — under two seconds for 10**5 records — and follows appends by other
processes (:meth:`TransparencyLog.refresh`), so a server keeps serving while
``hushbrief log add`` runs. Checkpoints (c2sp.org/tlog-checkpoint) are signed on demand;
Ed25519 is deterministic, so the same size always gives the same signed note, and the
log never needs to remember what it signed: it can only sign roots of prefixes of one
append-only file, which are consistent with each other by construction.

Writers take an exclusive ``flock`` on records.jsonl, append one line and fsync before
``add`` returns. A line without its final newline is a write that never completed (its
``add`` never returned): readers ignore it, the next writer removes it.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from hushbrief.durable import fsync_dir, open_flags, write_new_file
from hushbrief.evidence.bundle import (
    BundleFormatError,
    Platform,
    ReleaseRecord,
    TransparencyProof,
)
from hushbrief.tlog.merkle import MerkleTree, leaf_hash
from hushbrief.tlog.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    generate_signer,
    parse_signer_key,
    parse_verifier_key,
    sign_checkpoint,
)

KEY_FILE = "log.key"
PUB_FILE = "log.pub"
RECORDS_FILE = "records.jsonl"

MAX_MEASUREMENT_HEX = 256
MAX_VERSION_CHARS = 200
MAX_SOURCE_CHARS = 2000

_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LogError(Exception):
    """The log directory or an operation on it failed; the message names the file."""




def check_record(record: ReleaseRecord) -> None:
    """Refuse records the log should never hold; LogError says which field is wrong."""
    m = record.measurement
    if len(m) > MAX_MEASUREMENT_HEX or not _HEX.fullmatch(m):
        raise LogError(
            f"The measurement {m[:20]!r} is not lowercase hexadecimal bytes of at most "
            f"{MAX_MEASUREMENT_HEX // 2} bytes"
        )
    if record.platform not in {p.value for p in Platform}:
        known = ", ".join(p.value for p in Platform)
        raise LogError(f"The platform {record.platform!r} is not one of {known}")
    for what, value, limit in (("version", record.version, MAX_VERSION_CHARS),
                               ("source", record.source, MAX_SOURCE_CHARS)):
        if not value or len(value) > limit or _CONTROL.search(value):
            raise LogError(
                f"The {what} must be 1 to {limit} characters without control characters"
            )






def init(directory: str | os.PathLike[str], origin: str) -> TransparencyLog:
    """Create a new log in ``directory`` (created, or empty) whose origin is ``origin``.

    The origin doubles as the signing key's name, as c2sp.org/tlog-checkpoint recommends.
    """
    path = Path(directory)
    try:
        skey, vkey = generate_signer(origin)
    except NoteError as exc:
        raise LogError(f"The origin {origin!r} cannot name a log: {exc}") from None
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.is_dir():
            raise LogError(f"{path} exists and is not a directory")
        if any(path.iterdir()):
            raise LogError(f"The directory {path} is not empty; a new log needs an empty one")
        os.chmod(path, 0o700)
        # O_EXCL: two racing inits cannot both believe they created the key.
        write_new_file(path / KEY_FILE, (skey + "\n").encode("ascii"), 0o600)
        write_new_file(path / RECORDS_FILE, b"", 0o644)
        write_new_file(path / PUB_FILE, (vkey + "\n").encode("utf-8"), 0o644)
    except FileExistsError as exc:
        raise LogError(f"{exc.filename} already exists; not overwriting a log") from None
    except OSError as exc:
        raise LogError(
            f"The log directory {path} cannot be created ({exc.strerror or exc})"
        ) from None
    fsync_dir(path)
    return open_log(path)


def open_log(directory: str | os.PathLike[str]) -> TransparencyLog:
    """Open an existing log directory, rebuilding the tree from records.jsonl."""
    path = Path(directory)
    if not path.is_dir():
        raise LogError(f"The log directory {path} does not exist")
    signer = _read_signer(path / KEY_FILE)
    pub_path = path / PUB_FILE
    try:
        published = parse_verifier_key(pub_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        raise LogError(f"The verifier key file {pub_path} cannot be read ({exc})") from None
    if published != signer.verifier:
        raise LogError(f"The verifier key in {pub_path} does not belong to the key in "
                       f"{path / KEY_FILE}")
    log = TransparencyLog(path, signer)
    log.refresh()
    return log


def _read_signer(path: Path) -> Signer:
    try:
        fd = os.open(path, open_flags(os.O_RDONLY))
    except FileNotFoundError:
        raise LogError(f"The log key file {path} does not exist; run 'hushbrief log init' "
                       "first") from None
    except OSError as exc:
        # ELOOP from O_NOFOLLOW too: a symlink could point the log at someone else's key.
        raise LogError(f"The log key file {path} cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LogError(f"The log key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise LogError(
                f"The log key file {path} is accessible by group or others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        return parse_signer_key(raw.decode("ascii"))
    except (UnicodeDecodeError, NoteError):
        # Never echo the key file's content: it is a secret.
        raise LogError(f"The log key file {path} does not hold a signer key") from None


class TransparencyLog:
    """An open log directory: append records, sign checkpoints, produce proofs."""

    def __init__(self, directory: Path, signer: Signer) -> None:
        self.directory = directory
        self._signer = signer
        self._records_path = directory / RECORDS_FILE
        self._tree = MerkleTree()
        self._records: list[ReleaseRecord] = []
        self._leaves: set[bytes] = set()
        self._by_key: dict[tuple[str, str], list[int]] = {}
        self._offset = 0  # bytes of records.jsonl consumed: complete lines only
        self._inode: tuple[int, int] | None = None

    @property
    def origin(self) -> str:
        return self._signer.name

    @property
    def verifier(self) -> Verifier:
        return self._signer.verifier

    @property
    def size(self) -> int:
        return self._tree.size

    def root(self, size: int | None = None) -> bytes:
        return self._tree.root(self._check_size(size, allow_zero=True))

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> int:
        """Take in records other processes appended since the last look; return the size."""
        try:
            fd = os.open(self._records_path, open_flags(os.O_RDONLY))
        except OSError as exc:
            raise LogError(
                f"The records file {self._records_path} cannot be opened ({exc.strerror})"
            ) from None
        try:
            self._consume(fd, repair=False)
        finally:
            os.close(fd)
        return self.size

    def _consume(self, fd: int, *, repair: bool) -> None:
        info = os.fstat(fd)
        inode = (info.st_dev, info.st_ino)
        if self._inode is not None and inode != self._inode:
            raise LogError(f"The records file {self._records_path} was replaced while the "
                           "log was open; an append-only log is never rewritten")
        self._inode = inode
        if info.st_size < self._offset:
            raise LogError(f"The records file {self._records_path} shrank from "
                           f"{self._offset} to {info.st_size} bytes; it was truncated")
        if info.st_size == self._offset:
            return
        data = os.pread(fd, info.st_size - self._offset, self._offset)
        end = data.rfind(b"\n") + 1
        for line in data[:end].split(b"\n")[:-1]:
            self._take(line)
        self._offset += end
        if end < len(data) and repair:
            # A partial last line: an add that crashed before its fsync returned. It was
            # never acknowledged, so it is not part of the log; make room for the next.
            os.ftruncate(fd, self._offset)
            os.fsync(fd)

    def _take(self, line: bytes) -> None:
        number = self.size + 1
        try:
            record = ReleaseRecord.from_json(json.loads(line))
        except (ValueError, BundleFormatError) as exc:
            raise LogError(f"Line {number} of {self._records_path} is not a release "
                           f"record ({exc})") from None
        if record.leaf() != line:
            raise LogError(f"Line {number} of {self._records_path} is not in canonical form")
        try:
            check_record(record)
        except LogError as exc:
            raise LogError(f"Line {number} of {self._records_path} is invalid: {exc}") from None
        if line in self._leaves:
            raise LogError(f"Line {number} of {self._records_path} repeats an earlier record")
        self._append(record, line)

    def _append(self, record: ReleaseRecord, leaf: bytes) -> int:
        index = self._tree.append(leaf_hash(leaf))
        self._records.append(record)
        self._leaves.add(leaf)
        self._by_key.setdefault((record.measurement, record.platform), []).append(index)
        return index

    def records(self, start: int = 0, end: int | None = None) -> list[ReleaseRecord]:
        end = self.size if end is None else end
        if not 0 <= start <= end <= self.size:
            raise LogError(f"The range [{start}, {end}) is not within the {self.size} "
                           f"records of {self._records_path}")
        return self._records[start:end]

    # -- writing ------------------------------------------------------------------------

    def add(self, record: ReleaseRecord) -> int:
        """Append a record durably and return its leaf index; refuses a duplicate."""
        check_record(record)
        leaf = record.leaf()
        try:
            fd = os.open(self._records_path, open_flags(os.O_RDWR, os.O_APPEND))
        except OSError as exc:
            raise LogError(
                f"The records file {self._records_path} cannot be opened ({exc.strerror})"
            ) from None
        try:
            with self._locked(fd):
                self._consume(fd, repair=True)  # another process may have appended
                if leaf in self._leaves:
                    raise LogError(f"This record is already in {self._records_path}")
                view = memoryview(leaf + b"\n")
                try:
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError as exc:
                    raise LogError(f"The record could not be written to "
                                   f"{self._records_path} ({exc.strerror})") from None
                self._offset += len(leaf) + 1
                return self._append(record, leaf)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self, fd: int) -> Iterator[None]:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    # -- checkpoints and proofs ---------------------------------------------------------

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint (a C2SP signed note) for ``size`` (default: current)."""
        size = self._check_size(size, allow_zero=True)
        return sign_checkpoint(Checkpoint(self.origin, size, self._tree.root(size)),
                               self._signer)

    def prove(self, measurement: str, platform: str, *,
              size: int | None = None) -> TransparencyProof:
        """Inclusion proof for the newest record of ``measurement`` on ``platform``.

        The proof is against the tree of ``size`` leaves (default: the current size) and
        carries the signed checkpoint for that size: what a backend serves in its bundle.
        """
        size = self._check_size(size, allow_zero=False)
        indices = self._by_key.get((measurement.lower(), platform), [])
        position = bisect.bisect_left(indices, size)
        if position == 0:
            raise LogError(f"No record for measurement {measurement[:16]}… on platform "
                           f"{platform!r} among the first {size} records of "
                           f"{self._records_path}")
        index = indices[position - 1]
        return TransparencyProof(
            record=self._records[index], index=index,
            proof=tuple(self._tree.inclusion_proof(index, size)),
            checkpoint=self.checkpoint(size),
        )

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof that tree ``new`` extends tree ``old``."""
        new = self._check_size(new, allow_zero=False)
        if not 0 < old <= new:
            raise LogError(f"A consistency proof needs 0 < old <= new <= {self.size} (the "
                           f"size of {self._records_path}), not old={old}, new={new}")
        return self._tree.consistency_proof(old, new)

    def _check_size(self, size: int | None, *, allow_zero: bool) -> int:
        if size is None:
            size = self.size
        lowest = 0 if allow_zero else 1
        if lowest > self.size:
            raise LogError(f"The log holds no records yet ({self._records_path} is empty)")
        if not lowest <= size <= self.size:
            raise LogError(f"The tree size {size} is not between {lowest} and {self.size}, "
                           f"the number of records in {self._records_path}")
        return size
