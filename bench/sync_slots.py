"""The reference consumer's per-company cap held in this process's memory (bench/sync.py): all a
single plain consumer needs, against the project's cap held in the database."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class _MemoryLease:
    kept = False

    def __init__(self, lease_seconds: float) -> None:
        self._until = time.monotonic() + lease_seconds

    def keep_until_expiry(self) -> None:
        self.kept = True

    def seconds_left(self) -> float:
        return self._until - time.monotonic()


class ProcessSlots:
    """The per-company cap as a semaphore in this process: what a single plain consumer needs.

    Duck-types ``clients.intacct.slots.CompanySlots`` for ``IntacctClient``: a slot whose request timed out
    stays taken until its lease runs out, as there.
    """

    lease_seconds = 45.0

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def acquire(self, company_id: str, timeout: float = 30.0) -> Iterator[_MemoryLease]:
        from clients.intacct.slots import SlotTimeout

        with self._guard:
            semaphore = self._semaphores.setdefault(company_id, threading.BoundedSemaphore(self.cap))
        if not semaphore.acquire(timeout=timeout):
            raise SlotTimeout(f"all {self.cap} slots of company {company_id} stayed busy for {timeout:g} s")
        lease = _MemoryLease(self.lease_seconds)
        try:
            yield lease
        finally:
            if lease.kept:
                timer = threading.Timer(self.lease_seconds, semaphore.release)
                timer.daemon = True
                timer.start()
            else:
                semaphore.release()
