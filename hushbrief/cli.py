"""The ``hushbrief`` command.

This module is the composition root: the one place allowed to import the core,
the adapters and (later) the relay and backend together, so that the packages
themselves keep their dependencies pointing inward.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hushbrief.bot.config import Config, ConfigError, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", metavar="FILE", type=Path, default=None,
        help="configuration file (TOML); default: $HUSHBRIEF_CONFIG, else built-in defaults "
             "plus HUSHBRIEF_<SECTION>_<KEY> environment variables",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hushbrief",
        description="A private summary bot for group chats: opt-in only, pseudonymous, "
                    "flags-only storage.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log events (never message content) to standard error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="a group chat in the terminal, with the real core, storage and engine",
        description="A group chat in the terminal: alice (admin), bob, carol and dave. In a "
                    "terminal it plays a short scene, then lets you speak as any member "
                    "('bob: hello', '/summarize', '^N /summarize' answers message N). With "
                    "standard input from a file or pipe it reads 'member: text' lines ('#' "
                    "starts a comment), prints only the bot's replies and exits at the end.",
    )
    demo.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                      help="where the database and identifier key go (created if missing); "
                           "default: a temporary directory removed at exit")
    demo.add_argument("--local", action="store_true",
                      help="process summaries in this process (currently the only mode of "
                           "the demo)")
    demo.add_argument("--no-intro", action="store_true",
                      help="interactive mode: skip the opening scene")

    summ = sub.add_parser(
        "summarize", help="summarize a transcript locally and print the summary",
        description="Summarize a chat transcript with the embedded engine, on this machine, "
                    "and print the summary. Reads plain 'Speaker: text' lines, Telegram "
                    "Desktop's JSON export or an Element (Matrix) JSON export, detected "
                    "automatically. Writes nothing.",
    )
    summ.add_argument("file", nargs="?", type=Path, default=None,
                      help="transcript file; default: standard input")
    summ.add_argument("--format", choices=["auto", "plain", "telegram-json", "matrix-json"],
                      default="auto", help="input format (default: detect)")
    summ.add_argument("--max-words", type=int, default=120, metavar="N",
                      help="length budget in words (default: 120)")
    summ.add_argument("--style", choices=["bullets", "paragraph"], default="bullets")
    summ.add_argument("--redact", action="store_true",
                      help="replace e-mail addresses, phone numbers and links first")

    db = sub.add_parser("db", help="manage the bot's database schema",
                        description="Manage the bot's database schema (Alembic migrations). "
                                    "The bot also upgrades automatically at start.")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="migrate to the newest schema (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    _config_arg(up)
    down = dbsub.add_parser("downgrade", help="migrate down to REVISION ('base' drops all)")
    down.add_argument("revision")
    _config_arg(down)
    cur = dbsub.add_parser("current", help="print the schema revision of the database")
    _config_arg(cur)

    check = sub.add_parser("config", help="validate a configuration and print it",
                           description="Validate the configuration and print the effective "
                                       "values, with secrets masked.")
    _config_arg(check)
    return parser


def _load(path: Path | None) -> Config:
    if path is None and os.environ.get("HUSHBRIEF_CONFIG"):
        path = Path(os.environ["HUSHBRIEF_CONFIG"])
    return load_config(path)


def _setup_logging(verbose: bool, level: str = "warning") -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from hushbrief.bot.storage import StorageError
    from hushbrief.bot.transcripts import TranscriptError

    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "summarize":
            return _summarize(args)
        if args.command == "db":
            return _db(args)
        if args.command == "config":
            return _config(args)
    except (ConfigError, StorageError, TranscriptError) as exc:
        print(f"hushbrief: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _demo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from hushbrief.adapters.console.chat import ConsoleChat, run_interactive, run_script
    from hushbrief.bot.app import open_bot

    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="hushbrief-demo-")) if temporary else args.data_dir
    config = Config()
    config = replace(config, storage=replace(config.storage, data_dir=data_dir.resolve()))
    bot = open_bot(config)
    try:
        interactive = sys.stdin.isatty()
        chat = ConsoleChat(core=bot.core, color=interactive and sys.stdout.isatty())
        if interactive:
            print("Hushbrief demo: a group chat with alice (admin), bob, carol and dave. "
                  "Summaries are made locally, in this process.")
            asyncio.run(run_interactive(chat, intro=not args.no_intro))
            return EXIT_OK
        bad = asyncio.run(run_script(chat, sys.stdin, sys.stderr))
        return EXIT_FAILED if bad else EXIT_OK
    finally:
        bot.close()
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


def _summarize(args: argparse.Namespace) -> int:
    from hushbrief.bot.pseudonyms import Speaker, pseudonymize, restore
    from hushbrief.bot.transcripts import TranscriptFormat, parse_transcript, read_transcript
    from hushbrief.engines.base import EngineError, Style, SummaryOptions
    from hushbrief.engines.extractive import ExtractiveEngine

    if not 10 <= args.max_words <= 5000:
        print("hushbrief: --max-words must be between 10 and 5000", file=sys.stderr)
        return EXIT_USAGE
    if args.file is None:
        data = read_transcript(sys.stdin.buffer)
    else:
        try:
            with open(args.file, "rb") as fh:
                data = read_transcript(fh)
        except OSError as exc:
            print(f"hushbrief: {args.file}: cannot be read ({exc.strerror})", file=sys.stderr)
            return EXIT_FAILED
    fmt = None if args.format == "auto" else TranscriptFormat(args.format)
    messages = parse_transcript(data, fmt)
    if not messages:
        print("hushbrief: the transcript holds no messages", file=sys.stderr)
        return EXIT_FAILED
    ids = {m.speaker.casefold(): m.speaker for m in messages}
    pseudo = pseudonymize(
        [Speaker(user_id=m.speaker.casefold(), display_name=ids[m.speaker.casefold()],
                 handle=None, text=m.text, timestamp=m.timestamp or 0.0,
                 message_id=m.message_id, reply_to=m.reply_to) for m in messages],
        redact_pii=args.redact,
    )
    try:
        summary = ExtractiveEngine().summarize(
            pseudo.turns, SummaryOptions(max_words=args.max_words, style=Style(args.style))
        )
    except EngineError as exc:
        print(f"hushbrief: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(restore(summary.text, pseudo.names))
    return EXIT_OK


def _db(args: argparse.Namespace) -> int:
    from hushbrief.bot.app import prepare_data_dir
    from hushbrief.bot.storage import Database

    config = _load(args.config)
    if not config.storage.database_url:
        prepare_data_dir(config.storage.data_dir)
    database = Database(config.storage.resolved_database_url())
    try:
        if args.db_command == "upgrade":
            database.upgrade(args.revision)
        elif args.db_command == "downgrade":
            database.downgrade(args.revision)
        print(f"{database.url}: revision {database.current_revision() or 'base (empty)'}")
    finally:
        database.dispose()
    return EXIT_OK


def _config(args: argparse.Namespace) -> int:
    from dataclasses import fields

    config = _load(args.config)
    print(f"# effective configuration from {config.source} and the environment")
    for section in fields(config):
        if section.name == "source":
            continue
        print(f"[{section.name}]")
        values = getattr(config, section.name)
        for f in fields(values):
            value = getattr(values, f.name)
            if f.name in ("token", "access_token", "identifier_key") and value:
                value = "(set)"
            print(f"{f.name} = {value!s}")
        print()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
