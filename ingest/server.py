"""Runs the receiver under gunicorn (``flexsync web``): gthread workers, one publisher each."""

from __future__ import annotations

import gc
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from config import Settings


class _RoutedLogger(GunicornLogger):
    """Sends gunicorn's lines through the root handler, so they are redacted and formatted too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.handlers[:] = []
            logger.propagate = True


def _worker_exit(_arbiter: Any, worker: Any) -> None:
    # Graceful stop: gunicorn has let in-flight requests finish; now drain outstanding
    # confirms and close the broker connection cleanly.
    app = getattr(worker, "wsgi", None)
    parts = getattr(app, "extensions", {}).get("flexsync.parts") if app else None
    if parts is not None:
        parts.close()


def _post_worker_init(_worker: Any) -> None:
    # The app is built: what it loaded (modules, the app, its parts; about 100,000 objects)
    # lives as long as the worker. Out of the collector's sight, a full collection no longer
    # visits them all, a pause of every request thread of 50-150 ms under load.
    gc.freeze()


def _child_exit(_arbiter: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class ReceiverServer(BaseApplication):
    """A gunicorn application whose workers each build the receiver after fork."""

    def __init__(
        self, settings: Settings, *, workers: int, threads: int, app: Callable[[Settings], Any] | None = None
    ) -> None:
        self._settings = settings
        self._app = app
        self._options = {
            "bind": f"0.0.0.0:{settings.port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "graceful_timeout": 20,
            "timeout": 30,
            "keepalive": 5,
            "logger_class": _RoutedLogger,
            "accesslog": None,
            # gunicorn >= 27 opens ~/.gunicorn/gunicorn.ctl by default; two receivers on one
            # host would overwrite each other's, and we do not use it.
            "control_socket_disable": True,
            "post_worker_init": _post_worker_init,
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        """The app of one worker, built after fork (``processes.web.receiver_app``)."""
        assert self._app is not None, "the web process factory says how its app is built"
        return self._app(self._settings)


def serve(settings: Settings, *, workers: int, threads: int, app: Callable[[Settings], Any]) -> None:
    """Run until SIGTERM/SIGINT; gunicorn then stops gracefully."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="flexsync-metrics-")
    logging.getLogger(__name__).info(
        "receiver_starting port=%s workers=%s threads=%s", settings.port, workers, threads
    )
    ReceiverServer(settings, workers=workers, threads=threads, app=app).run()
