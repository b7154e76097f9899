"""One short SQLite read that keeps the GIL, for the receiver's per-webhook lookup.

Python's ``sqlite3`` module lets go of the GIL around every step and reset of a statement:
three times for the ledger's one-row lookup. Under load another of the receiver's request
threads is always waiting for the GIL, so each let-go hands it over and costs two thread
switches, far more than the microseconds SQLite spends answering from its page cache.

:class:`HeldStatement` runs one prepared, read-only statement by calling the SQLite library
directly through ``ctypes.PyDLL``, whose calls keep the GIL. It uses the very copy of the
library the ``sqlite3`` module loaded (two copies in one process would break each other's
file locks), and does not wait: its connections have no busy timeout, so a statement SQLite
cannot answer at once gives None, and the caller asks the ``sqlite3`` module instead, which
waits with the GIL let go. SQLite still sleeps on its own when it races a writer for a WAL
read lock; a read that took tens of milliseconds therefore sends all reads to ``sqlite3`` for
a while. Linux only (the library is found in ``/proc/self/maps``); elsewhere
:func:`available` is False and nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from observability.logging import get_logger

log = get_logger(__name__)

_SQLITE_ROW = 100
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_OPEN_READWRITE = 0x00000002
_OPEN_NOMUTEX = 0x00008000
# SQLITE_TRANSIENT: SQLite copies a bound value at once.
_TRANSIENT = ctypes.c_void_p(-1)


@functools.cache
def _library() -> Any:
    """The SQLite library ``sqlite3`` uses, with calls that keep the GIL; None if not found."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libsqlite3" in line and "/" in line}
    except OSError:
        return None
    if len(paths) != 1:  # linked into _sqlite3 itself, or more than one copy: leave it alone
        return None
    try:
        library = ctypes.PyDLL(paths.pop())
        library.sqlite3_libversion.restype = ctypes.c_char_p
        library.sqlite3_column_text.restype = ctypes.c_char_p
        if library.sqlite3_libversion().decode() != sqlite3.sqlite_version:
            return None
    except (OSError, AttributeError):
        return None
    return library


def available() -> bool:
    """True where :class:`HeldStatement` can run (Linux, sqlite3 on a shared libsqlite3)."""
    return _library() is not None


class _Prepared:
    """One thread's connection and prepared statement; closed when the thread's locals go."""

    def __init__(self, library: Any, path: bytes, sql: bytes) -> None:
        self.library = library
        self.db = ctypes.c_void_p()
        self.statement = ctypes.c_void_p()
        self.bound: list[str | None] = []
        if library.sqlite3_open_v2(path, ctypes.byref(self.db), _OPEN_READWRITE | _OPEN_NOMUTEX, None):
            self.close()
            raise OSError(f"sqlite3_open_v2 failed on {path.decode(errors='replace')}")
        if library.sqlite3_exec(self.db, b"PRAGMA query_only = 1", None, None, None) or (
            library.sqlite3_prepare_v2(self.db, sql, -1, ctypes.byref(self.statement), None)
        ):
            self.close()
            raise OSError("could not prepare the statement")
        # The values bound last, per parameter: SQLite keeps bindings across resets.
        self.bound = [None] * library.sqlite3_bind_parameter_count(self.statement)

    def close(self) -> None:
        if self.statement:
            self.library.sqlite3_finalize(self.statement)
            self.statement = ctypes.c_void_p()
        if self.db:
            self.library.sqlite3_close_v2(self.db)
            self.db = ctypes.c_void_p()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit ctypes may be half gone
            self.close()


class HeldStatement:
    """``sql`` on the SQLite database at ``path``, run on a connection of the calling thread's
    own. Its parameters (?1, ?2 ...) are text; it gives one row, whose ``columns`` are text or
    NULL (``CAST(... AS TEXT)`` them): each comes back as a str or None."""

    def __init__(
        self,
        path: str,
        sql: str,
        *,
        columns: int,
        slow_seconds: float = 0.05,
        pause_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A statement that took longer than ``slow_seconds`` most likely waited inside SQLite
        (its WAL read retries sleep, busy timeout or not) with every thread of the process
        stopped: then every thread asks the ``sqlite3`` module for ``pause_seconds``. Reads of
        2-20 ms are seen every few seconds at peak load on two CPUs: the thread was simply not
        on a CPU, as can happen anywhere in the request's Python, so they do not count."""
        library = _library()
        if library is None:
            raise RuntimeError("SQLite cannot be called directly here; check available() first")
        self._library = library
        self._path = path.encode()
        self._sql = sql.encode()
        self._columns = range(columns)
        self._local = threading.local()
        self._slow = slow_seconds
        self._pause = pause_seconds
        self._clock = clock
        self._paused_until = float("-inf")

    def fetch_row(self, *params: str) -> tuple[str | None, ...] | None:
        """The statement's row; None when SQLite could not answer at once (busy, locked, an
        error), or while paused after a slow one: then ask the ``sqlite3`` module."""
        started = self._clock()
        if started < self._paused_until:
            return None
        prepared = getattr(self._local, "prepared", None)
        if prepared is None:
            try:
                prepared = self._local.prepared = _Prepared(self._library, self._path, self._sql)
            except OSError:
                return None
        library, statement, bound = self._library, prepared.statement, prepared.bound
        for index, value in enumerate(params):
            if bound[index] != value:
                encoded = value.encode()
                if library.sqlite3_bind_text(statement, index + 1, encoded, len(encoded), _TRANSIENT):
                    self._discard(prepared)
                    return None
                bound[index] = value
        code = library.sqlite3_step(statement)
        row: tuple[str | None, ...] | None = None
        if code == _SQLITE_ROW:
            text = library.sqlite3_column_text  # NULL comes back as None
            row = tuple(
                [None if (value := text(statement, n)) is None else value.decode() for n in self._columns]
            )
        # Reset ends the read at once (no snapshot is kept between webhooks).
        library.sqlite3_reset(statement)
        if code != _SQLITE_ROW and code not in (_SQLITE_BUSY, _SQLITE_LOCKED):
            self._discard(prepared)
        elapsed = self._clock() - started
        if elapsed > self._slow:
            self._paused_until = started + elapsed + self._pause
            log.warning(
                "sqlite_held_read_slow",
                ms=round(elapsed * 1000, 1),
                paused_seconds=self._pause,
                hint="SQLite waited for a lock; reads let go of the GIL meanwhile",
            )
        return row

    def _discard(self, prepared: _Prepared) -> None:
        # Something is wrong with this connection: the next call opens a fresh one.
        self._local.prepared = None
        prepared.close()
