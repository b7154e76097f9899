"""The simulator's state in SQLite: records, tombstones, idempotency keys, connection statuses,
and the payments FlexPoint collected with every posting report on them (see :mod:`payments`).

The standard library's sqlite3 rather than SQLAlchemy: a batch is one ``BEGIN IMMEDIATE``
transaction with one SELECT for the batch's keys and one ``executemany`` upsert, and the
ORM layer would only add per-row overhead to the hot path the benchmarks measure. WAL lets
inspection reads run beside writes; ``synchronous=NORMAL`` keeps every committed batch across
a process crash (only an OS crash could lose the last few), which is all a sandbox needs.

Writes in this process are serialised by a lock (SQLite allows one writer anyway, and
waiting on a lock is cheaper than spinning on SQLITE_BUSY); ``busy_timeout`` covers other
processes, such as the CLI reading the same file.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.flexpoint.versions import State, changes_state, decide

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    account_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    external_id TEXT NOT NULL,
    version_key TEXT NOT NULL,       -- UTC, fixed width: string order is time order
    source_version TEXT NOT NULL,    -- the same instant as shown to clients
    deleted INTEGER NOT NULL,
    data TEXT,                       -- canonical JSON; NULL for a tombstone
    updated_at TEXT NOT NULL,
    PRIMARY KEY (account_id, resource, external_id)
);
CREATE TABLE IF NOT EXISTS idempotency (
    account_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at);
CREATE TABLE IF NOT EXISTS statuses (
    account_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    reported_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    account_id TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    body TEXT NOT NULL,              -- the payment as FlexPoint collected it (JSON)
    reverse TEXT,                    -- the reversal FlexPoint requested, if any (JSON)
    created_at TEXT NOT NULL,
    PRIMARY KEY (account_id, payment_id)
);
CREATE TABLE IF NOT EXISTS payment_postings (
    account_id TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    seq INTEGER NOT NULL,            -- arrival order; the highest is the current state
    idempotency_key TEXT NOT NULL,
    body TEXT NOT NULL,              -- the PaymentPosting as reported (JSON)
    replayed INTEGER NOT NULL,       -- same key and body as an earlier report
    received_at TEXT NOT NULL,
    PRIMARY KEY (account_id, payment_id, seq)
);
CREATE TABLE IF NOT EXISTS connections (
    account_id TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    batches INTEGER NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (account_id, connection_id)
);
"""
PAYMENT_TABLES = ("payments", "payment_postings")
_PRUNE_EVERY_SECONDS = 600.0
_UPSERT = """
INSERT INTO records (account_id, resource, external_id, version_key, source_version, deleted, data, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account_id, resource, external_id) DO UPDATE SET
    version_key = excluded.version_key, source_version = excluded.source_version,
    deleted = excluded.deleted, data = excluded.data, updated_at = excluded.updated_at
"""


def utc_text(moment: datetime) -> str:
    """A timestamp as the Sync API shows them: RFC 3339 UTC, millisecond precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class BatchItem:
    """One validated item, reduced to what the store compares and keeps."""

    external_id: str
    state: State
    source_version: str


@dataclass(frozen=True)
class BatchWrite:
    """A validated batch with its idempotency key and the fingerprint of its request."""

    account_id: str
    resource: str
    connection_id: str
    items: list[BatchItem]
    idempotency_key: str
    fingerprint: str
    create_account: bool


@dataclass
class BatchOutcome:
    """What became of a batch: ``kind`` is applied, replayed, conflict or no_account."""

    kind: str
    status: int = 200
    body: bytes = b""
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredRecord:
    external_id: str
    source_version: str
    deleted: bool
    data: str | None
    updated_at: str

    def to_json_text(self) -> str:
        """The contract's StoredRecord, built around the stored canonical JSON without re-parsing it."""
        return (
            f'{{"externalId":{json.dumps(self.external_id)},"sourceVersion":"{self.source_version}",'
            f'"deleted":{"true" if self.deleted else "false"},"data":{self.data or "null"},'
            f'"updatedAt":"{self.updated_at}"}}'
        )


class Store:
    """SQLite persistence for one simulator process."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime], idempotency_ttl: float) -> None:
        self.path = path
        self._clock = clock
        self._ttl = idempotency_ttl
        self._write_lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False
        self._last_prune = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as conn:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._prune()

    # -- connections --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE), never implicit.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise RuntimeError("store is closed")
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            with self._pool_lock:
                if self._closed:
                    conn.close()
                else:
                    self._pool.append(conn)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), for the store's companions such as payments."""
        return self._transaction()

    def connection(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A pooled connection for reads."""
        return self._connection()

    def ensure_account(self, conn: sqlite3.Connection, account_id: str, *, create: bool) -> bool:
        """Inside a transaction: whether the account exists (created first when ``create``)."""
        return self._ensure_account(conn, account_id, create=create)[0]

    def now(self) -> str:
        """The store clock's time as the Sync API shows it."""
        return self._now()

    def close(self) -> None:
        """Close every pooled connection (folding the WAL back into the database file)."""
        with self._write_lock, self._pool_lock:
            self._closed = True
            for conn in self._pool:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.close()
            self._pool.clear()

    def _now(self) -> str:
        return utc_text(self._clock())

    # -- accounts -------------------------------------------------------------------------

    def account_exists(self, account_id: str) -> bool:
        with self._connection() as conn:
            return (
                conn.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
                is not None
            )

    def create_account(self, account_id: str) -> bool:
        """Create an account; False if it already existed."""
        with self._transaction() as conn:
            return self._ensure_account(conn, account_id, create=True)[1]

    def delete_account(self, account_id: str) -> bool:
        """Remove an account and everything stored for it; False if there was none."""
        with self._transaction() as conn:
            for table in ("records", "idempotency", "statuses", "connections", *PAYMENT_TABLES):
                conn.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))  # noqa: S608
            return conn.execute("DELETE FROM accounts WHERE account_id = ?", (account_id,)).rowcount > 0

    def _ensure_account(
        self, conn: sqlite3.Connection, account_id: str, *, create: bool
    ) -> tuple[bool, bool]:
        """(exists now, was created)."""
        if create:
            created = (
                conn.execute(
                    "INSERT OR IGNORE INTO accounts (account_id, created_at) VALUES (?, ?)",
                    (account_id, self._now()),
                ).rowcount
                > 0
            )
            return True, created
        found = conn.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
        return found is not None, False

    # -- batches --------------------------------------------------------------------------

    def apply_batch(self, batch: BatchWrite, render: Callable[[list[dict[str, str]]], bytes]) -> BatchOutcome:
        """Apply a batch atomically, or replay/refuse it by its idempotency key.

        The key is checked, the items applied and the response stored in one transaction,
        so two concurrent requests with one key cannot both apply.
        """
        self._maybe_prune()
        with self._transaction() as conn:
            previous = conn.execute(
                "SELECT fingerprint, status, body FROM idempotency WHERE account_id = ? AND key = ?",
                (batch.account_id, batch.idempotency_key),
            ).fetchone()
            if previous is not None:
                fingerprint, status, body = previous
                return (
                    BatchOutcome("replayed", status, bytes(body))
                    if fingerprint == batch.fingerprint
                    else BatchOutcome("conflict", 409)
                )
            exists, _ = self._ensure_account(conn, batch.account_id, create=batch.create_account)
            if not exists:
                return BatchOutcome("no_account", 404)
            now = self._now()
            results, writes, counts = self._decide(conn, batch, now)
            if writes:
                conn.executemany(_UPSERT, writes.values())
            conn.execute(
                "INSERT INTO connections (account_id, connection_id, batches, last_seen) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (account_id, connection_id) DO UPDATE SET batches = batches + 1, last_seen = ?",
                (batch.account_id, batch.connection_id, now, now),
            )
            body = render(results)
            conn.execute(
                "INSERT INTO idempotency (account_id, key, fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (batch.account_id, batch.idempotency_key, batch.fingerprint, 200, body, time.time()),
            )
        return BatchOutcome("applied", 200, body, counts)

    def _decide(self, conn: sqlite3.Connection, batch: BatchWrite, now: str):
        keys = list(dict.fromkeys(item.external_id for item in batch.items))
        placeholders = ",".join("?" * len(keys))
        rows = conn.execute(
            "SELECT external_id, version_key, deleted, data FROM records"  # noqa: S608 (placeholders only)
            f" WHERE account_id = ? AND resource = ? AND external_id IN ({placeholders})",
            (batch.account_id, batch.resource, *keys),
        ).fetchall()
        current: dict[str, State] = {
            eid: State(version, bool(deleted), data) for eid, version, deleted, data in rows
        }
        results: list[dict[str, str]] = []
        writes: dict[str, tuple[Any, ...]] = {}
        counts: dict[str, int] = {}
        # Items apply in order, each against the state the previous ones left, so a batch
        # holding one key twice behaves like two batches sent one after the other.
        for item in batch.items:
            outcome = decide(current.get(item.external_id), item.state)
            if changes_state(outcome):
                current[item.external_id] = item.state
                writes[item.external_id] = (
                    batch.account_id,
                    batch.resource,
                    item.external_id,
                    item.state.version_key,
                    item.source_version,
                    int(item.state.deleted),
                    item.state.data,
                    now,
                )
            results.append({"externalId": item.external_id, "status": outcome.value})
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        return results, writes, counts

    # -- reads ----------------------------------------------------------------------------

    def get_record(self, account_id: str, resource: str, external_id: str) -> StoredRecord | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT external_id, source_version, deleted, data, updated_at FROM records"
                " WHERE account_id = ? AND resource = ? AND external_id = ?",
                (account_id, resource, external_id),
            ).fetchone()
        return StoredRecord(row[0], row[1], bool(row[2]), row[3], row[4]) if row else None

    def list_records(
        self, account_id: str, resource: str, *, after: str | None, limit: int, include_deleted: bool
    ) -> list[StoredRecord]:
        """Up to ``limit`` records in externalId order, starting after ``after`` (keyset paging)."""
        sql = (
            "SELECT external_id, source_version, deleted, data, updated_at FROM records"
            " WHERE account_id = ? AND resource = ? AND external_id > ?"
        )
        if not include_deleted:
            sql += " AND deleted = 0"
        sql += " ORDER BY external_id LIMIT ?"
        with self._connection() as conn:
            rows = conn.execute(sql, (account_id, resource, after or "", limit)).fetchall()
        return [StoredRecord(r[0], r[1], bool(r[2]), r[3], r[4]) for r in rows]

    # -- connection status ------------------------------------------------------------------

    def put_status(self, account_id: str, body: str, *, create_account: bool) -> bool:
        """Store the last reported status; False if the account does not exist."""
        with self._transaction() as conn:
            exists, _ = self._ensure_account(conn, account_id, create=create_account)
            if exists:
                conn.execute(
                    "INSERT INTO statuses (account_id, body, reported_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (account_id) DO UPDATE SET body = excluded.body, reported_at = excluded.reported_at",
                    (account_id, body, self._now()),
                )
            return exists

    def get_status(self, account_id: str) -> str | None:
        with self._connection() as conn:
            row = conn.execute("SELECT body FROM statuses WHERE account_id = ?", (account_id,)).fetchone()
        return row[0] if row else None

    # -- inspection -------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Per account: records per resource (live and tombstones), connections, status."""
        with self._connection() as conn:
            accounts: dict[str, Any] = {
                account_id: {"createdAt": created, "resources": {}, "connections": {}, "status": None}
                for account_id, created in conn.execute(
                    "SELECT account_id, created_at FROM accounts ORDER BY 1"
                )
            }
            for account_id, resource, live, deleted in conn.execute(
                "SELECT account_id, resource, sum(deleted = 0), sum(deleted) FROM records GROUP BY 1, 2"
            ):
                accounts[account_id]["resources"][resource] = {"live": live, "deleted": deleted}
            for account_id, connection_id, batches, last_seen in conn.execute(
                "SELECT account_id, connection_id, batches, last_seen FROM connections"
            ):
                accounts[account_id]["connections"][connection_id] = {
                    "batches": batches,
                    "lastSeen": last_seen,
                }
            for account_id, body in conn.execute("SELECT account_id, body FROM statuses"):
                status = json.loads(body)
                accounts[account_id]["status"] = {
                    "state": status.get("state"),
                    "reason": status.get("reason"),
                }
            keys = conn.execute("SELECT count(*) FROM idempotency").fetchone()[0]
        return {"accounts": accounts, "idempotencyKeys": keys}

    def reset(self) -> None:
        """Wipe everything (tests and demos start from nothing)."""
        with self._transaction() as conn:
            for table in ("records", "idempotency", "statuses", "connections", *PAYMENT_TABLES, "accounts"):
                conn.execute(f"DELETE FROM {table}")  # noqa: S608

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune > _PRUNE_EVERY_SECONDS:
            self._prune()

    def _prune(self) -> None:
        # Idempotency keys only need to outlive the clients' retries; a day by default.
        self._last_prune = time.monotonic()
        with self._transaction() as conn:
            conn.execute("DELETE FROM idempotency WHERE created_at < ?", (time.time() - self._ttl,))
