"""QUALITY S1, the sage-signature scheme, on the pure verifier with an injected clock; and the
one door that picks a verifier by INTACCT_WEBHOOK_SCHEME and by the headers a delivery carries.

Tokens are built here from Sage's guide (tests.conftest.sage_signature), not by product code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import ingest.sage_signature as sage_module
from ingest.auth import (
    AuthenticationError,
    HmacVerifier,
    JwtVerifier,
    StaticKeySource,
    TrustedContextVerifier,
    sign_hmac,
)
from ingest.sage_signature import SageSignatureVerifier
from ingest.verification import NotConfigured, WebhookVerifier
from tests.conftest import APP_SECRET, CLIENT_ID, ISSUER, TENANT, sage_signature, trusted_context
from workers.connections.store import ConnectionRecord

NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
BODY = b'{"object": "ARINVOICE", "action": "set", "key": "1042"}'


def verifier(*secrets: str, now: float = NOW) -> SageSignatureVerifier:
    return SageSignatureVerifier(secrets or (APP_SECRET,), clock=lambda: now)


def refusal(header: str | None, body: bytes = BODY, *, at: float = NOW, secrets=(APP_SECRET,)) -> str:
    with pytest.raises(AuthenticationError) as caught:
        verifier(*secrets, now=at).verify(header, body)
    return caught.value.code


def unsigned(header: dict, claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


# -- accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", [False, True], ids=["bare", "jwtData-envelope"])
def test_a_signature_as_sage_sends_it_is_accepted_in_both_header_forms(envelope):
    delivery = verifier().verify(sage_signature(BODY, now=NOW, envelope=envelope), BODY)
    assert delivery.tenant_id == TENANT
    assert delivery.app_id == CLIENT_ID
    assert delivery.claims["iss"] == "Sage Intacct"


def test_exp_in_seconds_and_in_milliseconds_are_both_understood():
    for unit in ("s", "ms"):
        header = sage_signature(BODY, now=NOW, exp_unit=unit)
        assert verifier(now=NOW + 3600 + 59).verify(header, BODY).tenant_id == TENANT  # within 60 s skew
        assert refusal(header, at=NOW + 3600 + 61) == "token_expired"


def test_any_secret_of_a_rotation_verifies():
    header = sage_signature(BODY, now=NOW, secret="the-old-application-secret-0123456789")
    both = SageSignatureVerifier((APP_SECRET, "the-old-application-secret-0123456789"), clock=lambda: NOW)
    assert both.verify(header, BODY).tenant_id == TENANT
    assert refusal(header) == "bad_signature"


def test_payload_signature_alg_may_be_absent_and_the_hex_in_upper_case():
    upper = hashlib.sha256(BODY).hexdigest().upper()
    header = sage_signature(BODY, now=NOW, payload_signature_alg=None, payload_signature=upper)
    assert verifier().verify(header, BODY).tenant_id == TENANT


# -- S1: refused ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_s1_no_sage_signature_header(header):
    assert refusal(header) == "missing_signature"


def test_s1_signed_with_another_secret():
    assert (
        refusal(sage_signature(BODY, now=NOW, secret="somebody-elses-application-secret!!"))
        == "bad_signature"
    )


def test_s1_alg_none():
    claims = {"iss": "Sage Intacct", "exp": int(NOW + 60), "tenant_id": TENANT}
    claims["payload_signature"] = hashlib.sha256(BODY).hexdigest()
    assert refusal(unsigned({"alg": "none", "typ": "JWT"}, claims)) == "algorithm_not_allowed"
    assert refusal(unsigned({"alg": "None", "typ": "JWT"}, claims)) == "algorithm_not_allowed"


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_s1_another_hmac_algorithm_with_the_right_secret(algorithm):
    assert refusal(sage_signature(BODY, now=NOW, algorithm=algorithm)) == "algorithm_not_allowed"


def test_s1_an_rs256_token():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": "Sage Intacct", "exp": int(NOW + 60), "tenant_id": TENANT}
    token = jwt.encode(claims, key, algorithm="RS256")
    assert refusal(token) == "algorithm_not_allowed"


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_s1_expired_in_seconds_or_milliseconds(unit):
    header = sage_signature(BODY, now=NOW - 7200, exp_unit=unit)
    assert refusal(header) == "token_expired"


def test_s1_exp_missing_or_not_a_number():
    assert refusal(sage_signature(BODY, now=NOW, exp=None)) == "missing_claim"
    assert refusal(sage_signature(BODY, now=NOW, exp="tomorrow")) == "invalid_claim"


def test_s1_iat_in_the_future():
    assert refusal(sage_signature(BODY, now=NOW + 600)) == "token_not_yet_valid"


@pytest.mark.parametrize("issuer", ["Sage Intacct ", "sage intacct", "https://intacct.test/webhooks"])
def test_s1_wrong_iss(issuer):
    assert refusal(sage_signature(BODY, now=NOW, iss=issuer)) == "wrong_issuer"
    assert refusal(sage_signature(BODY, now=NOW, iss=None)) == "missing_claim"


def test_s1_a_valid_token_over_a_swapped_body():
    header = sage_signature(BODY, now=NOW)
    swapped = BODY.replace(b"1042", b"9999")
    assert refusal(header, swapped) == "body_mismatch"
    assert refusal(header, BODY + b" ") == "body_mismatch"  # the raw bytes, not the JSON


def test_s1_payload_signature_missing_or_another_algorithm():
    assert refusal(sage_signature(BODY, now=NOW, payload_signature=None)) == "missing_claim"
    assert (
        refusal(sage_signature(BODY, now=NOW, payload_signature_alg="SHA-1"))
        == "payload_algorithm_not_allowed"
    )


def test_s1_no_tenant_id():
    assert refusal(sage_signature(BODY, now=NOW, tenant_id=None)) == "missing_claim"


@pytest.mark.parametrize(
    "header",
    [
        "not-a-jwt",
        base64.b64encode(b'{"clientId": "x"}').decode(),  # envelope without jwtData
        base64.b64encode(b'{"jwtData": 42}').decode(),
        "a.b.c",
        "x" * 20_000,
    ],
)
def test_s1_malformed_headers(header):
    assert refusal(header) == "malformed_signature"


def test_s1_payload_signature_is_compared_in_constant_time(monkeypatch):
    compared = []
    real = sage_module.hmac.compare_digest

    def spy(left, right):
        compared.append((left, right))
        return real(left, right)

    monkeypatch.setattr(sage_module.hmac, "compare_digest", spy)
    assert refusal(sage_signature(BODY, now=NOW), b"{}") == "body_mismatch"
    # The claimed body hash against the received body's, through hmac.compare_digest.
    expected = (hashlib.sha256(BODY).hexdigest().encode(), hashlib.sha256(b"{}").hexdigest().encode())
    assert expected in compared


def test_refusal_messages_never_carry_the_token_or_the_secret():
    header = sage_signature(BODY, now=NOW, secret="another-secret-that-must-not-leak-000")
    with pytest.raises(AuthenticationError) as caught:
        verifier().verify(header, BODY)
    assert header not in str(caught.value) and APP_SECRET not in str(caught.value)


def test_a_verifier_needs_a_secret():
    with pytest.raises(ValueError, match="client secret"):
        SageSignatureVerifier(("",))


# -- the door: INTACCT_WEBHOOK_SCHEME and the headers a delivery carries ----------------------


CONNECTION = ConnectionRecord(
    "conn-1",
    "acct-1",
    "ACME-CO",
    None,
    "ws",
    "connected",
    ("hmac-secret",),
    datetime(2026, 9, 1, tzinfo=UTC),
    datetime(2026, 9, 1, tzinfo=UTC),
)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def door(scheme: str, *, sage: bool = True, bearer: bool = True) -> WebhookVerifier:
    jwk = jwt.PyJWK(
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())), "alg": "RS256", "kid": "k1"}
    )
    return WebhookVerifier(
        scheme,
        sage=verifier(now=time.time()) if sage else None,
        jwt=JwtVerifier(StaticKeySource([jwk]), issuer=ISSUER) if bearer else None,
        trusted_context=TrustedContextVerifier(CLIENT_ID),
        hmac=HmacVerifier(),
    )


def bearer_headers() -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode(
        {"iss": ISSUER, "iat": now, "exp": now + 300}, RSA_KEY, algorithm="RS256", headers={"kid": "k1"}
    )
    return {"Authorization": f"Bearer {token}", "X-Trusted-Context": trusted_context("ACME-CO")}


def judged(scheme: str, headers: dict[str, str], **kwargs) -> str:
    try:
        return door(scheme, **kwargs).verify(CONNECTION, headers, BODY).scheme
    except AuthenticationError as exc:
        return exc.code


def test_sage_signature_scheme_judges_the_sage_header_and_ignores_a_bearer_token():
    sage = {"X-IA-Sage-Signature": sage_signature(BODY)}
    assert judged("sage-signature", sage) == "sage-signature"
    # Sage's own deliveries also carry an Authorization header; it proves nothing here.
    assert judged("sage-signature", {**sage, **bearer_headers()}) == "sage-signature"
    assert judged("sage-signature", bearer_headers()) == "missing_credentials"


def test_bearer_jwks_scheme_is_as_before_and_ignores_a_sage_header():
    assert judged("bearer-jwks", bearer_headers()) == "jwt"
    assert judged("bearer-jwks", {"X-IA-Sage-Signature": sage_signature(BODY)}) == "missing_credentials"
    forged = {**bearer_headers(), "X-Trusted-Context": trusted_context("OTHER-CO")}
    assert judged("bearer-jwks", forged) == "company_mismatch"


def test_any_judges_each_delivery_by_its_headers_each_scheme_in_full():
    assert judged("any", {"X-IA-Sage-Signature": sage_signature(BODY)}) == "sage-signature"
    assert judged("any", bearer_headers()) == "jwt"
    # A Sage header present is judged in full: a good bearer token does not rescue a bad one.
    bad_sage = {"X-IA-Sage-Signature": sage_signature(BODY, secret="wrong-secret-wrong-secret-wrong")}
    assert judged("any", {**bad_sage, **bearer_headers()}) == "bad_signature"
    no_context = bearer_headers()
    del no_context["X-Trusted-Context"]
    assert judged("any", no_context) == "trusted_context_invalid"
    assert judged("any", {}) == "missing_credentials"


@pytest.mark.parametrize("scheme", ["sage-signature", "bearer-jwks", "any"])
def test_hmac_is_accepted_under_every_scheme(scheme):
    signature = sign_hmac("hmac-secret", BODY, int(time.time()))
    assert judged(scheme, {"X-FlexPoint-Signature": signature}) == "hmac"
    bad = sign_hmac("other-secret", BODY, int(time.time()))
    assert judged(scheme, {"X-FlexPoint-Signature": bad}) == "bad_signature"


def test_a_scheme_without_its_secret_says_so():
    with pytest.raises(NotConfigured) as caught:
        door("sage-signature", sage=False).verify(CONNECTION, {"X-IA-Sage-Signature": "x.y.z"}, BODY)
    assert caught.value.code == "sage_signature_not_configured"
    with pytest.raises(ValueError, match="unknown webhook scheme"):
        WebhookVerifier(
            "jwt", sage=None, jwt=None, trusted_context=TrustedContextVerifier(CLIENT_ID), hmac=HmacVerifier()
        )
