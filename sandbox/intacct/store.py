"""SQLite persistence: one table per object (a column per field), companies and key sequences.

Why stdlib sqlite3 rather than SQLAlchemy: the simulator's hot paths (4,000-row pages rendered
to JSON inside SQLite, 400,000-row seeding with executemany) must stay free of per-row Python
work, and its schema is derived from :mod:`objects` and created idempotently at start-up.
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import collections
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .objects import OBJECT_TYPES, Field, Kind, ObjectType

_SQL_TYPES = {
    Kind.KEY: "INTEGER NOT NULL",
    Kind.REF: "INTEGER",
    Kind.INT: "INTEGER",
    Kind.DATETIME: "INTEGER",
    Kind.NUMBER: "NUMERIC",
    Kind.BOOL: "INTEGER",
}
_MAX_IDLE_CONNECTIONS = 16
# Store.fetch's dotted field names per table, with the cursor description they were made from.
_FETCH_NAMES: dict[str, tuple[Any, list[str]]] = {}
# Keys and whole numbers are SQLite integers: none is larger (Sage publishes no bound of its own).
MAX_KEY = 2**63 - 1


def lookup_index(obj: ObjectType, field: Field) -> str | None:
    """The index serving equality on ``field`` (a parent/reference key or the id), if any."""
    if field.kind is Kind.REF:
        return f"{obj.table}_{field.column}"
    if field.name == "id":
        return f"{obj.table}_id"
    return None


def indexed(obj: ObjectType, name: str | None, alias: str = "") -> str:
    """``obj``'s table (``AS alias``) held to the index of an equality lookup on field ``name``.

    Without statistics SQLite's planner prefers the primary key's ``company_id`` prefix whenever the
    index does not cover the columns read, and scans all the company's rows; the index is never worse.
    """
    field = obj.by_name.get(name or "")
    index = lookup_index(obj, field) if field is not None else None
    if index is None:
        raise ValueError(f"{obj.path}.{name} has no lookup index")
    return f"{obj.table}{f' AS {alias}' if alias else ''} INDEXED BY {index}"


def _table_ddl(obj: ObjectType) -> list[str]:
    columns = ["company_id TEXT NOT NULL"]
    columns += [f"{f.column} {_SQL_TYPES.get(f.kind, 'TEXT')}" for f in obj.stored_fields]
    # WITHOUT ROWID clusters rows by (company, key): key-ordered pages are a range scan.
    statements = [
        f"CREATE TABLE IF NOT EXISTS {obj.table} ({', '.join(columns)}, "
        "PRIMARY KEY (company_id, key)) WITHOUT ROWID",
        f"CREATE INDEX IF NOT EXISTS {obj.table}_modified ON {obj.table} "
        "(company_id, audit__modifiedDateTime, key)",
        f"CREATE INDEX IF NOT EXISTS {lookup_index(obj, obj.by_name['id'])} ON {obj.table} (company_id, id)",
    ]
    statements += [
        f"CREATE INDEX IF NOT EXISTS {lookup_index(obj, f)} ON {obj.table} (company_id, {f.column}, key)"
        for f in obj.ref_fields
    ]
    return statements


_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS companies (company_id TEXT PRIMARY KEY, config TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sequences (company_id TEXT NOT NULL, object TEXT NOT NULL, "
    "next_key INTEGER NOT NULL, PRIMARY KEY (company_id, object)) WITHOUT ROWID",
    # Idempotency-Key values of committed writes, kept until expires_at (unix seconds).
    "CREATE TABLE IF NOT EXISTS idempotency_keys (company_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, "
    "operation TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (company_id, idempotency_key)) WITHOUT ROWID",
    # Each write deletes the expired keys first: without this index that is a scan of every key kept.
    "CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at)",
    *[statement for obj in OBJECT_TYPES.values() for statement in _table_ddl(obj)],
]


class Store:
    """A pool of connections to one SQLite file in WAL mode; writes are serialized in-process.

    Reads run concurrently (WAL); a write takes the process lock and ``BEGIN IMMEDIATE`` so a CLI
    seeding the same file from another process waits its turn instead of failing.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # deque's append and pop are atomic: a pool without queue.Queue's condition per get and put.
        self._idle: collections.deque[sqlite3.Connection] = collections.deque()
        self._write_lock = threading.Lock()
        self._closed = False
        with self.write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            self._add_new_columns(conn)

    @staticmethod
    def _add_new_columns(conn: sqlite3.Connection) -> None:
        # A data dir made before an object gained fields keeps working: new columns start NULL.
        for obj in OBJECT_TYPES.values():
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({obj.table})")}
            for field in obj.stored_fields:
                if field.column not in present:
                    sql_type = _SQL_TYPES.get(field.kind, "TEXT").replace(" NOT NULL", "")
                    conn.execute(f"ALTER TABLE {obj.table} ADD COLUMN {field.column} {sql_type}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-32000")
        conn.execute("PRAGMA mmap_size=268435456")
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._connect()
        try:
            yield conn
        finally:
            if self._closed or len(self._idle) >= _MAX_IDLE_CONNECTIONS:
                conn.close()
            else:
                self._idle.append(conn)

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (autocommit: each statement sees the latest commit)."""
        with self._connection() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction, committed on success, rolled back on error."""
        with self._write_lock, self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close idle connections; connections in use close when returned."""
        self._closed = True
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return

    # -- companies ------------------------------------------------------------------------

    def company(self, company_id: str) -> dict[str, Any] | None:
        """A company's stored settings, or None."""
        text = self.company_text(company_id)
        return None if text is None else json.loads(text)

    def company_text(self, company_id: str) -> str | None:
        """A company's stored settings as their JSON text, or None."""
        with self.read() as conn:
            row = conn.execute("SELECT config FROM companies WHERE company_id = ?", (company_id,)).fetchone()
        return None if row is None else row[0]

    def companies(self) -> list[dict[str, Any]]:
        """Every company's stored settings, by id."""
        with self.read() as conn:
            rows = conn.execute("SELECT config FROM companies ORDER BY company_id").fetchall()
        return [json.loads(row[0]) for row in rows]

    @staticmethod
    def put_company(conn: sqlite3.Connection, company_id: str, config: dict[str, Any]) -> None:
        """Insert or replace a company's settings."""
        conn.execute(
            "INSERT INTO companies (company_id, config) VALUES (?, ?) "
            "ON CONFLICT (company_id) DO UPDATE SET config = excluded.config",
            (company_id, json.dumps(config)),
        )

    @staticmethod
    def delete_company(conn: sqlite3.Connection, company_id: str) -> bool:
        """Delete a company with all its records and key sequences; False if unknown."""
        found = conn.execute("DELETE FROM companies WHERE company_id = ?", (company_id,)).rowcount > 0
        conn.execute("DELETE FROM sequences WHERE company_id = ?", (company_id,))
        for obj in OBJECT_TYPES.values():
            conn.execute(f"DELETE FROM {obj.table} WHERE company_id = ?", (company_id,))
        return found

    # -- keys -----------------------------------------------------------------------------

    @staticmethod
    def reserve_keys(conn: sqlite3.Connection, company_id: str, obj: ObjectType, count: int) -> int:
        """Reserve ``count`` new keys (RECORDNOs) and return the first; keys are never reused."""
        row = conn.execute(
            "SELECT next_key FROM sequences WHERE company_id = ? AND object = ?", (company_id, obj.path)
        ).fetchone()
        first = row[0] if row else 1
        conn.execute(
            "INSERT INTO sequences (company_id, object, next_key) VALUES (?, ?, ?) "
            "ON CONFLICT (company_id, object) DO UPDATE SET next_key = excluded.next_key",
            (company_id, obj.path, first + count),
        )
        return first

    # -- records --------------------------------------------------------------------------

    @staticmethod
    def insert_many(
        conn: sqlite3.Connection, obj: ObjectType, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Bulk insert ``rows`` (tuples starting with the company id, then ``columns``)."""
        names = ", ".join(("company_id", *columns))
        marks = ", ".join("?" * (len(columns) + 1))
        conn.executemany(f"INSERT INTO {obj.table} ({names}) VALUES ({marks})", rows)

    @staticmethod
    def fetch(conn: sqlite3.Connection, obj: ObjectType, company_id: str, key: int) -> dict[str, Any] | None:
        """One record's stored columns keyed by dotted field names, or None."""
        cursor = conn.execute(
            f"SELECT * FROM {obj.table} WHERE company_id = ? AND key = ?",
            (company_id, key),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        # The dotted names of the columns the cursor describes (tables of different data dirs may
        # order their columns differently: an older one got its newer columns appended).
        description = cursor.description
        cached = _FETCH_NAMES.get(obj.table)
        if cached is None or cached[0] != description:
            cached = _FETCH_NAMES[obj.table] = (description, [d[0].replace("__", ".") for d in description])
        record = dict(zip(cached[1], row, strict=True))
        record.pop("company_id")
        return record

    @staticmethod
    def update(
        conn: sqlite3.Connection, obj: ObjectType, company_id: str, key: int, values: dict[str, Any]
    ) -> None:
        """Set some fields (dotted names) of one record."""
        by_name = obj.by_name
        assignments = ", ".join(f"{by_name[name].column} = ?" for name in values)
        conn.execute(
            f"UPDATE {obj.table} SET {assignments} WHERE company_id = ? AND key = ?",
            (*values.values(), company_id, key),
        )

    @staticmethod
    def delete(conn: sqlite3.Connection, obj: ObjectType, company_id: str, keys: Sequence[int]) -> int:
        """Delete records by key; returns how many went."""
        marks = ", ".join("?" * len(keys))
        return conn.execute(
            f"DELETE FROM {obj.table} WHERE company_id = ? AND key IN ({marks})",
            (company_id, *keys),
        ).rowcount

    @staticmethod
    def keys_where(
        conn: sqlite3.Connection, obj: ObjectType, company_id: str, field: str, value: Any
    ) -> list[int]:
        """Keys of the records whose ``field`` equals ``value``."""
        column = obj.by_name[field].column
        rows = conn.execute(
            f"SELECT key FROM {obj.table} WHERE company_id = ? AND {column} = ? ORDER BY key",
            (company_id, value),
        ).fetchall()
        return [row[0] for row in rows]

    @staticmethod
    def analyze(conn: sqlite3.Connection) -> None:
        """Refresh the planner's statistics (after bulk loads), sampling to stay fast."""
        conn.execute("PRAGMA analysis_limit=1000")
        conn.execute("ANALYZE")

    def counts(self, company_id: str) -> dict[str, int]:
        """Records per object path for one company."""
        with self.read() as conn:
            return {
                obj.path: conn.execute(
                    f"SELECT COUNT(*) FROM {obj.table} WHERE company_id = ?",
                    (company_id,),
                ).fetchone()[0]
                for obj in OBJECT_TYPES.values()
            }
