"""The webhook idempotency ledger: which deliveries were accepted, for every receiver process.

A delivery is *recorded* once the broker confirmed its event, never before: a delivery answered
503 is therefore accepted when Intacct retries it, and a retry that reaches any receiver
process finds the record and is answered "duplicate".

Recording is off the request path: :class:`BatchRecorder` commits the records of all of a
process's request threads together on one writer thread, a few milliseconds after the answer.
Intacct retries a delivery no sooner than 10 s after a failed answer, so the record is always
there in time; only a process that dies inside those milliseconds leaves its delivery
unrecorded, and its retry then publishes the (idempotent) event once more. Copies of one
delivery arriving at the same moment are collapsed in memory by the receiver
(``ingest.recent``), not here.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import Engine, bindparam, delete, text

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

    def seen(self, connection_id: str, key: str) -> str | None:
        """The event id a delivery was accepted under, or None if it never was."""
        with self._engine.connect() as conn:
            row = conn.execute(_SEEN, {"connection_id": connection_id, "key": storage_key(key)}).first()
        return None if row is None else row[0]

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


_FLUSH = object()
_STOP = object()


class BatchRecorder:
    """Records deliveries from one writer thread, many per transaction; callers never wait.

    One transaction per batch instead of one per request keeps a busy receiver from queueing
    its processes behind SQLite's single write lock.
    """

    def __init__(self, ledger: DeliveryLedger, *, max_batch: int = 500) -> None:
        self._ledger = ledger
        self._max_batch = max_batch
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
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
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

    def _commit(self, records: list[tuple[str, str, str]]) -> None:
        try:
            self._ledger.record_many(records)
        except Exception as exc:
            # Unrecorded deliveries are not lost: their events are in the queue; a retry of
            # one of them would only publish it once more.
            log.error("ledger_record_failed", error=str(exc).splitlines()[0], count=len(records))
