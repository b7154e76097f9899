"""Access tokens for Intacct's REST API: one per connection, fetched with the client-credentials
grant and cached in memory until shortly before they expire."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from config.settings import Settings
from observability.logging import get_logger, redactor, register_secret
from reliability.retry_after import hint as retry_after

from .errors import IntacctUnavailable, RateLimited, TokenRefused, parse_ia_error, token_refusal_reason

log = get_logger(__name__)

TOKEN_PATH = "oauth2/token"  # noqa: S105 - a URL path, not a password
# Sage does not document the lifetime; assume an hour when the answer omits it (a 401 renews anyway).
_DEFAULT_LIFETIME = 3600.0
_MIN_MARGIN = 60.0
_REDACTED_PAST_EXPIRY = 3600.0

OnCall = Callable[[str, str, int, float], None]


class IntacctConnection(Protocol):
    """What the client needs of a connection (``workers.connections.store.ConnectionRecord``, a
    frozen record, has it): read-only attributes."""

    @property
    def connection_id(self) -> str: ...

    @property
    def company_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def entity_id(self) -> str | None: ...


@dataclass(frozen=True)
class _Cached:
    token: str
    refresh_at: float


def _no_op(company_id: str, object_path: str, status: int, seconds: float) -> None:
    return None


def username(connection: IntacctConnection) -> str:
    """``user@company``, with ``|entity`` appended for a connection to one entity."""
    name = f"{connection.user_id}@{connection.company_id}"
    return f"{name}|{connection.entity_id}" if connection.entity_id else name


def refresh_margin(lifetime: float) -> float:
    """How long before expiry a token is replaced: max(60 s, 10 %), but at most half its lifetime."""
    return min(max(_MIN_MARGIN, lifetime * 0.1), lifetime / 2)


class TokenProvider:
    """Hands out a valid access token per connection; thread-safe, one fetch per connection at a time.

    Tokens are kept per (connection id, company, user, entity), so a connection whose credentials
    changed gets a new token. Every token is registered with the log redaction before it is used.
    No user password is ever sent: the grant authenticates FlexPoint's client id and secret.
    """

    def __init__(
        self,
        settings: Settings,
        session: requests.Session,
        clock: Callable[[], float] = time.monotonic,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        on_call: OnCall | None = None,
    ) -> None:
        self._url = f"{settings.intacct_api_url}/{TOKEN_PATH}"
        self._client_id = settings.intacct_client_id
        # The current secret: during a rotation the others only still verify webhooks.
        self._client_secret = next(iter(settings.intacct_client_secrets), "")
        self._session = session
        self._clock = clock
        self._timeout = timeout
        self._on_call = on_call or _no_op
        self._cache: dict[tuple[str, str, str, str | None], _Cached] = {}
        self._fetching: dict[tuple[str, str, str, str | None], threading.Lock] = {}
        self._guard = threading.Lock()

    def token(self, connection: IntacctConnection) -> str:
        """A token for the connection, from the cache or fetched (others asking meanwhile wait).

        Raises :class:`TokenRefused` (with the ConnectionStatus ``reason``), or
        :class:`IntacctUnavailable` / :class:`RateLimited` when the endpoint could not answer.
        """
        key = _key(connection)
        cached = self._fresh(key)
        if cached is not None:
            return cached
        with self._lock_for(key):
            # Whoever held the lock before us may have fetched it already.
            cached = self._fresh(key)
            if cached is not None:
                return cached
            entry = self._fetch(connection)
            with self._guard:
                self._cache[key] = entry
            return entry.token

    def invalidate(self, connection: IntacctConnection, token: str | None = None) -> None:
        """Drop the cached token after the API refused it (401).

        With ``token``, only that token is dropped: when several threads saw the same stale token
        refused, the first renews and the others keep the fresh one instead of fetching again.
        """
        key = _key(connection)
        with self._guard:
            cached = self._cache.get(key)
            if cached is not None and (token is None or cached.token == token):
                del self._cache[key]

    def forget(self, connection_id: str) -> None:
        """Drop every token of a connection (on disconnect)."""
        with self._guard:
            for key in [k for k in self._cache if k[0] == connection_id]:
                del self._cache[key]
            for key in [k for k in self._fetching if k[0] == connection_id]:
                del self._fetching[key]

    # -- internals ----------------------------------------------------------------------------

    def _fresh(self, key: tuple[str, str, str, str | None]) -> str | None:
        with self._guard:
            cached = self._cache.get(key)
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.token
        return None

    def _lock_for(self, key: tuple[str, str, str, str | None]) -> threading.Lock:
        with self._guard:
            return self._fetching.setdefault(key, threading.Lock())

    def _fetch(self, connection: IntacctConnection) -> _Cached:
        who = username(connection)
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "username": who,
        }
        started = self._clock()
        try:
            response = self._session.post(
                self._url, data=form, timeout=self._timeout, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            self._on_call(connection.company_id, TOKEN_PATH, 0, self._clock() - started)
            raise IntacctUnavailable(f"token request for {who} failed: {type(exc).__name__}") from exc
        self._on_call(connection.company_id, TOKEN_PATH, response.status_code, self._clock() - started)
        body = _json(response)
        if response.status_code == 200:
            return self._accept(who, body, started)
        raise _refusal(who, response, body)

    def _accept(self, who: str, body: Any, started: float) -> _Cached:
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise IntacctUnavailable(
                f"token endpoint answered 200 without an access token for {who}", status=200
            )
        lifetime = body.get("expires_in")
        if isinstance(lifetime, str) and lifetime.strip().isdigit():
            lifetime = int(lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = _DEFAULT_LIFETIME
        # Redacted until well past its expiry (a late error may still quote it), then forgotten:
        # one token per company and hour would otherwise pile up for as long as the process runs.
        register_secret(token, lifetime=float(lifetime) + _REDACTED_PAST_EXPIRY)
        # Counted from before the request was sent, so the cache never outlives the token.
        refresh_at = started + lifetime - refresh_margin(float(lifetime))
        log.info("intacct_token_issued", username=who, expires_in=lifetime)
        return _Cached(token, refresh_at)


def _key(connection: IntacctConnection) -> tuple[str, str, str, str | None]:
    return (connection.connection_id, connection.company_id, connection.user_id, connection.entity_id)


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _clean(text: Any) -> str:
    # Server text goes into exception messages: pass it through the log redaction first.
    return redactor().redact_text(str(text))[:300]


def _refusal(who: str, response: requests.Response, body: Any) -> Exception:
    """The exception for a token endpoint answer other than 200."""
    status = response.status_code
    if status == 429:
        hint = retry_after(response.headers)
        return RateLimited(f"token endpoint answered 429 for {who}", retry_after=hint, status=status)
    if status >= 500:
        ia_error = parse_ia_error(body)
        return IntacctUnavailable(
            f"token endpoint answered {status} for {who}"
            + (f": {ia_error.get('code')}" if ia_error.get("code") else ""),
            status=status,
            code=ia_error.get("code"),
            error_id=ia_error.get("errorId"),
        )
    error = body.get("error") if isinstance(body, dict) else None
    description = body.get("error_description") if isinstance(body, dict) else None
    error = error if isinstance(error, str) else None
    description = _clean(description) if isinstance(description, str) else None
    reason = token_refusal_reason(error, description)
    shown = error or f"HTTP {status}"
    return TokenRefused(
        f"Intacct refused a token for {who}: {shown}" + (f" ({description})" if description else ""),
        reason=reason,
        error=error,
        description=description,
        status=status,
    )
