"""Alembic environment for the bot's database.

Normally driven by `hushbrief.bot.storage.Database`, which passes its own connection
(already inside a transaction, with the SQLite pragmas and the PostgreSQL migration
lock applied) in ``config.attributes["connection"]``. When run from the alembic CLI
(``alembic -c alembic.ini upgrade head``), the URL comes from ``-x url=...``, the
``HUSHBRIEF_DATABASE_URL`` environment variable, or ``sqlalchemy.url`` in the ini file,
and is opened through `Database` so the same settings apply.

Logging is deliberately not configured here (no ``fileConfig``): the application's
logging setup must stay as it is when migrations run at start-up.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from hushbrief.bot.storage import Base, Database, normalise_url

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables.
        render_as_batch=connection.dialect.name == "sqlite",
        # Our connections emit BEGIN themselves, so DDL on SQLite is transactional.
        transactional_ddl=True,
        compare_type=True,
    )


def _cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "HUSHBRIEF_DATABASE_URL"
    )
    if not url:
        url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "No database URL: pass -x url=..., set HUSHBRIEF_DATABASE_URL, "
            "or set sqlalchemy.url in alembic.ini"
        )
    return url


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=normalise_url(_cli_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    db = Database(_cli_url())
    try:
        with db.transaction(write=True) as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        db.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
