"""OAuth2 client-credentials tokens: issuing them, and authenticating API calls that carry them.

The checks follow intacct-rest.md's failure-signal table, in the order a real setup fails:
FlexPoint's own client credentials, the company, the sender authorization, the user, the entity.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from . import companies
from .errors import IntacctError, OAuthError
from .keys import SigningKey
from .store import Store

AUDIENCE = "intacct-rest-api"
_CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class Principal:
    """Who an API call acts as: from a verified token, re-checked against the company's setup."""

    company: companies.Company
    user: companies.User
    entity_id: str | None

    @property
    def company_id(self) -> str:
        return self.company.company_id


def _same(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


def entity_exists(store: Store, company_id: str, entity_id: str) -> bool:
    """Whether the company has an entity with this id."""
    with store.read() as conn:
        row = conn.execute(
            "SELECT 1 FROM o_company_config__entity WHERE company_id = ? AND id = ?", (company_id, entity_id)
        ).fetchone()
    return row is not None


class TokenService:
    """Issues and verifies the simulator's access tokens (RS256 JWTs with an injected clock)."""

    def __init__(
        self,
        *,
        store: Store,
        key: SigningKey,
        client_id: str,
        client_secret: str,
        issuer: str,
        ttl_seconds: int,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._key = key
        self._client_id = client_id
        self._client_secret = client_secret
        self._issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        # Verified claims by token: RSA verification per call would be the hot path's cost.
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def issue(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer a token request, or raise :class:`OAuthError` naming the setup mistake."""
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if not (_same(client_id, self._client_id) and _same(client_secret, self._client_secret)):
            raise OAuthError(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported here")
        username = form.get("username", "")
        user_id, at, rest = username.partition("@")
        company_id, _, entity_id = rest.partition("|")
        if not at or not user_id or not company_id:
            raise OAuthError(400, "invalid_request", "username must be <userId>@<companyId>[|<entityId>]")
        company = companies.load_text(self._store.company_text(company_id))
        if company is None:
            raise OAuthError(400, "invalid_grant", "unknown company")
        if not company.sender_authorized:
            raise OAuthError(400, "unauthorized_client", "sender not authorized")
        user = company.user(user_id)
        if user is None or not user.web_services:
            raise OAuthError(400, "invalid_grant", "unknown user")
        if entity_id and not entity_exists(self._store, company_id, entity_id):
            raise OAuthError(400, "invalid_grant", "unknown entity")
        now = int(self._clock())
        claims = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": username,
            "userId": user.user_id,
            "companyId": company.company_id,
            "entityId": entity_id or None,
            "clientId": self._client_id,
            "iat": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        return {
            "access_token": self._key.sign(claims),
            "token_type": "Bearer",
            "expires_in": self.ttl_seconds,
        }

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of a bearer token, or a 401 ``tokenInvalid``."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise IntacctError(401, "tokenInvalid", "Missing bearer access token")
        claims = self._claims(token)
        if claims is None:
            raise IntacctError(401, "tokenInvalid", "The access token is invalid")
        if self._clock() >= claims["exp"]:
            raise IntacctError(401, "tokenInvalid", "The access token has expired")
        company = companies.load_text(self._store.company_text(claims["companyId"]))
        user = company.user(claims["userId"]) if company else None
        if company is None or user is None or not user.web_services or not company.sender_authorized:
            raise IntacctError(401, "tokenInvalid", "The access token's user or company is no longer valid")
        return Principal(company, user, claims.get("entityId"))

    def _claims(self, token: str) -> dict[str, Any] | None:
        claims = self._verified.get(token)
        if claims is not None:
            return claims
        try:
            claims = self._key.verify(token, audience=AUDIENCE)
        except jwt.PyJWTError:
            return None
        if claims.get("iss") != self._issuer or not isinstance(claims.get("exp"), int | float):
            return None
        with self._lock:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = claims
        return claims
