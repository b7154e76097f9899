"""The receiver against a real RabbitMQ: every answer of the brief, in the brief's order."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import structlog

from ingest.auth import sign_hmac
from observability.logging import get_logger, request_context
from tests.conftest import COMPANY, invoice_event, running_receiver, trusted_context

pytestmark = pytest.mark.broker


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


# -- 202: the message is in the queue before the answer -----------------------------------


def test_accepted_event_is_in_the_queue_when_the_answer_comes(receiver, broker):
    response = receiver.post_hmac(invoice_event(custom="kept"), key="delivery-1")

    assert response.status_code == 202
    answer = response.get_json()
    assert answer["status"] == "accepted"
    # No waiting: a 202 means the broker already confirmed the persistent message.
    message = broker.get("sync.ar")
    assert message is not None
    envelope = json.loads(message.body)
    assert envelope["eventId"] == answer["eventId"]
    assert message.delivery_info["routing_key"] == "ar.invoices.update"
    assert message.properties["delivery_mode"] == 2
    assert message.properties["message_id"] == answer["eventId"]
    assert envelope["connectionId"] == receiver.connection.connection_id
    assert envelope["companyId"] == COMPANY
    assert (envelope["module"], envelope["resource"], envelope["action"]) == ("ar", "invoices", "update")
    assert envelope["key"] == "1042"
    assert envelope["authScheme"] == "hmac"
    assert envelope["payload"]["custom"] == "kept"  # unknown fields travel along
    assert broker.get("sync.ar") is None


@pytest.mark.parametrize(
    ("intacct_object", "action", "queue", "routing_key"),
    [
        ("GLACCOUNT", "add", "sync.gl", "gl.gl-accounts.create"),
        ("GLBATCH", "delete", "sync.gl", "gl.journal-entries.delete"),
        ("CUSTOMER", "create", "sync.ar", "ar.customers.create"),
        ("ARPYMT", "update", "sync.ar", "ar.payments.update"),
        ("CHECKINGACCOUNT", "set", "sync.cm", "cm.bank-accounts.update"),
        ("OTHERRECEIPTS", "set", "sync.cm", "cm.other-receipts.update"),
        ("LOCATIONENTITY", "set", "sync.company", "company.entities.update"),
    ],
)
def test_each_module_routes_to_its_work_queue(receiver, broker, intacct_object, action, queue, routing_key):
    response = receiver.post_hmac({"object": intacct_object, "action": action, "key": "7"})
    assert response.status_code == 202
    message = broker.get(queue)
    assert message is not None and message.delivery_info["routing_key"] == routing_key


def test_jwt_with_trusted_context_is_accepted(receiver, broker, signing_keys):
    response = receiver.post_jwt(invoice_event(), signing_keys.token(), trusted_context(COMPANY))
    assert response.status_code == 202, response.get_json()
    assert json.loads(broker.get("sync.ar").body)["authScheme"] == "jwt"


# -- 200: duplicates ------------------------------------------------------------------------


def test_retried_delivery_is_a_duplicate_and_publishes_nothing_more(receiver, broker):
    first = receiver.post_hmac(invoice_event(), key="retry-me")
    second = receiver.post_hmac(invoice_event(), key="retry-me")

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.get_json() == {"status": "duplicate", "eventId": first.get_json()["eventId"]}
    assert len(broker.take_all("sync.ar")) == 1


def test_idempotency_falls_back_to_x_header_then_event_id_then_body_hash(receiver, broker):
    assert receiver.post_hmac(invoice_event(), **{"X-Idempotency-Key": "x-1"}).status_code == 202
    assert receiver.post_hmac(invoice_event(), **{"X-Idempotency-Key": "x-1"}).status_code == 200
    assert receiver.post_hmac(invoice_event(eventId="evt-9")).status_code == 202
    again = receiver.post_hmac(invoice_event(eventId="evt-9"))
    assert again.status_code == 200 and again.get_json()["eventId"] == "evt-9"
    same_body = json.dumps(invoice_event(key="55")).encode()
    assert receiver.post_hmac(same_body).status_code == 202
    assert receiver.post_hmac(same_body).status_code == 200
    assert len(broker.take_all("sync.ar")) == 3


def test_concurrent_copies_of_one_delivery_yield_one_message(receiver, broker):
    body = invoice_event(key="77")

    def send(_):
        return (
            receiver.app.test_client()
            .post(
                receiver.url(),
                data=json.dumps(body),
                content_type="application/json",
                headers={
                    "Idempotency-Key": "same-everywhere",
                    "X-FlexPoint-Signature": sign_hmac(
                        receiver.secret, json.dumps(body).encode(), int(time.time())
                    ),
                },
            )
            .status_code
        )

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(send, range(24)))

    assert statuses.count(202) == 1
    assert set(statuses) <= {200, 202, 503}  # 503 = "in flight elsewhere, retry"
    assert len(broker.take_all("sync.ar")) == 1


# -- refusals, in the brief's order ---------------------------------------------------------


def test_413_before_anything_else(receiver, broker):
    huge = b'{"object": "ARINVOICE", "key": "1", "pad": "' + b"x" * (256 * 1024) + b'"}'
    response = receiver.client.post("/webhooks/intacct/unknown-id", data=huge, content_type="text/plain")
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_415_for_a_body_that_is_not_json(receiver):
    response = receiver.post_hmac(invoice_event(), content_type="text/plain", connection_id="unknown-id")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_404_for_an_unknown_connection_before_authenticity(receiver):
    response = receiver.client.post("/webhooks/intacct/does-not-exist", json=invoice_event())
    assert response.status_code == 404
    assert error_of(response)["code"] == "unknown_connection"


def test_a_made_up_connection_id_costs_one_query_and_evicts_nothing(receiver, broker, monkeypatch):
    assert receiver.post_hmac(invoice_event(key="1")).status_code == 202  # the real one is cached
    reads, lookups = Counter(), Counter()
    store, ledger = receiver.parts.store, receiver.parts.ledger
    real_get, real_lookup = store.get, ledger.lookup
    monkeypatch.setattr(store, "get", lambda cid: reads.update([cid]) or real_get(cid))
    monkeypatch.setattr(ledger, "lookup", lambda cid, key: lookups.update([cid]) or real_lookup(cid, key))

    made_up = [str(uuid.uuid4()) for _ in range(200)]
    for connection_id in made_up:
        response = receiver.post_hmac(invoice_event(), connection_id=connection_id)
        assert response.status_code == 404 and error_of(response)["code"] == "unknown_connection"
    # One read of the connection table each; the ledger's version check is not needed when the
    # connection was just read.
    assert reads == Counter(made_up) and lookups == Counter()

    assert receiver.post_hmac(invoice_event(key="2")).status_code == 202
    assert receiver.connection.connection_id not in reads  # still cached


def test_410_for_a_disconnected_connection(receiver, broker):
    receiver.parts.store.disconnect(receiver.connection.connection_id)
    receiver.parts.intake._connections.invalidate(receiver.connection.connection_id)
    response = receiver.post_hmac(invoice_event(), secret="whatever-secret-it-had")
    assert response.status_code == 410
    assert error_of(response)["code"] == "connection_disconnected"
    assert broker.get("sync.ar") is None


def test_a_requests_log_context_ends_with_it(receiver, broker):
    assert receiver.post_hmac(invoice_event(), key="context-1").status_code == 202
    # The test client runs the request on this thread: nothing of it may label later lines.
    assert request_context() == {}
    assert structlog.contextvars.get_contextvars() == {}


def test_401_without_credentials_and_before_the_body_is_read(receiver, broker):
    response = receiver.client.post(receiver.url(), data=b"not json at all", content_type="application/json")
    assert response.status_code == 401
    assert error_of(response)["code"] == "missing_credentials"


def test_401_for_a_token_of_company_a_on_company_b_connection(receiver, broker, signing_keys):
    """QUALITY S2, receiver half: a valid token for A posted to B's connection is refused."""
    response = receiver.post_jwt(invoice_event(), signing_keys.token(), trusted_context("OTHER-CO"))
    assert response.status_code == 401
    assert error_of(response)["code"] == "company_mismatch"
    response = receiver.post_jwt(invoice_event(), signing_keys.token(), trusted_context(COMPANY, "evil.app"))
    assert error_of(response)["code"] == "client_mismatch"
    response = receiver.post_jwt(
        invoice_event(), signing_keys.token(companyId="OTHER-CO"), trusted_context(COMPANY)
    )
    assert response.status_code == 401
    assert broker.get("sync.ar") is None


def test_401_for_the_other_connections_hmac_secret(receiver, broker):
    other = receiver.parts.store.save(
        connection_id=str(uuid.uuid4()),
        account_id="acct-2",
        company_id="B-CO",
        entity_id=None,
        user_id="ws",
        state="connected",
    )
    other_secret = receiver.parts.store.webhook_secret(other.connection_id)
    response = receiver.post_hmac(invoice_event(), secret=other_secret)
    assert response.status_code == 401
    assert error_of(response)["code"] == "bad_signature"


def test_401_for_an_expired_token(receiver, signing_keys):
    response = receiver.post_jwt(
        invoice_event(), signing_keys.token(expires_in=-120), trusted_context(COMPANY)
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_expired"


def test_400_for_bad_json(receiver):
    response = receiver.post_hmac(b'{"object": ')
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_400_for_a_deeply_nested_body_not_a_500(receiver, broker, depth):
    # json.loads raises RecursionError (not a ValueError) for this: it was a 500, which also
    # reports a gap and sets off a reconciliation sweep of the company.
    nested = (
        b'{"object": "ARINVOICE", "action": "set", "key": "1", "x": ' + b"[" * depth + b"]" * depth + b"}"
    )
    response = receiver.post_hmac(nested)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    assert broker.get("sync.ar") is None


def test_400_lists_field_errors(receiver):
    response = receiver.post_hmac({"action": "frobnicate"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_body"
    assert set(error["fields"]) == {"object", "key", "action"}


def test_400_when_the_body_names_another_company(receiver, broker):
    response = receiver.post_hmac(invoice_event(companyId="SOMEONE-ELSE"))
    assert response.status_code == 400
    assert "companyId" in error_of(response)["fields"]


def test_422_for_an_object_that_is_not_synced(receiver, broker):
    response = receiver.post_hmac({"object": "APBILL", "action": "set", "key": "1"})
    assert response.status_code == 422
    assert error_of(response)["code"] == "unsupported_object"
    assert broker.get("sync.ar") is None


def test_unknown_route_and_method_answer_json(receiver):
    assert error_of(receiver.client.get("/nope"))["code"] == "not_found"
    response = receiver.client.get(receiver.url())
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


# -- 503: the broker cannot confirm ---------------------------------------------------------


@pytest.fixture
def receiver_without_broker(settings):
    """A receiver pointed at a port where no broker listens: every publish must fail fast."""
    with running_receiver(settings.with_overrides(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F")) as running:
        yield running


def test_503_with_retry_after_within_two_seconds_when_the_broker_is_down(receiver_without_broker):
    started = time.monotonic()
    response = receiver_without_broker.post_hmac(invoice_event(), key="will-retry")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert error_of(response)["code"] == "broker_unavailable"
    assert elapsed < 2.0
    # The key was released: Intacct's retry is a new attempt, not a "duplicate".
    assert receiver_without_broker.post_hmac(invoice_event(), key="will-retry").status_code == 503


def test_a_delivery_refused_with_503_is_accepted_when_retried(receiver_without_broker, receiver, broker):
    """Both receivers share one database: a 503 records nothing, so the retry is a new delivery."""
    assert receiver_without_broker.post_hmac(invoice_event(), key="was-503").status_code == 503
    receiver_without_broker.parts.recorder.flush()
    assert receiver.parts.ledger.seen(receiver_without_broker.connection.connection_id, "was-503") is None
    assert receiver.parts.ledger.seen(receiver.connection.connection_id, "was-503") is None
    assert receiver.post_hmac(invoice_event(), key="was-503").status_code == 202
    assert len(broker.take_all("sync.ar")) == 1


def test_a_retry_reaching_another_receiver_process_is_a_duplicate(receiver, settings, jwks_url, broker):
    """The ledger is shared through the database: what one process accepted, all know."""
    first = receiver.post_hmac(invoice_event(), key="cross-process")
    assert first.status_code == 202
    receiver.parts.recorder.flush()
    with running_receiver(settings.with_overrides(intacct_webhook_jwks_url=jwks_url)) as other:
        again = other.post_hmac(
            invoice_event(),
            key="cross-process",
            connection_id=receiver.connection.connection_id,
            secret=receiver.secret,
        )
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "eventId": first.get_json()["eventId"]}
    assert len(broker.take_all("sync.ar")) == 1


# -- operational endpoints ------------------------------------------------------------------


METRICS_TOKEN = "metrics-token-0123456789abcdef"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def metered_receiver(settings, jwks_url, broker):
    """The ``receiver`` fixture's receiver, with a FLEXSYNC_METRICS_TOKEN for its ops endpoints."""
    with running_receiver(
        settings.with_overrides(
            intacct_webhook_jwks_url=jwks_url,
            intacct_webhook_scheme="bearer-jwks",
            flexsync_metrics_token=METRICS_TOKEN,
        )
    ) as running:
        yield running


def test_metrics_and_openapi_need_the_metrics_token(metered_receiver, receiver):
    for path in ("/metrics", "/openapi.json"):
        # Anyone reaching the public port: nothing without the token, nor with a wrong one.
        assert metered_receiver.client.get(path).status_code == 401, path
        wrong = {"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"}
        assert metered_receiver.client.get(path, headers=wrong).status_code == 401, path
        assert metered_receiver.client.get(path, headers=SCRAPER).status_code == 200, path
        # No token configured: not served at all on the public port.
        assert receiver.client.get(path).status_code == 404, path
    # Liveness and readiness stay open: a platform's health check carries no token.
    assert receiver.client.get("/healthz").status_code == 200


def test_healthz_readyz_metrics_and_openapi(metered_receiver, broker):
    receiver = metered_receiver
    assert receiver.client.get("/healthz").get_json() == {"status": "ok"}
    ready = receiver.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"broker": "ok", "database": "ok"}

    receiver.post_hmac(invoice_event(), key="m-1")
    receiver.post_hmac(invoice_event(), key="m-1")
    receiver.client.post("/webhooks/intacct/nobody", json=invoice_event())
    metrics = receiver.client.get("/metrics", headers=SCRAPER).get_data(as_text=True)
    assert 'flexsync_webhook_requests_total{status="202"} 1.0' in metrics
    assert 'flexsync_webhook_requests_total{status="200"} 1.0' in metrics
    assert 'flexsync_webhook_requests_total{status="404"} 1.0' in metrics
    assert 'flexsync_webhook_rejects_total{reason="unknown_connection"} 1.0' in metrics
    assert 'flexsync_publish_confirms_total{outcome="ack"} 1.0' in metrics
    assert "flexsync_publish_confirm_seconds_bucket" in metrics

    spec = receiver.client.get("/openapi.json", headers=SCRAPER).get_json()
    post = spec["paths"]["/webhooks/intacct/{connection_id}"]["post"]
    assert {"200", "202", "400", "401", "404", "410", "413", "415", "422", "503"} <= set(post["responses"])
    assert set(spec["components"]["schemas"]["WebhookBody"]["required"]) == {"object", "key"}
    assert spec["paths"]["/metrics"]["get"]["security"] == [{"metricsToken": []}]
    assert spec["components"]["securitySchemes"]["metricsToken"]["scheme"] == "bearer"


def test_readyz_says_which_dependency_is_missing(receiver_without_broker):
    response = receiver_without_broker.client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"] == {"broker": "unavailable", "database": "ok"}
    assert "broker" in body["error"]["message"]


def test_log_lines_about_an_event_carry_its_ids(receiver, broker, capsys):
    from observability.logging import configure_logging

    configure_logging(receiver.parts.settings.with_overrides(log_format="json", log_level="DEBUG"))
    answer = receiver.post_hmac(invoice_event(), key="ctx-1").get_json()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    accepted = [line for line in lines if line.get("event") == "webhook_accepted"]
    assert accepted, lines
    assert accepted[0]["connection_id"] == receiver.connection.connection_id
    assert accepted[0]["event_id"] == answer["eventId"]
    assert accepted[0]["routing_key"] == "ar.invoices.update"

    # A refusal's line carries the connection; a line after the request carries none of it.
    receiver.post_hmac(invoice_event(), secret="not-the-secret")
    get_logger("tests").info("after_the_requests")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    refused = [line for line in lines if line.get("event") == "webhook_unauthenticated"]
    assert refused and refused[0]["connection_id"] == receiver.connection.connection_id
    assert "event_id" not in refused[0]
    (after,) = [line for line in lines if line.get("event") == "after_the_requests"]
    assert "connection_id" not in after and "event_id" not in after


@pytest.mark.parametrize(
    "raw_event_id",
    [json.dumps("é" * 150), '"a\\ud800b"', json.dumps("tab\there")],
    ids=["over-255-utf8-bytes", "lone-surrogate", "control-character"],
)
def test_an_event_id_the_broker_cannot_carry_is_a_400_and_the_next_hundred_get_their_own_confirms(
    receiver, broker, raw_event_id
):
    """Issue 30 #1: such an eventId was a 503 that shifted every later confirm of the process."""
    raw = json.dumps(invoice_event(key="1")).encode()
    raw = raw[:-1] + b', "eventId": ' + raw_event_id.encode() + b"}"
    response = receiver.post_hmac(raw)
    assert response.status_code == 400, response.get_json()
    error = error_of(response)
    assert error["code"] == "invalid_body" and "eventId" in error["fields"]
    accepted = []
    for i in range(100):
        answer = receiver.post_hmac(invoice_event(key=str(i), eventId=f"evt-{i}"))
        assert answer.status_code == 202, (i, answer.get_json())
        accepted.append(answer.get_json()["eventId"])
    assert accepted == [f"evt-{i}" for i in range(100)]
    messages = broker.take_all("sync.ar")
    assert [m.properties["message_id"] for m in messages] == accepted
    assert [json.loads(m.body)["eventId"] for m in messages] == accepted


@pytest.mark.parametrize("key", ["1042,1043", "a/b", "   ", ""])
def test_a_key_intacct_cannot_be_asked_for_is_a_400_naming_the_field(receiver, broker, key):
    """Issue 30 #2: such a key was accepted, then failed its whole group in the sync worker."""
    response = receiver.post_hmac(invoice_event(key=key))
    assert response.status_code == 400, response.get_json()
    error = error_of(response)
    assert error["code"] == "invalid_body" and list(error["fields"]) == ["key"]
    assert broker.get("sync.ar") is None
