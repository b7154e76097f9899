"""The receiver's and the sync's cache of connections: what ``ConnectionStore.get`` answered, kept
a while in memory (not persistence: it lives and dies with its process)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from workers.connections.store import ConnectionRecord, ConnectionStore


class CachedConnectionLookup:
    """A thread-safe, size-bounded TTL cache in front of :meth:`ConnectionStore.get`.

    Misses are cached too, so a flood of requests for unknown ids does not reach the database
    again; they are kept apart from the connections found, each kind bounded on its own
    (``max_entries``, ``max_refusals``), so made-up ids never push a real connection out.
    With a ``fallback_ttl``, changes are expected through :meth:`invalidate` (a listener on the
    broker); until :meth:`set_listening` says the listener is up, and whenever it is down,
    entries live only ``fallback_ttl`` seconds.
    """

    def __init__(
        self,
        store: ConnectionStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = 10_000,
        max_refusals: int = 10_000,
        fallback_ttl: float | None = None,
    ) -> None:
        self._store = store
        self._full_ttl = ttl
        self._fallback_ttl = fallback_ttl
        self._ttl = ttl if fallback_ttl is None else min(ttl, fallback_ttl)
        self._clock = clock
        self._max_entries = max_entries
        self._max_refusals = max_refusals
        self._entries: OrderedDict[str, tuple[float, ConnectionRecord]] = OrderedDict()
        # Ids the store has no connection for, with when that answer expires.
        self._refusals: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by invalidate(): a lookup that started before must not store what it read.
        self._generation = 0

    def get(self, connection_id: str) -> ConnectionRecord | None:
        """The connection (or None), from the cache when the entry is younger than the TTL."""
        return self.lookup(connection_id)[0]

    def lookup(self, connection_id: str) -> tuple[ConnectionRecord | None, bool]:
        """:meth:`get`'s answer, and whether it was read from the store just now (so current)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(connection_id)
            if entry is not None and entry[0] > now:
                return entry[1], False
            refused_until = self._refusals.get(connection_id)
            if refused_until is not None and refused_until > now:
                return None, False
            generation = self._generation
        # The database is read outside the lock so one slow query does not stall every thread.
        record = self._store.get(connection_id)
        with self._lock:
            if generation == self._generation:
                if record is None:
                    self._entries.pop(connection_id, None)
                    self._keep(self._refusals, connection_id, now + self._ttl, self._max_refusals)
                else:
                    self._refusals.pop(connection_id, None)
                    self._keep(self._entries, connection_id, (now + self._ttl, record), self._max_entries)
        return record, True

    @staticmethod
    def _keep(entries: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > limit:
            entries.popitem(last=False)

    def refresh(self, connection_id: str) -> ConnectionRecord | None:
        """The connection as stored now (or None), replacing what the cache held for it."""
        self.invalidate(connection_id)
        return self.get(connection_id)

    def set_listening(self, listening: bool) -> None:
        """The change listener is up (full TTL) or down (fallback TTL); forgets everything,
        since changes may have been missed meanwhile."""
        if self._fallback_ttl is None:
            return
        with self._lock:
            self._ttl = self._full_ttl if listening else min(self._full_ttl, self._fallback_ttl)
        self.invalidate()

    def invalidate(self, connection_id: str | None = None) -> None:
        """Forget one connection, or everything when ``connection_id`` is None."""
        with self._lock:
            self._generation += 1
            if connection_id is None:
                self._entries.clear()
                self._refusals.clear()
            else:
                self._entries.pop(connection_id, None)
                self._refusals.pop(connection_id, None)
