"""Redaction: whatever a line carries, no secret, token, password or Authorization is printed."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid

import pytest
from cryptography.fernet import Fernet

from config import Settings
from ingest.auth import sign_hmac
from observability.logging import REDACTED, Redactor, configure_logging, get_logger, register_secret

FERNET_KEY = Fernet.generate_key().decode()
CLIENT_SECRET = "intacct-client-secret-9f8e7d"
FLEXPOINT_TOKEN = "fp_live_token_0a1b2c3d4e"
SENDER_PASSWORD = "sender-password-77aa"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJpbnRhY2N0In0.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def log_output():
    stream = io.StringIO()
    settings = Settings(
        flexsync_env="test",
        log_format="json",
        log_level="DEBUG",
        flexsync_secret_key=(FERNET_KEY,),
        intacct_client_secret=CLIENT_SECRET,
        flexpoint_api_token=FLEXPOINT_TOKEN,
        intacct_sender_password=SENDER_PASSWORD,
    )
    configure_logging(settings, stream=stream)
    yield stream
    logging.getLogger().handlers.clear()


def printed(stream: io.StringIO) -> str:
    return stream.getvalue()


def test_configured_secrets_are_redacted_wherever_they_appear(log_output):
    log = get_logger("test")
    log.info("token_refresh", detail=f"sent client_secret {CLIENT_SECRET} to intacct")
    log.warning("flexpoint_call", note=f"with {FLEXPOINT_TOKEN} and {SENDER_PASSWORD}", key=FERNET_KEY)
    text = printed(log_output)
    for secret in (CLIENT_SECRET, FLEXPOINT_TOKEN, SENDER_PASSWORD, FERNET_KEY):
        assert secret not in text
    assert text.count(REDACTED) >= 4


def test_sensitive_fields_headers_and_tokens_are_redacted(log_output):
    webhook_secret = f"whsec_{uuid.uuid4().hex}"
    register_secret(webhook_secret)
    signature = sign_hmac(webhook_secret, b"{}", int(time.time()))
    log = get_logger("test")
    log.info(
        "request",
        headers={"Authorization": f"Bearer {JWT}", "X-FlexPoint-Signature": signature, "Accept": "json"},
        password="hunter2-hunter2",
        client_secret="abc",
        access_token="tok",
        webhook_secret=webhook_secret,
        url="amqp://flexsync:broker-pass-123@rabbit:5672/%2F",
        text=f"called with Authorization: Bearer {JWT} and secret {webhook_secret}",
        nested=[{"refresh_token": "rt-1"}, {"userPassword": "pw-1"}],
    )
    text = printed(log_output)
    for secret in (
        JWT,
        signature.split("v1=")[1],
        "hunter2-hunter2",
        "broker-pass-123",
        webhook_secret,
        "rt-1",
        "pw-1",
    ):
        assert secret not in text
    line = json.loads(text.strip().splitlines()[-1])
    assert line["headers"]["Accept"] == "json"  # harmless values survive
    assert line["url"] == f"amqp://flexsync:{REDACTED}@rabbit:5672/%2F"


def test_library_log_lines_and_exceptions_are_redacted_too(log_output):
    logging.getLogger("pika.connection").warning("connecting to amqp://u:pika-secret-pass@host/%2F")
    try:
        raise RuntimeError(f"token endpoint said no to client_secret={CLIENT_SECRET}")
    except RuntimeError:
        get_logger("test").exception("token_failed")
    logging.getLogger("gunicorn.error").error("header Authorization: Bearer %s", JWT)
    text = printed(log_output)
    assert "pika-secret-pass" not in text
    assert CLIENT_SECRET not in text
    assert JWT not in text
    assert "RuntimeError" in text  # the exception is still there to read


def test_the_redactor_leaves_ordinary_lines_alone():
    redactor = Redactor()
    event = {
        "event": "webhook_accepted",
        "connection_id": "c-1",
        "event_id": "e-1",
        "count": 3,
        "routing_key": "ar.invoices.update",
        "idempotency_key_source": "header",
    }
    assert redactor(None, "info", dict(event)) == event


def test_with_thousands_of_registered_secrets_each_is_still_found():
    """A receiver caching many connections registers many secrets; lookup must stay exact."""
    redactor = Redactor(f"whsec_{uuid.uuid4().hex}" for _ in range(3000))
    needle = f"whsec_{uuid.uuid4().hex}"
    redactor.register(needle, needle[:20] + "-longer-variant-of-it")
    event = {
        "event": f"request failed for secret={needle}!",
        "detail": f"x{needle[:20]}-longer-variant-of-it",
    }
    redacted = redactor(None, "error", event)
    assert needle not in str(redacted) and "longer-variant" not in str(redacted)
    assert redacted["event"] == f"request failed for secret={REDACTED}!"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_issued_tokens_expire_from_the_redactor_so_100000_of_them_keep_it_small():
    # An Intacct token is registered per company and hour, for good: the set (and the re-sort
    # of the whole set on each registration) grew for as long as the process ran. What a
    # registration costs follows what the redactor holds, so that is what is held to a bound
    # here (a timed comparison failed on a busy machine: the guide's "no timed tests").
    clock = _Clock()
    configured = f"configured-{uuid.uuid4().hex}"
    redactor = Redactor([configured], clock=clock)
    sizes, held = [], []
    for batch in range(100):
        for n in range(1000):
            clock.now += 1.0
            redactor.register(f"tok-{batch:03d}-{n:04d}-{uuid.uuid4().hex}", lifetime=600.0)
        sizes.append(len(redactor))
        # Every structure a registration walks: the expiry heap and the groups by prefix.
        held.append((len(redactor._deadlines), sum(len(group) for group in redactor._by_prefix.values())))
    # Only the tokens still alive (600 s at one a second) and the configured secret.
    assert max(sizes) <= 602
    assert sizes[-1] == sizes[10]
    assert max(deadlines for deadlines, _ in held) <= 601
    assert all(grouped == size for (_, grouped), size in zip(held, sizes, strict=True))

    live = f"tok-live-{uuid.uuid4().hex}"
    redactor.register(live, lifetime=600.0)
    expired = f"tok-gone-{uuid.uuid4().hex}"
    redactor.register(expired, lifetime=10.0)
    clock.now += 11.0
    redactor.register(f"tok-next-{uuid.uuid4().hex}", lifetime=600.0)  # forgets the expired ones
    line = redactor.redact_text(f"{configured} {live} {expired}")
    assert line == f"{REDACTED} {REDACTED} {expired}"


def test_a_secret_registered_for_good_and_as_a_token_stays_for_good():
    clock = _Clock()
    secret = f"whsec_{uuid.uuid4().hex}"
    redactor = Redactor(clock=clock)
    redactor.register(secret)
    redactor.register(secret, lifetime=5.0)
    clock.now += 10.0
    redactor.register(f"tok-next-{uuid.uuid4().hex}", lifetime=5.0)
    assert redactor.redact_text(f"[{secret}]") == f"[{REDACTED}]"
