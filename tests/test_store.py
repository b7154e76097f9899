"""Tests of the store package: encryption at rest, connections, the delivery ledger, migrations.

Every test that touches a database runs on SQLite (a file under tmp_path) and on PostgreSQL
(``FLEXSYNC_TEST_POSTGRES_URL``, one fresh schema per test).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from config.settings import Settings, SettingsError
from ingest.ledger import BatchRecorder, DeliveryLedger, storage_key
from store import SecretBox, SecretDecryptError, check_ready, create_engine_for, generate_key, models, upgrade
from store.crypto import dev_key_path
from store.db import alembic_config
from store.models import Base, WebhookDelivery
from workers.connections.cache import CachedConnectionLookup
from workers.connections.store import (
    AccountInUseError,
    ConnectionNotFound,
    ConnectionRecord,
    ConnectionStateError,
    ConnectionStore,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
PASSWORD = "Intacct-user-password-4711"


# --- fixtures and test doubles ------------------------------------------------------------


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([generate_key()])


@pytest.fixture
def store(engine: Engine, box: SecretBox) -> ConnectionStore:
    return ConnectionStore(engine, box)


class WallClock:
    """An injectable UTC clock that only moves when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class TickClock:
    """An injectable monotonic clock (seconds) that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """Stands in for ConnectionStore.get, counting calls; answers from a dict."""

    def __init__(self, records: dict[str, ConnectionRecord] | None = None) -> None:
        self.records = records or {}
        self.calls = 0
        self._lock = threading.Lock()

    def get(self, connection_id: str) -> ConnectionRecord | None:
        with self._lock:
            self.calls += 1
        return self.records.get(connection_id)


def _count_statements(engine: Engine) -> list[str]:
    """Record every SQL statement the engine runs from now on."""
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, _params, _context, _many) -> None:
        statements.append(statement)

    return statements


def _save(store: ConnectionStore, connection_id: str = "conn-1", **overrides) -> ConnectionRecord:
    values = {
        "account_id": "acct-1",
        "company_id": "COMPANY-1",
        "entity_id": None,
        "user_id": "sync-user",
        "state": "connecting",
    }
    values.update(overrides)
    return store.save(connection_id, **values)


def _raw_secrets(engine: Engine, connection_id: str) -> tuple[str | None, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT user_password_enc, webhook_secret_enc FROM connections WHERE connection_id = :id"),
            {"id": connection_id},
        ).one()
    return row[0], row[1]


def _database_bytes(engine: Engine) -> bytes:
    """Everything SQLite has on disk for this database, write-ahead log included."""
    path = Path(engine.url.database)
    return b"".join(candidate.read_bytes() for candidate in (path, Path(f"{path}-wal")) if candidate.exists())


# --- crypto -------------------------------------------------------------------------------


def test_secret_box_round_trip_and_tokens_hide_plaintext():
    box = SecretBox([generate_key()])
    token = box.encrypt(PASSWORD)
    assert PASSWORD not in token
    assert box.decrypt(token) == PASSWORD
    # Fernet tokens are randomised: the same secret never gives the same ciphertext twice.
    assert box.encrypt(PASSWORD) != token


def test_wrong_key_raises_without_leaking_plaintext_or_key():
    key = generate_key()
    token = SecretBox([key]).encrypt(PASSWORD)
    other_key = generate_key()
    with pytest.raises(SecretDecryptError) as caught:
        SecretBox([other_key]).decrypt(token)
    message = str(caught.value)
    assert "key" in message and "rotated" in message
    for secret in (PASSWORD, key, other_key, token):
        assert secret not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_key_rotation_old_keys_decrypt_and_rotate_moves_to_primary():
    old_key, new_key = generate_key(), generate_key()
    old_token = SecretBox([old_key]).encrypt(PASSWORD)
    rotating = SecretBox([new_key, old_key])
    assert rotating.decrypt(old_token) == PASSWORD
    assert not rotating.is_current(old_token)
    new_token = rotating.rotate(old_token)
    assert rotating.is_current(new_token)
    assert SecretBox([new_key]).decrypt(new_token) == PASSWORD
    with pytest.raises(SecretDecryptError):
        SecretBox([old_key]).decrypt(new_token)


def test_secret_box_rejects_bad_keys_without_echoing_them():
    with pytest.raises(ValueError) as caught:
        SecretBox([generate_key(), "not-a-key-SENSITIVE"])
    assert "key 2" in str(caught.value)
    assert "SENSITIVE" not in str(caught.value)
    with pytest.raises(ValueError):
        SecretBox([])
    with pytest.raises(TypeError):
        SecretBox(generate_key())  # type: ignore[arg-type]
    assert "keys hidden" in repr(SecretBox([generate_key()]))


def test_for_settings_uses_configured_keys():
    first, second = generate_key(), generate_key()
    token = SecretBox([second]).encrypt(PASSWORD)
    box = SecretBox.for_settings(Settings(flexsync_secret_key=(first, second)))
    assert box.decrypt(token) == PASSWORD
    assert SecretBox([first]).decrypt(box.encrypt("x")) == "x"


def test_for_settings_refuses_production_without_key():
    with pytest.raises(SettingsError, match="FLEXSYNC_SECRET_KEY"):
        SecretBox.for_settings(Settings(flexsync_env="production", flexsync_secret_key=()))


def test_development_key_is_created_once_next_to_sqlite_file(tmp_path: Path):
    settings = Settings(flexsync_env="development", database_url=f"sqlite:///{tmp_path / 'data' / 'app.db'}")
    key_file = tmp_path / "data" / "dev-secret.key"
    assert dev_key_path(settings.database_url) == key_file
    token = SecretBox.for_settings(settings).encrypt(PASSWORD)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # A restart reads the same key back, so earlier data stays readable.
    assert SecretBox.for_settings(settings).decrypt(token) == PASSWORD
    assert [p.name for p in key_file.parent.iterdir()] == ["dev-secret.key"]


def test_development_key_for_postgres_lives_in_var(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(flexsync_env="test", database_url="postgresql://db.example/flexsync")
    SecretBox.for_settings(settings)
    assert (tmp_path / "var" / "dev-secret.key").is_file()


def test_development_key_creation_races_settle_on_one_key(tmp_path: Path):
    settings = Settings(flexsync_env="development", database_url=f"sqlite:///{tmp_path}/a.db")
    barrier = threading.Barrier(8)

    def build() -> str:
        barrier.wait(timeout=10)
        return SecretBox.for_settings(settings).encrypt("probe")

    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: build(), range(8)))
    final = SecretBox.for_settings(settings)
    assert {final.decrypt(token) for token in tokens} == {"probe"}


def test_damaged_development_key_is_reported_without_content(tmp_path: Path):
    (tmp_path / "dev-secret.key").write_text("garbage-KEYTEXT")
    settings = Settings(flexsync_env="development", database_url=f"sqlite:///{tmp_path}/a.db")
    with pytest.raises(SettingsError, match="damaged") as caught:
        SecretBox.for_settings(settings)
    assert "KEYTEXT" not in str(caught.value)


# --- engine, readiness, migrations -------------------------------------------------------


def test_sqlite_engine_pragmas_and_parent_directory(tmp_path: Path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'deep' / 'er' / 'x.db'}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 1,  # NORMAL
            "busy_timeout": 5000,
            "foreign_keys": 1,
        }
        assert (tmp_path / "deep" / "er").is_dir()
    finally:
        engine.dispose()


def test_postgres_url_uses_psycopg3():
    engine = create_engine_for("postgresql://user:pw@db.example:5432/flexsync")
    assert engine.dialect.driver == "psycopg"
    assert engine.pool._pre_ping
    engine.dispose()


def test_check_ready(engine: Engine):
    check_ready(engine)


def test_check_ready_raises_when_database_is_down():
    engine = create_engine_for("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(OperationalError):
        check_ready(engine)
    engine.dispose()


def _head() -> str:
    """The newest revision of the shipped migrations."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrations_are_idempotent_and_match_models(engine: Engine):
    upgrade(engine)  # second run on top of the fixture's
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [_head()]
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        inspector = inspect(conn)
        assert {"connections", "webhook_deliveries"} <= set(inspector.get_table_names())
        assert inspector.get_pk_constraint("webhook_deliveries")["constrained_columns"] == [
            "connection_id",
            "idempotency_key",
        ]
        indexes = {ix["name"]: ix for ix in inspector.get_indexes("webhook_deliveries")}
        assert indexes["ix_webhook_deliveries_claimed_at"]["column_names"] == ["claimed_at"]


def _upgrade_in_process(url: str, barrier) -> None:
    engine = create_engine_for(url)
    barrier.wait(timeout=60)
    upgrade(engine)
    engine.dispose()


def test_upgrade_from_several_processes_at_once(database_url: str):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    processes = [context.Process(target=_upgrade_in_process, args=(database_url, barrier)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert versions == [(_head(),)]
    finally:
        engine.dispose()


# --- connections --------------------------------------------------------------------------


def test_new_connection_gets_secret_and_round_trips(store: ConnectionStore):
    saved = _save(store, entity_id="ENTITY-9", user_password=PASSWORD)
    assert saved.state == "connecting" and saved.is_active
    assert len(saved.webhook_secrets) == 1 and len(saved.webhook_secrets[0]) >= 40
    assert saved.created_at.tzinfo is not None
    assert store.get("conn-1") == saved
    assert store.get("missing") is None
    assert store.webhook_secret("conn-1") == saved.webhook_secrets[0]
    assert store.user_password("conn-1") == PASSWORD
    assert store.webhook_secret("missing") is None


def test_record_repr_hides_secrets(store: ConnectionStore):
    saved = _save(store, user_password=PASSWORD)
    assert saved.webhook_secrets[0] not in repr(saved)
    assert PASSWORD not in repr(saved)


def test_secrets_are_encrypted_at_rest(engine: Engine, store: ConnectionStore, box: SecretBox):
    saved = _save(store, user_password=PASSWORD)
    secret = saved.webhook_secrets[0]
    password_enc, secret_enc = _raw_secrets(engine, "conn-1")
    assert PASSWORD not in password_enc and secret not in secret_enc
    assert box.decrypt(password_enc) == PASSWORD and box.decrypt(secret_enc) == secret
    with engine.connect() as conn:
        dump = " ".join(
            str(value) for row in conn.execute(text("SELECT * FROM connections")) for value in row
        )
    assert PASSWORD not in dump and secret not in dump
    if engine.dialect.name == "sqlite":
        on_disk = _database_bytes(engine)
        assert b"COMPANY-1" in on_disk  # the check can see what is stored in clear
        assert PASSWORD.encode() not in on_disk and secret.encode() not in on_disk


def test_update_keeps_secret_and_password_unless_told(engine: Engine, box: SecretBox):
    clock = WallClock()
    store = ConnectionStore(engine, box, clock=clock)
    first = _save(store, user_password=PASSWORD)
    clock.advance(60)
    second = _save(store, state="connected", company_id="COMPANY-2")
    assert second.webhook_secrets == first.webhook_secrets
    assert store.user_password("conn-1") == PASSWORD
    assert (second.company_id, second.state) == ("COMPANY-2", "connected")
    assert second.created_at == T0 and second.updated_at == T0 + timedelta(seconds=60)

    third = _save(store, state="connected", user_password="new-password", rotate_webhook_secret=True)
    assert third.webhook_secrets != first.webhook_secrets
    assert store.user_password("conn-1") == "new-password"


def test_account_has_one_live_connection(store: ConnectionStore):
    _save(store, "conn-1", account_id="acct-1")
    with pytest.raises(AccountInUseError):
        _save(store, "conn-2", account_id="acct-1")
    # Once the old connection is disconnected the account may connect again.
    assert store.disconnect("conn-1")
    assert _save(store, "conn-2", account_id="acct-1").is_active


def test_disconnect_purges_secrets(engine: Engine, box: SecretBox):
    clock = WallClock()
    store = ConnectionStore(engine, box, clock=clock)
    _save(store, user_password=PASSWORD)
    clock.advance(5)
    assert store.disconnect("conn-1") is True
    assert _raw_secrets(engine, "conn-1") == (None, None)
    record = store.get("conn-1")
    assert record.state == "disconnected" and not record.is_active
    assert record.webhook_secrets == ()
    assert store.webhook_secret("conn-1") is None and store.user_password("conn-1") is None
    clock.advance(5)
    assert store.disconnect("conn-1") is True  # replayed message: harmless
    with engine.connect() as conn:
        disconnected_at = conn.execute(
            text("SELECT disconnected_at FROM connections WHERE connection_id = 'conn-1'")
        ).scalar_one()
    assert disconnected_at is not None
    assert store.disconnect("missing") is False


def test_reconnect_after_disconnect_issues_new_secret(store: ConnectionStore):
    old = _save(store, user_password=PASSWORD)
    store.disconnect("conn-1")
    new = _save(store, state="connected")
    assert new.is_active and new.webhook_secrets and new.webhook_secrets != old.webhook_secrets
    assert store.user_password("conn-1") is None  # purged at disconnect, not resurrected


def test_set_state(store: ConnectionStore, engine: Engine):
    _save(store, user_password=PASSWORD)
    store.set_state("conn-1", "degraded")
    assert store.get("conn-1").state == "degraded"
    with pytest.raises(ValueError, match="unknown connection state"):
        store.set_state("conn-1", "sleeping")
    with pytest.raises(ConnectionNotFound):
        store.set_state("missing", "connected")
    store.set_state("conn-1", "disconnected")
    assert _raw_secrets(engine, "conn-1") == (None, None)
    with pytest.raises(ConnectionStateError):
        store.set_state("conn-1", "connected")
    with pytest.raises(ConnectionStateError):
        _save(store, state="disconnected")


def test_list_filters_by_state(engine: Engine, box: SecretBox):
    clock = WallClock()
    store = ConnectionStore(engine, box, clock=clock)
    for number, state in enumerate(("connected", "failed", "connected"), start=1):
        _save(store, f"conn-{number}", account_id=f"acct-{number}", state=state)
        clock.advance(1)
    assert [r.connection_id for r in store.list()] == ["conn-1", "conn-2", "conn-3"]
    assert [r.connection_id for r in store.list("connected")] == ["conn-1", "conn-3"]
    assert store.list("disconnected") == []


def test_rotate_encryption_moves_every_secret_to_new_key(engine: Engine):
    old_key, new_key = generate_key(), generate_key()
    old_store = ConnectionStore(engine, SecretBox([old_key]))
    with_password = _save(old_store, "conn-1", account_id="acct-1", user_password=PASSWORD)
    without_password = _save(old_store, "conn-2", account_id="acct-2")
    _save(old_store, "conn-3", account_id="acct-3", user_password=PASSWORD)
    old_store.disconnect("conn-3")  # nothing left to rotate there

    rotating = ConnectionStore(engine, SecretBox([new_key, old_key]))
    assert rotating.get("conn-1") == with_password  # old key still decrypts
    with pytest.raises(SecretDecryptError):
        ConnectionStore(engine, SecretBox([new_key])).get("conn-1")

    assert rotating.rotate_encryption() == 3  # two webhook secrets and one password
    assert rotating.rotate_encryption() == 0  # everything is under the primary key now

    new_only = ConnectionStore(engine, SecretBox([new_key]))
    assert new_only.get("conn-1").webhook_secrets == with_password.webhook_secrets
    assert new_only.get("conn-2").webhook_secrets == without_password.webhook_secrets
    assert new_only.user_password("conn-1") == PASSWORD
    with pytest.raises(SecretDecryptError):
        old_store.get("conn-1")


def test_wrong_key_surfaces_as_decrypt_error(engine: Engine, store: ConnectionStore):
    saved = _save(store)
    with pytest.raises(SecretDecryptError) as caught:
        ConnectionStore(engine, SecretBox([generate_key()])).get("conn-1")
    assert saved.webhook_secrets[0] not in str(caught.value)


def test_the_sealed_lookup_reads_a_connection_without_decrypting_its_webhook_secret(engine: Engine, box):
    saved = _save(ConnectionStore(engine, box), state="connected")
    # A box without the key the secret was sealed with: any decrypt would raise.
    stranger = ConnectionStore(engine, SecretBox([generate_key()]))
    with pytest.raises(SecretDecryptError):
        stranger.get("conn-1")

    read = stranger.without_secrets().get("conn-1")

    assert read is not None and read.webhook_secrets == ()
    assert replace(read, webhook_secrets=saved.webhook_secrets) == saved
    assert stranger.without_secrets().get("conn-absent") is None


# --- cached lookup ------------------------------------------------------------------------


def test_cache_hit_and_cached_miss_avoid_the_database(engine: Engine, store: ConnectionStore):
    saved = _save(store)
    lookup = CachedConnectionLookup(store, ttl=5.0, clock=TickClock())
    statements = _count_statements(engine)
    assert lookup.get("conn-1") == saved
    assert lookup.get("unknown") is None
    assert len(statements) == 2
    for _ in range(50):
        assert lookup.get("conn-1") == saved
        assert lookup.get("unknown") is None
    assert len(statements) == 2


def test_cache_entries_expire_after_ttl():
    clock = TickClock()
    backing = CountingStore()
    lookup = CachedConnectionLookup(backing, ttl=5.0, clock=clock)
    lookup.get("a")
    clock.now += 4.9
    lookup.get("a")
    assert backing.calls == 1
    clock.now += 0.2
    lookup.get("a")
    assert backing.calls == 2


def test_cache_invalidate_one_or_all():
    backing = CountingStore()
    lookup = CachedConnectionLookup(backing, ttl=60.0, clock=TickClock())
    lookup.get("a")
    lookup.get("b")
    lookup.invalidate("a")
    lookup.get("a")
    lookup.get("b")
    assert backing.calls == 3
    lookup.invalidate()
    lookup.get("a")
    lookup.get("b")
    assert backing.calls == 5


def test_cache_is_bounded_and_evicts_oldest():
    backing = CountingStore(
        {n: ConnectionRecord(n, f"acct-{n}", "co", None, "u", "connected", ("s",), T0, T0) for n in "abcd"}
    )
    lookup = CachedConnectionLookup(backing, ttl=60.0, clock=TickClock(), max_entries=3)
    for name in "abcd":
        lookup.get(name)
    assert backing.calls == 4
    lookup.get("d")
    lookup.get("b")
    assert backing.calls == 4  # still cached
    lookup.get("a")  # evicted as the oldest
    assert backing.calls == 5


def test_unknown_ids_never_evict_known_connections_and_their_refusals_are_bounded():
    records = {
        name: ConnectionRecord(name, f"acct-{name}", "co", None, "u", "connected", ("s",), T0, T0)
        for name in "abc"
    }
    backing = CountingStore(records)
    lookup = CachedConnectionLookup(backing, ttl=60.0, clock=TickClock(), max_entries=3, max_refusals=100)
    for name in "abc":
        assert lookup.get(name) == records[name]
    # A flood of made-up ids: each read once, and refused from the cache when asked again.
    for n in range(1000):
        assert lookup.get(f"random-{n}") is None
    assert lookup.get("random-999") is None
    assert backing.calls == 3 + 1000
    # The real connections are still cached: not one of them was pushed out.
    for name in "abc":
        assert lookup.get(name) == records[name]
    assert backing.calls == 1003
    # Only the latest 100 refusals are kept: the oldest made-up id is read again.
    assert lookup.get("random-0") is None
    assert backing.calls == 1004


def test_a_fresh_read_says_so_and_a_cached_answer_does_not():
    backing = CountingStore()
    lookup = CachedConnectionLookup(backing, ttl=60.0, clock=TickClock())
    assert lookup.lookup("x") == (None, True)
    assert lookup.lookup("x") == (None, False)
    lookup.invalidate("x")
    assert lookup.lookup("x") == (None, True)
    assert backing.calls == 2


def test_cache_does_not_store_a_read_that_raced_an_invalidate():
    entered, proceed = threading.Event(), threading.Event()

    class BlockingStore(CountingStore):
        def get(self, connection_id):
            result = super().get(connection_id)
            if self.calls == 1:
                entered.set()
                assert proceed.wait(timeout=10)
            return result

    backing = BlockingStore()
    lookup = CachedConnectionLookup(backing, ttl=60.0, clock=TickClock())
    reader = threading.Thread(target=lookup.get, args=("a",))
    reader.start()
    assert entered.wait(timeout=10)
    lookup.invalidate("a")  # e.g. a disconnect landed while the first read was in flight
    proceed.set()
    reader.join(timeout=10)
    lookup.get("a")
    assert backing.calls == 2


def test_cache_is_safe_under_many_threads():
    records = {
        f"c{i}": ConnectionRecord(f"c{i}", f"a{i}", "co", None, "u", "connected", ("s",), T0, T0)
        for i in range(20)
    }
    lookup = CachedConnectionLookup(CountingStore(records), ttl=60.0, max_entries=8)
    barrier = threading.Barrier(8)

    def hammer(worker: int) -> bool:
        barrier.wait(timeout=10)
        return all(
            lookup.get(f"c{(worker + n) % 25}") == records.get(f"c{(worker + n) % 25}") for n in range(500)
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(hammer, range(8)))


# --- delivery ledger ----------------------------------------------------------------------


def test_a_recorded_delivery_is_seen_with_its_first_event_id(engine: Engine):
    ledger = DeliveryLedger(engine, clock=WallClock())
    assert ledger.seen("conn-1", "key-1") is None
    ledger.record("conn-1", "key-1", "event-1")
    assert ledger.seen("conn-1", "key-1") == "event-1"
    ledger.record("conn-1", "key-1", "event-2")  # a repeat keeps the first
    assert ledger.seen("conn-1", "key-1") == "event-1"
    # The same key on another connection is another delivery.
    assert ledger.seen("conn-2", "key-1") is None


@pytest.mark.postgres
def test_a_lookup_when_postgresql_cannot_be_reached_raises_sqlalchemys_error_for_the_503():
    # Nothing listens on port 1: the driver's own error must not escape (the receiver would 500).
    unreachable = create_engine_for("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")
    try:
        with pytest.raises(OperationalError):
            DeliveryLedger(unreachable).seen("conn-1", "key-1")
    finally:
        unreachable.dispose()


def _count_batches(ledger: DeliveryLedger) -> list[int]:
    """The size of every batch given to the ledger from now on (one transaction each)."""
    sizes: list[int] = []
    write = ledger.record_many

    def counted(rows):
        rows = list(rows)
        sizes.append(len(rows))
        return write(rows)

    ledger.record_many = counted  # type: ignore[method-assign]
    return sizes


def _delivery_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar_one()


def test_record_many_is_one_transaction_and_idempotent(engine: Engine):
    ledger = DeliveryLedger(engine, clock=WallClock())
    ledger.record("conn-1", "k-0", "first")
    batch = [("conn-1", f"k-{n}", f"event-{n}") for n in range(150)]
    # The database refuses the last row (no connection id), after 149 rows were written,
    # in another statement on SQLite: none of them may stay.
    with pytest.raises(IntegrityError):
        ledger.record_many([*batch, (None, "k-150", "event-150")])  # type: ignore[list-item]
    assert _delivery_count(engine) == 1
    ledger.record_many(batch)
    ledger.record_many(batch)
    assert _delivery_count(engine) == 150
    assert ledger.seen("conn-1", "k-0") == "first" and ledger.seen("conn-1", "k-149") == "event-149"


def test_a_large_batch_with_repeats_keeps_each_first_event_id(engine: Engine):
    ledger = DeliveryLedger(engine, clock=WallClock())
    ledger.record("conn-1", "k-7", "recorded-before")
    batch = [("conn-1", f"k-{n}", f"event-{n}") for n in range(250)]  # several statements' worth
    batch += [("conn-1", "k-3", "repeat-in-batch"), ("conn-2", "k-3", "other-connection")]
    ledger.record_many(batch)
    assert ledger.seen("conn-1", "k-7") == "recorded-before"
    assert ledger.seen("conn-1", "k-3") == "event-3"
    assert ledger.seen("conn-2", "k-3") == "other-connection"
    assert all(ledger.seen("conn-1", f"k-{n}") == f"event-{n}" for n in (0, 99, 100, 101, 199, 200, 249))
    assert _delivery_count(engine) == 251


def test_records_are_stored_as_the_orm_stores_timestamps(engine: Engine):
    ledger = DeliveryLedger(engine, clock=WallClock())
    ledger.record("conn-1", "k-raw", "event-1")
    with Session(engine) as session:
        row = session.get(WebhookDelivery, ("conn-1", "k-raw"))
        assert row is not None and row.state == "confirmed" and row.event_id == "event-1"
        assert row.claimed_at == T0 and row.claimed_at.tzinfo is not None and row.confirmed_at == T0


def test_a_lookup_reads_the_delivery_and_the_connections_version_together(engine: Engine, store):
    ledger = DeliveryLedger(engine, clock=WallClock())
    assert ledger.lookup("conn-1", "k-1") == (None, None)  # neither the delivery nor the connection
    record = _save(store)
    found = ledger.lookup("conn-1", "k-1")
    assert found.event_id is None and found.connection_version == ledger.version(record.updated_at)
    ledger.record("conn-1", "k-1", "event-1")
    assert ledger.lookup("conn-1", "k-1") == ("event-1", ledger.version(record.updated_at))

    # Every change moves the version: a disconnect, a reconnect, a rotated webhook secret.
    versions = [ledger.lookup("conn-1", "").connection_version]
    store.disconnect("conn-1")
    versions.append(ledger.lookup("conn-1", "").connection_version)
    _save(store)
    versions.append(ledger.lookup("conn-1", "").connection_version)
    rotated = _save(store, rotate_webhook_secret=True)
    versions.append(ledger.lookup("conn-1", "").connection_version)
    assert len(set(versions)) == 4
    assert (
        versions[-1] == ledger.version(store.get("conn-1").updated_at) == ledger.version(rotated.updated_at)
    )


def test_a_naive_clock_is_refused(engine: Engine):
    ledger = DeliveryLedger(engine, clock=lambda: T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="naive"):
        ledger.record("conn-1", "k-1", "event-1")


def test_a_bad_event_id_is_refused_before_anything_is_written(engine: Engine):
    ledger = DeliveryLedger(engine)
    with pytest.raises(ValueError, match="event_id"):
        ledger.record_many([("conn-1", "good", "e"), ("conn-1", "bad", "x" * 201)])
    assert ledger.seen("conn-1", "good") is None


def test_purge_older_than(engine: Engine):
    clock = WallClock()
    ledger = DeliveryLedger(engine, clock=clock)
    ledger.record("conn-1", "old", "event-1")
    clock.advance(3600)
    ledger.record("conn-1", "new", "event-2")
    assert ledger.purge_older_than(T0 + timedelta(seconds=60)) == 1
    assert ledger.purge_older_than(T0 + timedelta(seconds=60)) == 0
    assert ledger.seen("conn-1", "old") is None
    assert ledger.seen("conn-1", "new") == "event-2"


def test_long_idempotency_keys_are_accepted(engine: Engine):
    ledger = DeliveryLedger(engine, clock=WallClock())
    long_key = "k" * 500
    ledger.record("conn-1", long_key, "event-1")
    assert ledger.seen("conn-1", long_key) == "event-1"
    assert ledger.seen("conn-1", long_key[:-1]) is None


def _seed_ledger(engine: Engine, store: ConnectionStore) -> DeliveryLedger:
    _save(store)
    ledger = DeliveryLedger(engine, clock=WallClock())
    ledger.record_many([("conn-1", f"key-{n}", f"event-{n}") for n in range(50)])
    ledger.record("conn-1", "k" * 500, "event-long")
    ledger.record("conn-1", "ключ-1", "event-unicode")
    return ledger


def test_a_lookup_answers_as_the_tables_read_through_the_orm(engine: Engine, store):
    ledger = _seed_ledger(engine, store)
    cases = [("conn-1", f"key-{n}") for n in range(0, 60, 7)]
    cases += [("conn-1", "k" * 500), ("conn-1", "k" * 499), ("conn-1", "ключ-1"), ("conn-1", "ключ-2")]
    cases += [("conn-2", "key-1"), ("conn-1", "")]
    with Session(engine) as session:
        updated_at = session.get(models.Connection, "conn-1").updated_at  # type: ignore[union-attr]
        for connection_id, key in cases:
            row = session.get(WebhookDelivery, (connection_id, storage_key(key)))
            expected = (
                None if row is None else row.event_id,
                ledger.version(updated_at) if connection_id == "conn-1" else None,
            )
            assert ledger.lookup(connection_id, key) == expected, (connection_id, key)
    assert ledger.lookup("conn-1", "key-3").event_id == "event-3"
    assert ledger.lookup("conn-1", "ключ-1").event_id == "event-unicode"
    assert ledger.lookup("conn-2", "key-3") == (None, None)


def test_a_lookup_sees_what_another_ledger_committed_meanwhile(engine: Engine):
    ledger = DeliveryLedger(engine)
    assert ledger.seen("conn-1", "late") is None
    # Another process's recorder, on connections of its own.
    DeliveryLedger(engine).record("conn-1", "late", "event-late")
    assert ledger.seen("conn-1", "late") == "event-late"


def _sessions_in_a_transaction(engine: Engine, backends: list[int]) -> list[str]:
    """What of the database a connection holds between statements: SQLite, whether a reader
    keeps a snapshot (a checkpoint then cannot empty the write-ahead log); PostgreSQL, which
    of ``backends`` is not idle."""
    if engine.dialect.name == "sqlite":
        checkpointer = sqlite3.connect(engine.url.database, timeout=0)
        try:
            busy, _log, _done = checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            checkpointer.close()
        return ["a reader keeps a snapshot"] if busy else []
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT state FROM pg_stat_activity "
                    "WHERE pid = ANY(:pids) AND pid <> pg_backend_pid() AND state <> 'idle'"
                ),
                {"pids": backends},
            ).scalars()
        )


@contextlib.contextmanager
def _read_left_open(engine: Engine) -> Iterator[None]:
    """A connection that read and keeps its transaction open meanwhile."""
    if engine.dialect.name == "sqlite":
        reader = sqlite3.connect(engine.url.database)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
            yield
        finally:
            reader.close()
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar_one()
        yield


def _backend_pids(engine: Engine) -> list[int]:
    """The PostgreSQL backends of every connection the engine hands out from now on."""
    pids: list[int] = []

    def checked_out(dbapi, _record, _proxy) -> None:
        if dbapi.info.backend_pid not in pids:
            pids.append(dbapi.info.backend_pid)

    if engine.dialect.name == "postgresql":
        event.listen(engine, "checkout", checked_out)
    return pids


def test_a_lookup_leaves_no_read_open_between_webhooks(engine: Engine):
    backends = _backend_pids(engine)
    ledger = DeliveryLedger(engine)
    ledger.record_many([("conn-1", f"key-{n}", f"event-{n}") for n in range(20)])
    assert ledger.seen("conn-1", "key-3") == "event-3"
    assert ledger.seen("conn-1", "missing") is None
    # An open read would hold back SQLite's checkpoints or PostgreSQL's vacuum.
    assert _sessions_in_a_transaction(engine, backends) == []
    # The probe's own check: a read left open is seen (on SQLite, with the log not empty).
    ledger.record("conn-1", "key-20", "event-20")
    with _read_left_open(engine):
        assert _sessions_in_a_transaction(engine, backends) != []


def _terminate(engine: Engine, backends: list[int]) -> None:
    """End these PostgreSQL backends from a connection of another engine."""
    other = create_engine_for(engine.url.render_as_string(hide_password=False))
    try:
        with other.connect() as conn:
            ended = conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
                {"pids": backends},
            ).scalars()
            assert backends and all(ended)
    finally:
        other.dispose()


def test_a_lookup_whose_connection_broke_answers_on_a_fresh_one(engine: Engine):
    backends = _backend_pids(engine)
    ledger = DeliveryLedger(engine)
    ledger.record("conn-1", "key-1", "event-1")
    assert ledger.seen("conn-1", "key-1") == "event-1"
    # As after a database restart: the connection the lookup used is dead underneath it.
    if engine.dialect.name == "sqlite":
        ledger._sqlite._local.connection.close()  # type: ignore[union-attr]
    else:
        _terminate(engine, backends)
    assert ledger.seen("conn-1", "key-1") == "event-1"
    assert ledger.seen("conn-1", "key-2") is None
    ledger.record("conn-1", "key-2", "event-2")
    assert ledger.seen("conn-1", "key-2") == "event-2"


def test_on_an_sqlite_file_the_ledger_takes_nothing_from_the_pool(engine: Engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL lookups go through SQLAlchemy's pool")
    ledger = DeliveryLedger(engine)
    statements = _count_statements(engine)
    checkouts: list[object] = []
    event.listen(engine, "checkout", lambda *args: checkouts.append(args))
    ledger.record("conn-1", "key-1", "event-1")
    assert ledger.seen("conn-1", "key-1") == "event-1"
    assert ledger.seen("conn-1", "key-2") is None
    # The thread's own sqlite3 connection: no pool checkout, no statement through the engine.
    assert checkouts == [] and statements == []


def test_a_lookup_waits_for_a_database_sqlite_cannot_read_at_once(engine: Engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("an SQLite file's locks")
    with Session(engine) as session, session.begin():
        session.add(
            WebhookDelivery(
                connection_id="conn-1",
                idempotency_key="key-0",
                event_id="event-0",
                state="confirmed",
                claimed_at=T0,
            )
        )
    # Only the writer below may have the file open, or it cannot lock it: the pool closes its
    # connections, and the ledger opens its own in the lookup's thread.
    engine.dispose()
    writer = sqlite3.connect(engine.url.database, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA locking_mode = EXCLUSIVE")
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE webhook_deliveries SET event_id = 'event-0b' WHERE idempotency_key = 'key-0'")
    writer.execute("COMMIT")  # the exclusive lock stays until the locking mode is normal again
    answers: list[str | None] = []
    answered = threading.Event()

    def look_up() -> None:
        answers.append(DeliveryLedger(engine).seen("conn-1", "key-0"))
        answered.set()

    reader = threading.Thread(target=look_up, daemon=True)
    reader.start()
    try:
        # It waits (busy timeout), neither failing nor answering from before the change.
        assert not answered.wait(0.3)
    finally:
        writer.execute("PRAGMA locking_mode = NORMAL")
        writer.execute("SELECT count(*) FROM webhook_deliveries").fetchall()
        writer.close()
    assert answered.wait(5) and answers == ["event-0b"]
    reader.join(5)


def test_the_recorder_commits_in_batches_without_making_callers_wait(engine: Engine):
    ledger = DeliveryLedger(engine)
    recorder = BatchRecorder(ledger)
    batches = _count_batches(ledger)
    barrier = threading.Barrier(8)

    def record(worker: int) -> None:
        barrier.wait(timeout=10)
        for n in range(100):
            recorder.record("conn-1", f"w{worker}-{n}", f"event-{worker}-{n}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(8)))
    assert recorder.flush(timeout=10)
    assert all(ledger.seen("conn-1", f"w{w}-99") == f"event-{w}-99" for w in range(8))
    assert sum(batches) == 800 and 1 <= len(batches) < 800  # batched: far fewer than records
    recorder.close()


def test_a_recorder_that_is_behind_commits_full_batches_without_lingering(engine: Engine):
    ledger = DeliveryLedger(engine)
    recorder = BatchRecorder(ledger, max_batch=10, linger=2.0)
    batches = _count_batches(ledger)
    all_written = threading.Event()
    write = ledger.record_many

    def counted(rows):
        write(rows)
        if sum(batches) == 35:
            all_written.set()

    ledger.record_many = counted  # type: ignore[method-assign]
    # 35 records before the writer's first linger ends: four batches, only the first lingers.
    for n in range(35):
        recorder.record("conn-1", f"k-{n}", f"event-{n}")
    started = time.monotonic()
    # Lingering before each of the four batches would take 8 s.
    assert all_written.wait(timeout=30) and time.monotonic() - started < 3.5
    assert batches == [10, 10, 10, 5]
    assert ledger.seen("conn-1", "k-34") == "event-34"
    recorder.close()


def test_the_recorder_survives_a_failing_batch(engine: Engine):
    recorder = BatchRecorder(DeliveryLedger(engine))
    recorder.record("conn-1", "bad", "x" * 201)  # refused by the ledger: the batch fails
    assert recorder.flush(timeout=10)
    recorder.record("conn-1", "good", "event-1")
    recorder.close()
    assert DeliveryLedger(engine).seen("conn-1", "good") == "event-1"


def _record_in_process(url: str, barrier, results) -> None:
    engine = create_engine_for(url)
    ledger = DeliveryLedger(engine)
    barrier.wait(timeout=60)
    for n in range(20):
        ledger.record("conn-1", f"key-{n}", f"event-{os.getpid()}")
    results.put(os.getpid())
    engine.dispose()


def test_several_processes_recording_the_same_keys_keep_one_row_each(engine: Engine):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    url = engine.url.render_as_string(hide_password=False)
    processes = [context.Process(target=_record_in_process, args=(url, barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    pids = {results.get(timeout=90) for _ in processes}
    for process in processes:
        process.join(timeout=30)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    ledger = DeliveryLedger(engine)
    winners = {ledger.seen("conn-1", f"key-{n}") for n in range(20)}
    assert winners <= {f"event-{pid}" for pid in pids}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar() == 20
