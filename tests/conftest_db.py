"""Database fixtures for the storage tests (a pytest plugin: ``-p tests.conftest_db``).

Every repository test runs twice, through the parametrized `backend` fixture:

* ``sqlite``: a fresh database file in the test's tmp directory;
* ``postgresql`` (marked ``postgres``): a fresh schema, per test, inside a database
  created for this pytest session (``hushbrief_test_<pid>_<random>``) on the server
  at 127.0.0.1:5432 and dropped at the end, so parallel runs never collide.

The server is reached as user ``postgres`` or ``root`` on database ``test`` (or
``postgres``), trust auth; ``HUSHBRIEF_TEST_POSTGRES_URL`` overrides this with any
URL of a database the user may run CREATE DATABASE from. If the server cannot be
reached the PostgreSQL tests fail with the reason, unless ``HUSHBRIEF_SKIP_POSTGRES=1``
is set, in which case they are skipped with that reason shown.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from hushbrief.bot.consent import ConsentStore
from hushbrief.bot.identifiers import IdentifierHasher
from hushbrief.bot.policy_store import PolicyStore
from hushbrief.bot.storage import Database, normalise_url

SKIP_ENV = "HUSHBRIEF_SKIP_POSTGRES"
URL_ENV = "HUSHBRIEF_TEST_POSTGRES_URL"
_CANDIDATES = [
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "postgresql+psycopg://root@127.0.0.1:5432/postgres",
]

TEST_KEY = bytes(range(32))
"""A fixed identifier key for tests (never a real deployment's)."""


def _libpq_kwargs(url: URL) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "dbname": url.database,
        "connect_timeout": 5,
    }
    if url.username:
        kwargs["user"] = url.username
    if url.password:
        kwargs["password"] = url.password
    return kwargs


def _admin_connect(url: URL) -> psycopg.Connection[Any]:
    return psycopg.connect(**_libpq_kwargs(url), autocommit=True)


def _find_admin_url() -> URL:
    configured = os.environ.get(URL_ENV)
    candidates = [configured] if configured else _CANDIDATES
    reasons: list[str] = []
    for candidate in candidates:
        url = normalise_url(candidate)
        try:
            with _admin_connect(url):
                return url
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            reasons.append(f"  {url.render_as_string(hide_password=True)}: {first}")
    pytest.fail(
        "The PostgreSQL tests need a server (default 127.0.0.1:5432) and none answered:\n"
        + "\n".join(reasons)
        + f"\nStart it, point {URL_ENV} at it, or set {SKIP_ENV}=1 to skip these tests.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[URL]:
    """URL of a database created for this test session, dropped afterwards."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"PostgreSQL tests skipped because {SKIP_ENV}=1")
    admin = _find_admin_url()
    name = f"hushbrief_test_{os.getpid()}_{secrets.token_hex(4)}"
    with _admin_connect(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name)
    finally:
        with _admin_connect(admin) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_url(pg_session_url: URL) -> Iterator[str]:
    """A fresh, empty schema for one test, selected through search_path."""
    schema = f"t_{secrets.token_hex(6)}"
    with _admin_connect(pg_session_url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = pg_session_url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin_connect(pg_session_url) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database (no tables) on the current backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'hushbrief.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An empty, unmigrated database."""
    database = Database(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def migrated_db(db: Database) -> Database:
    db.upgrade()
    return db


@pytest.fixture
def hasher() -> IdentifierHasher:
    return IdentifierHasher(TEST_KEY)


@pytest.fixture
def consent_store(migrated_db: Database, hasher: IdentifierHasher) -> ConsentStore:
    return ConsentStore(migrated_db, hasher)


@pytest.fixture
def policy_store(migrated_db: Database, hasher: IdentifierHasher) -> PolicyStore:
    return PolicyStore(migrated_db, hasher)


# --------------------------------------------------------------------------- processes

REPO_ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import sys, time
from pathlib import Path
_go, _ready = Path(sys.argv[1]), Path(sys.argv[2])
ARGS = sys.argv[3:]

def wait_for_go():
    _ready.touch()
    deadline = time.monotonic() + 60
    while not _go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no start signal")
        time.sleep(0.001)
"""


def run_racing_processes(
    code: str, argvs: list[list[str]], work_dir: Path, timeout: float = 180.0
) -> list[str]:
    """Run ``code`` in one fresh Python process per argv list, released at the same moment.

    ``code`` sees ``ARGS`` (its argv) and must call ``wait_for_go()`` once its set-up
    is done, so the racing part starts together in every process. Returns each
    process's stdout; a non-zero exit fails the test with that process's stderr.
    """
    token = secrets.token_hex(4)
    go = work_dir / f"go-{token}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    procs: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for i, argv in enumerate(argvs):
            ready = work_dir / f"ready-{token}-{i}"
            proc = subprocess.Popen(
                [sys.executable, "-c", _PRELUDE + code, str(go), str(ready), *argv],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((proc, ready))
        deadline = time.monotonic() + 60
        while not all(ready.exists() for _, ready in procs):
            for proc, _ in procs:
                if proc.poll() is not None:
                    _, err = proc.communicate()
                    pytest.fail(f"a racing process exited before the start:\n{err}")
            if time.monotonic() > deadline:
                pytest.fail("the racing processes did not get ready within 60 s")
            time.sleep(0.005)
        go.touch()
        outputs: list[str] = []
        for proc, _ in procs:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                pytest.fail(f"a racing process failed (exit {proc.returncode}):\n{err}")
            outputs.append(out)
        return outputs
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
