"""The bot's database: schema, connection handling, migrations and storage errors.

This module owns everything the bot keeps on disk apart from its identifier key:
the SQLAlchemy models (opt-in flags and chat policy overrides, nothing else), the
`Database` handle that opens SQLite or PostgreSQL with settings fit for several
processes writing at once, the programmatic Alembic driver, and the `StorageError`
tree into which driver exceptions are translated at this boundary.

Chat and user identifiers never reach this module in the clear: the stores in
``consent.py`` and ``policy_store.py`` hash them with ``identifiers.IdentifierHasher``
first, so every ``*_hash`` column holds a 32-byte keyed hash.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from hushbrief.bot.policy import POLICY_KEYS, Policy

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- errors


class StorageError(Exception):
    """Root of the storage layer's errors.

    Messages are written for an operator: they name files, URLs (password masked)
    and error codes, never a chat or user identifier, hash, or any message text.
    """


class IdentifierKeyError(StorageError):
    """The key used to hash identifiers is missing, too short or malformed."""


class KeyFileError(IdentifierKeyError):
    """The identifier key file cannot be used (permissions, format, file type)."""


class DatabaseConfigError(StorageError):
    """The database URL names a backend this bot does not support."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached, or the connection to it was lost."""


class DatabaseBusy(StorageError):
    """The database stayed locked longer than the busy timeout; retrying may work."""


class DatabaseOperationError(StorageError):
    """A statement failed for another reason; the message carries only an error code."""


class MigrationError(StorageError):
    """The schema could not be upgraded or downgraded."""


# --------------------------------------------------------------------------- schema

HASH_BYTES: Final = 32
"""Length of every stored identifier hash (HMAC-SHA256)."""

# Explicit constraint names keep Alembic migrations reproducible across backends.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Consent(Base):
    """One row per (chat, member) who opted in; the row's existence is the flag."""

    __tablename__ = "consent"

    chat_hash: Mapped[bytes] = mapped_column(LargeBinary(HASH_BYTES), primary_key=True)
    # The primary key serves per-chat lookups; this index serves /forgetme, which
    # deletes one member's rows across every chat.
    user_hash: Mapped[bytes] = mapped_column(
        LargeBinary(HASH_BYTES), primary_key=True, index=True
    )


class ChatPolicy(Base):
    """A chat's policy overrides: one nullable column per policy key.

    NULL means "follow the operator's default", so a chat that never touched a key
    picks up a changed default. Enum values are stored as their string value.
    """

    __tablename__ = "chat_policy"

    chat_hash: Mapped[bytes] = mapped_column(LargeBinary(HASH_BYTES), primary_key=True)
    summaries: Mapped[bool | None] = mapped_column(Boolean)
    who: Mapped[str | None] = mapped_column(String(16))
    consent: Mapped[str | None] = mapped_column(String(16))
    delivery: Mapped[str | None] = mapped_column(String(16))
    processing: Mapped[str | None] = mapped_column(String(16))
    max_messages: Mapped[int | None] = mapped_column(Integer)
    max_span: Mapped[int | None] = mapped_column(Integer)
    buffer_messages: Mapped[int | None] = mapped_column(Integer)
    buffer_ttl: Mapped[int | None] = mapped_column(Integer)
    chat_rate: Mapped[int | None] = mapped_column(Integer)
    member_rate: Mapped[int | None] = mapped_column(Integer)
    redact: Mapped[bool | None] = mapped_column(Boolean)
    length: Mapped[int | None] = mapped_column(Integer)


class LogCheckpoint(Base):
    """The newest transparency-log checkpoint this bot verified: its size and root.

    One row per configured log. ``log_id`` is derived from the log's public origin
    and key (see ``hushbrief.bot.attestation.checkpoints``); nothing else is kept.
    """

    __tablename__ = "log_checkpoint"

    log_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(HASH_BYTES), nullable=False)


consent_table: Final = cast(Table, Consent.__table__)
chat_policy_table: Final = cast(Table, ChatPolicy.__table__)
log_checkpoint_table: Final = cast(Table, LogCheckpoint.__table__)


def _policy_column_type(field_type: Any) -> type[Any]:
    """The SQL type a Policy field of this Python type is stored as."""
    if field_type is bool:
        return Boolean
    if isinstance(field_type, type) and issubclass(field_type, StrEnum):
        return String
    if field_type is int:
        return Integer
    raise TypeError(f"no storage type for policy field type {field_type!r}")


def _check_policy_columns() -> None:
    # The columns are spelled out above so that they are typed and reviewable; this
    # check makes a new Policy key without a column (or with the wrong type) fail at
    # import instead of silently not being stored.
    hints = typing.get_type_hints(Policy)
    columns = {c.name: c for c in chat_policy_table.columns if c.name != "chat_hash"}
    if set(columns) != set(POLICY_KEYS):
        raise RuntimeError("chat_policy columns do not match POLICY_KEYS")
    for name, column in columns.items():
        expected = _policy_column_type(hints[name])
        if not isinstance(column.type, expected) or not column.nullable:
            raise RuntimeError(f"chat_policy.{name} has the wrong type or nullability")


_check_policy_columns()


# --------------------------------------------------------------------------- database

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent.parent / "migrations"
DEFAULT_DB_FILENAME: Final = "hushbrief.db"

_SQLITE_BEGIN_OPTION: Final = "hushbrief_sqlite_begin"
# Arbitrary constant: every bot replica takes this advisory lock while migrating,
# so two replicas starting at once do not both try to create the tables.
_PG_MIGRATION_LOCK: Final = 0x6875736862726966  # "hushbrif"
# SQLSTATEs that mean "contention, try again" rather than a broken statement.
_PG_BUSY_STATES: Final = frozenset({"40001", "40P01", "55P03", "57014"})


def _ensure_wal(cursor: Any, timeout: float) -> None:
    """Switch a SQLite file to WAL, waiting while another process holds it.

    Changing the journal mode needs the database to itself and SQLite answers
    "database is locked" at once rather than calling the busy handler, so two
    processes opening a new file together (two replicas, or two starts of the
    demo) would fail without this retry. Once the file is in WAL mode, reading
    the mode needs no lock at all.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def default_url(data_dir: Path) -> str:
    """The SQLite URL used when the configuration names no database."""
    return f"sqlite:///{(data_dir / DEFAULT_DB_FILENAME).resolve()}"


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL and pin PostgreSQL to the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise DatabaseConfigError("The database URL cannot be parsed") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise DatabaseConfigError(
                "PostgreSQL is supported through psycopg 3 only: use postgresql+psycopg://"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise DatabaseConfigError("SQLite is supported through the standard sqlite3 module")
        return parsed.set(drivername="sqlite")
    raise DatabaseConfigError(
        f"Unsupported database backend {backend!r}: use sqlite:/// or postgresql://"
    )


def mask_url(url: URL) -> str:
    """The URL as it may appear in messages: password and password-like query values masked."""
    query = {
        k: ("***" if "password" in k.lower() else v) for k, v in url.query.items()
    }
    return url.set(query=query).render_as_string(hide_password=True)


def _first_line(exc: BaseException, secret: str | None) -> str:
    """A short driver reason for a connection failure (never contains SQL or parameters)."""
    lines = str(exc).strip().splitlines()
    line = lines[0].strip() if lines else type(exc).__name__
    if secret:
        line = line.replace(secret, "***")
    return line[:300]


def _error_code(exc: sa_exc.SQLAlchemyError) -> str:
    """SQLSTATE (PostgreSQL) or SQLite error name, or the exception class as a fallback."""
    orig = getattr(exc, "orig", None)
    for attr in ("sqlstate", "sqlite_errorname"):
        code = getattr(orig, attr, None)
        if isinstance(code, str) and code:
            return code
    return type(orig if orig is not None else exc).__name__


class Database:
    """A handle on the bot's database: engine, transactions, migrations.

    ``sqlite:///path`` (the default) is opened in WAL mode with a busy timeout so that
    two processes can read and write it at once; ``postgresql://`` and
    ``postgresql+psycopg://`` use psycopg 3 and suit several bot replicas.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        busy_timeout: float = 10.0,
        connect_timeout: int = 10,
        echo: bool = False,
    ) -> None:
        self._url = normalise_url(url)
        self._masked = mask_url(self._url)
        self._busy_timeout = busy_timeout
        is_postgres = self._url.drivername.startswith("postgresql")
        self.dialect: Final[str] = "postgresql" if is_postgres else "sqlite"
        """``"sqlite"`` or ``"postgresql"``."""
        if self.dialect == "sqlite":
            self._engine = self._sqlite_engine(echo)
        else:
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in self._url.query:
                # Without it an unreachable host can block start-up for minutes.
                connect_args["connect_timeout"] = connect_timeout
            self._engine = create_engine(
                self._url, echo=echo, pool_pre_ping=True, connect_args=connect_args
            )

    # -- construction helpers -------------------------------------------------------

    def _sqlite_engine(self, echo: bool) -> Engine:
        database = self._url.database
        in_memory = database in (None, "", ":memory:")
        if in_memory:
            # One shared connection, or every pooled connection would see its own
            # empty in-memory database.
            engine = create_engine(
                self._url,
                echo=echo,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False, "timeout": self._busy_timeout},
            )
        else:
            assert database is not None
            self._prepare_sqlite_file(Path(database))
            engine = create_engine(
                self._url, echo=echo, connect_args={"timeout": self._busy_timeout}
            )
        busy_ms = int(self._busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy emit BEGIN itself (see _on_begin): sqlite3's legacy
            # transaction handling would otherwise run DDL and SELECTs outside of
            # transactions, which breaks transactional migrations.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                if not in_memory:
                    # WAL lets readers proceed while another process writes; the
                    # mode is stored in the file, so this is a no-op after first use.
                    _ensure_wal(cursor, self._busy_timeout)
                cursor.execute("PRAGMA foreign_keys = ON")
                # synchronous stays at its default (FULL): an acknowledged /optout
                # must survive a power cut.
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Write transactions start IMMEDIATE: they take the write lock up front
            # (waiting up to the busy timeout) instead of failing with SQLITE_BUSY
            # when a read lock cannot be upgraded.
            mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    @staticmethod
    def _prepare_sqlite_file(path: Path) -> None:
        # Create the directory and the file ourselves so that they are private to the
        # bot's user; SQLite gives its -wal and -shm files the database file's mode.
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            os.close(fd)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"The database file {path} cannot be created or opened ({exc.strerror})"
            ) from None

    # -- public surface -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with any password masked; safe for logs and messages."""
        return self._masked

    @property
    def engine(self) -> Engine:
        return self._engine

    def __repr__(self) -> str:
        return f"Database({self._masked!r})"

    def dispose(self) -> None:
        """Close every pooled connection (call at shutdown, and in forked children)."""
        self._engine.dispose()

    def insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """A dialect INSERT that supports ON CONFLICT (both backends spell it alike)."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Connection]:
        """A connection inside one transaction: committed on success, rolled back on error.

        ``write=True`` makes SQLite take its write lock at BEGIN. Driver exceptions
        leave as `StorageError` subclasses.
        """
        conn = self._connect()
        try:
            if write and self.dialect == "sqlite":
                conn.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn
        except sa_exc.SQLAlchemyError as exc:
            # `from None`: the chained driver exception would print SQL parameters
            # (identifier hashes) into tracebacks and logs.
            raise self._translate(exc) from None
        finally:
            conn.close()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """An ORM session joined to one `transaction`; flushed and committed on success."""
        with self.transaction(write=write) as conn, Session(bind=conn) as session:
            yield session
            session.flush()

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up to ``revision`` (default: the newest)."""
        self._migrate(lambda cfg: command.upgrade(cfg, revision), f"upgrade to {revision!r}")

    def downgrade(self, revision: str) -> None:
        """Migrate the schema down to ``revision`` (``"base"`` drops every table)."""
        self._migrate(
            lambda cfg: command.downgrade(cfg, revision), f"downgrade to {revision!r}"
        )

    def current_revision(self) -> str | None:
        """The schema revision recorded in the database; None before the first upgrade."""
        with self.transaction() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision this code ships."""
        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def alembic_config(self, connection: Connection | None = None) -> Config:
        """An Alembic configuration for this database; no alembic.ini needed."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        # ConfigParser interpolation: a literal % in the URL must be doubled.
        cfg.set_main_option(
            "sqlalchemy.url",
            self._url.render_as_string(hide_password=False).replace("%", "%%"),
        )
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    # -- internals --------------------------------------------------------------------

    def _migrate(self, run: Callable[[Config], None], action: str) -> None:
        try:
            # One transaction for the whole run (DDL is transactional on both
            # backends), so a failed migration leaves the previous schema intact.
            with self.transaction(write=True) as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                run(self.alembic_config(conn))
        except (CommandError, RevisionError) as exc:
            raise MigrationError(f"Cannot {action}: {exc}") from None
        except DatabaseOperationError as exc:
            raise MigrationError(f"Cannot {action}: {exc}") from None
        log.info("Database schema: %s done (%s)", action, self._masked)

    def _connect(self) -> Connection:
        try:
            return self._engine.connect()
        except sa_exc.DBAPIError as exc:
            reason = _first_line(exc.orig if exc.orig is not None else exc, self._url.password)
            raise DatabaseUnavailable(
                f"The database at {self._masked} cannot be reached ({reason})"
            ) from None
        except sa_exc.SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"The database at {self._masked} cannot be reached ({type(exc).__name__})"
            ) from None

    def _translate(self, exc: sa_exc.SQLAlchemyError) -> StorageError:
        code = _error_code(exc)
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return DatabaseUnavailable(
                f"The connection to the database at {self._masked} was lost ({code})"
            )
        if code in _PG_BUSY_STATES or code.startswith("SQLITE_BUSY") or code.startswith(
            "SQLITE_LOCKED"
        ):
            return DatabaseBusy(f"The database at {self._masked} is busy ({code})")
        return DatabaseOperationError(f"A database statement failed ({code})")
