"""``hushbrief log …``: run a transparency log of release records from the command line.

The composition root (hushbrief/cli.py) registers these with :func:`add_log_commands` and
dispatches with :func:`run_log_command`; nothing here exits the process.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from hushbrief.evidence.bundle import Platform, ReleaseRecord
from hushbrief.listen import parse_listen
from hushbrief.tlog.merkle import ProofError
from hushbrief.tlog.note import NoteError
from hushbrief.tlog.store import PUB_FILE, LogError, init, open_log

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _measurement(value: str) -> str:
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hexadecimal: {value!r}") from None
    if not raw:
        raise argparse.ArgumentTypeError("the measurement is empty")
    return raw.hex()


def _size(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"not a non-negative integer: {value!r}")
    return int(value)


def _listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_log_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``log`` and its subcommands on the top-level ``add_subparsers()`` object."""
    log = subparsers.add_parser(
        "log", help="run the transparency log of backend releases",
        description="A transparency log of backend releases (DESIGN.md §5): an append-only "
                    "RFC 6962 Merkle tree of release records in a directory, with checkpoints "
                    "signed in the C2SP signed-note format. Bots pin the log's verifier key "
                    "(DIR/log.pub) and accept a backend only if its measurement is in the log.",
    )
    sub = log.add_subparsers(dest="log_command", required=True, metavar="SUBCOMMAND")

    def directory(p: argparse.ArgumentParser) -> None:
        p.add_argument("dir", type=Path, metavar="DIR", help="the log directory")

    p = sub.add_parser(
        "init", help="create a new log and its signing key",
        description="Create a log in DIR (created with mode 0700, or an empty directory): "
                    "an Ed25519 signing key (DIR/log.key, mode 0600, never printed), an empty "
                    "DIR/records.jsonl, and DIR/log.pub. Prints the verifier key that bots pin.")
    directory(p)
    p.add_argument("--origin", required=True, metavar="ORIGIN",
                   help="the log's name, first line of every checkpoint and name of its key, "
                        "e.g. transparency.example.org/hushbrief (no spaces, no '+')")

    p = sub.add_parser(
        "add", help="publish a release record",
        description="Append a release record (measurement, platform, version, source) to the "
                    "log, durably, and print its leaf index. A record already in the log is "
                    "refused.")
    directory(p)
    p.add_argument("--measurement", required=True, type=_measurement, metavar="HEX",
                   help="the platform's launch measurement of the build, in hexadecimal")
    p.add_argument("--platform", required=True, choices=[x.value for x in Platform],
                   help="the TEE platform the measurement is for")
    p.add_argument("--version", required=True, metavar="V", help="the release version")
    p.add_argument("--source", required=True, metavar="REF",
                   help="where the build comes from, e.g. a repository URL and commit")

    p = sub.add_parser(
        "checkpoint", help="print the signed checkpoint for the current size",
        description="Print the log's current checkpoint (origin, size, root hash) as a "
                    "C2SP signed note.")
    directory(p)

    p = sub.add_parser(
        "prove", help="print the inclusion proof a backend serves in its bundle",
        description="Print, as JSON, the transparency proof for the newest record of a "
                    "measurement on a platform: the record, its index, the RFC 9162 "
                    "inclusion proof and the signed checkpoint of the tree it is proved in. "
                    "This is the 'transparency' field of the backend's evidence bundle.")
    directory(p)
    p.add_argument("--measurement", required=True, type=_measurement, metavar="HEX",
                   help="the measurement to prove")
    p.add_argument("--platform", required=True, choices=[x.value for x in Platform])
    p.add_argument("--size", type=_size, default=None, metavar="N",
                   help="prove against the tree of the first N records (default: all)")

    p = sub.add_parser(
        "consistency", help="print a consistency proof between two tree sizes",
        description="Print, as JSON, the RFC 9162 consistency proof that the tree of NEW "
                    "records extends the tree of OLD records.")
    directory(p)
    p.add_argument("--old", required=True, type=_size, metavar="N",
                   help="the older tree size (at least 1)")
    p.add_argument("--new", type=_size, default=None, metavar="M",
                   help="the newer tree size (default: the current size)")

    p = sub.add_parser(
        "serve", help="serve the log read-only over HTTP",
        description="Serve the log read-only: GET /checkpoint, /proof?measurement=&platform=, "
                    "/consistency?old=&new=, /records?start=&end=, /healthz. Records added "
                    "with 'hushbrief log add' meanwhile are served without a restart.")
    directory(p)
    p.add_argument("--listen", required=True, type=_listen, metavar="HOST:PORT",
                   help="address to listen on, e.g. 127.0.0.1:8080 or [::1]:8080")
    return log


def run_log_command(args: argparse.Namespace) -> int:
    """Run a parsed ``hushbrief log`` command; errors go to stderr as one line."""
    try:
        return _run(args)
    except (LogError, NoteError, ProofError) as exc:
        print(f"hushbrief log: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"hushbrief log: {exc.filename or 'I/O'}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILED


def _json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _run(args: argparse.Namespace) -> int:
    command = args.log_command
    if command == "init":
        tlog = init(args.dir, args.origin)
        print(tlog.verifier.key_string)
        print(f"hushbrief log: created {tlog.directory} for {tlog.origin!r}; pin the verifier "
              f"key above (also in {tlog.directory / PUB_FILE})", file=sys.stderr)
        return EXIT_OK
    if command == "serve":
        from hushbrief.tlog.server import serve

        host, port = args.listen
        serve(args.dir, host, port)
        return EXIT_OK
    tlog = open_log(args.dir)
    if command == "add":
        record = ReleaseRecord(measurement=args.measurement, platform=args.platform,
                               version=args.version, source=args.source)
        print(tlog.add(record))
        return EXIT_OK
    if command == "checkpoint":
        sys.stdout.write(tlog.checkpoint())
        return EXIT_OK
    if command == "prove":
        _json(tlog.prove(args.measurement, args.platform, size=args.size).to_json())
        return EXIT_OK
    if command == "consistency":
        new = tlog.size if args.new is None else args.new
        proof = tlog.consistency(args.old, new)
        _json({"old": args.old, "new": new,
               "proof": [base64.b64encode(h).decode("ascii") for h in proof]})
        return EXIT_OK
    print(f"hushbrief log: unknown subcommand {command!r}", file=sys.stderr)
    return EXIT_USAGE
