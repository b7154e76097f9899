"""The webhook idempotency ledger: which deliveries were accepted, for every receiver process.

A delivery is *recorded* once the broker confirmed its event, never before: a delivery answered
503 is therefore accepted when Intacct retries it, and a retry that reaches any receiver
process finds the record and is answered "duplicate".

The lookup is the one database statement on the request path, so it is made as cheap as a
statement can be: plain SQL on a DBAPI connection each request thread keeps (no pool checkout,
no result machinery), answered from two primary keys; on an SQLite file it runs keeping the
GIL (``ingest.sqlite_held``), so no other request thread is switched in halfway. It also reads
the connection's version, so a receiver notices a connection changed (disconnected,
reconnected, its secret rotated) on the very next webhook, whatever its cache holds. Recording
is off the request path: :class:`BatchRecorder` commits the records of all of a process's
request threads together on one writer thread, within a quarter of a second of the answer.
Intacct retries a delivery no sooner than 10 s after a failed answer, so the record is always
there in time; only a process that dies inside that quarter second leaves its delivery
unrecorded, and its retry then publishes the (idempotent) event once more. Copies of one
delivery arriving at the same moment are collapsed in memory by the receiver
(``ingest.recent``), not here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import queue
import string
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, delete, text
from sqlalchemy.exc import OperationalError

from ingest import sqlite_held
from ingest.sqlite_held import HeldStatement
from observability.logging import get_logger
from store.models import UTCDateTime, WebhookDelivery

log = get_logger(__name__)

_MAX_KEY_LENGTH = 200

# Plain SQL that SQLite and PostgreSQL both accept, written once with {placeholders}: the
# request path and the recorder run them on DBAPI cursors in the driver's own parameter style
# (sqlite3 :name, psycopg %(name)s); other drivers get them through SQLAlchemy.

# The request path's one statement: the delivery's record and the connection's version
# (``updated_at``, which every change of a connection moves), so a receiver whose cached
# connection is stale finds out on the very next webhook, not when its cache entry expires.
_LOOKUP_PARTS = (
    "SELECT event_id FROM webhook_deliveries "
    "WHERE connection_id = {connection_id} AND idempotency_key = {key} AND state = 'confirmed'",
    "SELECT updated_at FROM connections WHERE connection_id = {connection_id}",
)
_LOOKUP_SQL = "SELECT ({}), ({})".format(*_LOOKUP_PARTS)
# The same for ingest.sqlite_held, whose columns must be text (both are, on SQLite).
_HELD_LOOKUP_SQL = "SELECT CAST(({}) AS TEXT), CAST(({}) AS TEXT)".format(*_LOOKUP_PARTS)
_RECORD_PARTS = (
    "INSERT INTO webhook_deliveries "
    "(connection_id, idempotency_key, event_id, state, claimed_at, confirmed_at) VALUES ",
    "({connection_id}, {key}, {event_id}, 'confirmed', {now}, {now})",
    " ON CONFLICT (connection_id, idempotency_key) DO NOTHING",
)
_RECORD_SQL = "".join(_RECORD_PARTS)
# sqlite3 lets go of the GIL for every row of an executemany, and each time a request thread
# takes it: many rows in one statement cost one hand-off. Well below SQLite's parameter limit.
_ROWS_PER_STATEMENT = 100
_NAMES = ("connection_id", "key", "event_id", "now")
_LOOKUP = text(_LOOKUP_SQL.format(**{n: f":{n}" for n in _NAMES}))
_RECORD = text(_RECORD_SQL.format(**{n: f":{n}" for n in _NAMES})).bindparams(
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

    def __init__(
        self, engine: Engine, clock: Callable[[], datetime] = _utcnow, *, hold_gil: bool = True
    ) -> None:
        """``hold_gil=False``: every lookup goes through the driver, the way a held lookup
        that SQLite could not answer at once does."""
        # No per-call isolation options: changing them costs SQLAlchemy work on every pool
        # checkout, and a lookup is a lone SELECT that needs no transaction of its own.
        self._engine = engine
        self._clock = clock
        self._lookups = _ThreadConnections(engine, _LOOKUP_SQL, autocommit=True)
        # On an SQLite file, the lookup first runs keeping the GIL (see ingest.sqlite_held).
        self._held = _held_lookup(engine) if hold_gil else None
        # Records go the same way, on the recorder thread's own connection, one commit per batch
        # (SQLite: a statement per 100 rows; PostgreSQL: one executemany): SQLAlchemy's per-row
        # parameter handling cost more than the insert itself. The timestamp is converted once
        # per batch by the column's own type.
        self._writes = _ThreadConnections(engine, _RECORD_SQL, autocommit=False, rows=_RECORD_PARTS)
        dialect = engine.dialect
        bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert bind is not None  # a TypeDecorator with process_bind_param always has one
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
        params = {"connection_id": connection_id, "key": storage_key(key)}
        if self._lookups.sql is None:
            with self._engine.connect() as conn:
                row = tuple(conn.execute(_LOOKUP, params).one())
                # Through SQLAlchemy the column arrives parsed: back to the stored form.
                return DeliveryLookup(row[0], None if row[1] is None else self.version(row[1]))
        if self._held is not None:
            held = self._held.fetch_row(connection_id, params["key"])
            if held is not None:
                return DeliveryLookup._make(held)
        return DeliveryLookup._make(self._lookups.fetch(params)[0])

    def version(self, updated_at: datetime | None) -> Any:
        """A connection record's ``updated_at`` as :meth:`lookup` reports the version."""
        return None if updated_at is None else self._stored_form(updated_at)

    def record(self, connection_id: str, key: str, event_id: str) -> None:
        """Record one accepted delivery (a repeat keeps the first event id)."""
        self.record_many([(connection_id, key, event_id)])

    def record_many(self, deliveries: Iterable[tuple[str, str, str]]) -> None:
        """Record many accepted deliveries in one transaction."""
        now: Any = self._clock()
        if self._writes.sql is not None:
            # What SQLAlchemy would bind for the column (UTC; SQLite's text form); refuses naive.
            now = self._bind_now(now)
        rows = []
        for connection_id, key, event_id in deliveries:
            if len(event_id) > _MAX_KEY_LENGTH:
                raise ValueError(f"event_id is longer than {_MAX_KEY_LENGTH} characters")
            rows.append(
                {"connection_id": connection_id, "key": storage_key(key), "event_id": event_id, "now": now}
            )
        if not rows:
            return
        if self._writes.sql is None:
            with self._engine.begin() as conn:
                conn.execute(_RECORD, rows)
        else:
            self._writes.execute_many(rows)

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete deliveries recorded before ``cutoff``; return how many were removed."""
        with self._engine.begin() as conn:
            return conn.execute(delete(WebhookDelivery).where(WebhookDelivery.claimed_at < cutoff)).rowcount


def _held_lookup(engine: Engine) -> HeldStatement | None:
    """The lookup as a :class:`HeldStatement`, where the database is an SQLite file and SQLite
    can be called directly; else None."""
    database = engine.url.database
    if engine.dialect.driver != "pysqlite" or not sqlite_held.available():
        return None
    if not database or database == ":memory:" or database.startswith("file:") or engine.url.query:
        return None
    return HeldStatement(database, _HELD_LOOKUP_SQL.format(connection_id="?1", key="?2"), columns=2)


class _ThreadConnections:
    """One DBAPI connection per thread, outside the pool, for one statement of the ledger.

    ``sql`` is the statement in the driver's own parameter style, or None for a driver we do
    not tune for (the caller then goes through SQLAlchemy). Lookups run on autocommitting
    connections; writes commit each batch. A failed statement drops the thread's connection
    and tries once more on a fresh one (a restarted database is then answered at once); a
    second failure is raised as SQLAlchemy's :class:`OperationalError`, which the receiver
    answers 503.
    """

    def __init__(
        self, engine: Engine, template: str, *, autocommit: bool, rows: tuple[str, str, str] | None = None
    ) -> None:
        """``rows``: the statement as head, one row's VALUES and tail, for many rows per statement."""
        self._engine = engine
        self._autocommit = autocommit
        self._local = threading.local()
        driver = engine.dialect.driver
        self._multirow: tuple[str, str, str, tuple[str, ...]] | None = None
        if rows is not None and driver == "pysqlite":
            head, row, tail = rows
            order = tuple(name for _, name, _, _ in string.Formatter().parse(row) if name)
            self._multirow = (head, row.format(**{n: "?" for n in _NAMES}), tail, order)
        self.sql: str | None
        if driver == "pysqlite":  # sqlite3 takes named parameters whatever SQLAlchemy uses
            self.sql = template.format(**{n: f":{n}" for n in _NAMES})
        elif driver in ("psycopg", "psycopg2"):
            self.sql = template.format(**{n: f"%({n})s" for n in _NAMES})
        else:
            self.sql = None
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        self._dbapi_error: type[Exception] = getattr(dbapi, "Error", Exception)

    def fetch(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        assert self.sql is not None
        for attempt in (1, 2):
            try:
                cursor = self._cursor()
                cursor.execute(self.sql, params)
                # fetchall ends the statement, so no read snapshot stays open.
                return cursor.fetchall()
            except self._dbapi_error as exc:
                self._discard()
                if attempt == 2:
                    raise OperationalError(self.sql, params, exc) from exc
        raise AssertionError("unreachable")

    def execute_many(self, rows: list[dict[str, Any]]) -> None:
        """All ``rows`` in one transaction: committed together, or not at all."""
        assert self.sql is not None
        for attempt in (1, 2):
            try:
                cursor = self._cursor()
                try:
                    if self._multirow is None:
                        cursor.executemany(self.sql, rows)
                    else:
                        head, row, tail, order = self._multirow
                        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                            chunk = rows[start : start + _ROWS_PER_STATEMENT]
                            cursor.execute(
                                head + ", ".join([row] * len(chunk)) + tail,
                                [values[name] for values in chunk for name in order],
                            )
                    self._local.connection.dbapi_connection.commit()
                except BaseException:
                    with contextlib.suppress(Exception):
                        self._local.connection.dbapi_connection.rollback()
                    raise
                return
            except self._dbapi_error as exc:
                self._discard()
                if attempt == 2:
                    raise OperationalError(self.sql, rows[0], exc) from exc

    def _cursor(self) -> Any:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._connection().dbapi_connection.cursor()
        return cursor

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # The pool hands the driver's own error up when the database is away (no SQLAlchemy
            # wrapping on this path): fetch() turns it into OperationalError, answered 503.
            fairy = self._engine.raw_connection()
            fairy.detach()
            if self._autocommit and self._engine.dialect.name == "postgresql":
                # A lone SELECT needs no transaction; one left open would hold back vacuum.
                dbapi_connection = fairy.dbapi_connection
                assert dbapi_connection is not None  # only an invalidated one has none
                dbapi_connection.autocommit = True
            connection = self._local.connection = fairy
        return connection

    def _discard(self) -> None:
        connection, self._local.connection = getattr(self._local, "connection", None), None
        self._local.cursor = None
        if connection is not None:
            # It is being thrown away because it failed; closing it may fail too.
            with contextlib.suppress(Exception):
                connection.close()


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
