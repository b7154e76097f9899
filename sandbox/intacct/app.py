"""The Flask application factory for the Intacct simulator."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.logs import get_logger

from . import event_queue_api  # noqa: F401 - its routes join the API and admin blueprints
from .admin import admin
from .api import api, jwks
from .config import SimulatorConfig
from .errors import AdminError, IntacctError
from .simulator import Simulator

log = get_logger(__name__)
EXTENSION = "intacct_simulator"


def create_app(
    config: SimulatorConfig | None = None,
    *,
    clock: Callable[[], float] = time.time,
    simulator: Simulator | None = None,
) -> Flask:
    """Build the simulator's app; its :class:`Simulator` is ``app.extensions["intacct_simulator"]``.

    ``clock`` (unix seconds) drives token expiry, audit timestamps and webhook times, so tests
    can move time without sleeping. Call ``simulator.close()`` when done.
    """
    config = config or SimulatorConfig()
    app = Flask("sandbox.intacct")
    app.json.sort_keys = False  # "ia::result" before "ia::meta", as Intacct answers
    app.extensions[EXTENSION] = simulator or Simulator(config, clock=clock)
    app.register_blueprint(api)
    app.register_blueprint(jwks)
    app.register_blueprint(admin)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        # Unknown routes and wrong methods answer in the format of the part of the API asked.
        if request.path.startswith("/sandbox"):
            response = jsonify(AdminError(error.code or 500, "http_error", error.name).body())
        else:
            code = (
                "notFound"
                if error.code == 404
                else "methodNotAllowed"
                if error.code == 405
                else "invalidRequest"
            )
            response = jsonify(IntacctError(error.code or 500, code, error.description or error.name).body())
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("intacct_simulator_error", path=request.path)
        if request.path.startswith("/sandbox"):
            response = jsonify(AdminError(500, "internal_error", "unexpected simulator error").body())
        else:
            response = jsonify(IntacctError(500, "internalError", "Unexpected simulator error").body())
        response.status_code = 500
        return response

    return app


def simulator_of(app: Flask) -> Simulator:
    """The :class:`Simulator` behind an app made by :func:`create_app`."""
    return app.extensions[EXTENSION]
