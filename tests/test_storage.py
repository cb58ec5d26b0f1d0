"""The storage layer: identifier hashing and its key, opt-in flags, chat policy.

Repository tests run on SQLite and on PostgreSQL (see tests/conftest_db.py).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hushbrief.bot.consent import ConsentStore
from hushbrief.bot.identifiers import (
    KEY_FILE_NAME,
    IdentifierHasher,
    IdentifierKeyError,
    KeyFileError,
    load_or_create_key,
)
from hushbrief.bot.policy import (
    POLICY_KEYS,
    ConsentMode,
    Delivery,
    Policy,
    Processing,
    Who,
)
from hushbrief.bot.policy_store import PolicyStore
from hushbrief.bot.storage import (
    HASH_BYTES,
    Database,
    DatabaseConfigError,
    DatabaseOperationError,
    DatabaseUnavailable,
    StorageError,
    chat_policy_table,
    consent_table,
    normalise_url,
)
from tests.conftest_db import TEST_KEY, run_racing_processes

TG = "telegram"
MX = "matrix"

# ---------------------------------------------------------------------------- hasher


def test_hashes_are_32_bytes_and_deterministic(hasher: IdentifierHasher) -> None:
    h = hasher.chat(TG, "-1001234567890")
    assert isinstance(h, bytes)
    assert len(h) == HASH_BYTES
    assert h == IdentifierHasher(TEST_KEY).chat(TG, "-1001234567890")


def test_hashes_are_domain_separated(hasher: IdentifierHasher) -> None:
    # Telegram's private chat with a user has the user's ID as chat ID.
    assert hasher.chat(TG, "42") != hasher.user(TG, "42")
    assert hasher.user(TG, "42") != hasher.user(MX, "42")
    assert hasher.chat(TG, "42") != hasher.chat(MX, "42")
    assert hasher.user(TG, "42") != hasher.user(TG, "43")


def test_hashes_depend_on_the_key() -> None:
    other = IdentifierHasher(bytes(32))
    assert other.user(TG, "42") != IdentifierHasher(TEST_KEY).user(TG, "42")


def test_log_tag_is_short_and_unrelated_to_stored_hashes(hasher: IdentifierHasher) -> None:
    tag = hasher.log_tag(TG, "42")
    assert len(tag) == 8
    assert int(tag, 16) >= 0
    assert tag == hasher.log_tag(TG, "42")
    assert tag != hasher.log_tag(TG, "42", kind="user")
    assert not hasher.chat(TG, "42").hex().startswith(tag)
    assert not hasher.user(TG, "42").hex().startswith(hasher.log_tag(TG, "42", kind="user"))


def test_hasher_rejects_bad_input() -> None:
    with pytest.raises(IdentifierKeyError):
        IdentifierHasher(b"short")
    h = IdentifierHasher(TEST_KEY)
    with pytest.raises(ValueError):
        h.chat("tele\0gram", "1")
    with pytest.raises(ValueError):
        h.chat("Telegram", "1")
    with pytest.raises(ValueError):
        h.user(TG, "")
    with pytest.raises(TypeError):
        h.user(TG, 42)  # type: ignore[arg-type]
    assert TEST_KEY.hex() not in repr(h)


@given(a=st.text(min_size=1), b=st.text(min_size=1))
def test_distinct_ids_get_distinct_hashes(a: str, b: str) -> None:
    h = IdentifierHasher(TEST_KEY)
    assert (h.user(TG, a) == h.user(TG, b)) == (a == b)
    assert h.user(TG, a) != h.chat(TG, a)


# ---------------------------------------------------------------------------- key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_configured_key_is_used_and_no_file_written(tmp_path: Path) -> None:
    key = os.urandom(32)
    assert load_or_create_key(tmp_path / "d", key.hex()) == key
    assert load_or_create_key(tmp_path / "d", key.hex().upper() + "\n") == key
    assert not (tmp_path / "d" / KEY_FILE_NAME).exists()


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, "00" * 31])
def test_bad_configured_key_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(IdentifierKeyError, match="configured identifier key") as info:
        load_or_create_key(tmp_path, bad)
    assert bad not in str(info.value)
    assert isinstance(info.value, StorageError)


def test_key_file_created_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = load_or_create_key(data_dir, None)
    path = data_dir / KEY_FILE_NAME
    assert len(key) == 32
    assert _mode(path) == 0o600
    assert _mode(data_dir) == 0o700
    assert path.read_text() == key.hex() + "\n"
    assert load_or_create_key(data_dir, None) == key
    assert load_or_create_key(data_dir, "") == key
    assert sorted(p.name for p in data_dir.iterdir()) == [KEY_FILE_NAME]


def test_key_file_creation_ignores_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path, None)
    finally:
        os.umask(old)
    assert _mode(tmp_path / KEY_FILE_NAME) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    load_or_create_key(tmp_path, None)
    path = tmp_path / KEY_FILE_NAME
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        load_or_create_key(tmp_path, None)
    assert str(path) in str(info.value)
    assert "chmod 600" in str(info.value)


@pytest.mark.parametrize(
    "content", [b"", b"not a key\n", b"00" * 16 + b"\n", b"\xff\xfe" * 40]
)
def test_malformed_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(content)
    path.chmod(0o600)
    os.utime(path, (1_000_000_000, 1_000_000_000))  # old: not a racing creator's file
    with pytest.raises(KeyFileError) as info:
        load_or_create_key(tmp_path, None)
    assert str(path) in str(info.value)


def test_key_file_symlink_or_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    load_or_create_key(real, None)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / KEY_FILE_NAME).symlink_to(real / KEY_FILE_NAME)
    with pytest.raises(KeyFileError, match="symbolic link"):
        load_or_create_key(data, None)
    other = tmp_path / "other"
    (other / KEY_FILE_NAME).mkdir(parents=True)
    with pytest.raises(KeyFileError):
        load_or_create_key(other, None)


def _race_in_threads(data_dir: Path, n: int) -> tuple[list[bytes], list[BaseException]]:
    barrier = threading.Barrier(n)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait()
            results.append(load_or_create_key(data_dir, None))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_racing_key_creation_in_threads(tmp_path: Path) -> None:
    for round_ in range(30):
        data_dir = tmp_path / f"r{round_}"
        results, errors = _race_in_threads(data_dir, 8)
        assert not errors
        assert len(set(results)) == 1
        assert (data_dir / KEY_FILE_NAME).read_text() == results[0].hex() + "\n"
        assert sorted(p.name for p in data_dir.iterdir()) == [KEY_FILE_NAME]


_KEY_RACER = """
from pathlib import Path
from hushbrief.bot.identifiers import load_or_create_key
wait_for_go()
print(load_or_create_key(Path(ARGS[0]), None).hex())
"""


def test_racing_key_creation_in_processes(tmp_path: Path) -> None:
    for round_ in range(3):
        data_dir = tmp_path / f"r{round_}"
        outputs = run_racing_processes(_KEY_RACER, [[str(data_dir)]] * 4, tmp_path)
        keys = {o.strip() for o in outputs}
        assert len(keys) == 1
        assert (data_dir / KEY_FILE_NAME).read_text().strip() == keys.pop()
        assert _mode(data_dir / KEY_FILE_NAME) == 0o600


# ---------------------------------------------------------------------------- database


def test_url_normalisation() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(DatabaseConfigError):
        normalise_url("mysql://u@h/db")
    with pytest.raises(DatabaseConfigError):
        normalise_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(DatabaseConfigError):
        normalise_url("not a url")


def test_unreachable_database_is_reported_with_the_password_masked() -> None:
    db = Database("postgresql://bot:s3cr3t-pw@127.0.0.1:1/hush?connect_timeout=3")
    try:
        assert "s3cr3t-pw" not in db.url
        assert "s3cr3t-pw" not in repr(db)
        with pytest.raises(DatabaseUnavailable) as info:
            db.upgrade()
        message = str(info.value)
        assert "cannot be reached" in message
        assert "127.0.0.1:1/hush" in message
        assert "s3cr3t-pw" not in message
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__
    finally:
        db.dispose()


def test_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseUnavailable):
        Database(f"sqlite:///{blocker / 'sub' / 'x.db'}")


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "data" / "hushbrief.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.upgrade()
        assert _mode(path) == 0o600
        assert _mode(path.parent) == 0o700
        with db.transaction() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        db.dispose()


def test_statement_errors_carry_no_identifiers(db: Database, hasher: IdentifierHasher) -> None:
    # No migration ran, so the table is missing and the statement fails.
    store = ConsentStore(db, hasher)
    with pytest.raises(DatabaseOperationError) as info:
        store.opt_in(TG, "-100555777", "918273")
    message = str(info.value)
    for secret in ("-100555777", "918273", hasher.chat(TG, "-100555777").hex(),
                   hasher.user(TG, "918273").hex(), "INSERT", "consent"):
        assert secret not in message
    assert info.value.__cause__ is None


def test_session_helper_commits_and_rolls_back(migrated_db: Database) -> None:
    from hushbrief.bot.storage import Consent

    with migrated_db.session(write=True) as session:
        session.add(Consent(chat_hash=b"c" * 32, user_hash=b"u" * 32))

    def add_then_fail() -> None:
        with migrated_db.session(write=True) as session:
            session.add(Consent(chat_hash=b"c" * 32, user_hash=b"v" * 32))
            session.flush()
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        add_then_fail()
    with migrated_db.session() as session:
        rows = session.scalars(select(Consent.user_hash)).all()
    assert rows == [b"u" * 32]


# ---------------------------------------------------------------------------- consent


def test_opt_in_and_out(consent_store: ConsentStore) -> None:
    assert not consent_store.is_opted_in(TG, "c1", "u1")
    assert consent_store.opt_in(TG, "c1", "u1") is True
    assert consent_store.opt_in(TG, "c1", "u1") is False  # idempotent
    assert consent_store.is_opted_in(TG, "c1", "u1")
    assert not consent_store.is_opted_in(TG, "c2", "u1")
    assert not consent_store.is_opted_in(MX, "c1", "u1")
    assert consent_store.count(TG, "c1") == 1
    assert consent_store.opt_out(TG, "c1", "u1") is True
    assert consent_store.opt_out(TG, "c1", "u1") is False  # idempotent
    assert not consent_store.is_opted_in(TG, "c1", "u1")
    assert consent_store.count(TG, "c1") == 0


def test_count_per_chat(consent_store: ConsentStore) -> None:
    for user in ("a", "b", "c"):
        consent_store.opt_in(TG, "c1", user)
    consent_store.opt_in(TG, "c2", "a")
    consent_store.opt_in(MX, "c1", "a")
    assert consent_store.count(TG, "c1") == 3
    assert consent_store.count(TG, "c2") == 1
    assert consent_store.count(MX, "c1") == 1
    assert consent_store.count(TG, "nobody-here") == 0


def test_opted_in_among(consent_store: ConsentStore) -> None:
    consent_store.opt_in(TG, "c1", "a")
    consent_store.opt_in(TG, "c1", "c")
    consent_store.opt_in(TG, "c2", "b")
    assert consent_store.opted_in_among(TG, "c1", ["a", "b", "c", "d"]) == {"a", "c"}
    assert consent_store.opted_in_among(TG, "c1", iter(["a", "a", "b"])) == {"a"}
    assert consent_store.opted_in_among(TG, "c1", []) == set()
    assert consent_store.opted_in_among(MX, "c1", ["a", "c"]) == set()


def test_opted_in_among_many_users(consent_store: ConsentStore) -> None:
    users = [f"user{i}" for i in range(2500)]
    for u in users[::250]:
        consent_store.opt_in(TG, "big", u)
    assert consent_store.opted_in_among(TG, "big", users) == set(users[::250])


def test_forget_removes_the_user_from_every_chat(consent_store: ConsentStore) -> None:
    for chat in ("c1", "c2", "c3"):
        consent_store.opt_in(TG, chat, "leaver")
        consent_store.opt_in(TG, chat, "stayer")
    consent_store.opt_in(MX, "c1", "leaver")  # same raw ID, other platform: another person
    assert consent_store.forget(TG, "leaver") == 3
    assert consent_store.forget(TG, "leaver") == 0
    for chat in ("c1", "c2", "c3"):
        assert not consent_store.is_opted_in(TG, chat, "leaver")
        assert consent_store.is_opted_in(TG, chat, "stayer")
    assert consent_store.is_opted_in(MX, "c1", "leaver")


# ---------------------------------------------------------------------------- policy


def test_policy_set_override_reset_effective(policy_store: PolicyStore) -> None:
    defaults = Policy()
    assert policy_store.overrides(TG, "c1") == {}
    assert policy_store.effective(TG, "c1", defaults) == defaults

    policy_store.set(TG, "c1", "who", Who.ADMINS)
    policy_store.set(TG, "c1", "summaries", False)
    policy_store.set(TG, "c1", "max_span", 3 * 3600)
    assert policy_store.overrides(TG, "c1") == {
        "who": "admins", "summaries": False, "max_span": 10800,
    }
    eff = policy_store.effective(TG, "c1", defaults)
    assert eff == Policy(who=Who.ADMINS, summaries=False, max_span=10800)
    assert policy_store.overrides(TG, "c2") == {}
    assert policy_store.overrides(MX, "c1") == {}

    # An override wins over a changed default; unset keys follow the default.
    changed = Policy(length=300, who=Who.MEMBERS)
    assert policy_store.effective(TG, "c1", changed) == Policy(
        length=300, who=Who.ADMINS, summaries=False, max_span=10800
    )

    policy_store.set(TG, "c1", "who", "members")  # overwrite; enum value as str works too
    assert policy_store.overrides(TG, "c1")["who"] == "members"
    policy_store.set(TG, "c1", "summaries", None)  # clears one key
    assert "summaries" not in policy_store.overrides(TG, "c1")

    policy_store.reset(TG, "c1")
    assert policy_store.overrides(TG, "c1") == {}
    assert policy_store.effective(TG, "c1", changed) == changed
    policy_store.reset(TG, "c1")  # idempotent


def test_policy_set_is_idempotent(policy_store: PolicyStore) -> None:
    for _ in range(3):
        policy_store.set(TG, "c1", "redact", True)
    assert policy_store.overrides(TG, "c1") == {"redact": True}


def test_policy_rejects_unknown_keys_and_bad_values(policy_store: PolicyStore) -> None:
    with pytest.raises(ValueError):
        policy_store.set(TG, "c1", "no_such_key", 1)
    with pytest.raises(ValueError):
        policy_store.set(TG, "c1", "who", "everyone")
    with pytest.raises(ValueError):
        policy_store.set(TG, "c1", "summaries", "off")
    with pytest.raises(ValueError):
        policy_store.set(TG, "c1", "length", True)
    with pytest.raises(ValueError):
        policy_store.set(TG, "c1", "length", "300")
    assert policy_store.overrides(TG, "c1") == {}


_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "summaries": st.booleans(),
    "who": st.sampled_from(Who),
    "consent": st.sampled_from(ConsentMode),
    "delivery": st.sampled_from(Delivery),
    "processing": st.sampled_from(Processing),
    "redact": st.booleans(),
}
_INT_KEYS = set(POLICY_KEYS) - set(_VALUES)


@st.composite
def _overrides(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.sets(st.sampled_from(sorted(POLICY_KEYS))))
    return {
        k: draw(st.integers(1, 2**31 - 1) if k in _INT_KEYS else _VALUES[k]) for k in keys
    }


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_overrides())
def test_policy_round_trip(policy_store: PolicyStore, changes: dict[str, Any]) -> None:
    policy_store.reset(TG, "prop")
    for key, value in changes.items():
        policy_store.set(TG, "prop", key, value)
    stored = policy_store.overrides(TG, "prop")
    assert set(stored) == set(changes)
    assert policy_store.effective(TG, "prop", Policy()) == Policy().with_overrides(changes)


# ---------------------------------------------------------------------------- only hashes


RAW_CHAT = "-1009876543210"
RAW_USERS = ("7319024866", "@canary-user:example.org")


def _raw_rows(db: Database) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with db.transaction() as conn:
        for table in (consent_table, chat_policy_table):
            rows.extend(tuple(r) for r in conn.execute(select(table)))
        rows.extend(tuple(r) for r in conn.exec_driver_sql("SELECT * FROM alembic_version"))
    return rows


def _contains(blob: bytes, needle: str) -> bool:
    return needle.encode() in blob or needle.encode("utf-16-le") in blob


def test_only_hashes_are_stored(
    migrated_db: Database, consent_store: ConsentStore, policy_store: PolicyStore,
    hasher: IdentifierHasher, db_url: str,
) -> None:
    for user in RAW_USERS:
        consent_store.opt_in(TG, RAW_CHAT, user)
    policy_store.set(TG, RAW_CHAT, "who", Who.ADMINS)
    policy_store.set(TG, RAW_CHAT, "length", 77)

    rows = _raw_rows(migrated_db)
    consent_rows = rows[:2]
    assert {r[0] for r in consent_rows} == {hasher.chat(TG, RAW_CHAT)}
    assert {r[1] for r in consent_rows} == {hasher.user(TG, u) for u in RAW_USERS}
    for row in rows:
        for value in row:
            if isinstance(value, bytes):
                assert len(value) == HASH_BYTES
            text = repr(value)
            for raw in (RAW_CHAT, *RAW_USERS):
                assert raw not in text
                if isinstance(value, bytes):
                    assert not _contains(value, raw)

    if migrated_db.dialect == "sqlite":
        path = Path(db_url.removeprefix("sqlite:///"))
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert any(p.name.endswith("-wal") for p in files)  # the WAL is searched too
        migrated_db.dispose()  # checkpoint the WAL into the main file as well
        files += [path]
        for file in files:
            if not file.exists():
                continue
            blob = file.read_bytes()
            for raw in (RAW_CHAT, *RAW_USERS):
                assert not _contains(blob, raw), f"{raw!r} found in {file.name}"
            assert hasher.user(TG, RAW_USERS[0]) in path.read_bytes()


# ---------------------------------------------------------------------------- two processes


_TOGGLER = """
import json
from hushbrief.bot.consent import ConsentStore
from hushbrief.bot.identifiers import IdentifierHasher
from hushbrief.bot.policy import Policy
from hushbrief.bot.policy_store import PolicyStore
from hushbrief.bot.storage import Database

url, key_hex, name, iterations = ARGS[0], ARGS[1], ARGS[2], int(ARGS[3])
db = Database(url)
hasher = IdentifierHasher(bytes.fromhex(key_hex))
consent = ConsentStore(db, hasher)
policy = PolicyStore(db, hasher)
users = ["u0", "u1", "u2"]
ins = {u: 0 for u in users}
outs = {u: 0 for u in users}
lengths = set()
wait_for_go()
for i in range(iterations):
    user = users[i % 3]
    if i % 10 == 9:
        outs[user] += consent.forget("telegram", user)
    elif (i // 3) % 2 == 0:
        ins[user] += consent.opt_in("telegram", "shared", user)
    else:
        outs[user] += consent.opt_out("telegram", "shared", user)
    length = 20 + (i % 7) * 10
    policy.set("telegram", "shared", "length", length)
    lengths.add(length)
    assert consent.count("telegram", "shared") <= 3
    consent.opted_in_among("telegram", "shared", users)
    policy.effective("telegram", "shared", Policy())
# Both processes end with the same steps, so the final flags are known.
ins["u0"] += consent.opt_in("telegram", "shared", "u0")
outs["u1"] += consent.opt_out("telegram", "shared", "u1")
# Each process owns one more key; concurrent upserts must not clobber each other.
if name == "a":
    policy.set("telegram", "shared", "who", "admins")
else:
    policy.set("telegram", "shared", "redact", True)
db.dispose()
print(json.dumps({"ins": ins, "outs": outs, "lengths": sorted(lengths)}))
"""


@pytest.mark.slow
def test_two_processes_toggle_the_same_flags(
    migrated_db: Database, db_url: str, tmp_path: Path,
    consent_store: ConsentStore, policy_store: PolicyStore,
) -> None:
    iterations = "200"
    argvs = [[db_url, TEST_KEY.hex(), name, iterations] for name in ("a", "b")]
    outputs = run_racing_processes(_TOGGLER, argvs, tmp_path)
    reports = [json.loads(o.strip().splitlines()[-1]) for o in outputs]

    final = {u: consent_store.is_opted_in(TG, "shared", u) for u in ("u0", "u1", "u2")}
    assert final["u0"] is True
    assert final["u1"] is False
    # Each reported change really happened: for every flag, the changes made by
    # both processes alternate on -> off -> on, so they add up to the final state.
    for user, is_in in final.items():
        ins = sum(r["ins"][user] for r in reports)
        outs = sum(r["outs"][user] for r in reports)
        assert ins - outs == int(is_in), (user, ins, outs)
        assert ins > 0
    assert consent_store.count(TG, "shared") == sum(final.values())

    overrides = policy_store.overrides(TG, "shared")
    written = set(reports[0]["lengths"]) | set(reports[1]["lengths"])
    assert overrides["length"] in written
    assert overrides["who"] == "admins"
    assert overrides["redact"] is True
    assert set(overrides) == {"length", "who", "redact"}


def test_threads_share_one_database(consent_store: ConsentStore) -> None:
    # Async callers run the stores in worker threads; the pool must allow that.
    def opt_in(i: int) -> bool:
        return consent_store.opt_in(TG, "threads", f"u{i % 25}")

    with ThreadPoolExecutor(8) as pool:
        changed = list(pool.map(opt_in, range(300)))
    assert sum(changed) == 25
    assert consent_store.count(TG, "threads") == 25
