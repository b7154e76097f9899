"""One door for a webhook's authenticity, whichever scheme ``INTACCT_WEBHOOK_SCHEME`` names.

- ``sage-signature`` (the default): ``X-IA-Sage-Signature`` (:mod:`ingest.sage_signature`);
- ``bearer-jwks``: ``Authorization: Bearer`` against the JWKS, plus ``X-Trusted-Context``;
- ``any``: each delivery judged by the headers it carries, each scheme in full: a Sage
  signature first, else a bearer token;
- HMAC (``X-FlexPoint-Signature``) under every setting, when the scheme's own header is absent,
  for a connection that has a webhook secret.

Pure: headers, raw body and the connection in, a :class:`Verified` or one
:class:`~ingest.auth.AuthenticationError` out. Nothing unsigned (``x-clientcontext``, the body's
``companyId``) is read for identity here; the tenant pin is the intake's, since it needs the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ingest.auth import (
    AuthenticationError,
    HmacVerifier,
    JwtVerifier,
    TrustedContextVerifier,
    company_claim_matches,
    parse_bearer,
)
from ingest.sage_signature import SAGE_SIGNATURE_HEADER, SageSignatureVerifier
from workers.connections.store import ConnectionRecord

SCHEMES = ("sage-signature", "bearer-jwks", "any")
HMAC_HEADER = "X-FlexPoint-Signature"
TRUSTED_CONTEXT_HEADER = "X-Trusted-Context"
# What the envelope's authScheme says of each way in.
SAGE, JWT, HMAC = "sage-signature", "jwt", "hmac"


@dataclass(frozen=True)
class Verified:
    """How a delivery proved itself; ``tenant_id`` only for a Sage signature (to be pinned)."""

    scheme: str
    tenant_id: str | None = None


class NotConfigured(AuthenticationError):
    """The scheme a delivery needs has no secret or key set up here: our side's gap."""


class WebhookVerifier:
    """Chooses and runs the verifier for one delivery; see the module's docstring."""

    def __init__(
        self,
        scheme: str,
        *,
        sage: SageSignatureVerifier | None,
        jwt: JwtVerifier | None,
        trusted_context: TrustedContextVerifier,
        hmac: HmacVerifier,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown webhook scheme {scheme!r}; expected one of {SCHEMES}")
        self.scheme = scheme
        self._sage = sage
        self._jwt = jwt
        self._trusted_context = trusted_context
        self._hmac = hmac

    def verify(self, connection: ConnectionRecord, headers: Mapping[str, str], raw_body: bytes) -> Verified:
        """The delivery's proof, or :class:`AuthenticationError` (:class:`KeySourceUnavailable`
        passes through from the JWKS)."""
        sage_header = headers.get(SAGE_SIGNATURE_HEADER)
        token = parse_bearer(headers.get("Authorization"))
        if self.scheme != "bearer-jwks" and sage_header is not None:
            return self._sage_signature(sage_header, raw_body)
        if self.scheme != "sage-signature" and token is not None:
            return self._bearer(token, connection, headers)
        signature = headers.get(HMAC_HEADER)
        if signature is not None:
            self._hmac.verify(signature, raw_body, connection.webhook_secrets)
            return Verified(HMAC)
        raise AuthenticationError("missing_credentials", self._what_to_send())

    def _sage_signature(self, header_value: str, raw_body: bytes) -> Verified:
        if self._sage is None:
            raise NotConfigured(
                "sage_signature_not_configured", "This service cannot verify Sage signatures yet."
            )
        delivery = self._sage.verify(header_value, raw_body)
        return Verified(SAGE, delivery.tenant_id)

    def _bearer(self, token: str, connection: ConnectionRecord, headers: Mapping[str, str]) -> Verified:
        if self._jwt is None:
            raise NotConfigured("jwt_not_configured", "This service cannot verify Intacct tokens yet.")
        claims = self._jwt.verify(token)
        company_claim_matches(claims, connection.company_id)
        self._trusted_context.verify(headers.get(TRUSTED_CONTEXT_HEADER), connection.company_id)
        return Verified(JWT)

    def _what_to_send(self) -> str:
        if self.scheme == "sage-signature":
            return f"Send an {SAGE_SIGNATURE_HEADER} header (or an {HMAC_HEADER} header)."
        if self.scheme == "bearer-jwks":
            return f"Send an Authorization: Bearer token or an {HMAC_HEADER} header."
        return f"Send an {SAGE_SIGNATURE_HEADER} header, an Authorization: Bearer token or an {HMAC_HEADER} header."
