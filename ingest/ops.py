"""Operational endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
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


@blueprint.get("/metrics")
def metrics():
    parts = current_app.extensions["flexsync.parts"]
    return Response(parts.metrics.render(), mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(build_openapi(current_app.extensions["flexsync.version"]))
