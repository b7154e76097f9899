"""The receiver in the default scheme, sage-signature, against a real RabbitMQ: Sage-signed
deliveries reach the queue, the tenant pin holds (QUALITY S1), nothing unsigned names the company,
and the idempotency keys come from the brief's headers in the brief's order."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from ingest.app import DELIVERY_RETENTION
from tests.conftest import COMPANY, TENANT, client_context, invoice_event, sage_signature

pytestmark = pytest.mark.broker


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]["code"]


def test_a_sage_signed_delivery_is_in_the_queue_when_the_answer_comes(sage_receiver, broker):
    response = sage_receiver.post_sage(invoice_event(), key="sage-1")
    assert response.status_code == 202, response.get_json()
    envelope = json.loads(broker.get("sync.ar").body)
    assert envelope["eventId"] == response.get_json()["eventId"]
    assert envelope["authScheme"] == "sage-signature"
    assert envelope["idempotencyKey"] == "sage-1"


@pytest.mark.parametrize("envelope", [False, True], ids=["bare", "jwtData-envelope"])
@pytest.mark.parametrize("exp_unit", ["s", "ms"])
def test_both_header_forms_and_both_exp_units_are_accepted(sage_receiver, broker, envelope, exp_unit):
    raw = json.dumps(invoice_event()).encode()
    signature = sage_signature(raw, envelope=envelope, exp_unit=exp_unit)
    assert sage_receiver.post_sage(raw, signature).status_code == 202
    assert broker.get("sync.ar") is not None


def test_s1_refusals_reach_the_answer_as_401_and_publish_nothing(sage_receiver, broker):
    raw = json.dumps(invoice_event()).encode()
    swapped = json.dumps(invoice_event(key="666")).encode()
    cases = {
        "missing_credentials": sage_receiver.client.post(
            sage_receiver.url(), data=raw, content_type="application/json"
        ),
        "bad_signature": sage_receiver.post_sage(raw, sage_signature(raw, secret="x" * 40)),
        "body_mismatch": sage_receiver.post_sage(swapped, sage_signature(raw)),
        "token_expired": sage_receiver.post_sage(raw, sage_signature(raw, now=time.time() - 7200)),
        "wrong_issuer": sage_receiver.post_sage(raw, sage_signature(raw, iss="Sage Intacct (test)")),
    }
    for code, response in cases.items():
        assert response.status_code == 401, code
        assert error_code(response) == code
    assert broker.get("sync.ar") is None


def test_s1_the_first_tenant_is_pinned_and_another_is_refused(sage_receiver, broker):
    connection_id = sage_receiver.connection.connection_id
    assert sage_receiver.post_sage(invoice_event(key="1")).status_code == 202
    assert sage_receiver.parts.store.get(connection_id).tenant_id == TENANT

    raw = json.dumps(invoice_event(key="2")).encode()
    # Signed by Sage for another customer; the unsigned context and body name this company.
    other = sage_receiver.post_sage(
        raw, sage_signature(raw, tenant_id="tenant-intruder"), **{"x-clientcontext": client_context(COMPANY)}
    )
    assert other.status_code == 401
    assert error_code(other) == "tenant_mismatch"
    assert sage_receiver.post_sage(invoice_event(key="3")).status_code == 202
    assert [json.loads(m.body)["key"] for m in broker.take_all("sync.ar")] == ["1", "3"]
    assert sage_receiver.parts.store.get(connection_id).tenant_id == TENANT


def test_a_reconnect_lets_the_connection_pin_its_tenant_again(sage_receiver, broker):
    store, connection = sage_receiver.parts.store, sage_receiver.connection
    assert sage_receiver.post_sage(invoice_event(key="1")).status_code == 202
    # FlexPoint's connect for the same connection (the customer reconnected, maybe elsewhere).
    store.save(connection.connection_id, connection.account_id, COMPANY, None, "ws", "connected")
    raw = json.dumps(invoice_event(key="2")).encode()
    moved = sage_receiver.post_sage(raw, sage_signature(raw, tenant_id="tenant-after-reconnect"))
    assert moved.status_code == 202, moved.get_json()
    assert store.get(connection.connection_id).tenant_id == "tenant-after-reconnect"
    again = sage_receiver.post_sage(invoice_event(key="3"))  # the first tenant, now foreign
    assert error_code(again) == "tenant_mismatch"


def test_idempotency_keys_come_from_the_headers_in_the_brief_order(sage_receiver, broker):
    def post(key: str, **headers):
        return sage_receiver.post_sage(invoice_event(key=key), **headers)

    first = post("1", **{"Idempotency-Key": "a", "X-IdempotencyKey": "b", "X-Idempotency-Key": "c"})
    assert first.status_code == 202
    assert post("1", **{"Idempotency-Key": "a"}).status_code == 200
    assert post("2", **{"X-IdempotencyKey": "b", "X-Idempotency-Key": "c"}).status_code == 202
    assert post("2", **{"X-IdempotencyKey": "b"}).status_code == 200
    assert post("3", **{"X-Idempotency-Key": "c"}).status_code == 202
    envelopes = [json.loads(m.body) for m in broker.take_all("sync.ar")]
    assert [e["idempotencyKey"] for e in envelopes] == ["a", "b", "c"]


def test_idempotency_keys_are_kept_at_least_24_hours():
    assert timedelta(hours=24) <= DELIVERY_RETENTION
