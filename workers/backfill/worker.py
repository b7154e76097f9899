"""The background worker of the provisioning process: claims scheduled or abandoned backfills, runs them.

Each of its threads polls the runs table for a pending run or one whose holder's lease ran
out (a crashed process), takes it with a compare-and-set lease and runs it. Several processes
may run workers on one database: a run is only ever held by one of them.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from observability.logging import get_logger
from workers.backfill.lease import new_holder
from workers.backfill.runner import BackfillRunner, RunOptions
from workers.backfill.store import BackfillStore

log = get_logger(__name__)


class BackfillWorker:
    """Runs up to ``concurrency`` backfills at once in background threads, until :meth:`stop`."""

    def __init__(
        self,
        settings: Any,
        engine: Engine,
        *,
        intacct: Any,
        flexpoint: Any,
        connections: Any,
        concurrency: int = 2,
        poll_interval: float = 1.0,
        options: RunOptions | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._store = BackfillStore(engine)
        self._options = options or RunOptions()
        self._runner = BackfillRunner(
            settings,
            self._store,
            intacct=intacct,
            flexpoint=flexpoint,
            connections=connections,
            options=self._options,
        )
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[str] = set()
        self._running_lock = threading.Lock()

    def start(self) -> None:
        """Start the worker threads (once)."""
        if self._threads:
            return
        for index in range(self._concurrency):
            thread = threading.Thread(target=self._loop, name=f"backfill-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("backfill_worker_started", threads=self._concurrency)

    def running(self) -> frozenset[str]:
        """The connections whose import this worker's threads are running right now."""
        with self._running_lock:
            return frozenset(self._running)

    def request_stop(self) -> None:
        """Ask the runs to pause at their next page, without waiting (safe from a signal handler)."""
        self._stopping.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop at the next page boundary, checkpoints saved; unfinished runs stay resumable."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("backfill_worker_not_stopped", threads=alive, timeout=timeout)
        else:
            log.info("backfill_worker_stopped")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            holder = new_holder()
            try:
                connection_id = self._store.claim_next(holder, self._options.lease_seconds)
            except SQLAlchemyError as exc:
                log.warning("backfill_claim_failed", error=type(exc).__name__)
                connection_id = None
            if connection_id is None:
                self._stopping.wait(self._poll_interval)
                continue
            with self._running_lock:
                self._running.add(connection_id)
            try:
                self._runner.run(connection_id, holder, self._stopping)
            except Exception:
                # A bug or a database outage: the lease runs out and a worker takes the run over.
                log.exception("backfill_run_crashed", connection_id=connection_id)
                self._stopping.wait(self._poll_interval)
            finally:
                with self._running_lock:
                    self._running.discard(connection_id)
