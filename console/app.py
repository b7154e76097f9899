"""The console's Flask application: its own app and port, never mounted in the receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from config import Settings
from console import pages, security, selections
from console.parts import ConsoleParts
from console.sessions import ConsoleSessions, session_key
from observability.logging import register_secret


def _when(value: datetime | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds} s"


def create_app(settings: Settings, *, parts: ConsoleParts | None = None, background: bool = False) -> Flask:
    """The console app; ``background`` starts the queue sampler."""
    settings.require("FLEXSYNC_CONSOLE_TOKEN", process="console")
    token = settings.flexsync_console_token or ""
    register_secret(token)
    if parts is None:
        from processes.console import build

        parts = build(settings)
    # Over https (production, unless plain http is allowed): a __Host- cookie (Secure, this host
    # only, path /) and HSTS. Over plain http neither can work, so neither is sent.
    https_only = (
        settings.flexsync_env not in ("development", "test") and not settings.flexsync_console_allow_http
    )
    lifetime = timedelta(hours=12)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=session_key(parts.engine, token),
        FLEXSYNC_CONSOLE_TOKEN=token,
        SESSION_COOKIE_NAME="__Host-flexsync_console" if https_only else "flexsync_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=https_only,
        SESSION_COOKIE_DOMAIN=None,
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=lifetime,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=False,  # the Origin check in console/security.py covers the referrer's job
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.extensions["flexsync.console"] = parts
    app.extensions["flexsync.console.throttle"] = security.SignInThrottle()
    app.extensions["flexsync.console.sessions"] = ConsoleSessions(parts.engine, lifetime)
    security.install(app)
    CSRFProtect(app)
    app.register_blueprint(security.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(selections.bp)
    app.jinja_env.globals["signed_in"] = security.signed_in
    app.jinja_env.filters["when"] = _when
    app.jinja_env.filters["age"] = _age

    @app.get("/healthz")
    def healthz() -> tuple[str, int]:
        return "ok", 200

    @app.errorhandler(CSRFError)
    def _csrf_refused(error: CSRFError) -> Any:
        if request.endpoint == "auth.login" and security.plain_http_drops_the_session():
            # Not a forgery: the browser kept the Secure cookie to itself. Say what to do.
            return security.login_page("Sign-in failed: this browser did not send the session back."), 400
        return render_template("refused.html", code=403, message=f"Refused: {error.description}"), 403

    @app.errorhandler(403)
    @app.errorhandler(401)
    @app.errorhandler(404)
    def _refused(error: Any) -> Any:
        return render_template("refused.html", code=error.code, message=error.description), error.code

    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        if https_only:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    if background:
        parts.start_background()
    return app
