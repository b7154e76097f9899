"""The state one seeding run shares: its transaction, RNG, key ranges, dates and row helpers.

Rows are plain tuples bulk-inserted with executemany; dates come from a table precomputed per
day, so generating a row costs a few random draws and a tuple, nothing more.
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..objects import OBJECT_TYPES, ObjectType
from ..store import Store
from .options import SeedOptions

DAY = 86_400
FUTURE_DAYS = 120  # due dates may lie after as_of
AUDIT = ("audit.createdDateTime", "audit.modifiedDateTime", "audit.createdBy", "audit.modifiedBy")


def money(cents: int) -> str:
    """Cents as Intacct's decimal string ("-12.05")."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def columns(obj: ObjectType, names: Sequence[str]) -> list[str]:
    """The table columns of dotted field names."""
    return [obj.by_name[name].column for name in names]


class Invoice:
    """An invoice being generated: written after the payments that modify it."""

    __slots__ = (
        "created",
        "currency",
        "customer_id",
        "day",
        "key",
        "location",
        "modified",
        "paid",
        "state",
        "term",
        "term_days",
        "total",
    )

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)


class SeedContext:
    """One seeding run inside one write transaction."""

    def __init__(self, conn: sqlite3.Connection, company_id: str, options: SeedOptions, as_of: int) -> None:
        self.conn = conn
        self.company_id = company_id
        self.options = options
        self.rng = random.Random(options.seed)
        self.as_of = as_of
        midnight = as_of - as_of % DAY
        # Per day back from as_of (negative: after it): ISO date and midnight.
        self._days = [
            (datetime.fromtimestamp(midnight - d * DAY, UTC).date().isoformat(), midnight - d * DAY)
            for d in range(-FUTURE_DAYS, options.days + 120)
        ]
        self.counts: dict[str, int] = {}
        # (object, original key, reversal key, reversal date) of reversals seeded, linked after insert.
        self.links: list[tuple[str, int, int, str]] = []

    def date(self, day: int) -> str:
        """The ISO date ``day`` days before as_of."""
        return self._days[day + FUTURE_DAYS][0]

    def keys(self, path: str, count: int) -> range:
        """Reserve ``count`` keys of ``path`` (and count them for the summary)."""
        first = Store.reserve_keys(self.conn, self.company_id, OBJECT_TYPES[path], count) if count else 1
        self.counts[path] = self.counts.get(path, 0) + count
        return range(first, first + count)

    def insert(self, path: str, names: Sequence[str], rows: list[tuple]) -> None:
        """Bulk insert rows of (company, key, *values of ``names``)."""
        obj = OBJECT_TYPES[path]
        Store.insert_many(self.conn, obj, ["key", *columns(obj, names)], rows)

    def existing(self, path: str, *names: str) -> list[tuple]:
        """The company's records of ``path`` already stored, as tuples of ``names``."""
        obj = OBJECT_TYPES[path]
        sql = f"SELECT {', '.join(columns(obj, names))} FROM {obj.table} WHERE company_id = ? ORDER BY key"
        return [tuple(row) for row in self.conn.execute(sql, (self.company_id,))]

    def stamp(self, day: int, later_days: int = 0) -> tuple[int, int]:
        """Created during ``day``, modified up to ``later_days`` later; never after as_of."""
        created = min(self._days[day + FUTURE_DAYS][1] + self.rng.randrange(8 * 3600, 18 * 3600), self.as_of)
        modified = created + self.rng.randrange(later_days * DAY) if later_days else created
        return created, min(modified, self.as_of)
