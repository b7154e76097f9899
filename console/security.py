"""Sign-in with FLEXSYNC_CONSOLE_TOKEN, the session every other page needs, and cross-site refusal.

A state-changing request must carry the form's CSRF token (Flask-WTF) and, when the browser
says where it comes from, come from this origin (``Sec-Fetch-Site``/``Origin``): either check
alone refuses a forged cross-site POST.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, session, url_for

from console.audit import AuditLog

bp = Blueprint("auth", __name__)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_ENDPOINTS = frozenset({"auth.login", "static", "healthz"})


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so the answer's timing tells nothing about the token."""
    return hmac.compare_digest(given.encode(), expected.encode())


def actor() -> str:
    """Who acts: the name given at sign-in and where the request came from."""
    return f"{session.get('actor', 'operator')} ({request.remote_addr or '-'})"


def _audit() -> AuditLog:
    return current_app.extensions["flexsync.console"].audit


def _same_origin() -> bool:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return urlsplit(origin).netloc == request.host
    return origin != "null"


def install(app: Flask) -> None:
    """Refuse cross-site writes and unauthenticated requests before any view runs."""

    @app.before_request
    def _guard():
        if request.method not in _SAFE_METHODS and not _same_origin():
            abort(403, description="cross-site request refused")
        if request.endpoint in _OPEN_ENDPOINTS or session.get("signed_in"):
            return None
        if request.method in _SAFE_METHODS and not request.path.endswith(".json"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(401, description="sign in first")


def _path_on_this_host(target: str | None) -> str | None:
    """``target`` when it is a path on this host, else None: never an open redirect.

    Browsers drop tabs and newlines from a URL and read ``\\`` as ``/`` (and werkzeug drops some
    of them from a Location too), so ``/\\t/evil.example`` or ``/\\evil.example`` would leave the
    site: any control or invisible character or backslash is refused outright, as is anything
    with a scheme or a host, or that starts with ``//``.
    """
    if not target or "\\" in target or not target.isprintable():
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


# Hosts a browser treats as secure over plain http: it sends a Secure cookie back to them.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def plain_http_drops_the_session() -> bool:
    """Whether this request came over plain http from a browser that will not send the Secure
    session cookie back, so that sign-in cannot work (the CSRF check finds no session)."""
    if not current_app.config["SESSION_COOKIE_SECURE"] or request.is_secure:
        return False
    if request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https":
        return False  # a proxy in front took the https request
    host = urlsplit(f"//{request.host}").hostname or ""
    return host not in _LOCAL_HOSTS and not host.endswith(".localhost")


def login_page(error: str | None) -> str:
    https_url = None
    if plain_http_drops_the_session():
        https_url = "https://" + request.host + request.full_path.rstrip("?")
    return render_template("login.html", error=error, https_url=https_url)


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        given = request.form.get("token", "")
        name = (request.form.get("name") or "operator").strip()[:60] or "operator"
        expected = current_app.config["FLEXSYNC_CONSOLE_TOKEN"]
        if given and token_matches(given, expected):
            session.clear()
            session.permanent = True
            session["signed_in"] = True
            session["actor"] = name
            _audit().record(actor(), "sign-in", "-", "signed in")
            return redirect(_path_on_this_host(request.args.get("next")) or url_for("pages.overview"))
        _audit().record(f"{name} ({request.remote_addr or '-'})", "sign-in", "-", "refused: wrong token")
        error = "Wrong token: that is not the console token."
    return login_page(error), 401 if error else 200


@bp.route("/logout", methods=["POST"])
def logout():
    _audit().record(actor(), "sign-out", "-", "signed out")
    session.clear()
    return redirect(url_for("auth.login"))
