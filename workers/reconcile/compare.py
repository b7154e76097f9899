"""The comparison at the heart of reconciliation: Intacct's versions against FlexPoint's, streamed.

Intacct's side is a dict of :class:`IntacctRow` by key (what one query returned); FlexPoint's
side is an iterator of stored records (``FlexPointClient.iter_records(include_deleted=True)``),
read page by page, so one FlexPoint call serves up to a thousand records and nothing is asked
record by record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.mappings.base import natural_order
from schemas.mappings.values import utc_timestamp


def instant(value: Any) -> datetime:
    """An RFC 3339 text (or datetime) as an aware UTC datetime; ValueError when it is not one."""
    return datetime.fromisoformat(utc_timestamp(value))


@dataclass(frozen=True, slots=True)
class IntacctRow:
    """What the sweep needs of one Intacct record: its version, and whether FlexPoint imports it."""

    modified: datetime
    skipped: bool = False  # a draft invoice: FlexPoint must not hold it


def intacct_row(row: Mapping[str, Any], skip: Callable[[Mapping[str, Any]], bool] | None) -> IntacctRow:
    """A query row (``key``, ``audit.modifiedDateTime``, ``state``...) as an :class:`IntacctRow`."""
    return IntacctRow(instant(row["audit.modifiedDateTime"]), bool(skip and skip(row)))


def out_of_step(row: IntacctRow | None, stored: Mapping[str, Any] | None) -> bool:
    """True when FlexPoint must be brought to Intacct's state for this key.

    ``row`` None: Intacct no longer has the record, so a live copy in FlexPoint is out of step.
    Otherwise FlexPoint is behind when it lacks an imported record or holds an older version;
    a skipped record (draft) is in step when FlexPoint holds nothing live of it.
    """
    if row is None:
        return stored is not None and not stored.get("deleted")
    if stored is None:
        return not row.skipped
    if row.skipped and stored.get("deleted"):
        return False
    return instant(stored["sourceVersion"]) < row.modified


@dataclass
class Difference:
    """What to publish: ``updates`` (key, Intacct's version) to fetch, ``deletes`` gone from Intacct."""

    updates: list[tuple[str, datetime]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    compared: int = 0  # FlexPoint records read

    def sort(self) -> Difference:
        self.updates.sort(key=lambda update: natural_order(update[0]))
        self.deletes.sort(key=natural_order)
        return self


def compare(
    intacct: dict[str, IntacctRow], stored: Iterable[Mapping[str, Any]], *, deletions: bool
) -> Difference:
    """What FlexPoint lacks or holds older than ``intacct`` (and, with ``deletions``, holds extra).

    ``intacct`` is consumed (matched keys are removed) so memory does not double. Without
    ``deletions`` (a modified-since pass, where ``intacct`` is not Intacct's full set) reading
    FlexPoint stops as soon as every key was matched.
    """
    difference = Difference()
    if not intacct and not deletions:
        return difference
    for record in stored:
        difference.compared += 1
        key = str(record["externalId"])
        row = intacct.pop(key, None)
        if row is None and not deletions:
            continue
        if out_of_step(row, record):
            if row is None:
                difference.deletes.append(key)
            else:
                difference.updates.append((key, row.modified))
        if not intacct and not deletions:
            break
    difference.updates.extend((key, row.modified) for key, row in intacct.items() if out_of_step(row, None))
    intacct.clear()
    return difference.sort()
