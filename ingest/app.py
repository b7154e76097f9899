"""The receiver's Flask application factory.

``create_app(settings, parts=...)`` serves the parts of one receiver process (connection store
and its cache, idempotency ledger, verifiers, confirming publisher, metrics), which the ``web``
process factory builds (``processes/web.py``); tests build theirs the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from config import Settings
from ingest.connection_changes import ConnectionChangeListener
from ingest.errors import WebhookRefused, unavailable
from ingest.gaps import RECEIVER_5XX, GapReporter
from ingest.intake import WebhookIntake
from ingest.ledger import BatchRecorder, DeliveryLedger
from ingest.ops import blueprint as ops_blueprint
from ingest.webhooks import blueprint as webhooks_blueprint
from observability.logging import clear_request_context, get_logger
from observability.metrics import ReceiverMetrics
from workers.connections.store import ConnectionStore

log = get_logger(__name__)

# Sage asks that keys be kept at least 24 hours; Intacct retries within minutes. Three days
# covers both many times over (tests/test_receiver.py holds it to at least 24 hours).
DELIVERY_RETENTION = timedelta(days=3)
HOUSEKEEPING_INTERVAL_SECONDS = 600.0
# While the change listener is not consuming, a connection's change shows within this long.
CHANGES_FALLBACK_TTL_SECONDS = 1.0


def _package_version() -> str:
    try:
        return version("flexsync")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass
class ReceiverParts:
    """What a receiver process holds; built from settings unless a test supplies parts."""

    settings: Settings
    engine: Any
    store: ConnectionStore
    ledger: DeliveryLedger
    recorder: BatchRecorder
    publisher: Any
    metrics: ReceiverMetrics
    intake: WebhookIntake
    listener: ConnectionChangeListener | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    gaps: GapReporter | None = None  # reconciliation's gap signals (ingest/gaps.py)
    # Closes what the process opened, last first: the listener, the publisher, then the recorder
    # (the publisher's last confirms queue records that must be committed), the engine last.
    closer: Callable[[], None] = lambda: None

    def close(self) -> None:
        self.stop.set()
        self.closer()


class _InOrderJSON(DefaultJSONProvider):
    """Answers keep their fields in the order the code wrote them, not sorted."""

    sort_keys = False


def create_app(
    settings: Settings | None = None, *, parts: ReceiverParts, housekeeping: bool = False
) -> Flask:
    """The receiver serving ``parts`` (built by ``processes.web.build``)."""
    settings = settings or parts.settings
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes
    app.json = _InOrderJSON(app)
    # A webhook URL with "//" must get a JSON 404, not an HTML redirect Intacct would not follow.
    app.url_map.merge_slashes = False
    app.extensions["flexsync.settings"] = settings
    app.extensions["flexsync.parts"] = parts
    app.extensions["flexsync.version"] = _package_version()
    app.register_blueprint(webhooks_blueprint)
    app.register_blueprint(ops_blueprint)
    _register_hooks(app, parts.metrics, parts.gaps)
    if parts.gaps is not None:
        parts.gaps.start(parts.stop)
    if housekeeping:
        threading.Thread(target=_housekeeping, args=(parts,), name="ledger-housekeeping", daemon=True).start()
    return app


def _register_hooks(app: Flask, metrics: ReceiverMetrics, gaps: GapReporter | None) -> None:
    @app.teardown_request
    def _drop_log_context(_error: BaseException | None) -> None:
        # Request threads are reused: the connection/event ids bound during a request go with
        # it (teardown runs after every request, error handlers included), so the next request
        # starts clean and nothing else the thread logs is labelled with them.
        clear_request_context()

    @app.errorhandler(WebhookRefused)
    def _refused(refusal: WebhookRefused):
        metrics.rejects.labels(refusal.code).inc()
        # Every refusal of a webhook comes through here, whatever raised it; the view counts
        # what it accepts. (No after_request hook: Flask's hook machinery cost more per webhook
        # than the counting.)
        if request.endpoint == "webhooks.receive":
            metrics.answered(refusal.status)
            if refusal.status >= 500 and gaps is not None:
                # Intacct may give up on this delivery: reconciliation sweeps the company soon.
                gaps.report(RECEIVER_5XX, (request.view_args or {}).get("connection_id"))
        response = jsonify(refusal.body())
        response.status_code = refusal.status
        response.headers.update(refusal.headers)
        return response

    @app.errorhandler(SQLAlchemyError)
    def _database_down(exc: SQLAlchemyError):
        log.error("database_error", error=str(exc).splitlines()[0])
        return _refused(
            unavailable(
                "database_unavailable",
                "The database is unavailable; retry later.",
                app.extensions["flexsync.settings"].retry_after_seconds,
            )
        )

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 413:
            code = "payload_too_large"
        return _refused(WebhookRefused(exc.code or 500, code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("receiver_error")
        return _refused(WebhookRefused(500, "internal_error", "Something failed on our side."))


def _housekeeping(parts: ReceiverParts) -> None:
    """Forget idempotency keys older than the retention, every few minutes."""
    while not parts.stop.wait(HOUSEKEEPING_INTERVAL_SECONDS):
        try:
            removed = parts.ledger.purge_older_than(datetime.now(UTC) - DELIVERY_RETENTION)
            if removed:
                log.info("deliveries_purged", count=removed)
        except Exception:
            log.exception("deliveries_purge_failed")
