"""Sign-in with FLEXSYNC_CONSOLE_TOKEN, the session every other page needs, and cross-site refusal.

A state-changing request must carry the form's CSRF token (Flask-WTF) and, when the browser
says where it comes from, come from this origin (``Sec-Fetch-Site``/``Origin``): either check
alone refuses a forged cross-site POST.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, session, url_for

from console.audit import AuditLog
from console.sessions import ConsoleSessions

bp = Blueprint("auth", __name__)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_ENDPOINTS = frozenset({"auth.login", "static", "healthz"})


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so the answer's timing tells nothing about the token."""
    return hmac.compare_digest(given.encode(), expected.encode())


def claimed_name(raw: str | None) -> str:
    """The name typed at sign-in, kept printable and short. Everyone signs in with the one shared
    token, so nothing proves it: the trail shows it as the operator's claim, never as an identity."""
    name = "".join(ch for ch in (raw or "") if ch.isprintable()).strip()[:60]
    return name or "operator"


def _who(name: str, claim: str) -> str:
    return f"{name} ({claim}, from {request.remote_addr or '-'})"


def actor() -> str:
    """Who acts: the name claimed at sign-in and where the request came from."""
    return _who(session.get("actor", "operator"), "claimed at sign-in")


class SignInThrottle:
    """Failed sign-ins per client (its address): after ``limit`` failures within ``window``
    seconds the client is paused until the window ends, whatever it sends, so that the token
    cannot be guessed faster than ``limit`` tries per window and per address.

    The console runs as one process, so the counts live in memory; at most ``clients``
    addresses are remembered (the oldest forgotten first), so a spray of addresses costs memory
    that stays bounded.
    """

    def __init__(
        self,
        *,
        limit: int = 5,
        window: float = 300.0,
        clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clients = clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _current(self, client: str, now: float) -> tuple[float, int]:
        started, count = self._failures.get(client, (now, 0))
        if now - started >= self.window:
            self._failures.pop(client, None)
            return now, 0
        return started, count

    def paused_for(self, client: str) -> int:
        """Seconds this client must wait before trying again (0 when it may try now)."""
        with self._lock:
            now = self._clock()
            started, count = self._current(client, now)
            if count < self.limit:
                return 0
            return max(1, int(started + self.window - now + 0.999))

    def failed(self, client: str) -> int:
        """Count a failure; how many this client has made within the window."""
        with self._lock:
            now = self._clock()
            started, count = self._current(client, now)
            self._failures[client] = (started, count + 1)
            self._failures.move_to_end(client)
            while len(self._failures) > self._clients:
                self._failures.popitem(last=False)
            return count + 1

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def _throttle() -> SignInThrottle:
    return current_app.extensions["flexsync.console.throttle"]


def _sessions() -> ConsoleSessions:
    return current_app.extensions["flexsync.console.sessions"]


def signed_in() -> bool:
    """Whether this request carries a live session: signed, and not ended by a sign-out."""
    if not session.get("signed_in"):
        return False
    if _sessions().live(session.get("sid")):
        return True
    session.clear()  # a copied or stale cookie: ended server-side
    return False


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
        if request.endpoint in _OPEN_ENDPOINTS or signed_in():
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


def _refuse(name: str, client: str) -> tuple[str, int]:
    """Count a wrong token. The trail gets the first failure of a window and the one that pauses
    the client, not every try: a guessing client cannot flood it or hold the database's lock."""
    throttle = _throttle()
    failures = throttle.failed(client)
    who = _who(name, "claimed, not signed in")
    if failures == 1:
        _audit().record(who, "sign-in", "-", "refused: wrong token")
    elif failures == throttle.limit:
        paused = throttle.paused_for(client)
        _audit().record(
            who,
            "sign-in",
            "-",
            f"refused: wrong token {failures} times; sign-in from this address paused for {paused} s",
        )
    return login_page("Wrong token: that is not the console token."), 401


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method != "POST":
        return login_page(None), 200
    client = request.remote_addr or "-"
    paused = _throttle().paused_for(client)
    if paused:
        # Not even the right token is checked: a paused client learns nothing.
        page = login_page(f"Too many failed sign-ins from this address: try again in {paused} s.")
        return page, 429, {"Retry-After": str(paused)}
    name = claimed_name(request.form.get("name"))
    given = request.form.get("token", "")
    expected = current_app.config["FLEXSYNC_CONSOLE_TOKEN"]
    if not (given and token_matches(given, expected)):
        return _refuse(name, client)
    _throttle().succeeded(client)
    _sessions().end(session.get("sid"))
    session.clear()
    session.permanent = True
    session["signed_in"] = True
    session["sid"] = _sessions().start()
    session["actor"] = name
    _audit().record(actor(), "sign-in", "-", "signed in")
    return redirect(_path_on_this_host(request.args.get("next")) or url_for("pages.overview"))


@bp.route("/logout", methods=["POST"])
def logout():
    _audit().record(actor(), "sign-out", "-", "signed out")
    _sessions().end(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"))
