"""How a worker process runs: settings checked, SIGTERM/SIGINT wired to ``stop()``, metrics served, run, close.

Every worker process (``sync``, ``provisioning``, ``reconcile``, ``writeback``) goes through
:func:`run_worker`, so each logs the same ``<name>_started`` / ``<name>_stopping`` /
``<name>_stopped`` lines and stops the same way: the signal handler only asks the worker to
stop; ``run()`` then returns once in-flight work is finished and settled, and ``close()`` runs.
"""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from config import Settings
from observability.logging import get_logger
from observability.metrics import serve_metrics

log = get_logger(__name__)

# What every worker needs to talk to Intacct and FlexPoint.
WORKER_SETTINGS = ("INTACCT_CLIENT_SECRET", "FLEXPOINT_API_URL", "FLEXPOINT_API_TOKEN")


class Worker(Protocol):
    def run(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def require_settings(settings: Settings, process: str, *extra: str) -> None:
    """Stop with one line naming any setting the worker process cannot run without."""
    settings.require(*WORKER_SETTINGS, *extra, process=process)


# Seconds between attempts while a dependency a worker cannot start without is unreachable.
START_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)


@contextmanager
def _stop_on_signals(process: str) -> Iterator[threading.Event]:
    """An event SIGTERM/SIGINT set while the block runs (on the main thread only, where Python
    delivers signals); the previous handlers come back afterwards."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info(f"{process}_stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until_ready(
    process: str,
    what: str,
    attempt: Callable[[], None],
    *,
    retry_on: tuple[type[BaseException], ...],
    delays: tuple[float, ...] = START_RETRY_DELAYS,
) -> bool:
    """Call ``attempt`` until it no longer raises one of ``retry_on``; False if told to stop first.

    For what a worker cannot start without (its database): started while that is unreachable, a
    worker waits for it as it does once running, saying so in ``<process>_waiting_for_<what>``
    at each attempt, instead of exiting. SIGTERM/SIGINT end the wait and the process cleanly.
    """
    waits = itertools.chain(delays, itertools.repeat(delays[-1]))
    with _stop_on_signals(process) as stop:
        while not stop.is_set():
            try:
                attempt()
                return True
            except retry_on as exc:
                delay = next(waits)
                cause = getattr(exc, "orig", None) or exc
                error = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
                log.warning(f"{process}_waiting_for_{what}", error=error, retry_in_seconds=delay)
                stop.wait(delay)
    log.info(f"{process}_stopped", waiting_for=what)
    return False


def run_worker(
    process: str,
    worker: Worker,
    *,
    registry: CollectorRegistry | None = None,
    port: int | None = None,
    bind: str = "127.0.0.1",
    token: str | None = None,
    **started: Any,
) -> None:
    """Run ``worker`` until SIGTERM/SIGINT, serving ``registry`` on ``bind:port`` when given (to
    ``Authorization: Bearer <token>`` only, when a token is given), then close it."""

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info(f"{process}_stopping", signal=signal.Signals(signum).name)
        worker.stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = None
    if registry is not None:
        # Opened right before the work starts: a scraper (and bench/sync.py) reads "up" as "consuming".
        server = serve_metrics(registry, port if port is not None else 0, bind=bind, token=token)
        started.setdefault("metrics_port", port)
        started.setdefault("metrics_bind", bind)
    log.info(f"{process}_started", **started)
    try:
        worker.run()
    except Exception:
        # Whatever ends the worker other than a stop is said here, not only on stderr.
        log.exception(f"{process}_failed")
        raise
    finally:
        try:
            worker.close()
        finally:
            # Whoever called us (a test, the CLI) gets its own handlers back.
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if server is not None:
                server.shutdown()
                server.server_close()
            log.info(f"{process}_stopped")


class InBackground:
    """A worker run on a daemon thread of a process whose main thread does something else
    (a receiver's listener), or beside another worker (:class:`Together`)."""

    def __init__(self, worker: Worker, name: str) -> None:
        self.worker = worker
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except Exception:  # its process goes on; the line says this part stopped
            log.exception(f"{self._name}_failed")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self.worker.stop()

    def close(self, timeout: float = 30.0) -> None:
        """Stop, wait up to ``timeout`` for the in-flight work to settle, then close the worker."""
        self.worker.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self.worker.close()


class Together:
    """Workers run as one process: ``main`` on the calling thread, the others each on a thread of
    their own; a stop reaches them all, and each is closed once ``main`` returned."""

    def __init__(self, main: Worker, **others: Worker) -> None:
        self._main = main
        self._others = [InBackground(worker, name) for name, worker in others.items()]

    def run(self) -> None:
        for other in self._others:
            other.start()
        self._main.run()

    def stop(self) -> None:
        for other in self._others:
            other.stop()
        self._main.stop()

    def close(self) -> None:
        try:
            for other in self._others:
                other.close()
        finally:
            self._main.close()
