"""The webhook idempotency ledger: which deliveries were accepted, for every receiver process.

A delivery is *recorded* once the broker confirmed its event, never before: a delivery answered
503 is therefore accepted when Intacct retries it, and a retry that reaches any receiver
process finds the record and is answered "duplicate".

The lookup is the one database statement on the request path, answered from two primary keys.
On an SQLite file it runs on a plain ``sqlite3`` connection of the request thread's own, which
keeps the statement prepared between webhooks (the module's statement cache); on PostgreSQL it
goes through SQLAlchemy. It also reads the connection's version, so a receiver notices a
connection changed (disconnected, reconnected, its secret rotated) on the very next webhook,
whatever its cache holds. Recording is off the request path: :class:`BatchRecorder` commits
the records of all of a process's request threads together on one writer thread, within a
quarter of a second of the answer. Intacct retries a delivery no sooner than 10 s after a
failed answer, so the record is always there in time; only a process that dies inside that
quarter second leaves its delivery unrecorded, and its retry then publishes the (idempotent)
event once more. Copies of one delivery arriving at the same moment are collapsed in memory by
the receiver (``ingest.recent``), not here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, String, bindparam, column, delete, func, select, text
from sqlalchemy.exc import DBAPIError, StatementError

from observability.logging import get_logger
from store.db import connect_sqlite_file, sqlite_file
from store.models import UTCDateTime, WebhookDelivery

log = get_logger(__name__)

_MAX_KEY_LENGTH = 200

# Plain SQL that SQLite and PostgreSQL both accept, written once with {placeholders}: sqlite3
# gets it with positional parameters, SQLAlchemy with named ones.

# The request path's one statement: the delivery's record and the connection's version
# (``updated_at``, which every change of a connection moves), so a receiver whose cached
# connection is stale finds out on the very next webhook, not when its cache entry expires.
_LOOKUP_SQL = (
    "SELECT (SELECT event_id FROM webhook_deliveries "
    "WHERE connection_id = {connection_id} AND idempotency_key = {key} AND state = 'confirmed'), "
    "(SELECT updated_at FROM connections WHERE connection_id = {connection_id})"
)
_RECORD_HEAD = (
    "INSERT INTO webhook_deliveries "
    "(connection_id, idempotency_key, event_id, state, claimed_at, confirmed_at) VALUES "
)
_RECORD_ROW = "({connection_id}, {key}, {event_id}, 'confirmed', {now}, {now})"
_RECORD_TAIL = " ON CONFLICT (connection_id, idempotency_key) DO NOTHING"

# sqlite3: ?1 and ?2, the lookup's (connection_id, key).
_SQLITE_LOOKUP = _LOOKUP_SQL.format(connection_id="?1", key="?2")
_SQLITE_ROW = _RECORD_ROW.format(connection_id="?", key="?", event_id="?", now="?")
# sqlite3 lets go of the GIL for every row of an executemany, and each time a request thread
# takes it: many rows in one statement cost one hand-off. Well below SQLite's parameter limit.
_ROWS_PER_STATEMENT = 100

# SQLAlchemy: the connection's version comes back as the column's type reads it.
_NAMES = {name: f":{name}" for name in ("connection_id", "key", "event_id", "now")}
_LOOKUP = text(_LOOKUP_SQL.format(**_NAMES)).columns(
    column("event_id", String()), column("updated_at", UTCDateTime())
)
_RECORD = text(_RECORD_HEAD + _RECORD_ROW.format(**_NAMES) + _RECORD_TAIL).bindparams(
    bindparam("now", type_=UTCDateTime())
)


class DeliveryLookup(NamedTuple):
    """What :meth:`DeliveryLedger.lookup` read: the delivery's event id (None: never accepted)
    and the connection's ``updated_at`` as the database holds it (None: no such connection),
    to compare with :meth:`DeliveryLedger.version` of a record's ``updated_at``."""

    event_id: str | None
    connection_version: Any


def _utcnow() -> datetime:
    return datetime.now(UTC)


def storage_key(key: str) -> str:
    """Idempotency keys come from outside; long ones are hashed to fit the column on every DB."""
    if len(key) <= _MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class DeliveryLedger:
    """Records accepted deliveries, so retries are answered as duplicates by any process."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = _utcnow) -> None:
        self._engine = engine
        self._clock = clock
        # On an SQLite file, lookups and records run on plain sqlite3 connections, one per
        # thread (see _SqliteConnections); any other database goes through SQLAlchemy.
        path = sqlite_file(engine)
        self._sqlite = None if path is None else _SqliteConnections(path)
        dialect = engine.dialect
        bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert bind is not None  # a TypeDecorator with process_bind_param always has one
        # What SQLAlchemy binds for a timestamp column (UTC; on SQLite the column's text form),
        # converted once per batch; refuses naive values.
        self._bind_now: Callable[[datetime], Any] = bind
        # A record's updated_at in the form the database keeps (SQLite: the column's text,
        # PostgreSQL: an aware datetime), so a lookup's version is compared without parsing it.
        # Few connections, each asked about on every webhook: remembered.
        self._stored_form: Callable[[datetime], Any] = functools.lru_cache(maxsize=4096)(bind)

    def seen(self, connection_id: str, key: str) -> str | None:
        """The event id a delivery was accepted under, or None if it never was."""
        return self.lookup(connection_id, key).event_id

    def lookup(self, connection_id: str, key: str) -> DeliveryLookup:
        """The delivery's event id and the connection's current version, in one statement."""
        key = storage_key(key)
        if self._sqlite is not None:
            # The stored text of updated_at is the version as it is.
            return DeliveryLookup._make(self._sqlite.fetch_one(_SQLITE_LOOKUP, (connection_id, key)))
        with self._engine.connect() as conn:
            event_id, updated_at = conn.execute(_LOOKUP, {"connection_id": connection_id, "key": key}).one()
        return DeliveryLookup(event_id, self.version(updated_at))

    def version(self, updated_at: datetime | None) -> Any:
        """A connection record's ``updated_at`` as :meth:`lookup` reports the version."""
        return None if updated_at is None else self._stored_form(updated_at)

    def record(self, connection_id: str, key: str, event_id: str) -> None:
        """Record one accepted delivery (a repeat keeps the first event id)."""
        self.record_many([(connection_id, key, event_id)])

    def record_many(self, deliveries: Iterable[tuple[str, str, str]]) -> None:
        """Record many accepted deliveries in one transaction."""
        now = self._bind_now(self._clock())
        rows = []
        for connection_id, key, event_id in deliveries:
            if len(event_id) > _MAX_KEY_LENGTH:
                raise ValueError(f"event_id is longer than {_MAX_KEY_LENGTH} characters")
            rows.append((connection_id, storage_key(key), event_id, now))
        if not rows:
            return
        if self._sqlite is None:
            with self._engine.begin() as conn:
                conn.execute(_RECORD, [dict(zip(_NAMES, row, strict=True)) for row in rows])
            return
        statements: list[tuple[str, Sequence[Any]]] = []
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            sql = _RECORD_HEAD + ", ".join([_SQLITE_ROW] * len(chunk)) + _RECORD_TAIL
            statements.append((sql, [value for row in chunk for value in (*row, row[3])]))
        self._sqlite.execute_in_transaction(statements)

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete deliveries recorded before ``cutoff``; return how many were removed."""
        with self._engine.begin() as conn:
            return conn.execute(delete(WebhookDelivery).where(WebhookDelivery.claimed_at < cutoff)).rowcount

    def last_events(self) -> dict[str, Any]:
        """Per connection, when its newest confirmed delivery was accepted (as the driver gives it)."""
        query = (
            select(WebhookDelivery.connection_id, func.max(WebhookDelivery.confirmed_at))
            .where(WebhookDelivery.state == "confirmed")
            .group_by(WebhookDelivery.connection_id)
        )
        with self._engine.connect() as conn:
            return {connection_id: last for connection_id, last in conn.execute(query).all()}


class _SqliteConnections:
    """A plain ``sqlite3`` connection per thread to one SQLite file, for the ledger's statements.

    sqlite3 keeps the statements a connection ran prepared (keyed by their SQL), so a lookup is
    only bound and stepped. Connections autocommit: a lookup is a lone SELECT, and it is read
    to its end, so no read snapshot stays open between webhooks; writes begin and commit their
    own transaction. A statement that fails closes the thread's connection and runs once more
    on a fresh one; a second failure is raised as SQLAlchemy's error for the driver's
    (:class:`~sqlalchemy.exc.OperationalError` and its kin), which the receiver answers 503.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()

    def fetch_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...]:
        """The one row ``sql`` gives."""
        for attempt in (1, 2):
            try:
                row: tuple[Any, ...] = self._connection().execute(sql, params).fetchone()
                return row
            except sqlite3.Error as exc:
                self._discard()
                if attempt == 2:
                    raise _wrapped(sql, params, exc) from exc
        raise AssertionError("unreachable")

    def execute_in_transaction(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        """All ``statements`` in one transaction: committed together, or not at all."""
        for attempt in (1, 2):
            try:
                connection = self._connection()
                # The write lock up front, waited for (busy timeout) rather than refused.
                connection.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        connection.execute(sql, params)
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            connection.execute("ROLLBACK")
                    raise
                return
            except sqlite3.Error as exc:
                self._discard()
                if attempt == 2:
                    sql, params = statements[0]
                    raise _wrapped(sql, params, exc) from exc

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = connect_sqlite_file(self._path)
        return connection

    def _discard(self) -> None:
        connection, self._local.connection = getattr(self._local, "connection", None), None
        if connection is not None:
            # It is being thrown away because it failed; closing it may fail too.
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def _wrapped(sql: str, params: Sequence[Any], error: sqlite3.Error) -> StatementError:
    """The SQLAlchemy error a statement through the engine would have raised."""
    return DBAPIError.instance(sql, params, error, sqlite3.Error, hide_parameters=True)


_FLUSH = object()
_STOP = object()


class BatchRecorder:
    """Records deliveries from one writer thread, many per transaction; callers never wait.

    One transaction per batch instead of one per request keeps a busy receiver from queueing
    its processes behind SQLite's single write lock; lingering ``linger`` seconds after a
    batch's first record lets a busy process commit a hundred records or more per transaction,
    far inside the 10 s before Intacct's first retry. Each commit costs more than its own
    write: on SQLite every other connection of every process (each request thread's lookup)
    then finds the database changed and rereads its pages on its next lookup. At 50 ms, with
    two busy processes, most lookups paid that; at 250 ms a lookup plus its record made less
    than half as many reads and writes of SQLite's files (bench/README.md, "The ledger's
    commits").
    """

    def __init__(self, ledger: DeliveryLedger, *, max_batch: int = 1000, linger: float = 0.25) -> None:
        self._ledger = ledger
        self._max_batch = max_batch
        self._linger = linger
        self._urgent = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-recorder", daemon=True)
        self._thread.start()

    def record(self, connection_id: str, key: str, event_id: str) -> None:
        """Queue a record; it is committed with the next batch, within ``linger`` seconds."""
        self._queue.put((connection_id, key, event_id))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is committed (or given up)."""
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        self._urgent.set()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop the writer."""
        self._queue.put(_STOP)
        self._urgent.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        behind = False
        while True:
            batch = [self._queue.get()]
            # Behind (the last batch was full): commit what waits at once, without lingering.
            if not behind and not self._control(batch[0]):
                # Sleep rather than wait on the queue: with no reader blocked on it, a request
                # thread's put wakes no one, so a busy process pays no thread switch per record.
                self._urgent.wait(self._linger)
            self._urgent.clear()
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            behind = len(batch) >= self._max_batch
            records = [item for item in batch if item is not _STOP and item[0] is not _FLUSH]
            if records:
                self._commit(records)
            for item in batch:
                if item is not _STOP and item[0] is _FLUSH:
                    item[1].set()
            if _STOP in batch:
                return

    @staticmethod
    def _control(item: Any) -> bool:
        # A flush or a stop ends the batch at once: its caller is waiting.
        return item is _STOP or item[0] is _FLUSH

    def _commit(self, records: list[tuple[str, str, str]]) -> None:
        try:
            self._ledger.record_many(records)
        except Exception as exc:
            # Unrecorded deliveries are not lost: their events are in the queue; a retry of
            # one of them would only publish it once more.
            log.error("ledger_record_failed", error=str(exc).splitlines()[0], count=len(records))
