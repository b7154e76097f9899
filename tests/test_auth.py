"""Webhook authenticity (QUALITY S1, S2): JWT, JWKS, X-Trusted-Context and the HMAC scheme.

Keys are generated here, JWKS is served by a real local HTTP server, every clock is injected,
and the HMACs and the forged tokens are computed by the tests themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ingest.auth import (
    AuthenticationError,
    HmacVerifier,
    JwksKeySource,
    JwtVerifier,
    KeySourceUnavailable,
    StaticKeySource,
    TrustedContextVerifier,
    company_claim_matches,
    parse_bearer,
    sign_hmac,
)

ISSUER = "https://webhooks.intacct.example"
CLIENT_ID = "4d02d25de337869dfecd.app.sage.com"
COMPANY = "ACME-CORP"
NOW = 1_750_000_000
BODY = b'{"object": "ARINVOICE", "action": "set", "key": "42"}'
SECRET = "whsec_current_0123456789"
OLD_SECRET = "whsec_previous_9876543210"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# Keys and tokens


def _rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _public_jwk(private_key: Any, kid: str | None) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    return jwk


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = {"iss": ISSUER, "iat": NOW, "exp": NOW + 300, "sub": "intacct"}
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _token(private_key: Any, kid: str | None = "rsa-1", alg: str = "RS256", **claims: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(_claims(**claims), private_key, algorithm=alg, headers=headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made_token(header: dict[str, Any], claims: dict[str, Any], sign) -> str:
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64url(sign(signing_input.encode()))}"


class RecordingKeySource:
    """Wraps a key source and records each kid asked for."""

    def __init__(self, inner: StaticKeySource) -> None:
        self.inner = inner
        self.asked: list[str | None] = []

    def get_signing_key(self, kid: str | None) -> jwt.PyJWK:
        self.asked.append(kid)
        return self.inner.get_signing_key(kid)


@pytest.fixture
def keys(rsa_key, ec_key) -> RecordingKeySource:
    return RecordingKeySource(
        StaticKeySource(
            [
                jwt.PyJWK(_public_jwk(rsa_key, "rsa-1")),
                jwt.PyJWK(_public_jwk(ec_key, "ec-1")),
            ]
        )
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(keys, clock) -> JwtVerifier:
    return JwtVerifier(keys, issuer=ISSUER, clock=clock)


def _rejected(code: str, call, *args: Any) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value
    return caught.value


# --------------------------------------------------------------------------------------------
# JWT: the S1 cases


def test_rs256_happy_path(verifier, rsa_key):
    claims = verifier.verify(_token(rsa_key, companyId=COMPANY))
    assert claims["iss"] == ISSUER
    assert claims["companyId"] == COMPANY


def test_es256_happy_path(verifier, ec_key):
    claims = verifier.verify(_token(ec_key, kid="ec-1", alg="ES256"))
    assert claims["iss"] == ISSUER


def test_no_token_is_rejected(verifier):
    _rejected("missing_credentials", verifier.verify, None)
    _rejected("missing_credentials", verifier.verify, parse_bearer(None))
    _rejected("missing_credentials", verifier.verify, "")


def test_token_signed_with_another_key_is_rejected(verifier, other_rsa_key):
    # Same kid, different private key: only the signature can tell.
    _rejected("bad_signature", verifier.verify, _token(other_rsa_key, kid="rsa-1"))


def test_tampered_claims_are_rejected(verifier, rsa_key):
    header, _, signature = _token(rsa_key).split(".")
    forged = _b64url(json.dumps(_claims(companyId="OTHER")).encode())
    _rejected("bad_signature", verifier.verify, f"{header}.{forged}.{signature}")


def test_alg_none_is_rejected_before_any_key_lookup(verifier, keys):
    for alg in ("none", "None", "NONE"):
        token = _hand_made_token({"alg": alg, "kid": "rsa-1"}, _claims(), lambda _: b"")
        _rejected("algorithm_not_allowed", verifier.verify, token)
    assert keys.asked == []


def test_hs256_signed_with_the_public_key_is_rejected(verifier, keys, rsa_key):
    # The classic key-confusion forgery: HMAC keyed with the PEM the publisher hands out.
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = _hand_made_token(
        {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"},
        _claims(),
        lambda signing_input: hmac.new(public_pem, signing_input, hashlib.sha256).digest(),
    )
    _rejected("algorithm_not_allowed", verifier.verify, token)
    assert keys.asked == []


def test_symmetric_algorithms_cannot_be_allowed(keys):
    for algorithms in (("HS256",), ("RS256", "HS512"), ("none",), ()):
        with pytest.raises(ValueError):
            JwtVerifier(keys, issuer=ISSUER, algorithms=algorithms)


def test_algorithm_outside_the_allow_list_is_rejected(keys, clock, rsa_key):
    verifier = JwtVerifier(keys, issuer=ISSUER, algorithms=("ES256",), clock=clock)
    _rejected("algorithm_not_allowed", verifier.verify, _token(rsa_key))
    assert keys.asked == []


def test_key_type_must_fit_the_algorithm(verifier, ec_key):
    # An ES256 token pointing at the RSA key's kid.
    _rejected("algorithm_not_allowed", verifier.verify, _token(ec_key, kid="rsa-1", alg="ES256"))


def test_expired_token_is_rejected(verifier, clock, rsa_key):
    token = _token(rsa_key, iat=NOW - 3600, exp=NOW - 600)
    error = _rejected("token_expired", verifier.verify, token)
    assert token not in error.message


def test_expiry_leeway_holds_to_the_second(verifier, clock, rsa_key):
    token = _token(rsa_key, exp=NOW)
    clock.now = NOW + 60
    assert verifier.verify(token)["exp"] == NOW
    clock.now = NOW + 61
    _rejected("token_expired", verifier.verify, token)


def _count_signature_checks(verifier: JwtVerifier) -> list[str]:
    """The tokens whose signature ``verifier`` checks from now on."""
    checked: list[str] = []
    decode = verifier._decode

    def counted(token, key, alg):
        checked.append(token)
        return decode(token, key, alg)

    verifier._decode = counted  # type: ignore[method-assign]
    return checked


def test_a_token_seen_before_skips_the_signature_but_not_its_key_or_the_clock(verifier, keys, clock, rsa_key):
    checked = _count_signature_checks(verifier)
    token = _token(rsa_key, exp=NOW + 100)
    first = verifier.verify(token)
    first["iss"] = "mutated by a caller"
    assert verifier.verify(token)["iss"] == ISSUER  # callers get copies
    assert checked == [token]  # the signature was checked once
    assert keys.asked == ["rsa-1", "rsa-1"]  # whether its key is still published: every time
    clock.now = NOW + 161
    _rejected("token_expired", verifier.verify, token)


def test_a_cached_token_stops_verifying_once_its_key_is_withdrawn(
    jwks_server, session, rsa_key, other_rsa_key
):
    monotonic = FakeClock(0)
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"), _public_jwk(other_rsa_key, "rsa-2"))
    verifier = _jwks_verifier(jwks_server, session, monotonic)
    old, new = _token(rsa_key, kid="rsa-1"), _token(other_rsa_key, kid="rsa-2")
    assert verifier.verify(old) and verifier.verify(new)
    # The publisher withdraws rsa-1. Until the key set is refreshed, both still verify...
    jwks_server.publish(_public_jwk(other_rsa_key, "rsa-2"))
    monotonic.now = 899
    assert verifier.verify(old)
    assert jwks_server.requests == 1
    # ...and once it is 15 minutes old, the next use refreshes it: the cached token is refused.
    monotonic.now = 900
    _rejected("unknown_key", verifier.verify, old)
    assert jwks_server.requests == 2
    assert verifier.verify(new)["iss"] == ISSUER


def test_an_old_key_set_is_kept_when_its_refresh_fails(jwks_server, session, rsa_key):
    monotonic = FakeClock(0)
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"))
    source = JwksKeySource(jwks_server.url, session=session, clock=monotonic)
    assert source.get_signing_key("rsa-1").key_id == "rsa-1"
    jwks_server.status = 500
    monotonic.now = 1000
    assert source.get_signing_key("rsa-1").key_id == "rsa-1"  # refresh failed: cached key
    monotonic.now = 1010
    assert source.get_signing_key("rsa-1").key_id == "rsa-1"  # within 30 s: no new attempt
    assert jwks_server.requests == 2
    monotonic.now = 1030
    assert source.get_signing_key("rsa-1").key_id == "rsa-1"
    assert jwks_server.requests == 3


def test_a_cached_token_keeps_every_time_bound_to_the_second(verifier, keys, clock, rsa_key):
    checked = _count_signature_checks(verifier)
    token = _token(rsa_key, nbf=NOW + 60, iat=NOW, exp=NOW + 100)
    assert verifier.verify(token)  # nbf within the leeway: accepted, and now cached
    clock.now = NOW + 160
    assert verifier.verify(token)  # exp + leeway, to the second
    clock.now = NOW + 161
    _rejected("token_expired", verifier.verify, token)
    clock.now = NOW - 1  # a clock set back: nbf is now beyond the leeway
    _rejected("token_not_yet_valid", verifier.verify, token)
    assert checked == [token]  # all of it from the cache


def test_a_tampered_copy_of_a_verified_token_is_not_served_from_the_cache(verifier, rsa_key):
    token = _token(rsa_key)
    verifier.verify(token)
    header, _payload, signature = token.split(".")
    forged_payload = _b64url(json.dumps(_claims(sub="someone-else")).encode())
    _rejected("bad_signature", verifier.verify, f"{header}.{forged_payload}.{signature}")


def test_not_before_and_issued_at_may_not_lie_beyond_the_leeway(verifier, clock, rsa_key):
    assert verifier.verify(_token(rsa_key, nbf=NOW + 60, iat=NOW + 60))
    _rejected("token_not_yet_valid", verifier.verify, _token(rsa_key, nbf=NOW + 61))
    _rejected("token_not_yet_valid", verifier.verify, _token(rsa_key, iat=NOW + 61))


def test_wrong_issuer_is_rejected(verifier, rsa_key):
    _rejected("wrong_issuer", verifier.verify, _token(rsa_key, iss="https://evil.example"))
    # PyJWT refuses to encode a non-string iss, so sign the claims as raw JWS bytes.
    odd_issuer = jwt.api_jws.encode(
        json.dumps(_claims(iss=[ISSUER])).encode(), rsa_key, "RS256", headers={"kid": "rsa-1"}
    )
    _rejected("wrong_issuer", verifier.verify, odd_issuer)


def test_missing_issuer_is_rejected(verifier, rsa_key):
    claims = _claims()
    del claims["iss"]
    token = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    _rejected("missing_claim", verifier.verify, token)


def test_missing_exp_is_rejected(verifier, rsa_key):
    claims = _claims()
    del claims["exp"]
    token = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    _rejected("missing_claim", verifier.verify, token)


@pytest.mark.parametrize("exp", ["1750000300", True, [NOW + 300], {"at": NOW}])
def test_non_numeric_exp_is_rejected(verifier, rsa_key, exp):
    _rejected("invalid_claim", verifier.verify, _token(rsa_key, exp=exp))


def test_unknown_kid_is_rejected(verifier, rsa_key):
    _rejected("unknown_key", verifier.verify, _token(rsa_key, kid="rsa-9"))


def test_token_without_kid_needs_a_single_key(clock, rsa_key, ec_key):
    single = JwtVerifier(
        StaticKeySource([jwt.PyJWK(_public_jwk(rsa_key, "rsa-1"))]), issuer=ISSUER, clock=clock
    )
    assert single.verify(_token(rsa_key, kid=None))["iss"] == ISSUER
    several = JwtVerifier(
        StaticKeySource([jwt.PyJWK(_public_jwk(rsa_key, "rsa-1")), jwt.PyJWK(_public_jwk(ec_key, "ec-1"))]),
        issuer=ISSUER,
        clock=clock,
    )
    _rejected("unknown_key", several.verify, _token(rsa_key, kid=None))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_rsa_key_is_rejected(clock):
    weak = _rsa_key(1024)
    verifier = JwtVerifier(
        StaticKeySource([jwt.PyJWK(_public_jwk(weak, "weak"))]), issuer=ISSUER, clock=clock
    )
    _rejected("key_rejected", verifier.verify, _token(weak, kid="weak"))


def test_audience_is_checked_only_when_configured(keys, clock, rsa_key):
    lenient = JwtVerifier(keys, issuer=ISSUER, clock=clock)
    assert lenient.verify(_token(rsa_key, aud="someone"))["aud"] == "someone"
    strict = JwtVerifier(keys, issuer=ISSUER, clock=clock, audience="flexsync")
    assert strict.verify(_token(rsa_key, aud="flexsync"))["aud"] == "flexsync"
    _rejected("wrong_audience", strict.verify, _token(rsa_key, aud="someone"))
    _rejected("wrong_audience", strict.verify, _token(rsa_key))


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.e30.@@@",
        "ünïcode.x.y",
        "x" * 20_000,
    ],
)
def test_malformed_token_is_rejected(verifier, token):
    _rejected("malformed_token", verifier.verify, token)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER\tabc ", "abc"),
        ("  Bearer  abc", "abc"),
    ],
)
def test_parse_bearer(header, expected):
    assert parse_bearer(header) == expected


# --------------------------------------------------------------------------------------------
# X-Trusted-Context and company binding (S1, S2)


def _context(encode=base64.b64encode, **fields: Any) -> str:
    body = {"clientId": CLIENT_ID, "companyId": COMPANY, **fields}
    return encode(json.dumps(body).encode()).decode()


def test_trusted_context_happy_path_standard_and_url_safe():
    verifier = TrustedContextVerifier(CLIENT_ID)
    # The note makes the encodings differ between the two alphabets.
    note = "~~~???>>>"
    standard = _context(note=note)
    url_safe = _context(base64.urlsafe_b64encode, note=note).rstrip("=")
    assert set("+/") & set(standard) and set("-_") & set(url_safe)
    for value in (standard, standard.rstrip("="), url_safe, url_safe + "=" * (-len(url_safe) % 4)):
        context = verifier.verify(value, COMPANY)
        assert context["clientId"] == CLIENT_ID
        assert context["note"] == note


def test_trusted_context_with_another_client_id_is_rejected():
    verifier = TrustedContextVerifier(CLIENT_ID)
    _rejected("client_mismatch", verifier.verify, _context(clientId="other.app.sage.com"), COMPANY)


def test_trusted_context_with_another_company_is_rejected():
    verifier = TrustedContextVerifier(CLIENT_ID)
    _rejected("company_mismatch", verifier.verify, _context(companyId="OTHER-CORP"), COMPANY)
    # A context valid for company A is refused on company B's connection (S2).
    _rejected("company_mismatch", verifier.verify, _context(), "OTHER-CORP")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "!!!not base64!!!",
        "a",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b"\xff\xfe").decode(),
        base64.b64encode(json.dumps({"clientId": CLIENT_ID}).encode()).decode(),
        base64.b64encode(json.dumps({"companyId": COMPANY}).encode()).decode(),
        base64.b64encode(json.dumps({"clientId": 7, "companyId": COMPANY}).encode()).decode(),
        base64.b64encode(json.dumps({"clientId": CLIENT_ID, "companyId": None}).encode()).decode(),
        "A" * 10_000,
    ],
)
def test_malformed_trusted_context_is_rejected(value):
    _rejected("trusted_context_invalid", TrustedContextVerifier(CLIENT_ID).verify, value, COMPANY)


def test_company_claim_must_match_when_present():
    company_claim_matches({"iss": ISSUER}, COMPANY)
    company_claim_matches({"companyId": COMPANY}, COMPANY)
    _rejected("company_mismatch", company_claim_matches, {"companyId": "OTHER"}, COMPANY)
    _rejected("company_mismatch", company_claim_matches, {"companyId": 7}, COMPANY)
    _rejected("company_mismatch", company_claim_matches, {"cny": "OTHER"}, COMPANY, ("companyId", "cny"))


def test_valid_token_for_company_a_is_refused_on_company_b(verifier, rsa_key):
    claims = verifier.verify(_token(rsa_key, companyId=COMPANY))
    _rejected("company_mismatch", company_claim_matches, claims, "OTHER-CORP")


# --------------------------------------------------------------------------------------------
# HMAC


@pytest.fixture
def hmac_verifier(clock) -> HmacVerifier:
    return HmacVerifier(clock=clock)


def _our_hmac(secret: str, body: bytes, timestamp: int) -> str:
    # Computed independently of ingest.auth, so a wrong implementation cannot agree with itself.
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_sign_hmac_matches_the_documented_scheme():
    assert sign_hmac(SECRET, BODY, NOW) == f"t={NOW},v1={_our_hmac(SECRET, BODY, NOW)}"


def test_hmac_happy_path(hmac_verifier):
    assert hmac_verifier.verify(sign_hmac(SECRET, BODY, NOW), BODY, [SECRET]) == NOW


def test_hmac_bad_signature_is_rejected(hmac_verifier):
    header = f"t={NOW},v1={_our_hmac('wrong secret', BODY, NOW)}"
    error = _rejected("bad_signature", hmac_verifier.verify, header, BODY, [SECRET])
    assert _our_hmac("wrong secret", BODY, NOW) not in error.message
    assert SECRET not in error.message


def test_hmac_over_another_body_is_rejected(hmac_verifier):
    header = sign_hmac(SECRET, BODY, NOW)
    _rejected("bad_signature", hmac_verifier.verify, header, BODY + b" ", [SECRET])


def test_hmac_signature_is_bound_to_its_timestamp(hmac_verifier):
    signature = _our_hmac(SECRET, BODY, NOW)
    _rejected("bad_signature", hmac_verifier.verify, f"t={NOW + 1},v1={signature}", BODY, [SECRET])


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_hmac_timestamp_inside_the_window_is_accepted(hmac_verifier, offset):
    timestamp = NOW + offset
    assert hmac_verifier.verify(sign_hmac(SECRET, BODY, timestamp), BODY, [SECRET]) == timestamp


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
def test_hmac_timestamp_outside_the_window_is_rejected(hmac_verifier, offset):
    header = sign_hmac(SECRET, BODY, NOW + offset)
    _rejected("timestamp_out_of_window", hmac_verifier.verify, header, BODY, [SECRET])


def test_hmac_several_v1_signatures_for_rotation(hmac_verifier):
    # The sender signs with its old and its new secret while rotating; we already hold the new.
    header = f"t={NOW},v1={_our_hmac(OLD_SECRET, BODY, NOW)},v1={_our_hmac(SECRET, BODY, NOW)}"
    assert hmac_verifier.verify(header, BODY, [SECRET]) == NOW
    assert hmac_verifier.verify(header, BODY, [OLD_SECRET]) == NOW
    _rejected("bad_signature", hmac_verifier.verify, header, BODY, ["neither"])


def test_hmac_two_secrets_on_our_side(hmac_verifier):
    header = sign_hmac(OLD_SECRET, BODY, NOW)
    assert hmac_verifier.verify(header, BODY, [SECRET, OLD_SECRET]) == NOW
    _rejected("bad_signature", hmac_verifier.verify, header, BODY, [SECRET])


def test_hmac_unknown_schemes_are_ignored(hmac_verifier):
    header = f"t={NOW},v0=whatever,v2=future,v1={_our_hmac(SECRET, BODY, NOW).upper()}"
    assert hmac_verifier.verify(header, BODY, [SECRET]) == NOW


def test_hmac_without_signature_is_rejected(hmac_verifier):
    _rejected("no_signature", hmac_verifier.verify, None, BODY, [SECRET])
    _rejected("no_signature", hmac_verifier.verify, "  ", BODY, [SECRET])
    _rejected("no_signature", hmac_verifier.verify, f"t={NOW},v0=abc", BODY, [SECRET])


def test_hmac_needs_a_secret_on_our_side(hmac_verifier):
    header = sign_hmac(SECRET, BODY, NOW)
    _rejected("signing_not_configured", hmac_verifier.verify, header, BODY, [])


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"v1={'a' * 64}",
        f"t=,v1={'a' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t=12.5,v1={'a' * 64}",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        f"t={NOW},v1=zz",
        f"t={NOW},v1={'g' * 64}",
        f"t={NOW},v1={'a' * 63}",
        f"t={NOW},{'a' * 64}",
        f"t=1{'0' * 40},v1={'a' * 64}",
        "t=\uff11\uff12\uff13,v1=" + "a" * 64,  # fullwidth digits
        f"t={NOW}," + ",".join([f"v1={'a' * 64}"] * 17),
    ],
)
def test_malformed_hmac_header_is_rejected(hmac_verifier, header):
    _rejected("malformed_signature", hmac_verifier.verify, header, BODY, [SECRET])


# --------------------------------------------------------------------------------------------
# JwksKeySource against a real HTTP server


class JwksServer:
    """A local JWKS endpoint whose document and status the test can change, counting requests."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.requests += 1
                    status, body = owner.status, json.dumps(owner.document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, *jwks: dict[str, Any]) -> None:
        with self._lock:
            self.document = {"keys": list(jwks)}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _jwks_verifier(server: JwksServer, session, monotonic: FakeClock) -> JwtVerifier:
    source = JwksKeySource(server.url, session=session, clock=monotonic, timeout=5)
    return JwtVerifier(source, issuer=ISSUER, clock=FakeClock())


def test_jwks_is_fetched_lazily_and_cached(jwks_server, session, rsa_key, ec_key):
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"), _public_jwk(ec_key, "ec-1"))
    verifier = _jwks_verifier(jwks_server, session, FakeClock(0))
    assert jwks_server.requests == 0
    verifier.verify(_token(rsa_key))
    assert jwks_server.requests == 1
    verifier.verify(_token(rsa_key))
    verifier.verify(_token(ec_key, kid="ec-1", alg="ES256"))
    assert jwks_server.requests == 1


def test_jwks_key_rotation_at_the_publisher(jwks_server, session, rsa_key, other_rsa_key):
    monotonic = FakeClock(0)
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"))
    verifier = _jwks_verifier(jwks_server, session, monotonic)
    verifier.verify(_token(rsa_key))
    jwks_server.publish(_public_jwk(other_rsa_key, "rsa-2"))
    monotonic.now = 3600
    assert verifier.verify(_token(other_rsa_key, kid="rsa-2"))["iss"] == ISSUER
    assert jwks_server.requests == 2


def test_jwks_refetches_are_rate_limited(jwks_server, session, rsa_key, other_rsa_key):
    monotonic = FakeClock(0)
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"))
    source = JwksKeySource(jwks_server.url, session=session, clock=monotonic, min_refetch_seconds=30)
    assert source.get_signing_key("rsa-1").key_id == "rsa-1"
    # A flood of random kids right after a fetch costs no HTTP at all.
    for number in range(50):
        _rejected("unknown_key", source.get_signing_key, f"random-{number}")
    monotonic.now = 29.999
    _rejected("unknown_key", source.get_signing_key, "random")
    assert jwks_server.requests == 1
    # Once the interval has passed, one refetch; the kid is still unknown after it.
    monotonic.now = 30
    _rejected("unknown_key", source.get_signing_key, "random")
    assert jwks_server.requests == 2
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"), _public_jwk(other_rsa_key, "rsa-2"))
    monotonic.now = 45
    _rejected("unknown_key", source.get_signing_key, "rsa-2")
    assert jwks_server.requests == 2
    monotonic.now = 60
    assert source.get_signing_key("rsa-2").key_id == "rsa-2"
    assert jwks_server.requests == 3


def test_jwks_unavailable_when_the_server_is_down_and_nothing_is_cached(jwks_server, session):
    url = jwks_server.url
    jwks_server.stop()
    source = JwksKeySource(url, session=session, clock=FakeClock(0))
    with pytest.raises(KeySourceUnavailable):
        source.get_signing_key("rsa-1")


def test_jwks_cached_keys_survive_an_outage(session, rsa_key):
    monotonic = FakeClock(0)
    server = JwksServer()
    server.publish(_public_jwk(rsa_key, "rsa-1"))
    source = JwksKeySource(server.url, session=session, clock=monotonic)
    source.get_signing_key("rsa-1")
    server.stop()
    monotonic.now = 3600
    assert source.get_signing_key("rsa-1").key_id == "rsa-1"
    # A kid we cannot look up while the publisher is down is our problem, not the sender's.
    with pytest.raises(KeySourceUnavailable):
        source.get_signing_key("rsa-2")


def test_jwks_error_status_is_unavailable_and_retried_after_the_interval(jwks_server, session, rsa_key):
    monotonic = FakeClock(0)
    jwks_server.status = 500
    source = JwksKeySource(jwks_server.url, session=session, clock=monotonic)
    with pytest.raises(KeySourceUnavailable, match="HTTP 500"):
        source.get_signing_key("rsa-1")
    monotonic.now = 10
    with pytest.raises(KeySourceUnavailable):
        source.get_signing_key("rsa-1")
    assert jwks_server.requests == 1
    jwks_server.status = 200
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"))
    monotonic.now = 30
    assert source.get_signing_key("rsa-1").key_id == "rsa-1"
    assert jwks_server.requests == 2


def test_jwks_ignores_keys_it_cannot_use(jwks_server, session, rsa_key, ec_key):
    jwks_server.publish(
        {"kty": "XYZ", "kid": "alien"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
        {**_public_jwk(ec_key, "enc-1"), "use": "enc"},
        "not an object",
        _public_jwk(rsa_key, "rsa-1"),
    )
    verifier = _jwks_verifier(jwks_server, session, FakeClock(0))
    assert verifier.verify(_token(rsa_key))["iss"] == ISSUER
    source = JwksKeySource(jwks_server.url, session=session, clock=FakeClock(0))
    for kid in ("alien", "broken", "shared", "enc-1"):
        _rejected("unknown_key", source.get_signing_key, kid)


def test_jwks_without_usable_keys_is_unavailable(jwks_server, session):
    jwks_server.publish({"kty": "oct", "kid": "shared", "k": "c2VjcmV0"})
    source = JwksKeySource(jwks_server.url, session=session, clock=FakeClock(0))
    with pytest.raises(KeySourceUnavailable):
        source.get_signing_key("shared")


def test_jwks_token_without_kid_uses_the_only_key(jwks_server, session, rsa_key):
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"))
    verifier = _jwks_verifier(jwks_server, session, FakeClock(0))
    assert verifier.verify(_token(rsa_key, kid=None))["iss"] == ISSUER


def test_jwks_concurrent_lookups_fetch_once(jwks_server, session, rsa_key):
    jwks_server.publish(_public_jwk(rsa_key, "rsa-1"))
    source = JwksKeySource(jwks_server.url, session=session, clock=FakeClock(0))
    start = threading.Barrier(16)
    found: list[str | None] = []

    def look_up() -> None:
        start.wait(timeout=10)
        found.append(source.get_signing_key("rsa-1").key_id)

    threads = [threading.Thread(target=look_up) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert found == ["rsa-1"] * 16
    assert jwks_server.requests == 1


# --------------------------------------------------------------------------------------------
# Hostile input never escapes as anything but AuthenticationError


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_jwt_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["RS256", "ES256", "HS256", "none", "PS256"]) | _json_values},
    optional={"kid": st.sampled_from(["rsa-1", "ec-1"]) | _json_values, "crit": _json_values},
)
_jwt_like = st.builds(
    lambda header, claims, signature: ".".join(
        [_segment(json.dumps(header).encode()), _segment(json.dumps(claims).encode()), signature]
    ),
    _jwt_headers,
    st.dictionaries(st.sampled_from(["iss", "exp", "nbf", "iat", "aud", "sub", "jti"]), _json_values),
    st.binary(max_size=300).map(_segment) | st.text(max_size=20),
)
_header_text = st.none() | st.text() | st.from_regex(r"[A-Za-z0-9+/=_.,\- ]*", fullmatch=True)
_signature_headers = _header_text | st.builds(
    lambda t, parts: f"t={t}," + ",".join(parts),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.lists(st.from_regex(r"v[0-9]=[0-9a-fA-Fg-z]{0,70}", fullmatch=True), max_size=20),
)
_contexts = _header_text | st.builds(
    lambda value: base64.b64encode(json.dumps(value).encode()).decode(), _json_values
)


@pytest.fixture(scope="module")
def static_verifier(rsa_key, ec_key) -> JwtVerifier:
    keys = StaticKeySource([jwt.PyJWK(_public_jwk(rsa_key, "rsa-1")), jwt.PyJWK(_public_jwk(ec_key, "ec-1"))])
    return JwtVerifier(keys, issuer=ISSUER, clock=FakeClock())


def _only_authentication_errors(call, *args: Any) -> None:
    try:
        call(*args)
    except AuthenticationError as error:
        assert error.code and error.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token=_header_text | _jwt_like, signature=_signature_headers, context=_contexts)
def test_random_headers_only_raise_authentication_error(static_verifier, token, signature, context):
    _only_authentication_errors(HmacVerifier(clock=FakeClock()).verify, signature, BODY, [SECRET])
    _only_authentication_errors(parse_bearer, token)
    _only_authentication_errors(TrustedContextVerifier(CLIENT_ID).verify, context, COMPANY)
    _only_authentication_errors(static_verifier.verify, token)
    _only_authentication_errors(static_verifier.verify, parse_bearer(f"Bearer {token}"))
