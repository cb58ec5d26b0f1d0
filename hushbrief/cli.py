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
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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

    run = sub.add_parser(
        "run", help="run the bot on every platform the configuration enables",
        description="Run the bot: every adapter the configuration enables ([telegram], "
                    "[matrix]) in one process, with the database upgraded at start. Stops "
                    "cleanly on SIGINT or SIGTERM. Messages buffered in memory (Telegram) are "
                    "lost on restart, by design; Matrix history is read on demand.")
    _config_arg(run)

    demo = sub.add_parser(
        "demo", help="a group chat in the terminal, with the real core, storage and engine",
        description="A group chat in the terminal: alice (admin), bob, carol and dave. "
                    "Summaries go through a relay and a development backend the demo starts "
                    "on loopback, after the bot checked the backend's (dev) evidence against "
                    "a transparency log; --local keeps them in-process. In a "
                    "terminal it plays a short scene, then lets you speak as any member "
                    "('bob: hello', '/summarize', '^N /summarize' answers message N). With "
                    "standard input from a file or pipe it reads 'member: text' lines ('#' "
                    "starts a comment), prints only the bot's replies and exits at the end.",
    )
    demo.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                      help="where the database and identifier key go (created if missing); "
                           "default: a temporary directory removed at exit")
    demo.add_argument("--local", action="store_true",
                      help="make summaries in this process instead of sending them through "
                           "the demo's own relay and development backend")
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

    relay = sub.add_parser(
        "relay", help="run the Oblivious HTTP relay in front of one gateway",
        description="Run the Oblivious HTTP relay (RFC 9458). It forwards encapsulated "
                    "requests, key configurations and the evidence bundle to its one gateway "
                    "and nowhere else; it cannot decrypt anything, adds no forwarding headers "
                    "and never logs bodies or client addresses. GET /healthz for health, "
                    "GET /metrics for Prometheus (counts, sizes, latencies).",
    )
    relay.add_argument("--listen", required=True, metavar="HOST:PORT",
                       help="address to listen on, e.g. 0.0.0.0:8080 or [::]:8080")
    relay.add_argument("--gateway", required=True, metavar="URL",
                       help="the gateway's base URL, e.g. https://backend.example:8443; "
                            "requests go to URL/.well-known/ohttp-gateway and URL/attestation")
    relay.add_argument("--max-body", type=int, default=4 * 1024 * 1024, metavar="BYTES",
                       help="largest encapsulated request accepted (default: 4 MiB; 413 above)")
    relay.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long one exchange with the gateway may take (default: 60)")
    relay.add_argument("--max-concurrency", type=int, default=256, metavar="N",
                       help="requests in flight before answering 503 (default: 256)")
    relay.add_argument("--no-metrics", action="store_true",
                       help="do not serve /metrics (request counts are traffic information)")

    backend = sub.add_parser(
        "backend", help="run the summarization backend and its OHTTP gateway",
        description="Run the backend: the Oblivious HTTP gateway (GET/POST "
                    "/.well-known/ohttp-gateway), the evidence bundle (GET /attestation) and "
                    "the summarizer behind them (inner POST /v1/summarize). Its HPKE key is "
                    "generated in memory at start and never written anywhere. Engine and "
                    "limits come from the [backend] section of --config.",
    )
    backend.add_argument("--listen", required=True, metavar="HOST:PORT",
                         help="address to listen on, e.g. 127.0.0.1:8443")
    backend.add_argument("--platform", choices=["dev", "sev-snp", "tdx", "nitro"],
                         default="dev",
                         help="where the evidence comes from: sev-snp and tdx through the "
                              "kernel's configfs-tsm, nitro through /dev/nsm; dev is a "
                              "software stand-in that bots refuse unless [attestation] "
                              "allow_dev = true (default: dev)")
    backend.add_argument("--rotate-every", default=None, metavar="DURATION",
                         help="make a new key every DURATION (e.g. 6h, 1d; 0 = never; at "
                              "least 60s); the previous key stays accepted for [backend] "
                              "key_grace; default: [backend] rotate_every")
    _config_arg(backend)

    from hushbrief.bot.attestation.commands import add_commands as add_attestation_commands
    from hushbrief.tlog.cli import add_log_commands

    add_attestation_commands(sub, _config_arg)
    add_log_commands(sub)

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
    from hushbrief.adapters.matrix.errors import MatrixStartError
    from hushbrief.adapters.telegram.adapter import TelegramStartError
    from hushbrief.backend.errors import EvidenceUnavailable
    from hushbrief.bot.storage import StorageError
    from hushbrief.bot.transcripts import TranscriptError
    from hushbrief.relay.errors import SettingsError as ServiceSettingsError

    try:
        if args.command == "run":
            return _run(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "summarize":
            return _summarize(args)
        if args.command == "db":
            return _db(args)
        if args.command == "config":
            return _config(args)
        if args.command == "relay":
            return _relay(args)
        if args.command == "backend":
            return _backend(args)
        if args.command == "log":
            from hushbrief.tlog.cli import run_log_command

            return run_log_command(args)
        if args.command == "attest":
            from hushbrief.bot.attestation.commands import run_attest_verify

            return run_attest_verify(args)
        if args.command == "audit":
            return _audit(args)
    except (ConfigError, StorageError, TranscriptError, ServiceSettingsError,
            EvidenceUnavailable, TelegramStartError, MatrixStartError) as exc:
        print(f"hushbrief: {exc}", file=sys.stderr)
        usage = isinstance(exc, ConfigError | ServiceSettingsError)
        return EXIT_USAGE if usage else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


class _Adapter(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    # A long-running service logs at [logging] level (events only, never content).
    logging.getLogger().setLevel(logging.INFO if args.verbose
                                 else getattr(logging, config.logging.level.upper()))
    if not config.telegram.enabled and not config.matrix.enabled:
        raise ConfigError(f"{config.source}: no platform is enabled; set [telegram] or "
                          "[matrix] enabled = true")
    if config.matrix.enabled and not (config.matrix.homeserver and config.matrix.user_id):
        raise ConfigError(f"{config.source}: [matrix] enabled = true needs homeserver and "
                          "user_id")
    if config.matrix.enabled and not (config.matrix.password or config.matrix.access_token
                                      or (config.storage.data_dir / "matrix"
                                          / "session.json").exists()):
        raise ConfigError(f"{config.source}: [matrix] needs a password or an access_token for "
                          "the first login (HUSHBRIEF_MATRIX_PASSWORD)")
    if config.telegram.enabled and not config.telegram.token:
        raise ConfigError(f"{config.source}: [telegram] token is empty; set it or "
                          "HUSHBRIEF_TELEGRAM_TOKEN")
    if config.telegram.enabled and config.telegram.mode == "webhook" and not (
            config.telegram.webhook_url and config.telegram.webhook_secret):
        raise ConfigError(f"{config.source}: [telegram] mode = \"webhook\" needs webhook_url "
                          "and webhook_secret")
    return asyncio.run(_run_async(config))


async def _run_async(config: Config) -> int:
    import signal

    from hushbrief.adapters.telegram.adapter import TelegramAdapter
    from hushbrief.bot.app import open_bot

    log = logging.getLogger("hushbrief.run")
    bot = open_bot(config)
    adapters: list[_Adapter] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def sweep() -> None:
        # Messages past their time-to-live must leave memory even in a quiet chat.
        while True:
            await asyncio.sleep(config.window.sweep_interval)
            dropped = bot.core.sweep()
            if dropped:
                log.info("window swept dropped=%d", dropped)

    sweeper = asyncio.create_task(sweep(), name="hushbrief-sweep")
    try:
        if config.telegram.enabled:
            adapters.append(TelegramAdapter(config.telegram, bot.core,
                                            data_dir=config.storage.data_dir))
        if config.matrix.enabled:
            from hushbrief.adapters.matrix.adapter import MatrixAdapter

            adapters.append(MatrixAdapter(config.matrix, bot.core,
                                          data_dir=config.storage.data_dir))
        for adapter in adapters:
            await adapter.start()
        log.info("running adapters=%d processing_default=%s", len(adapters),
                 config.processing.mode)
        await stop.wait()
        log.info("stopping")
    finally:
        sweeper.cancel()
        for adapter in reversed(adapters):
            try:
                await adapter.stop()
            except Exception as exc:  # one adapter's failure must not keep the rest open
                log.error("adapter stop failed type=%s", type(exc).__name__)
        await bot.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="hushbrief-demo-")) if temporary else args.data_dir
    try:
        return asyncio.run(_demo_async(args, data_dir.resolve()))
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _demo_async(args: argparse.Namespace, data_dir: Path) -> int:
    from contextlib import AsyncExitStack
    from dataclasses import replace

    from hushbrief.adapters.console.chat import ConsoleChat, run_interactive, run_script
    from hushbrief.bot.app import open_bot
    from hushbrief.bot.policy import Processing

    interactive = sys.stdin.isatty()
    config = Config()
    config = replace(config, storage=replace(config.storage, data_dir=data_dir))
    async with AsyncExitStack() as stack:
        if args.local:
            config = replace(config, processing=replace(config.processing,
                                                        mode=Processing.LOCAL))
            where = "Summaries are made locally, in this process (--local)."
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="hushbrief-demo-services-")))
            path = await stack.enter_async_context(_demo_private_path(work))
            config = replace(
                config,
                processing=replace(config.processing, mode=Processing.PRIVATE,
                                   relay_url=path.relay_url),
                attestation=replace(config.attestation, allow_dev=True,
                                    log_origin=path.log_origin, log_key=path.log_key))
            where = (f"Summaries go encrypted (Oblivious HTTP) through a relay at "
                     f"{path.relay_url} to a development backend on this machine, whose build "
                     "is checked against a transparency log first (dev attestation: no "
                     "hardware); --local keeps them in-process.")
        bot = open_bot(config)
        stack.push_async_callback(bot.aclose)
        chat = ConsoleChat(core=bot.core, color=interactive and sys.stdout.isatty())
        if interactive:
            print("Hushbrief demo: a group chat with alice (admin), bob, carol and dave. "
                  + where)
            await run_interactive(chat, intro=not args.no_intro)
            return EXIT_OK
        # Scripts get only the bot's replies on standard output; the notice goes aside.
        print(f"hushbrief demo: {where}", file=sys.stderr)
        bad = await run_script(chat, sys.stdin, sys.stderr)
        return EXIT_FAILED if bad else EXIT_OK
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _DemoPath:
    relay_url: str
    log_origin: str
    log_key: str


def _demo_private_path(work: Path) -> AbstractAsyncContextManager[_DemoPath]:
    """A development backend, published in a fresh transparency log, behind a relay.

    Everything runs on loopback; the log lives in ``work`` (a temporary directory).
    The bot then checks the dev evidence, the key binding and the log exactly as it
    would check hardware evidence — only the hardware root is missing, which is why
    the demo allows dev attestation and every summary says so.
    """
    from contextlib import asynccontextmanager

    from hushbrief.backend.devbuild import published_dev_backend
    from hushbrief.loopback import serve_on_loopback
    from hushbrief.relay import RelaySettings
    from hushbrief.relay import create_app as relay_app

    @asynccontextmanager
    async def private_path() -> AsyncIterator[_DemoPath]:
        dev = published_dev_backend(work, origin="demo.hushbrief.invalid/log",
                                    source="hushbrief demo (local build)")
        async with serve_on_loopback(dev.app, name="backend") as backend_url, \
                serve_on_loopback(relay_app(RelaySettings(gateway_url=backend_url)),
                                  name="relay") as relay_url:
            yield _DemoPath(relay_url, dev.log.origin, dev.log.verifier.key_string)

    return private_path()


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


def _listen(value: str) -> tuple[str, int]:
    from hushbrief.relay import parse_listen

    try:
        return parse_listen(value)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None


def _relay(args: argparse.Namespace) -> int:
    from hushbrief.relay import RelaySettings, run

    host, port = _listen(args.listen)
    settings = RelaySettings(gateway_url=args.gateway, max_body=args.max_body,
                             timeout=args.timeout, max_concurrency=args.max_concurrency,
                             expose_metrics=not args.no_metrics)
    logging.getLogger("hushbrief").setLevel(logging.INFO)
    logging.getLogger("hushbrief.relay").info("relay listening on %s:%d", host, port)
    run(settings, host, port)
    return EXIT_OK


def _backend(args: argparse.Namespace) -> int:
    from hushbrief.backend import load_backend_settings, run
    from hushbrief.backend.settings import parse_rotate_every

    host, port = _listen(args.listen)
    path = args.config
    if path is None and os.environ.get("HUSHBRIEF_CONFIG"):
        path = Path(os.environ["HUSHBRIEF_CONFIG"])
    settings = load_backend_settings(path)
    rotate = None
    if args.rotate_every is not None:
        try:
            rotate = float(parse_rotate_every(args.rotate_every))
        except ValueError as exc:
            raise ConfigError(f"--rotate-every must be {exc}") from None
    logging.getLogger("hushbrief").setLevel(logging.INFO)
    run(settings, host=host, port=port, platform=args.platform, rotate_every=rotate)
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from hushbrief.bot.app import attestation_policy
    from hushbrief.bot.attestation.commands import run_audit

    config = _load(args.config)
    return run_audit(args, attestation_policy(config.attestation), config.attestation.log_url)


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
