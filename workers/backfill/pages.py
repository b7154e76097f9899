"""One page of a backfill: its records' lines read, the records mapped, the items upserted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clients.intacct.lines import read_lines
from observability.logging import get_logger
from schemas.mappings import MappingError, map_record
from workers.connections.store import ConnectionRecord

log = get_logger(__name__)

# Parent keys per line query: one ``$in`` filter stays a modest request (the sync uses 500 too).
LINE_QUERY_CHUNK = 1000


@dataclass(frozen=True)
class PageOutcome:
    """What one page did: records read, how many were skipped (drafts) or could not be mapped."""

    last_key: str
    read: int
    skipped: int
    unmappable: int


class PageImporter:
    """Reads a page's lines, maps its records and upserts them; safe to call from many threads."""

    def __init__(self, intacct: Any, flexpoint: Any) -> None:
        self._intacct = intacct
        self._flexpoint = flexpoint

    def import_page(
        self, connection: ConnectionRecord, resource: str, rows: Sequence[dict[str, Any]]
    ) -> PageOutcome:
        """Bring one page of records into FlexPoint; returns once FlexPoint confirmed every batch."""
        lines = self._lines(connection, resource, [str(row["key"]) for row in rows])
        items: list[dict[str, Any]] = []
        skipped = unmappable = 0
        for row in rows:
            key = str(row["key"])
            try:
                item = map_record(resource, row, lines.get(key, ()), entity_id=connection.entity_id)
            except MappingError as exc:
                # One bad record must not hold back the company's history: logged and counted.
                unmappable += 1
                log.warning(
                    "backfill_record_unmappable",
                    connection_id=connection.connection_id,
                    resource=resource,
                    key=key,
                    error=str(exc)[:300],
                )
                continue
            if item.get("deleted"):
                # Not imported (a draft): sent as the sync sends it, a tombstone at its own version,
                # so a record imported earlier that went back to draft leaves FlexPoint too.
                skipped += 1
            items.append(item)
        if items:
            self._flexpoint.upsert(connection.account_id, resource, connection.connection_id, items)
        return PageOutcome(str(rows[-1]["key"]), len(rows), skipped, unmappable)

    def _lines(self, connection: ConnectionRecord, resource: str, keys: list[str]) -> dict[str, list]:
        return read_lines(self._intacct, connection, resource, keys, chunk=LINE_QUERY_CHUNK)
