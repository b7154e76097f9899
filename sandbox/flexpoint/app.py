"""The FlexPoint simulator as a Flask app: ``create_app(config)``.

Every request passes the same hooks, in this order: bearer authentication (401), then for
the Sync API the fault injector (latency, then 5xx/429 decided before anything is read or
written), then the view's contract check (400) and the store. Errors are rendered by the
handlers registered here in the contract's Error shape; every Sync API request is recorded
in the request log on the way out.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from sandbox.flexpoint import admin, api, postings_api
from sandbox.flexpoint.config import FlexPointConfig
from sandbox.flexpoint.contract import load_contract
from sandbox.flexpoint.errors import (
    ApiError,
    InjectedFault,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from sandbox.flexpoint.faults import FaultInjector, FaultSettings
from sandbox.flexpoint.payments import PaymentLedger
from sandbox.flexpoint.requestlog import RequestLog
from sandbox.flexpoint.runtime import EXTENSION, Sandbox, current_sandbox
from sandbox.flexpoint.store import Store, utc_text
from sandbox.logs import get_logger, register_secret

_MAX_LOGGED_VIOLATIONS = 20


def create_app(
    config: FlexPointConfig | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Flask:
    """Build the simulator over the SQLite file in ``config.data_dir`` (created if absent).

    ``clock`` stamps ``updatedAt`` and log entries; ``sleep`` applies injected latency (tests
    pass a recorder instead of waiting). Call ``close_app(app)`` to release the database.
    """
    config = config or FlexPointConfig()
    clock = clock or (lambda: datetime.now(UTC))
    register_secret(config.token)
    store = Store(config.db_path, clock=clock, idempotency_ttl=config.idempotency_ttl_seconds)
    sandbox = Sandbox(
        config=config,
        contract=load_contract(),
        store=store,
        faults=FaultInjector(FaultSettings.from_config(config), sleep=sleep),
        requests=RequestLog(config.request_log_size, secrets=(config.token,)),
        clock=clock,
        payments=PaymentLedger(store),
    )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions[EXTENSION] = sandbox
    app.register_blueprint(api.blueprint)
    app.register_blueprint(postings_api.blueprint)
    app.register_blueprint(admin.blueprint)
    app.before_request(_authenticate_and_inject)
    app.after_request(_record)
    app.teardown_request(_finished)
    app.register_error_handler(ApiError, _render_api_error)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)
    return app


def close_app(app: Flask) -> None:
    """Release the app's database after in-flight requests finished."""
    app.extensions[EXTENSION].close()


def _is_sync_api(path: str) -> bool:
    return path.startswith("/v1/")


def _authenticate_and_inject() -> None:
    sandbox = current_sandbox()
    sandbox.request_started()
    g.started = time.perf_counter()
    path = request.path
    if not (_is_sync_api(path) or (path.startswith("/sandbox/") and path != "/sandbox/health")):
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("missing bearer token: send Authorization: Bearer <FLEXPOINT_API_TOKEN>")
    if not hmac.compare_digest(presented.strip().encode(), sandbox.config.token.encode()):
        raise Unauthorized("invalid bearer token")
    if _is_sync_api(path):
        decision = sandbox.faults.decide()
        sandbox.faults.wait(decision)
        if decision.status is not None:
            g.fault = decision.status
            raise InjectedFault(decision.status, retry_after=decision.retry_after)


def _finished(_exc: BaseException | None) -> None:
    current_sandbox().request_finished()


def _record(response: Response) -> Response:
    if not _is_sync_api(request.path):
        return response
    sandbox = current_sandbox()
    view_args = request.view_args or {}
    error = g.get("error")
    if error and isinstance(error.get("details"), dict) and "violations" in error["details"]:
        violations = error["details"]["violations"]
        error = {
            **error,
            "details": {"violations": violations[:_MAX_LOGGED_VIOLATIONS], "total": len(violations)},
        }
    sandbox.requests.add(
        {
            "at": utc_text(sandbox.clock()),
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode("utf-8", "replace") or None,
            "status": response.status_code,
            "accountId": view_args.get("account_id"),
            "resource": view_args.get("resource"),
            "paymentId": view_args.get("payment_id"),
            "idempotencyKey": request.headers.get("Idempotency-Key"),
            "items": g.get("items"),
            "outcomes": g.get("outcomes"),
            "replayed": g.get("replayed", False),
            "fault": g.get("fault"),
            "error": error,
            "durationMs": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
        }
    )
    return response


def _render_api_error(error: ApiError) -> Response:
    body = error.body()
    g.error = body["error"]
    if error.status == 400:
        # A contract violation is usually a bug in our own workers: say it where people look.
        get_logger(__name__).info("flexpoint_sandbox_rejected", path=request.path, reason=error.message)
    response = Response(api.json_text(body), status=error.status, mimetype="application/json")
    response.headers.update(error.headers)
    return response


def _render_http_exception(error: HTTPException) -> Response:
    if error.code == 404:
        return _render_api_error(NotFound(f"no such endpoint: {request.method} {request.path}"))
    if error.code == 405:
        allowed = ", ".join(sorted(error.valid_methods or ())) if hasattr(error, "valid_methods") else ""
        return _render_api_error(
            MethodNotAllowed(f"{request.method} is not allowed here (allowed: {allowed})")
        )
    if error.code == 413:
        limit = current_sandbox().config.max_body_bytes
        return _render_api_error(PayloadTooLarge(f"request body exceeds the limit of {limit} bytes"))
    generic = ApiError(error.description or error.name)
    generic.status, generic.code = error.code or 500, error.name.lower().replace(" ", "_")
    return _render_api_error(generic)


def _render_unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):  # pragma: no cover - routed above
        return _render_http_exception(error)
    get_logger(__name__).exception("flexpoint_sandbox_error", path=request.path)
    return _render_api_error(ApiError(f"internal error in the sandbox ({type(error).__name__})"))
