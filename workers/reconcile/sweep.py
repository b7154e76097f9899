"""One reconciliation sweep of one resource of one connection, under its lease.

Two kinds of pass, the same comparison (:mod:`.compare`):

- **modified-since** (every sweep): Intacct's records modified since the watermark minus an
  overlap, against FlexPoint's copies; update events for what FlexPoint lacks or holds older.
- **key-set** (when due, or forced): every record of the resource on both sides; the same
  update events, plus delete events for what FlexPoint holds live that Intacct no longer has —
  the deletions no modified-since query can see.

The watermark advances to the time the pass began, and only after the broker confirmed every
event the pass published; a pass that fails anywhere leaves it where it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from observability.logging import get_logger
from reliability.leases import Renewal
from schemas.catalog import SyncedObject
from schemas.mappings import mapping_for
from workers.connections.store import ConnectionRecord
from workers.reconcile.compare import Difference, IntacctRow, compare, intacct_row
from workers.reconcile.events import Change, EventSender
from workers.reconcile.lease import SweepInterrupted, interrupter, sweep_lease
from workers.reconcile.meter import CallMeter
from workers.reconcile.store import Watermark, WatermarkStore

log = get_logger(__name__)

MODIFIED = "audit.modifiedDateTime"
# Up to this many changed records are looked up in FlexPoint one by one instead of listed.
SINGLE_READS = 50


@dataclass(frozen=True)
class SweepOptions:
    """Tunables of a sweep; the defaults suit production.

    ``overlap``: how far before the watermark each query starts again; it must exceed the clock
    skew between this host and Intacct and Intacct's longest write transaction, since paging
    can miss rows that change meanwhile (intacct-rest.md). ``keyset_interval``: how often the
    key-set pass runs per resource. ``lease``: seconds a claim lasts unless renewed.
    """

    overlap: timedelta = timedelta(minutes=5)
    keyset_interval: timedelta = timedelta(hours=24)
    lease: float = 300.0
    page_size: int = 1000


@dataclass(frozen=True)
class ResourceSweep:
    """The outcome of one resource's sweep: the summary line, and the ``--once`` report."""

    connection_id: str
    resource: str
    kind: str  # "modified-since", "key-set", "leased-elsewhere", "interrupted" or "failed"
    checked: int = 0
    updates: int = 0
    deletes: int = 0
    watermark: datetime | None = None
    error: str | None = None

    @property
    def published(self) -> int:
        return self.updates + self.deletes


class ResourceSweeper:
    """Sweeps one (connection, resource) at a time; dependencies are injected."""

    def __init__(
        self,
        *,
        intacct: Any,
        flexpoint: Any,
        watermarks: WatermarkStore,
        sender: EventSender,
        holder: str,
        options: SweepOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        should_stop: Callable[[], bool] = lambda: False,
        meter: CallMeter | None = None,
    ) -> None:
        self._intacct = intacct
        self._flexpoint = flexpoint
        self._watermarks = watermarks
        self._sender = sender
        self._holder = holder
        self._options = options or SweepOptions()
        self._clock = clock
        self._monotonic = monotonic
        self._interrupt = interrupter(should_stop)
        self._meter = meter or CallMeter()

    def sweep(
        self, connection: ConnectionRecord, synced: SyncedObject, *, keyset: bool = False
    ) -> ResourceSweep:
        """Claim, compare, publish, advance, release; a failure is logged and reported, not raised."""
        ids = (connection.connection_id, synced.resource)
        watermark = self._watermarks.claim(*ids, self._holder, self._options.lease)
        if watermark is None:
            log.info("reconcile_skipped", connection_id=ids[0], resource=ids[1], reason="leased_elsewhere")
            return ResourceSweep(*ids, kind="leased-elsewhere")
        try:
            result = self._pass(connection, synced, watermark, keyset)
        except SweepInterrupted:
            log.info("reconcile_interrupted", connection_id=ids[0], resource=ids[1])
            return ResourceSweep(*ids, kind="interrupted", watermark=watermark.modified_since)
        except Exception as exc:
            log.warning(
                "reconcile_failed",
                connection_id=ids[0],
                resource=ids[1],
                error_type=type(exc).__name__,
                error=str(exc)[:300],
                watermark=_text(watermark.modified_since),
            )
            return ResourceSweep(
                *ids, kind="failed", watermark=watermark.modified_since, error=str(exc)[:300]
            )
        finally:
            self._watermarks.release(*ids, self._holder)
        log.info(
            "reconcile_swept",
            connection_id=ids[0],
            resource=ids[1],
            kind=result.kind,
            checked=result.checked,
            published=result.published,
            updates=result.updates,
            deletes=result.deletes,
            watermark=_text(result.watermark),
        )
        return result

    def _stored(
        self, connection: ConnectionRecord, synced: SyncedObject, rows: dict[str, Any], full: bool
    ) -> Iterable[dict[str, Any]]:
        """FlexPoint's copies to compare with: a few changed keys one by one, else the whole list.

        The list comes in key order and new records have the highest keys, so for a handful of
        changes reading them singly is far cheaper than listing up to the last one.
        """
        if not full and len(rows) <= SINGLE_READS:
            for key in list(rows):
                record = self._flexpoint.get_record(connection.account_id, synced.resource, key)
                if record is not None:
                    yield record
            return
        yield from self._flexpoint.iter_records(connection.account_id, synced.resource, include_deleted=True)

    def _pass(
        self, connection: ConnectionRecord, synced: SyncedObject, watermark: Watermark, force_keyset: bool
    ) -> ResourceSweep:
        started = self._clock()
        full = force_keyset or self._keyset_due(connection, watermark, started)
        since = None if full else self.start_of(connection, watermark)
        lease = sweep_lease(
            self._watermarks,
            connection.connection_id,
            synced.resource,
            self._holder,
            self._options.lease,
            self._monotonic,
        )
        # The Intacct client reports each call to the meter: counted as this pass's purpose.
        with self._meter.purpose("keyset" if full else "sweep"):
            rows = self._intacct_rows(connection, synced, since, lease)
        checked = len(rows)
        difference = Difference()
        if rows or full:
            difference = compare(
                rows,
                lease.stream(self._stored(connection, synced, rows, full), before=self._interrupt),
                deletions=full,
            )
        observed = self._clock()
        changes = [Change(key, "update", version) for key, version in difference.updates]
        changes += [Change(key, "delete", observed) for key in difference.deletes]
        lease.renew()  # the comparison may have been long: be sure the lease is still ours
        self._sender.send(connection, synced, changes)
        advanced = self._watermarks.advance(
            connection.connection_id,
            synced.resource,
            self._holder,
            modified_since=started,
            swept_at=observed,
            keyset_checked_at=started if full else None,
        )
        return ResourceSweep(
            connection.connection_id,
            synced.resource,
            kind="key-set" if full else "modified-since",
            checked=checked,
            updates=len(difference.updates),
            deletes=len(difference.deletes),
            watermark=advanced.modified_since,
        )

    def start_of(self, connection: ConnectionRecord, watermark: Watermark) -> datetime:
        """Where the modified-since query starts: the watermark minus the overlap.

        A resource never swept starts from the connection's creation: everything older is the
        backfill's to import (started at connect), and whatever it missed the key-set pass
        finds, so a new connection does not re-read its whole history on its first sweep.
        """
        return (watermark.modified_since or connection.created_at) - self._options.overlap

    def _keyset_due(self, connection: ConnectionRecord, watermark: Watermark, now: datetime) -> bool:
        # Counted from the connection's creation for a first pass: right after connect the
        # backfill is still importing, and a key-set pass would only duplicate its work.
        last = watermark.keyset_checked_at or connection.created_at
        return now - last >= self._options.keyset_interval

    def _intacct_rows(
        self, connection: ConnectionRecord, synced: SyncedObject, since: datetime | None, lease: Renewal
    ) -> dict[str, IntacctRow]:
        skip = mapping_for(synced.resource).skip
        # Skip rules read the record's state (draft invoices are never imported).
        fields = ["key", MODIFIED, *(["state"] if skip is not None else [])]
        filters = None
        if since is not None:
            filters = [{"$gte": {MODIFIED: since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}]
        rows = self._intacct.query_all(
            connection, synced.rest_path, fields=fields, filters=filters, size=self._options.page_size
        )
        return {str(row["key"]): intacct_row(row, skip) for row in lease.stream(rows, before=self._interrupt)}


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
