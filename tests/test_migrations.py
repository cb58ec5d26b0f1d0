"""Alembic migrations of the bot's database, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from hushbrief.bot.storage import Base, Database, MigrationError
from tests.conftest_db import REPO_ROOT, run_racing_processes

APP_TABLES = {"consent", "chat_policy", "log_checkpoint"}


def _tables(db: Database) -> set[str]:
    with db.transaction() as conn:
        return set(inspect(conn).get_table_names())


def _schema_diff(db: Database) -> list[object]:
    with db.transaction() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_fresh_database_has_no_revision(db: Database) -> None:
    assert db.current_revision() is None
    assert db.head_revision() == "0002"
    assert not _tables(db) & APP_TABLES


def test_upgrade_to_head_creates_the_tables(db: Database) -> None:
    db.upgrade()
    assert db.current_revision() == db.head_revision()
    assert _tables(db) >= APP_TABLES | {"alembic_version"}


def test_models_match_the_migrated_schema(migrated_db: Database) -> None:
    # The equivalent of `alembic check`: autogenerate finds nothing to do.
    assert _schema_diff(migrated_db) == []


def test_down_to_base_and_up_again(migrated_db: Database) -> None:
    migrated_db.downgrade("base")
    assert migrated_db.current_revision() is None
    assert not _tables(migrated_db) & APP_TABLES

    migrated_db.upgrade("head")
    assert migrated_db.current_revision() == migrated_db.head_revision()
    assert _tables(migrated_db) >= APP_TABLES
    assert _schema_diff(migrated_db) == []


def test_upgrade_twice_is_a_no_op(migrated_db: Database) -> None:
    migrated_db.upgrade()
    assert migrated_db.current_revision() == migrated_db.head_revision()


def test_unknown_revision_is_a_migration_error(db: Database) -> None:
    with pytest.raises(MigrationError, match="Cannot upgrade"):
        db.upgrade("no-such-revision")
    assert db.current_revision() is None


def test_migrations_leave_application_logging_alone(db: Database) -> None:
    root = logging.getLogger()
    app_logger = logging.getLogger("hushbrief.test_migrations.canary")
    handlers_before = list(root.handlers)
    level_before = root.level
    db.upgrade()
    db.downgrade("base")
    # fileConfig() would have replaced the root handlers and disabled existing loggers.
    assert root.handlers == handlers_before
    assert root.level == level_before
    assert not app_logger.disabled


_UPGRADE_RACER = """
from hushbrief.bot.storage import Database
db = Database(ARGS[0])
wait_for_go()
db.upgrade()
print(db.current_revision())
db.dispose()
"""


def test_two_processes_upgrading_at_once(db_url: str, tmp_path: Path) -> None:
    # Two bot replicas starting together: both must succeed, the schema exists once.
    outputs = run_racing_processes(_UPGRADE_RACER, [[db_url], [db_url]], tmp_path)
    assert [o.strip() for o in outputs] == ["0002", "0002"]
    db = Database(db_url)
    try:
        assert _schema_diff(db) == []
    finally:
        db.dispose()


def test_alembic_cli_with_the_repository_ini(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the ini must suffice
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini"),
               "-x", f"url={db_url}"]
    for args in (["upgrade", "head"], ["check"], ["current"]):
        result = subprocess.run(
            [*alembic, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )
        assert result.returncode == 0, result.stderr
    assert "0002 (head)" in result.stdout
    db = Database(db_url)
    try:
        assert db.current_revision() == "0002"
        assert _tables(db) >= APP_TABLES
    finally:
        db.dispose()


def test_schema_comparison_notices_a_drift(migrated_db: Database) -> None:
    # Guards the test above: the comparison must see a missing index.
    with migrated_db.transaction(write=True) as conn:
        conn.exec_driver_sql("DROP INDEX ix_consent_user_hash")
    diff = _schema_diff(migrated_db)
    assert diff
    assert any("ix_consent_user_hash" in repr(d) for d in diff)


def test_step_by_step_up_and_down(migrated_db: Database) -> None:
    """Each revision on its own: 0002 adds the checkpoint table and takes it away again."""
    migrated_db.downgrade("0001")
    assert "log_checkpoint" not in _tables(migrated_db)
    assert {"consent", "chat_policy"} <= _tables(migrated_db)
    migrated_db.upgrade("0002")
    assert "log_checkpoint" in _tables(migrated_db)
    assert _schema_diff(migrated_db) == []
