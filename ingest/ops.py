"""Operational endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from ingest.openapi import build_openapi
from store.db import check_ready

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz():
    """The process answers; says nothing about its dependencies (that is /readyz)."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    """Ready when the publisher holds a confirming channel and the database answers."""
    parts = current_app.extensions["flexsync.parts"]
    checks = {"broker": "ok" if parts.publisher.ready else "unavailable"}
    try:
        check_ready(parts.engine)
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if not ready:
        failing = ", ".join(name for name, value in checks.items() if value != "ok")
        body["error"] = {"code": "not_ready", "message": f"Unavailable: {failing}."}
    return jsonify(body), 200 if ready else 503


def _scraper_only() -> None:
    """QUALITY S4: these ops endpoints answer only with ``Authorization: Bearer`` and the
    FLEXSYNC_METRICS_TOKEN (compared in constant time); without the setting they are not served
    on this public port at all."""
    expected = current_app.extensions["flexsync.parts"].settings.flexsync_metrics_token
    if not expected:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        abort(401)


@blueprint.get("/metrics")
def metrics():
    _scraper_only()
    parts = current_app.extensions["flexsync.parts"]
    return Response(parts.metrics.render(), mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/openapi.json")
def openapi():
    _scraper_only()
    return jsonify(build_openapi(current_app.extensions["flexsync.version"]))
