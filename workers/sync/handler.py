"""Processing one group: fetch the latest state from Intacct, map it, upsert it to FlexPoint.

Framework-free and broker-free: the consumer hands a :class:`Group` over and gets an
:class:`Outcome` back saying which events are done, which failed (and how), and which belong to
no live connection. Dependencies (connection lookup, Intacct and FlexPoint clients) are
injected, so a test builds a handler in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from observability.logging import get_logger
from schemas.catalog import BY_RESOURCE
from schemas.mappings import MappingError, applied_invoice_keys, line_source, map_record, tombstone
from store.connections import ConnectionRecord
from workers.failures import Failure
from workers.sync.groups import Event, Group

log = get_logger(__name__)

# The most keys one query's $in filter carries when reading lines of many parents.
LINE_QUERY_CHUNK = 500
# sourceVersion has Intacct's one-second resolution and FlexPoint applies an equal version with
# other data, so two reads within one second could land in either order and the older data win
# for good. A record read before its modification second had passed (plus this much for clock
# skew) is therefore looked at once more later, when its state for that second is final.
SETTLE_SECONDS = 1.0


class ConnectionLookup(Protocol):
    def get(self, connection_id: str) -> ConnectionRecord | None: ...


@dataclass
class Outcome:
    """What to do with each event of a group once it was processed."""

    done: list[Event] = field(default_factory=list)
    failed: list[tuple[Event, Failure]] = field(default_factory=list)
    dropped: list[Event] = field(default_factory=list)
    # Done, but to be looked at once more after a short delay (see SETTLE_SECONDS).
    recheck: list[Event] = field(default_factory=list)
    upserted: int = 0


def failure_of(exc: BaseException) -> Failure:
    """Classify an exception: clients mark theirs ``transient``; anything else is permanent."""
    reason = getattr(exc, "reason_code", None) or _snake(type(exc).__name__)
    return Failure(reason=reason, exception=exc, transient=bool(getattr(exc, "transient", False)))


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


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

    def process(self, group: Group) -> Outcome:
        connection = self._connections.get(group.connection_id)
        if connection is None or not connection.is_active:
            # Disconnected or unknown: nothing to sync into; acknowledged, never retried.
            log.info(
                "events_dropped",
                connection_id=group.connection_id,
                resource=group.resource,
                count=len(group.events),
                state=connection.state if connection else "unknown",
            )
            return Outcome(dropped=list(group.events))
        try:
            read_at = self._clock()
            items, unmappable, refreshed_invoices = self._items(connection, group)
            # Always the account of the event's connection, from our store, never the message.
            if items:
                self._flexpoint.upsert(connection.account_id, group.resource, connection.connection_id, items)
            if refreshed_invoices:
                self._flexpoint.upsert(
                    connection.account_id, "invoices", connection.connection_id, refreshed_invoices
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
            return Outcome(failed=[(event, failure) for event in group.events])
        outcome = Outcome(upserted=len(items) + len(refreshed_invoices))
        unsettled = _unsettled_keys(items, read_at)
        for event in group.events:
            key = str(event.envelope["key"])
            error = unmappable.get(key)
            if error is not None:
                outcome.failed.append((event, Failure("mapping_error", error, transient=False)))
                continue
            outcome.done.append(event)
            if key in unsettled and not event.recheck:
                outcome.recheck.append(event)
        return outcome

    def _items(
        self, connection: ConnectionRecord, group: Group
    ) -> tuple[list[dict[str, Any]], dict[str, MappingError], list[dict[str, Any]]]:
        resource = group.resource
        keys = group.keys
        records, missing = self._intacct.get_many(connection, BY_RESOURCE[resource].rest_path, keys)
        found = [str(r["key"]) for r in records]
        lines = self._lines(connection, resource, found)
        items: list[dict[str, Any]] = []
        unmappable: dict[str, MappingError] = {}
        for record in records:
            key = str(record["key"])
            try:
                items.append(map_record(resource, record, lines.get(key, ()), entity_id=connection.entity_id))
            except MappingError as exc:
                unmappable[key] = exc
        now = self._clock()
        for key in missing:
            # Gone from Intacct: deleted (a 404 means deleted), versioned when it was observed.
            items.append(tombstone(resource, key, group.observed_at(key) or now))
        refreshed: list[dict[str, Any]] = []
        if resource == "payments" and records:
            # A payment changes what its invoices still owe: bring those invoices along.
            invoice_keys = sorted(
                {k for r in records for k in applied_invoice_keys(lines.get(str(r["key"]), ()))}
            )
            refreshed = self._refreshed_invoices(connection, invoice_keys) if invoice_keys else []
        return items, unmappable, refreshed

    def _lines(self, connection: ConnectionRecord, resource: str, parent_keys: list[str]) -> dict[str, list]:
        source = line_source(resource)
        if source is None or not parent_keys:
            return {}
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(parent_keys, LINE_QUERY_CHUNK):
            rows.extend(
                self._intacct.query_all(
                    connection,
                    source.rest_path,
                    fields=list(source.fields),
                    filters=[{"$in": {source.parent_field: chunk}}],
                )
            )
        return source.group(rows)

    def _refreshed_invoices(self, connection: ConnectionRecord, keys: list[str]) -> list[dict[str, Any]]:
        invoices, missing = self._intacct.get_many(connection, BY_RESOURCE["invoices"].rest_path, keys)
        lines = self._lines(connection, "invoices", [str(r["key"]) for r in invoices])
        items = []
        for invoice in invoices:
            try:
                items.append(
                    map_record(
                        "invoices",
                        invoice,
                        lines.get(str(invoice["key"]), ()),
                        entity_id=connection.entity_id,
                    )
                )
            except MappingError as exc:
                # The payment itself synced; the invoice's own events will dead-letter it.
                log.warning("refreshed_invoice_unmappable", key=str(invoice["key"]), error=str(exc)[:300])
        now = self._clock()
        items.extend(tombstone("invoices", key, now) for key in missing)
        return items


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


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
