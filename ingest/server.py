"""Runs the receiver under gunicorn (``flexsync web``): threaded workers that read each request
whole before a thread takes it, one publisher each.

gunicorn's gthread worker gives a connection to a request thread as soon as its first byte
arrives, and the thread then reads the rest with blocking reads and no deadline: a client sending
its headers or body a byte at a time holds the thread for as long as it likes, and a few dozen
such connections held every thread while Intacct's webhooks waited. :class:`ReadingThreadWorker`
reads on the worker's event loop instead (non-blocking, every connection at once) until the
request is complete (its headers, and its body by Content-Length or to the last chunk), and only
then hands it to a thread, which parses it from memory. A request must arrive whole within
``REQUEST_READ_SECONDS`` of its first byte (else 408 and the connection closed), an idle
connection goes after the keep-alive time, headers beyond ``MAX_HEADER_BYTES`` get a 431.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import selectors
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.workers.gthread import ThreadWorker

from config import Settings

# A whole request (headers and body) must arrive within this many seconds of its first byte.
REQUEST_READ_SECONDS = 10.0
# Headers larger than this are refused (431) without waiting for their end.
MAX_HEADER_BYTES = 64 * 1024
_RECV_BYTES = 65536


def request_complete(data: bytes | bytearray, body_limit: int) -> bool | None:
    """Whether ``data`` holds a whole HTTP/1.x request: True, False (more to come), or None
    (headers too large). A request the parser will refuse (a bad length, a bad chunk) counts as
    complete, so the parser answers it; so does one whose body exceeds ``body_limit`` (the app
    answers 413 without reading it)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None if len(data) > MAX_HEADER_BYTES else False
    body = end + 4
    length: int | None = None
    chunked = False
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return True
        elif name == b"transfer-encoding":
            chunked = chunked or b"chunked" in value.lower()
    if chunked:
        return _chunks_complete(data, body, body_limit)
    if length is None or length > body_limit:
        return True
    return len(data) - body >= length


def _chunks_complete(data: bytes | bytearray, at: int, body_limit: int) -> bool:
    start = at
    while True:
        if at - start > body_limit:
            return True
        eol = data.find(b"\r\n", at)
        if eol < 0:
            return False
        try:
            size = int(bytes(data[at:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            return True
        if size == 0:  # the last chunk; then trailers, if any, up to an empty line
            after = eol + 2
            return data.startswith(b"\r\n", after) or data.find(b"\r\n\r\n", after) >= 0
        at = eol + 2 + size + 2
        if at > len(data):
            return False


class ReadingThreadWorker(ThreadWorker):
    """gthread, except that a request reaches a thread only once it has arrived whole."""

    def init_process(self) -> None:
        # Connections being read on the event loop, with the time each must be done by.
        self._reading: dict[Any, float] = {}
        self._body_limit = int(getattr(self.app, "body_limit", 1024 * 1024))
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        if self.cfg.is_ssl or conn.is_http2 or getattr(conn, "flexsync_request", None) is not None:
            super().enqueue_req(conn)  # TLS and HTTP/2 are gunicorn's own (not how we are served)
            return
        # Bytes a previous request's read took beyond its end: the start of the next request.
        pending = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.flexsync_incoming = bytearray(pending)
        conn.sock.setblocking(False)
        wait = REQUEST_READ_SECONDS if pending else self.cfg.keepalive or REQUEST_READ_SECONDS
        self._reading[conn] = time.monotonic() + wait
        # A kept-alive connection's request is usually there already: read it before polling.
        if self._readable(conn, conn.sock, check=bool(pending)):
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
            conn.flexsync_polled = True

    def _readable(self, conn: Any, _sock: Any, *, check: bool = True) -> bool:
        """Read what arrived; hand the request over once whole. True while more is awaited."""
        incoming: bytearray = conn.flexsync_incoming
        while True:
            try:
                chunk = conn.sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn)
                return False
            if not chunk:  # the client went away before its request was whole
                self._drop(conn)
                return False
            if not incoming:
                self._reading[conn] = time.monotonic() + REQUEST_READ_SECONDS
            incoming += chunk
            check = True
            if len(chunk) < _RECV_BYTES:
                break
        if not check:
            return True
        complete = request_complete(incoming, self._body_limit)
        if complete is None:
            self._drop(conn, answer=b"431 Request Header Fields Too Large")
            return False
        if complete:
            self._stop_reading(conn)
            conn.flexsync_request = bytes(incoming)
            conn.flexsync_incoming = bytearray()
            conn.data_ready = True
            super().enqueue_req(conn)
            return False
        if not getattr(conn, "flexsync_continued", False) and _expects_continue(incoming):
            conn.flexsync_continued = True  # it waits for this before it sends its body
            self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def handle(self, conn: Any) -> Any:
        request = conn.__dict__.pop("flexsync_request", None)
        if request is not None:
            conn.flexsync_continued = False
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(request)
        return super().handle(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self._reading.items()):
            if deadline <= now:
                # A request begun and not finished in time gets its answer; an idle one just goes.
                self._drop(conn, answer=b"408 Request Timeout" if conn.flexsync_incoming else None)

    def _stop_reading(self, conn: Any) -> None:
        self._reading.pop(conn, None)
        if getattr(conn, "flexsync_polled", False):
            conn.flexsync_polled = False
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _drop(self, conn: Any, answer: bytes | None = None) -> None:
        self._stop_reading(conn)
        if answer is not None:
            self._send(conn, b"HTTP/1.1 " + answer + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.nr_conns -= 1
        conn.close()

    @staticmethod
    def _send(conn: Any, data: bytes) -> None:
        try:
            conn.sock.send(data)  # best effort: a short answer fits any socket buffer
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EPIPE, errno.ECONNRESET, errno.EBADF):
                raise


def _expects_continue(data: bytes | bytearray) -> bool:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"expect" and value.strip().lower() == b"100-continue":
            return True
    return False


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
        self.body_limit = settings.webhook_max_body_bytes  # read by ReadingThreadWorker
        self._options = {
            "bind": f"0.0.0.0:{settings.port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "ingest.server.ReadingThreadWorker",
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
