"""The webhook idempotency ledger: which deliveries were accepted, for every receiver process.

A delivery is *recorded* once the broker confirmed its event, never before: a delivery answered
503 is therefore accepted when Intacct retries it, and a retry that reaches any receiver
process finds the record and is answered "duplicate".

The lookup is the one database statement on the request path, so it is made as cheap as a
statement can be: plain SQL on a DBAPI connection each request thread keeps (no pool checkout,
no result machinery), answered from the primary key. Recording is off the request path:
:class:`BatchRecorder` commits the records of all of a process's request threads together on one
writer thread, within a few tens of milliseconds of the answer.
Intacct retries a delivery no sooner than 10 s after a failed answer, so the record is always
there in time; only a process that dies inside those milliseconds leaves its delivery
unrecorded, and its retry then publishes the (idempotent) event once more. Copies of one
delivery arriving at the same moment are collapsed in memory by the receiver
(``ingest.recent``), not here.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, delete, text
from sqlalchemy.exc import OperationalError

from observability.logging import get_logger
from store.models import UTCDateTime, WebhookDelivery

log = get_logger(__name__)

_MAX_KEY_LENGTH = 200

# Plain SQL that SQLite and PostgreSQL both accept, built once so the request path does not
# build and compile statements on every call.
_SEEN = text(
    "SELECT event_id FROM webhook_deliveries "
    "WHERE connection_id = :connection_id AND idempotency_key = :key AND state = 'confirmed'"
)
_RECORD = text(
    "INSERT INTO webhook_deliveries "
    "(connection_id, idempotency_key, event_id, state, claimed_at, confirmed_at) "
    "VALUES (:connection_id, :key, :event_id, 'confirmed', :now, :now) "
    "ON CONFLICT (connection_id, idempotency_key) DO NOTHING"
).bindparams(bindparam("now", type_=UTCDateTime()))


# The same lookup for a DBAPI cursor: sqlite3 takes :name, psycopg %(name)s.
_SEEN_SQL = (
    "SELECT event_id FROM webhook_deliveries "
    "WHERE connection_id = {connection_id} AND idempotency_key = {key} AND state = 'confirmed'"
)


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
        # No per-call isolation options: changing them costs SQLAlchemy work on every pool
        # checkout, and a lookup is a lone SELECT that needs no transaction of its own.
        self._engine = engine
        self._clock = clock
        self._lookups = _ThreadConnections(engine)

    def seen(self, connection_id: str, key: str) -> str | None:
        """The event id a delivery was accepted under, or None if it never was."""
        rows = self._lookups.fetch({"connection_id": connection_id, "key": storage_key(key)})
        return rows[0][0] if rows else None

    def record(self, connection_id: str, key: str, event_id: str) -> None:
        """Record one accepted delivery (a repeat keeps the first event id)."""
        self.record_many([(connection_id, key, event_id)])

    def record_many(self, deliveries: Iterable[tuple[str, str, str]]) -> None:
        """Record many accepted deliveries in one transaction."""
        now = self._clock()
        rows = []
        for connection_id, key, event_id in deliveries:
            if len(event_id) > _MAX_KEY_LENGTH:
                raise ValueError(f"event_id is longer than {_MAX_KEY_LENGTH} characters")
            rows.append(
                {"connection_id": connection_id, "key": storage_key(key), "event_id": event_id, "now": now}
            )
        if rows:
            with self._engine.begin() as conn:
                conn.execute(_RECORD, rows)

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete deliveries recorded before ``cutoff``; return how many were removed."""
        with self._engine.begin() as conn:
            return conn.execute(delete(WebhookDelivery).where(WebhookDelivery.claimed_at < cutoff)).rowcount


class _ThreadConnections:
    """One autocommitting DBAPI connection per thread, outside the pool, for the lookup alone.

    A failed statement drops the thread's connection and tries once more on a fresh one (a
    restarted database is then answered at once); a second failure is raised as SQLAlchemy's
    :class:`OperationalError`, which the receiver answers 503.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        names = ("connection_id", "key")
        driver = engine.dialect.driver
        if driver == "pysqlite":  # sqlite3 takes named parameters whatever SQLAlchemy uses
            self._sql: str | None = _SEEN_SQL.format(**{n: f":{n}" for n in names})
        elif driver in ("psycopg", "psycopg2"):
            self._sql = _SEEN_SQL.format(**{n: f"%({n})s" for n in names})
        else:  # a driver we do not tune for: the statement through the pool
            self._sql = None
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        self._dbapi_error: type[Exception] = getattr(dbapi, "Error", Exception)

    def fetch(self, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self._sql is None:
            with self._engine.connect() as conn:
                return [tuple(row) for row in conn.execute(_SEEN, params).all()]
        for attempt in (1, 2):
            try:
                cursor = self._cursor()
                cursor.execute(self._sql, params)
                # fetchall ends the statement, so no read snapshot stays open.
                return cursor.fetchall()
            except self._dbapi_error as exc:
                self._discard()
                if attempt == 2:
                    raise OperationalError(self._sql, params, exc) from exc
        raise AssertionError("unreachable")

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
            if self._engine.dialect.name == "postgresql":
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
    batch's first record lets a busy process commit tens of records per transaction, far
    inside the 10 s before Intacct's first retry.
    """

    def __init__(self, ledger: DeliveryLedger, *, max_batch: int = 500, linger: float = 0.05) -> None:
        self._ledger = ledger
        self._max_batch = max_batch
        self._linger = linger
        self._urgent = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-recorder", daemon=True)
        self._thread.start()

    def record(self, connection_id: str, key: str, event_id: str) -> None:
        """Queue a record; it is committed with the next batch, within milliseconds."""
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
        while True:
            batch = [self._queue.get()]
            if not self._control(batch[0]):
                # Sleep rather than wait on the queue: with no reader blocked on it, a request
                # thread's put wakes no one, so a busy process pays no thread switch per record.
                self._urgent.wait(self._linger)
            self._urgent.clear()
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
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
