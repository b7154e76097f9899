"""The last N requests the simulator answered, for tests and people to see what the workers sent.

Kept in memory (a ring buffer): it is a window on recent traffic, not data, and writing it to
SQLite would add a transaction to every request. Headers are never recorded; the bearer token
is scrubbed from every recorded text in case a client put it somewhere it should not be.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

REDACTED = "[REDACTED]"


class RequestLog:
    """A bounded, thread-safe log of request summaries (dicts), newest last."""

    def __init__(self, size: int, *, secrets: tuple[str, ...] = ()) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._secrets = tuple(s for s in secrets if s)
        self._statuses: Counter[int] = Counter()

    def add(self, entry: dict[str, Any]) -> None:
        """Record one request's summary (scrubbed of secrets)."""
        clean = self._scrub(entry)
        with self._lock:
            self._entries.append(clean)
            self._statuses[entry["status"]] += 1

    def recent(self, limit: int, *, account_id: str | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` entries, newest first, optionally for one account."""
        with self._lock:
            entries = list(self._entries)
        entries.reverse()
        if account_id is not None:
            entries = [e for e in entries if e.get("accountId") == account_id]
        return entries[:limit]

    def counts(self) -> dict[str, Any]:
        """Requests answered since start (or reset), in total and by status."""
        with self._lock:
            by_status = {str(status): n for status, n in sorted(self._statuses.items())}
        return {"total": sum(by_status.values()), "byStatus": by_status}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._statuses.clear()

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value
