"""The simulator on a real socket: werkzeug's threaded server, one process.

One process on purpose: the fault RNG's sequence, the request log and the write lock are
process state, and chaos tests rely on the seeded sequence being the only one. Threads give
the workers concurrency; SQLite in WAL mode lets reads proceed beside the one writer.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.flexpoint.app import close_app, create_app
from sandbox.flexpoint.config import FlexPointConfig
from sandbox.logs import get_logger


class _Handler(WSGIRequestHandler):
    # The request log already records every Sync API call; one stderr line per request would
    # only slow benchmarks down.
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass

    # Headers and body leave in two writes; with Nagle's algorithm the second would wait for
    # the client's delayed ACK (~40 ms) on every keep-alive request.
    disable_nagle_algorithm = True


class FlexPointServer:
    """The app served on ``config.host:config.port`` (port 0 picks a free one) in a thread."""

    def __init__(self, config: FlexPointConfig, *, app: Flask | None = None) -> None:
        self.config = config
        self.app = app or create_app(config)
        self._server = make_server(
            config.host, config.port, self.app, threaded=True, request_handler=_Handler
        )
        self.port: int = self._server.server_port
        self.url = f"http://{config.host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> FlexPointServer:
        """Start serving in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flexpoint-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), close the database."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        close_app(self.app)

    def __enter__(self) -> FlexPointServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve(config: FlexPointConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (``flexsync sandbox flexpoint serve``).

    ``on_ready`` is called with the base URL once the socket listens (port 0 resolved), for a
    launcher that starts several servers or must tell the workers where to call.
    """
    log = get_logger(__name__)
    stop = threading.Event()
    server = FlexPointServer(config)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("flexpoint_sandbox_stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        server.start()
        log.info("flexpoint_sandbox_listening", url=server.url, data=str(config.db_path))
        if on_ready is not None:
            on_ready(server.url)
        stop.wait()
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("flexpoint_sandbox_stopped")
