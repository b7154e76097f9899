"""Database engines for SQLite and PostgreSQL, schema migrations and the readiness probe."""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit number; all processes migrating one PostgreSQL database must agree on it.
_ADVISORY_LOCK_ID = 0x666C_6578_7379_6E63 & 0x7FFF_FFFF_FFFF_FFFF  # "flexsync"
_SQLITE_BUSY_TIMEOUT_MS = 5000
# Databases this process has migrated (see upgrade); the lock also keeps two threads from both
# migrating one.
_migrated: set[str] = set()
_migrated_lock = threading.Lock()


def create_engine_for(database_url: str, *, pool_size: int | None = None) -> Engine:
    """Create an engine for a ``sqlite:///`` or ``postgresql://`` URL, tuned for many threads.

    ``pool_size``: the connections kept open (SQLAlchemy's default is 5), for a process with
    more threads than that using the database at once: a connection beyond the pool is opened
    for one checkout and closed after it (on SQLite each open sets the pragmas and parses the
    schema again).
    """
    url = make_url(database_url)
    pool: dict = {} if pool_size is None else {"pool_size": pool_size}
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool)
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, pool_pre_ping=True, **pool)
    raise ValueError(f"unsupported database backend {url.get_backend_name()!r}")


def _sqlite_engine(url: URL, pool: dict) -> Engine:
    database = url.database or ":memory:"
    in_memory = database == ":memory:" or database.startswith("file::memory:")
    options: dict = {"connect_args": {"check_same_thread": False, "timeout": 5.0}}
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty database.
        options["poolclass"] = StaticPool
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        options.update(pool)
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        _configure_sqlite(dbapi_connection, in_memory=in_memory)

    return engine


def _configure_sqlite(dbapi_connection: sqlite3.Connection, *, in_memory: bool) -> None:
    """What every connection to an SQLite database is set to, the engine's and the plain ones."""
    cursor = dbapi_connection.cursor()
    try:
        # Busy timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            # The journal mode is stored in the file; only the first opener changes it.
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if mode.lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
        # With WAL, NORMAL loses at most the last commits on power loss, never integrity.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def sqlite_file(engine: Engine) -> str | None:
    """The file of an engine's SQLite database, for :func:`connect_sqlite_file`; None for any
    other database, an in-memory one, or a URL with options a plain path would drop."""
    url = engine.url
    database = url.database
    if engine.dialect.driver != "pysqlite" or not database or url.query:
        return None
    if database == ":memory:" or database.startswith("file:"):
        return None
    return database


def connect_sqlite_file(path: str) -> sqlite3.Connection:
    """A plain ``sqlite3`` connection to the file ``path``, set up as the engine's connections
    are. It autocommits (each statement on its own unless the caller sends ``BEGIN``) and may
    be closed from any thread."""
    connection = sqlite3.connect(
        path, timeout=_SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        _configure_sqlite(connection, in_memory=False)
    except BaseException:
        connection.close()
        raise
    return connection


def check_ready(engine: Engine) -> None:
    """Run ``SELECT 1``; any failure propagates (a SQLAlchemy error) for ``/readyz`` to report."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1")).scalar_one()


def alembic_config() -> Config:
    """An Alembic configuration built in code: no ``alembic.ini`` is needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine) -> None:
    """Migrate the schema to the latest revision, once per process and database.

    The entry point and the wiring of a worker both ask for it; only the first call migrates,
    the others return at once. Migrations run under a lock (a PostgreSQL advisory lock, or a
    file lock next to the SQLite database) inside one transaction, so a process that waited
    for another finds the schema current and does nothing.
    """
    identity = _database_identity(engine)
    with _migrated_lock:
        if identity is not None and identity in _migrated:
            return
        _migrate(engine)
        if identity is not None:
            _migrated.add(identity)


def _database_identity(engine: Engine) -> str | None:
    """What names the database across engines (None: an in-memory one, its engine's own)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ":memory:"
        if (
            database == ":memory:"
            or database.startswith("file::memory:")
            or url.query.get("mode") == "memory"
        ):
            return None
    return url.render_as_string(hide_password=False)


def _migrate(engine: Engine) -> None:
    config = alembic_config()
    with _migration_lock(engine), engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Released at commit; the DDL itself is transactional on PostgreSQL.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        else:
            # pysqlite does not open a transaction for DDL by itself; SQLite can roll DDL back,
            # so a failed migration leaves the previous schema intact.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def conflict_insert(engine: Engine) -> Callable[..., postgresql.Insert | sqlite.Insert]:
    """The ``insert`` of ``engine``'s dialect, PostgreSQL's or SQLite's: an INSERT that takes an
    ``ON CONFLICT`` clause (``on_conflict_do_nothing``, ``on_conflict_do_update``, ``excluded``).

    Both dialects spell the clause alike; only the construct to build it with differs.
    """
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A short write transaction, committed on success and rolled back on error.

    On SQLite it takes the write lock up front: a deferred transaction that reads before it
    writes can fail at once with "database is locked" when another writer got in between,
    whereas BEGIN IMMEDIATE waits for the lock (up to the engine's busy timeout).
    """
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations between processes sharing one SQLite file (no-op otherwise)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(f"{database}.migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        # Blocks until the other process's migration has committed; released on close,
        # also when the process dies.
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
