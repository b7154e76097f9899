"""Counting reconciliation's Intacct calls per company and purpose: what the sweep costs a customer."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from clients.intacct.event_queue import OBJECT_PATH as EVENT_QUEUE_PATH
from clients.intacct.tokens import TOKEN_PATH
from observability.metrics import ReconcileMetrics


class CallMeter:
    """The Intacct client's ``on_call`` hook: every HTTP call counted as ``token``, ``sweep``, ``keyset``
    or the event queue's ``queue-count``, ``queue-list``, ``queue-ack``.

    The purpose is set by the sweeper around each pass (:meth:`purpose`); ``totals`` keeps the
    same counts in memory for the benchmark and tests.
    """

    def __init__(self, metrics: ReconcileMetrics | None = None) -> None:
        self._metrics = metrics
        self._local = threading.local()
        self._lock = threading.Lock()
        self.totals: Counter[tuple[str, str]] = Counter()

    def on_call(self, company_id: str, object_path: str, status: int, seconds: float) -> None:
        if object_path == TOKEN_PATH:
            purpose = "token"
        elif object_path.startswith(f"{EVENT_QUEUE_PATH}:"):
            purpose = "queue-" + object_path.rpartition(":")[2]
        else:
            purpose = getattr(self._local, "purpose", None) or "sweep"
        with self._lock:
            self.totals[(company_id, purpose)] += 1
        if self._metrics is not None:
            self._metrics.intacct_calls.labels(self._metrics.company_label(company_id), purpose).inc()

    @contextmanager
    def purpose(self, name: str) -> Iterator[None]:
        previous = getattr(self._local, "purpose", None)
        self._local.purpose = name
        try:
            yield
        finally:
            self._local.purpose = previous

    def company_total(self, company_id: str) -> int:
        with self._lock:
            return sum(count for (company, _), count in self.totals.items() if company == company_id)
