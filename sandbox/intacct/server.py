"""Serving the simulator: a threaded werkzeug server in one process.

One process on purpose: the concurrency cap, the call counters and the webhook retries live
in memory and must see every request. :class:`SimulatorServer` runs it in a background thread
(tests, benchmarks, ``flexsync sandbox``); :func:`serve` runs it in the foreground until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.logs import get_logger

from .app import create_app, simulator_of
from .config import SimulatorConfig
from .simulator import Simulator

log = get_logger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """No access-log line per request: at benchmark rates it costs more than the request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class SimulatorServer:
    """The simulator listening on ``config.host:config.port`` (port 0: any free port)."""

    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.app = create_app(config, clock=clock)
        self._server: BaseWSGIServer = make_server(
            config.host, config.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def simulator(self) -> Simulator:
        return simulator_of(self.app)

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What INTACCT_API_URL should be set to."""
        return f"{self.base_url}/ia/api/v1"

    @property
    def jwks_url(self) -> str:
        """What INTACCT_WEBHOOK_JWKS_URL should be set to."""
        return f"{self.base_url}/.well-known/jwks.json"

    def start(self) -> SimulatorServer:
        """Serve in a daemon thread and return at once."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="intacct-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`request_stop`."""
        self._server.serve_forever()

    def request_stop(self) -> None:
        """Ask the serving loop to end, from any thread (a signal handler included)."""
        # shutdown() waits for serve_forever to return, so it cannot run on the serving thread.
        threading.Thread(target=self._server.shutdown, daemon=True).start()

    def stop(self) -> None:
        """Stop accepting requests, release held ones, stop webhook delivery, close the store."""
        self.simulator.faults.configure(self.simulator.faults.settings)  # wake held requests first
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close()

    def close(self) -> None:
        """After the serving loop ended: free the socket, the webhook workers and the store."""
        self._server.server_close()
        self.simulator.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve(config: SimulatorConfig, *, announce: Callable[[str], None] = print) -> None:
    """Run the simulator in the foreground until SIGTERM or SIGINT, then stop cleanly."""
    server = SimulatorServer(config)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("intacct_simulator_stopping", signal=signal.Signals(signum).name)
        server.request_stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    announce(
        f"Sage Intacct simulator on {server.base_url} (INTACCT_API_URL={server.api_url}, "
        f"JWKS {server.jwks_url}, data in {config.data_dir})"
    )
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
        announce("Sage Intacct simulator stopped")
