"""``X-IA-Sage-Signature``: the HS256 JWT Sage Intacct signs each webhook delivery with.

Sage's current "Outbound webhooks" security steps: the JWT is the header itself, or the
``jwtData`` field of the base64 JSON the header carries; it is signed with HS256 and the
application's client secret; ``iss`` is ``Sage Intacct``; ``iat`` is in epoch milliseconds and
``exp`` one hour later (seconds or milliseconds, told apart by magnitude); ``payload_signature``
is the hex SHA-256 of the raw body. The claims also carry ``tenant_id`` and ``app_id``.

The secret is the application's, shared by every customer: a valid signature proves Sage sent
the delivery for FlexPoint's application, not which company it came from. The caller binds the
returned ``tenant_id`` to the connection (the tenant pin). Pure: no Flask, settings or database;
the clock is injected.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from ingest.auth import AuthenticationError, Clock, _decode_base64, _same

if TYPE_CHECKING:
    from jwt.types import Options

SAGE_SIGNATURE_HEADER = "X-IA-Sage-Signature"
SAGE_ISSUER = "Sage Intacct"
_ALGORITHM = "HS256"
_PAYLOAD_ALGORITHM = "SHA-256"
# Epoch seconds stay below this until the year 5138; epoch milliseconds passed it in 1973.
_MILLISECONDS_ABOVE = 100_000_000_000
_MAX_HEADER_CHARS = 16_384
_MAX_CLAIM_CHARS = 256


@dataclass(frozen=True)
class SageDelivery:
    """A delivery whose signature verified: who Sage says it is for, and every claim."""

    tenant_id: str
    app_id: str | None
    claims: dict[str, Any]


def _refused(code: str, message: str) -> AuthenticationError:
    return AuthenticationError(code, message)


def _malformed() -> AuthenticationError:
    return _refused(
        "malformed_signature",
        f"{SAGE_SIGNATURE_HEADER} is neither a JWT nor base64 JSON with a jwtData JWT.",
    )


def token_of(header_value: str) -> str:
    """The JWT a header value carries: the value itself, or its envelope's ``jwtData``."""
    value = header_value.strip()
    if len(value) > _MAX_HEADER_CHARS or not value.isascii():
        raise _malformed()
    # A compact JWT has exactly two dots; base64 has none.
    if value.count(".") == 2:
        return value
    try:
        envelope = json.loads(_decode_base64(value))
    except (ValueError, binascii.Error, RecursionError):
        raise _malformed() from None
    token = envelope.get("jwtData") if isinstance(envelope, dict) else None
    if not isinstance(token, str) or token.count(".") != 2 or not token.isascii():
        raise _malformed()
    return token


def _seconds(claims: dict[str, Any], name: str) -> float | None:
    """A time claim in epoch seconds, whether it was given in seconds or milliseconds."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _refused("invalid_claim", f"The signature's {name} is not a number.")
    return value / 1000 if abs(value) >= _MILLISECONDS_ABOVE else float(value)


def _text_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > _MAX_CLAIM_CHARS:
        raise _refused("invalid_claim", f"The signature's {name} is not a valid identifier.")
    return value


class SageSignatureVerifier:
    """Verifies ``X-IA-Sage-Signature`` against the raw body; see the module's docstring.

    ``secrets`` are the application's client secrets, tried in turn (several during a
    rotation). Only HS256 is accepted, decided from the token's header before any key is used.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        issuer: str = SAGE_ISSUER,
        leeway_seconds: int = 60,
        clock: Clock = time.time,
    ) -> None:
        secrets = tuple(secret for secret in secrets if secret)
        if not secrets:
            raise ValueError("SageSignatureVerifier needs at least one client secret")
        if leeway_seconds < 0:
            raise ValueError("leeway_seconds cannot be negative")
        self._secrets = tuple(secret.encode("utf-8") for secret in secrets)
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._clock = clock

    def verify(self, header_value: str | None, raw_body: bytes) -> SageDelivery:
        """The verified delivery, or :class:`~ingest.auth.AuthenticationError`."""
        if not header_value or not header_value.strip():
            raise _refused("missing_signature", f"The request carries no {SAGE_SIGNATURE_HEADER} header.")
        token = token_of(header_value)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _malformed() from None
        # Decided from the header alone: "none", RS256 and the rest never reach a key.
        if header.get("alg") != _ALGORITHM:
            raise _refused("algorithm_not_allowed", "The signature's algorithm is not HS256.")
        claims = self._decode(token)
        self._check_issuer(claims)
        self._check_times(claims)
        self._check_body(claims, raw_body)
        tenant_id = _text_claim(claims, "tenant_id")
        if tenant_id is None:
            raise _refused("missing_claim", "The signature names no tenant (tenant_id).")
        return SageDelivery(tenant_id, _text_claim(claims, "app_id"), claims)

    def _decode(self, token: str) -> dict[str, Any]:
        options: Options = {
            # Checked below against the injected clock, with milliseconds understood.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_iss": False,
            "verify_aud": False,
        }
        for secret in self._secrets:
            try:
                return jwt.decode(token, secret, algorithms=[_ALGORITHM], options=options)
            except jwt.InvalidSignatureError:
                continue  # the next secret of a rotation may have signed it
            except (jwt.DecodeError, jwt.InvalidAlgorithmError):
                raise _malformed() from None
            except jwt.PyJWTError:
                raise _refused("invalid_claim", "The signature carries an invalid claim.") from None
        raise _refused("bad_signature", "The signature does not verify with the application's secret.")

    def _check_issuer(self, claims: dict[str, Any]) -> None:
        issuer = claims.get("iss")
        if issuer is None:
            raise _refused("missing_claim", "The signature has no issuer (iss).")
        if not isinstance(issuer, str) or not _same(issuer, self._issuer):
            raise _refused("wrong_issuer", f"The signature's issuer is not {self._issuer}.")

    def _check_times(self, claims: dict[str, Any]) -> None:
        expires = _seconds(claims, "exp")
        if expires is None:
            raise _refused("missing_claim", "The signature has no expiry (exp).")
        now = self._clock()
        if now > expires + self._leeway:
            raise _refused("token_expired", "The signature has expired.")
        for name in ("nbf", "iat"):
            moment = _seconds(claims, name)
            if moment is not None and moment > now + self._leeway:
                raise _refused("token_not_yet_valid", f"The signature's {name} lies in the future.")

    def _check_body(self, claims: dict[str, Any], raw_body: bytes) -> None:
        algorithm = claims.get("payload_signature_alg")
        if algorithm is not None and algorithm != _PAYLOAD_ALGORITHM:
            raise _refused(
                "payload_algorithm_not_allowed",
                f"The signature's payload_signature_alg is not {_PAYLOAD_ALGORITHM}.",
            )
        claimed = claims.get("payload_signature")
        if not isinstance(claimed, str) or not claimed:
            raise _refused("missing_claim", "The signature has no payload_signature.")
        digest = hashlib.sha256(raw_body).hexdigest()
        # Constant time; hex digits compared case-insensitively (ASCII only, so lower() is safe).
        if not (claimed.isascii() and hmac.compare_digest(claimed.lower().encode(), digest.encode())):
            raise _refused("body_mismatch", "The body is not the one the signature was made for.")
