"""Runs the console under gunicorn (``flexsync console``): one process, since jobs and the queue
samples live in it, with threads for concurrent pages."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from config import Settings
from ingest.server import _RoutedLogger


def _worker_exit(_arbiter: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    parts = getattr(app, "extensions", {}).get("flexsync.console") if app else None
    if parts is not None:
        parts.close()


class ConsoleServer(BaseApplication):
    """A gunicorn application that builds the console (and starts its threads) in its worker."""

    def __init__(self, settings: Settings, *, threads: int) -> None:
        self._settings = settings
        self._options = {
            "bind": f"0.0.0.0:{settings.port}",
            "workers": 1,
            "threads": threads,
            "worker_class": "gthread",
            "graceful_timeout": 20,
            "timeout": 60,
            "logger_class": _RoutedLogger,
            "accesslog": None,
            "control_socket_disable": True,
            "worker_exit": _worker_exit,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        from console.app import create_app

        return create_app(self._settings, background=True)


def serve(settings: Settings, *, threads: int = 8) -> None:
    """Run until SIGTERM/SIGINT."""
    logging.getLogger(__name__).info("console_starting port=%s threads=%s", settings.port, threads)
    ConsoleServer(settings, threads=threads).run()
