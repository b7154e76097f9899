"""Processing one group: fetch the latest state from Intacct, map it, upsert it to FlexPoint.

Framework-free and broker-free: the consumer hands a :class:`Group` over and gets an
:class:`GroupOutcome` back saying which events are done, which failed (and how), and which belong to
no live connection. Dependencies (connection lookup, Intacct and FlexPoint clients) are
injected, so a test builds a handler in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clients.intacct.client import record_key_problem
from clients.intacct.lines import read_lines
from observability.logging import get_logger
from schemas.catalog import BY_RESOURCE
from schemas.mappings import MappingError, applied_invoice_keys, map_record, tombstone
from workers.connections.store import ConnectionLookup, ConnectionRecord
from workers.runtime.failures import Failure, failure_of
from workers.sync.groups import RIDERS, Event, Group

log = get_logger(__name__)

# The most keys one query's $in filter carries when reading lines of many parents.
LINE_QUERY_CHUNK = 500
# sourceVersion has Intacct's one-second resolution and FlexPoint applies an equal version with
# other data, so two reads within one second could land in either order and the older data win
# for good. A record read before its modification second had passed (plus this much for clock
# skew) is therefore looked at once more later, when its state for that second is final.
SETTLE_SECONDS = 1.0


@dataclass
class GroupOutcome:
    """What to do with each event of a group once it was processed."""

    done: list[Event] = field(default_factory=list)
    failed: list[tuple[Event, Failure]] = field(default_factory=list)
    dropped: list[Event] = field(default_factory=list)
    # Done, but to be looked at once more after a short delay (see SETTLE_SECONDS).
    recheck: list[Event] = field(default_factory=list)
    upserted: int = 0


class SyncHandler:
    """Brings FlexPoint's copy of a group's records to Intacct's latest state."""

    def __init__(
        self,
        *,
        connections: ConnectionLookup,
        intacct: Any,
        flexpoint: Any,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connections = connections
        self._intacct = intacct
        self._flexpoint = flexpoint
        self._clock = clock
        self._monotonic = monotonic

    def process(self, group: Group) -> GroupOutcome:
        events = group.all_events
        connection = self._connections.get(group.connection_id)
        if connection is None or not connection.is_active:
            # Disconnected or unknown: nothing to sync into; acknowledged, never retried.
            log.info(
                "events_dropped",
                connection_id=group.connection_id,
                resource=group.resource,
                count=len(events),
                state=connection.state if connection else "unknown",
            )
            # A disconnected connection's token must not outlive it in this process either.
            self._intacct.forget(group.connection_id)
            return GroupOutcome(dropped=list(events))
        try:
            read_at = self._clock()
            main = self._read(connection, group.resource, group.keys, group)
            rider = self._rider_read(connection, group, main)
            # Always the account of the event's connection, from our store, never the message.
            for read in (main, rider):
                if read is not None and read.items:
                    self._flexpoint.upsert(
                        connection.account_id, read.resource, connection.connection_id, read.items
                    )
        except Exception as exc:
            failure = failure_of(exc)
            log.warning(
                "group_failed",
                connection_id=group.connection_id,
                resource=group.resource,
                reason=failure.reason,
                transient=failure.transient,
                error=str(exc)[:300],
            )
            return GroupOutcome(failed=[(event, failure) for event in events])
        outcome = GroupOutcome(upserted=len(main.items) + (len(rider.items) if rider else 0))
        reads = [(group.events, main)]
        if group.rider is not None and rider is not None:
            reads.append((group.rider.events, rider))
        for group_events, read in reads:
            unsettled = _unsettled_keys(read.items, read_at)
            for event in group_events:
                key = str(event.envelope["key"])
                error = read.unmappable.get(key)
                if error is not None:
                    outcome.failed.append((event, Failure("mapping_error", error, transient=False)))
                    continue
                outcome.done.append(event)
                if key in unsettled and not event.recheck:
                    outcome.recheck.append(event)
        return outcome

    def _read(
        self, connection: ConnectionRecord, resource: str, keys: list[str], group: Group | None
    ) -> _Read:
        """Latest state of ``keys`` as FlexPoint items; records gone from Intacct become tombstones.

        A key that cannot name a record (a comma, a slash, blank), or whose tombstone cannot be
        made, fails its own events only: the others of the group are read and written.
        """
        refused: dict[str, MappingError] = {}
        for key in keys:
            problem = record_key_problem(key)
            if problem is not None:
                refused[key] = MappingError(resource, key, {"key": [problem]})
        wanted = [key for key in keys if key not in refused]
        records, missing = (
            self._intacct.get_many(connection, BY_RESOURCE[resource].rest_path, wanted)
            if wanted
            else ([], [])
        )
        lines = self._lines(connection, resource, [str(r["key"]) for r in records])
        read = _Read(resource, lines=lines, unmappable=refused)
        for record in records:
            key = str(record["key"])
            try:
                read.items.append(
                    map_record(resource, record, lines.get(key, ()), entity_id=connection.entity_id)
                )
            except MappingError as exc:
                read.unmappable[key] = exc
        now = self._clock()
        for key in missing:
            # Gone from Intacct: deleted (a 404 means deleted), versioned when it was observed.
            observed = group.observed_at(key) if group is not None else None
            try:
                read.items.append(tombstone(resource, key, observed or now))
            except MappingError as exc:
                read.unmappable[key] = exc
        return read

    def _rider_read(self, connection: ConnectionRecord, group: Group, main: _Read) -> _Read | None:
        """The records ``group`` refreshes (a payment's invoices) and its rider's, in one read."""
        resource = RIDERS.get(group.resource)
        if resource is None:
            return None
        keys = list(group.rider.keys) if group.rider is not None else []
        if resource == "invoices":
            keys.extend(k for lines in main.lines.values() for k in applied_invoice_keys(lines))
        keys = list(dict.fromkeys(keys))
        if not keys:
            return None
        read = self._read(connection, resource, keys, group.rider)
        riding = set(group.rider.keys) if group.rider is not None else set()
        for key, error in list(read.unmappable.items()):
            if key not in riding:
                # Only refreshed, no event of its own here: that event will dead-letter it.
                log.warning("refreshed_record_unmappable", resource=resource, key=key, error=str(error)[:300])
                del read.unmappable[key]
        return read

    def _lines(self, connection: ConnectionRecord, resource: str, parent_keys: list[str]) -> dict[str, list]:
        return read_lines(self._intacct, connection, resource, parent_keys, chunk=LINE_QUERY_CHUNK)


@dataclass
class _Read:
    """Records of one resource read from Intacct: items for FlexPoint, what could not be mapped."""

    resource: str
    items: list[dict[str, Any]] = field(default_factory=list)
    unmappable: dict[str, MappingError] = field(default_factory=dict)
    lines: dict[str, list] = field(default_factory=dict)


def _unsettled_keys(items: list[dict[str, Any]], read_at: datetime) -> set[str]:
    """Keys of records whose modification second had not surely passed when they were read."""
    keys = set()
    for item in items:
        if item.get("deleted"):
            continue
        version = datetime.fromisoformat(item["sourceVersion"].replace("Z", "+00:00"))
        if read_at < version.replace(microsecond=0) + timedelta(seconds=1 + SETTLE_SECONDS):
            keys.add(item["externalId"])
    return keys
