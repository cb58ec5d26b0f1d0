"""Hardware reports through Linux's configfs-tsm interface (SEV-SNP and TDX guests).

The kernel ABI (Documentation/ABI/testing/configfs-tsm, "configfs-tsm-report" since
v6.10; available since v6.7) works on a directory per request::

    mkdir /sys/kernel/config/tsm/report/$name    # fails (ENXIO) with no provider loaded
    cat   $name/provider                         # "sev_guest" or "tdx_guest": outblob format
    cat   $name/generation                       # bumped by every write to inblob/options
    write $name/inblob                           # up to 64 bytes of report data
    cat   $name/outblob                          # the SNP report (ABI Table 22) / TDX quote
    cat   $name/auxblob                          # SNP: the GHCB certificate table; may be empty
    rmdir $name

``generation`` is the ABI's way to notice another writer in the same directory: read
it before writing, and after reading outblob it must have advanced by exactly the
number of our own writes, otherwise the report may answer someone else's inblob. A
fresh, uniquely named directory per request makes a race unlikely; we check anyway
and retry a bounded number of times.

The I/O sits behind :class:`TsmFilesystem` so that tests can emulate the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from dataclasses import dataclass
from typing import Protocol

from hushbrief.backend.errors import EvidenceUnavailable

__all__ = [
    "PROVIDERS",
    "TSM_REPORT_ROOT",
    "OsFilesystem",
    "TsmError",
    "TsmFilesystem",
    "TsmRaceError",
    "TsmReport",
    "TsmUnavailableError",
    "get_report",
]

TSM_REPORT_ROOT = "/sys/kernel/config/tsm/report"
PROVIDERS = ("sev_guest", "tdx_guest")
INBLOB_MAX = 64
"""TSM_INBLOB_MAX in include/linux/tsm.h."""
UNAVAILABLE = ("configfs-tsm is not available: is this a SEV-SNP or TDX guest with the "
               "tsm_report module?")


class TsmError(EvidenceUnavailable):
    """The kernel did not produce a usable report; the message says which step failed."""


class TsmUnavailableError(TsmError):
    """There is no configfs-tsm report interface (or no provider behind it) on this host."""


class TsmRaceError(TsmError):
    """Another writer kept changing the report's inputs while we read it."""


class TsmFilesystem(Protocol):
    """The five file operations configfs-tsm needs; paths are absolute strings."""

    def mkdir(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def read_bytes(self, path: str) -> bytes: ...

    def write_bytes(self, path: str, data: bytes) -> None: ...

    def read_text(self, path: str) -> str: ...


class OsFilesystem:
    """The real filesystem. Each write is a single ``write`` on a fresh descriptor:
    configfs hands a binary attribute to the driver when the file is closed."""

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        with open(path, "wb", buffering=0) as f:
            f.write(data)

    def read_text(self, path: str) -> str:
        with open(path, encoding="ascii") as f:
            return f.read()


@dataclass(frozen=True, slots=True)
class TsmReport:
    """What the kernel returned, uninterpreted."""

    outblob: bytes
    """The SEV-SNP ATTESTATION_REPORT or the TDX quote."""
    auxblob: bytes
    """SEV-SNP: the certificate table (GHCB spec §4.1.8.1); empty when the host gave none
    or the provider has no auxblob."""
    provider: str


def _generation(fs: TsmFilesystem, directory: str) -> int:
    text = fs.read_text(f"{directory}/generation").strip()
    try:
        return int(text)
    except ValueError:
        raise TsmError(f"configfs-tsm returned a generation that is not a number: {text!r}"
                       ) from None


def _make_directory(fs: TsmFilesystem, root: str) -> str:
    # Unique per process and call: our own concurrent requests never share a directory.
    directory = f"{root}/hushbrief-{os.getpid()}-{secrets.token_hex(8)}"
    try:
        fs.mkdir(directory)
    except FileNotFoundError:
        raise TsmUnavailableError(UNAVAILABLE) from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            # tsm.c refuses the mkdir while no provider (sev-guest, tdx-guest) is registered.
            raise TsmUnavailableError(
                "configfs-tsm has no report provider: load the sev-guest or tdx-guest "
                "driver.") from None
        raise TsmError(f"could not create a configfs-tsm report directory: {exc}") from None
    return directory


def _read_provider(fs: TsmFilesystem, directory: str) -> str:
    try:
        return fs.read_text(f"{directory}/provider").strip()
    except FileNotFoundError:
        return ""


def _attempt(fs: TsmFilesystem, directory: str, inblob: bytes, privlevel: int | None,
             provider: str) -> TsmReport | None:
    """One write-then-read round; None when the generation shows another writer."""
    before = _generation(fs, directory)
    writes = 0
    if privlevel is not None:
        fs.write_bytes(f"{directory}/privlevel", f"{privlevel}\n".encode("ascii"))
        writes += 1
    fs.write_bytes(f"{directory}/inblob", inblob)
    writes += 1
    outblob = fs.read_bytes(f"{directory}/outblob")
    try:
        auxblob = fs.read_bytes(f"{directory}/auxblob")
    except FileNotFoundError:
        auxblob = b""  # the attribute is only visible for providers that have one
    if _generation(fs, directory) != before + writes:
        return None
    return TsmReport(outblob=outblob, auxblob=auxblob, provider=provider)


def get_report(
    inblob: bytes,
    *,
    provider: str,
    fs: TsmFilesystem | None = None,
    root: str = TSM_REPORT_ROOT,
    privlevel: int | None = None,
    attempts: int = 3,
) -> TsmReport:
    """Ask the kernel for a report binding ``inblob`` (1-64 bytes) from ``provider``.

    ``provider`` is ``"sev_guest"`` or ``"tdx_guest"``; a host that runs another one is
    an error, since its outblob would not be in the format the caller parses.
    ``privlevel`` (SEV-SNP: the VMPL to report) is left to the kernel's default when
    None. Raises :class:`TsmUnavailableError`, :class:`TsmRaceError` after ``attempts``
    rounds disturbed by another writer, or :class:`TsmError`.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"unknown configfs-tsm provider {provider!r}; "
                         f"known: {', '.join(PROVIDERS)}")
    if not 1 <= len(inblob) <= INBLOB_MAX:
        raise ValueError(f"inblob must be 1 to {INBLOB_MAX} bytes, not {len(inblob)}")
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    fs = fs or OsFilesystem()
    directory = _make_directory(fs, root)
    try:
        found = _read_provider(fs, directory)
        if not found:
            raise TsmUnavailableError(UNAVAILABLE)
        if found != provider:
            raise TsmError(f"configfs-tsm reports provider {found!r}, but this backend is "
                           f"configured for {provider!r}.")
        for _ in range(attempts):
            try:
                result = _attempt(fs, directory, inblob, privlevel, found)
            except OSError as exc:
                # e.g. EFBIG (report larger than the kernel's buffer), EIO or EINVAL from
                # the firmware, EBUSY while the hypervisor throttles guest requests.
                raise TsmError(f"configfs-tsm could not produce a report: {exc}") from None
            if result is not None:
                return result
        raise TsmRaceError(f"another writer changed the configfs-tsm report inputs during "
                           f"each of {attempts} attempts.")
    finally:
        # A directory left behind holds no secret (the report is public), and a failure
        # to remove it must not mask the error that brought us here.
        with contextlib.suppress(OSError):
            fs.rmdir(directory)
