"""The receiver reads a webhook's body from gunicorn itself, by its declared length or chunked.

The view reads a body with a Content-Length straight from the server's stream, and leaves a
chunked one to werkzeug's stream, which stops it at the size limit. Flask's test client does
not go through gunicorn's readers, so these run a real ``flexsync web`` process.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterable

import pytest

from ingest.auth import sign_hmac
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import invoice_event
from tests.web_processes import running_receivers
from workers.connections.store import ConnectionStore

CONNECTION = "conn-http-1"
COMPANY = "HTTP-CO"
LIMIT = 256 * 1024  # the default WEBHOOK_MAX_BODY_BYTES


@pytest.fixture
def secret(settings):
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox.for_settings(settings))
    store.save(CONNECTION, "acct-http", COMPANY, None, "ws_user", "connected")
    yield store.webhook_secret(CONNECTION)
    engine.dispose()


@pytest.fixture
def port(settings, secret, tmp_path, broker):
    with running_receivers(settings, tmp_path, 1, threads=2) as ports:
        yield ports[0]


def _post(port: int, secret: str, body: bytes, *, chunks: Iterable[bytes] | None = None):
    headers = {
        "Content-Type": "application/json",
        "X-FlexPoint-Signature": sign_hmac(secret, body, int(time.time())),
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if chunks is None:
            connection.request("POST", f"/webhooks/intacct/{CONNECTION}", body=body, headers=headers)
        else:
            headers["Transfer-Encoding"] = "chunked"
            connection.request(
                "POST", f"/webhooks/intacct/{CONNECTION}", body=chunks, headers=headers, encode_chunked=True
            )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _payload_of(message) -> dict:
    return json.loads(message.body)["payload"]


def _event(key: str, padding: int = 0) -> tuple[dict, bytes]:
    event = invoice_event(key=key, companyId=COMPANY, memo="m" * padding)
    return event, json.dumps(event).encode()


@pytest.mark.broker
def test_a_body_with_a_declared_length_is_published_exactly(port, secret, broker):
    event, body = _event("4101", padding=5_000)
    status, answer = _post(port, secret, body)
    assert (status, answer["status"]) == (202, "accepted")
    (message,) = broker.take_all("sync.ar")
    assert _payload_of(message) == event

    # The same bytes again on a new connection: the ledger or memory knows them.
    assert _post(port, secret, body)[0] == 200


@pytest.mark.broker
def test_a_chunked_body_is_read_whole(port, secret, broker):
    event, body = _event("4102", padding=20_000)
    pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    status, answer = _post(port, secret, body, chunks=pieces)
    assert (status, answer["status"]) == (202, "accepted")
    (message,) = broker.take_all("sync.ar")
    assert _payload_of(message) == event


@pytest.mark.broker
def test_a_chunked_body_over_the_limit_is_refused_413(port, secret, broker):
    body = _event("4103", padding=LIMIT)[1]
    assert len(body) > LIMIT
    pieces = [body[i : i + 16_384] for i in range(0, len(body), 16_384)]
    status, answer = _post(port, secret, body, chunks=pieces)
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"
    assert broker.take_all("sync.ar") == []


@pytest.mark.broker
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(port, secret, broker):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        # Only the headers are sent: the answer must not wait for a body.
        connection.putrequest("POST", f"/webhooks/intacct/{CONNECTION}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(LIMIT + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    finally:
        connection.close()
    assert broker.take_all("sync.ar") == []


@pytest.mark.broker
def test_accepted_and_duplicate_answers_are_whole_json_on_one_kept_alive_connection(port, secret, broker):
    body = _event("4104")[1]
    headers = {
        "Content-Type": "application/json",
        "X-FlexPoint-Signature": sign_hmac(secret, body, int(time.time())),
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers = []
    try:
        for _ in range(2):
            connection.request("POST", f"/webhooks/intacct/{CONNECTION}", body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            answers.append((response.status, response.reason, response.getheader("Content-Type"), raw))
            # The length the answer declares is the body it sends, so the connection stays usable.
            assert response.getheader("Content-Length") == str(len(raw))
    finally:
        connection.close()

    (
        (accepted_status, accepted_reason, accepted_type, accepted),
        (duplicate_status, _, duplicate_type, duplicate),
    ) = answers
    assert (accepted_status, accepted_reason, accepted_type) == (202, "ACCEPTED", "application/json")
    assert (duplicate_status, duplicate_type) == (200, "application/json")
    event_id = json.loads(accepted)["eventId"]
    assert json.loads(accepted) == {"status": "accepted", "eventId": event_id}
    assert json.loads(duplicate) == {"status": "duplicate", "eventId": event_id}
    assert len(broker.take_all("sync.ar")) == 1
