"""Authenticity checks for inbound webhooks: Sage's JWT, X-Trusted-Context and the HMAC scheme.

Every verifier is a pure object with an injected clock: raw input in, a verified result or one
:class:`AuthenticationError` out. Nothing here knows about Flask, settings or the database, so the
receiver, the sandbox and the tests build them the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import jwt
import requests

from reliability.errors import FlexsyncError

if TYPE_CHECKING:
    from jwt.types import Options

Clock = Callable[[], float]

# Only public-key algorithms: a symmetric one would let anyone holding the (public) JWKS sign.
_ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Bounds on attacker-controlled input, so a hostile header costs us little work.
_MAX_TOKEN_CHARS = 16_384
_MAX_CONTEXT_CHARS = 8_192
_MAX_SIGNATURE_HEADER_CHARS = 4_096
_MAX_V1_SIGNATURES = 16
_MAX_TIMESTAMP_DIGITS = 12
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class AuthenticationError(FlexsyncError):
    """The request is not authentic; ``code`` is machine-readable, ``message`` safe to return.

    Messages never contain the token, a secret or a signature, because they end up in the
    webhook's JSON error body and in logs.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"AuthenticationError({self.code!r}, {self.message!r})"


class KeySourceUnavailable(FlexsyncError):
    """The JWKS could not be fetched and no cached key fits: our side's problem (answer 503)."""


def _same(left: str, right: str) -> bool:
    # surrogatepass: JSON may decode to lone surrogates; they must compare unequal, not crash.
    return hmac.compare_digest(left.encode("utf-8", "surrogatepass"), right.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------------
# Signing keys


class KeySource(Protocol):
    """Anything that maps a JWT header's ``kid`` to a verification key."""

    def get_signing_key(self, kid: str | None) -> jwt.PyJWK: ...


@dataclass(frozen=True)
class _KeySet:
    """An immutable snapshot of keys; replaced whole so readers never see a half-updated set."""

    keys: tuple[jwt.PyJWK, ...]
    by_kid: dict[str, jwt.PyJWK] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Iterable[jwt.PyJWK]) -> _KeySet:
        keys = tuple(keys)
        by_kid: dict[str, jwt.PyJWK] = {}
        for key in keys:
            if key.key_id is not None:
                by_kid.setdefault(key.key_id, key)
        return cls(keys, by_kid)

    def find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            # Without a kid the choice is only unambiguous when there is a single key.
            return self.keys[0] if len(self.keys) == 1 else None
        return self.by_kid.get(kid)


def _unknown_key(kid: str | None) -> AuthenticationError:
    if kid is None:
        return AuthenticationError(
            "unknown_key", "The bearer token names no signing key and several keys are published."
        )
    return AuthenticationError("unknown_key", "The bearer token's signing key is not known.")


class StaticKeySource:
    """A fixed set of verification keys, for tests and for a key given in configuration."""

    def __init__(self, keys: Sequence[jwt.PyJWK]) -> None:
        if not keys:
            raise ValueError("StaticKeySource needs at least one key")
        self._keys = _KeySet.of(keys)

    def get_signing_key(self, kid: str | None) -> jwt.PyJWK:
        """Return the key for ``kid``, or raise ``AuthenticationError("unknown_key")``."""
        key = self._keys.find(kid)
        if key is None:
            raise _unknown_key(kid)
        return key


def _parse_jwks(document: Any) -> _KeySet:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS is not an object with a keys list")
    usable = []
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            continue  # a published symmetric key is never one we would verify with
        if entry.get("use", "sig") != "sig":
            continue
        try:
            usable.append(jwt.PyJWK(entry))
        except Exception:  # noqa: S112 - one odd entry must not take the publisher's other keys down
            continue
    if not usable:
        raise ValueError("the JWKS holds no usable signing key")
    return _KeySet.of(usable)


class JwksKeySource:
    """Keys fetched lazily from a JWKS URL, cached, and refetched (rate-limited) on an unknown kid
    and once the key set is ``max_age_seconds`` old, so a key the publisher withdrew stops
    verifying tokens within that time even when no new kid ever comes.

    Shared by request threads: lookups of cached keys never wait for HTTP (while one thread
    refreshes an old key set, the others go on with it), and at most one thread fetches at a
    time, so a burst of tokens with a freshly rotated kid causes a single request. When a
    refresh fails, the cached keys stay in use: an outage of the publisher refuses no token.
    """

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 2.0,
        min_refetch_seconds: float = 30.0,
        max_age_seconds: float = 900.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._url = url
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._min_refetch_seconds = min_refetch_seconds
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._fetch_lock = threading.Lock()
        # Written only under _fetch_lock; _keys is read without it (a single reference swap).
        self._keys: _KeySet | None = None
        self._fetched_at = -math.inf  # clock() of the last successful fetch
        self._last_attempt: float | None = None
        self._last_failure: str | None = None

    def get_signing_key(self, kid: str | None) -> jwt.PyJWK:
        """Return the key for ``kid``, fetching the JWKS when it is not cached (or is old).

        Raises ``AuthenticationError("unknown_key")`` when the key set does not hold it and
        :class:`KeySourceUnavailable` when the JWKS cannot be fetched and nothing cached fits.
        """
        key = self._find(kid)
        if key is not None:
            if self._clock() - self._fetched_at < self._max_age_seconds:
                return key
            return self._refreshed(kid, key)
        with self._fetch_lock:
            # Another thread may have fetched while this one waited for the lock.
            key = self._find(kid)
            if key is not None:
                return key
            if self._refresh_unless_recently_tried():
                key = self._find(kid)
                if key is not None:
                    return key
            if self._last_failure is not None:
                raise KeySourceUnavailable(self._last_failure)
            raise _unknown_key(kid)

    def _refreshed(self, kid: str | None, cached: jwt.PyJWK) -> jwt.PyJWK:
        """``kid``'s key after refreshing an old key set; ``cached`` if another thread is at it."""
        if not self._fetch_lock.acquire(blocking=False):
            return cached
        try:
            # Another thread may have refreshed it since this one looked.
            if self._clock() - self._fetched_at >= self._max_age_seconds:
                self._refresh_unless_recently_tried()
        finally:
            self._fetch_lock.release()
        key = self._find(kid)
        if key is None:
            # The publisher no longer lists it: tokens it signed are refused from now on.
            raise _unknown_key(kid)
        return key

    def _refresh_unless_recently_tried(self) -> bool:
        """Fetch the JWKS unless the last try was under ``min_refetch_seconds`` ago; True if it
        tried. Called holding ``_fetch_lock``."""
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self._min_refetch_seconds:
            return False
        self._last_attempt = now
        self._refresh()
        return True

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys
        return None if keys is None else keys.find(kid)

    def _refresh(self) -> None:
        try:
            response = self._session.get(
                self._url, timeout=self._timeout, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            self._last_failure = f"could not reach the JWKS endpoint ({type(exc).__name__})"
            return
        if response.status_code != 200:
            self._last_failure = f"the JWKS endpoint answered HTTP {response.status_code}"
            return
        try:
            keys = _parse_jwks(response.json())
        except ValueError as exc:  # includes JSON decoding errors
            self._last_failure = f"the JWKS endpoint served an unusable key set: {exc}"
            return
        self._keys = keys
        self._fetched_at = self._clock()
        self._last_failure = None


# --------------------------------------------------------------------------------------------
# Bearer JWT


def parse_bearer(authorization_header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when there is none."""
    if not authorization_header:
        return None
    parts = authorization_header.strip().split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    token = parts[1].strip()
    return token or None


def _numeric_date(claims: dict[str, Any], name: str) -> int | float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError("invalid_claim", f"The bearer token's {name} is not a number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise AuthenticationError("invalid_claim", f"The bearer token's {name} is not a number.")
    return value


class JwtVerifier:
    """Verifies a webhook's bearer JWT: allowed algorithm, known key, signature, issuer, times.

    Times are checked against the injected clock with ``leeway_seconds`` of skew either way; a
    token is still accepted exactly ``leeway_seconds`` after its ``exp``.
    """

    def __init__(
        self,
        key_source: KeySource,
        *,
        issuer: str,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        leeway_seconds: int = 60,
        clock: Clock = time.time,
        audience: str | None = None,
        cache_size: int = 4096,
    ) -> None:
        if not issuer:
            raise ValueError("JwtVerifier needs the expected issuer")
        if not algorithms:
            raise ValueError("JwtVerifier needs at least one allowed algorithm")
        unsafe = [name for name in algorithms if name not in _ASYMMETRIC_ALGORITHMS]
        if unsafe:
            raise ValueError(f"only public-key algorithms may be allowed, not {unsafe}")
        if leeway_seconds < 0:
            raise ValueError("leeway_seconds cannot be negative")
        self._key_source = key_source
        self._issuer = issuer
        self._algorithms = tuple(algorithms)
        self._leeway = leeway_seconds
        self._clock = clock
        # Tokens whose signature already verified: the same bytes verify the same way, so a
        # token Intacct reuses across deliveries pays for parsing and RSA once. Time claims
        # are still checked on every use. Bounded; oldest entries go first.
        # The key it verified with is asked for again on every use, so a token stops verifying
        # once the key source no longer holds that key (withdrawn from the JWKS).
        # token -> (claims, first and last moment its time claims accept, leeway included,
        # the header's kid, the key)
        self._verified: dict[str, tuple[dict[str, Any], float, float, str | None, jwt.PyJWK]] = {}
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._audience = audience

    def verify(self, token: str | None) -> dict[str, Any]:
        """Return the token's claims, or raise :class:`AuthenticationError`.

        :class:`KeySourceUnavailable` passes through: it is not the sender's fault.
        """
        if not token:
            raise AuthenticationError("missing_credentials", "The request carries no bearer token.")
        cached = self._verified.get(token)
        if cached is not None:
            claims, valid_from, valid_until, kid, key = cached
            if self._key_source.get_signing_key(kid) is key:
                if not valid_from <= self._clock() <= valid_until:
                    self._check_claims(claims)  # says which time claim fails
                return dict(claims)
            # The kid now names other key material: verify the token afresh against it.
            with self._cache_lock:
                self._verified.pop(token, None)
        if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise AuthenticationError("malformed_token", "The bearer token is not a valid JWT.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("malformed_token", "The bearer token is not a valid JWT.") from None

        # Decided from the header alone, before any key lookup, so "none" or HS256 tokens can
        # neither reach a key nor trigger a JWKS fetch.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthenticationError(
                "algorithm_not_allowed", "The bearer token's signing algorithm is not allowed."
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationError("malformed_token", "The bearer token is not a valid JWT.")
        key = self._key_source.get_signing_key(kid)
        if key.algorithm_name != alg:
            raise AuthenticationError(
                "algorithm_not_allowed",
                "The bearer token's signing algorithm does not fit its signing key.",
            )
        claims = self._decode(token, key, alg)
        self._check_claims(claims)
        self._remember(token, claims, kid, key)
        return claims

    def _remember(self, token: str, claims: dict[str, Any], kid: str | None, key: jwt.PyJWK) -> None:
        if self._cache_size <= 0:
            return
        # Only tokens that just passed _check_claims get here: exp is a number, nbf/iat are
        # numbers or absent.
        expires = _numeric_date(claims, "exp")
        assert expires is not None
        starts = [m for m in (_numeric_date(claims, "nbf"), _numeric_date(claims, "iat")) if m is not None]
        valid_from = max(starts, default=-math.inf) - self._leeway
        entry = (dict(claims), valid_from, expires + self._leeway, kid, key)
        with self._cache_lock:
            while len(self._verified) >= self._cache_size:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = entry

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        options: Options = {
            # Time claims are checked below against the injected clock, not the wall clock.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_iss": False,
            # Sage does not publish its claims; an aud is only checked when one is configured.
            "verify_aud": self._audience is not None,
            "enforce_minimum_key_length": True,
        }
        try:
            return jwt.decode(token, key, algorithms=[alg], options=options, audience=self._audience)
        except jwt.InvalidSignatureError:
            raise AuthenticationError(
                "bad_signature", "The bearer token's signature does not verify."
            ) from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationError(
                "algorithm_not_allowed", "The bearer token's signing algorithm is not allowed."
            ) from None
        except jwt.InvalidKeyError:
            raise AuthenticationError(
                "key_rejected", "The bearer token's signing key is too weak to be trusted."
            ) from None
        except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError):
            raise AuthenticationError(
                "wrong_audience", "The bearer token is not meant for this service."
            ) from None
        except jwt.DecodeError:
            raise AuthenticationError("malformed_token", "The bearer token is not a valid JWT.") from None
        except jwt.PyJWTError:
            raise AuthenticationError("invalid_claim", "The bearer token carries an invalid claim.") from None

    def _check_claims(self, claims: dict[str, Any]) -> None:
        if "exp" not in claims or claims["exp"] is None:
            raise AuthenticationError("missing_claim", "The bearer token has no expiry (exp).")
        issuer = claims.get("iss")
        if issuer is None:
            raise AuthenticationError("missing_claim", "The bearer token has no issuer (iss).")
        if not isinstance(issuer, str) or issuer != self._issuer:
            raise AuthenticationError(
                "wrong_issuer", "The bearer token was not issued by the expected issuer."
            )
        now = self._clock()
        expires = _numeric_date(claims, "exp")
        if expires is not None and now > expires + self._leeway:
            raise AuthenticationError("token_expired", "The bearer token has expired.")
        for name in ("nbf", "iat"):
            moment = _numeric_date(claims, name)
            if moment is not None and moment > now + self._leeway:
                raise AuthenticationError(
                    "token_not_yet_valid", f"The bearer token's {name} lies in the future."
                )


# --------------------------------------------------------------------------------------------
# X-Trusted-Context and company binding


def _decode_base64(text: str) -> bytes:
    # Accept the standard and the url-safe alphabet, padded or not.
    stripped = text.strip().rstrip("=").replace("-", "+").replace("_", "/")
    if len(stripped) % 4 == 1:
        raise ValueError("impossible base64 length")
    return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)


class TrustedContextVerifier:
    """Checks ``X-Trusted-Context``: base64 JSON naming our client ID and the connection's company.

    Comparisons run in constant time; the configured client ID is fixed at construction.
    """

    def __init__(self, client_id: str, *, cache_size: int = 1024) -> None:
        if not client_id:
            raise ValueError("TrustedContextVerifier needs the client ID")
        self._client_id = client_id
        # Header value -> its decoded context. Intacct sends one value per company over and over,
        # so the base64 and JSON decoding is done once per value; the comparisons, which depend
        # on the connection, run on every call. Only well-formed values are kept; bounded.
        self._decoded: dict[str, dict[str, Any]] = {}
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def verify(self, header_value: str | None, company_id: str) -> dict[str, Any]:
        """Return the decoded context, or raise :class:`AuthenticationError`."""
        context = self._decoded.get(header_value) if header_value else None
        if context is None:
            context = self._decode(header_value)
        if not _same(context["clientId"], self._client_id):
            raise AuthenticationError(
                "client_mismatch", "X-Trusted-Context names another application's client ID."
            )
        if not _same(context["companyId"], company_id):
            raise AuthenticationError(
                "company_mismatch", "The webhook's company is not this connection's company."
            )
        return dict(context)

    def _decode(self, header_value: str | None) -> dict[str, Any]:
        invalid = AuthenticationError(
            "trusted_context_invalid",
            "X-Trusted-Context is missing or is not base64 JSON with clientId and companyId.",
        )
        if not header_value or len(header_value) > _MAX_CONTEXT_CHARS:
            raise invalid
        try:
            context = json.loads(_decode_base64(header_value))
        except (ValueError, binascii.Error, RecursionError):
            raise invalid from None
        if not isinstance(context, dict):
            raise invalid
        if not isinstance(context.get("clientId"), str) or not isinstance(context.get("companyId"), str):
            raise invalid
        if self._cache_size > 0:
            with self._cache_lock:  # readers need no lock: a dict lookup is atomic
                while len(self._decoded) >= self._cache_size:
                    self._decoded.pop(next(iter(self._decoded)))
                self._decoded[header_value] = context
        return context


def company_claim_matches(
    claims: dict[str, Any], company_id: str, claim_names: Sequence[str] = ("companyId",)
) -> None:
    """Raise ``company_mismatch`` when the JWT carries a company claim naming another company.

    Sage does not publish its claim names, so absent claims are not an error.
    """
    for name in claim_names:
        if name not in claims:
            continue
        value = claims[name]
        if not isinstance(value, str) or not _same(value, company_id):
            raise AuthenticationError("company_mismatch", "The bearer token was issued for another company.")


# --------------------------------------------------------------------------------------------
# X-FlexPoint-Signature (HMAC)


def _hmac_hex(secret: str, raw_body: bytes, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + raw_body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_hmac(secret: str, raw_body: bytes, timestamp: int) -> str:
    """The ``X-FlexPoint-Signature`` value for ``raw_body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_hmac_hex(secret, raw_body, timestamp)}"


def _malformed_signature() -> AuthenticationError:
    return AuthenticationError(
        "malformed_signature", "X-FlexPoint-Signature is not of the form t=<unix>,v1=<hex>."
    )


def _parse_signature_header(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_SIGNATURE_HEADER_CHARS or not header.isascii():
        raise _malformed_signature()
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        scheme, separator, value = part.partition("=")
        scheme, value = scheme.strip(), value.strip()
        if not separator or not scheme:
            raise _malformed_signature()
        if scheme == "t":
            if timestamp is not None or not value.isdigit() or len(value) > _MAX_TIMESTAMP_DIGITS:
                raise _malformed_signature()
            timestamp = int(value)
        elif scheme == "v1":
            if len(value) != 64 or not set(value) <= _HEX_DIGITS:
                raise _malformed_signature()
            signatures.append(value.lower())
        # Other schemes (v0=, future versions) are ignored, as standard webhooks do.
    if timestamp is None:
        raise _malformed_signature()
    if not signatures:
        raise AuthenticationError("no_signature", "X-FlexPoint-Signature carries no v1 signature.")
    if len(signatures) > _MAX_V1_SIGNATURES:
        raise _malformed_signature()
    return timestamp, signatures


class HmacVerifier:
    """Verifies ``X-FlexPoint-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` over ``"<t>.<body>"``.

    Any ``v1`` matching any of the connection's secrets passes, so either side can rotate.
    """

    def __init__(self, *, tolerance_seconds: int = 300, clock: Clock = time.time) -> None:
        if tolerance_seconds < 0:
            raise ValueError("tolerance_seconds cannot be negative")
        self._tolerance = tolerance_seconds
        self._clock = clock

    def verify(self, signature_header: str | None, raw_body: bytes, secrets: Sequence[str]) -> int:
        """Return the signed timestamp, or raise :class:`AuthenticationError`."""
        if not signature_header or not signature_header.strip():
            raise AuthenticationError("no_signature", "The request carries no X-FlexPoint-Signature.")
        timestamp, signatures = _parse_signature_header(signature_header)
        if abs(self._clock() - timestamp) > self._tolerance:
            raise AuthenticationError(
                "timestamp_out_of_window",
                "X-FlexPoint-Signature's timestamp is too far from the current time.",
            )
        if not secrets:
            raise AuthenticationError(
                "signing_not_configured", "This connection does not accept signed webhooks."
            )
        expected = [_hmac_hex(secret, raw_body, timestamp).encode() for secret in secrets]
        for candidate in signatures:
            for digest in expected:
                if hmac.compare_digest(candidate.encode(), digest):
                    return timestamp
        raise AuthenticationError("bad_signature", "X-FlexPoint-Signature does not match the request body.")
