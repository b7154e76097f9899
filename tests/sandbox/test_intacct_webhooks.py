"""Mutations fire signed webhooks to a real local endpoint, which verifies them the way the
receiver does (ingest.auth, ingest.sage_signature), in each scheme; retries repeat the
idempotency keys on the real schedule, scaled."""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from decimal import Decimal

import jwt
import pytest
import requests

from ingest.auth import (
    AuthenticationError,
    JwksKeySource,
    JwtVerifier,
    TrustedContextVerifier,
    company_claim_matches,
)
from ingest.sage_signature import SageSignatureVerifier
from sandbox.intacct.seed import SeedOptions, seed_company
from sandbox.intacct.server import SimulatorServer
from sandbox.intacct.webhooks import tenant_id
from tests.sandbox.conftest_intacct import AS_OF, COMPANY, WebhookSink, make_config

TIME_SCALE = 0.002  # retries after 20 ms, 60 ms, 180 ms


class Admin:
    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.base = f"{server.base_url}/sandbox"

    def __call__(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(method, self.base + path, json=body, timeout=10)

    def records(self, path: str) -> str:
        return f"/companies/{COMPANY}/objects/{path}"

    def idle(self) -> None:
        assert self.server.simulator.webhooks.wait_idle(10), "webhook deliveries did not finish"


@pytest.fixture
def sink():
    with WebhookSink() as endpoint:
        yield endpoint


@pytest.fixture
def scheme():
    return "sage-signature"


@pytest.fixture
def admin(tmp_path, sink, scheme):
    with SimulatorServer(
        make_config(tmp_path, port=0, time_scale=TIME_SCALE, webhook_scheme=scheme)
    ) as server:
        seed_company(
            server.simulator.store, COMPANY, SeedOptions(customers=5, invoices=10, seed=4, as_of=AS_OF)
        )
        client = Admin(server)
        response = client(
            "PATCH", f"/companies/{COMPANY}/webhooks", {"url": sink.url("/webhooks/intacct/{companyId}")}
        )
        assert response.status_code == 200
        yield client


def _lowered(headers: dict[str, str]) -> dict[str, str]:
    """Header names as sent are case-insensitive; the sink's server title-cases them."""
    return {name.lower(): value for name, value in headers.items()}


def _invoice(admin: Admin) -> dict:
    response = admin(
        "POST",
        admin.records("accounts-receivable/invoice"),
        {
            "customer": {"id": "C-000001"},
            "invoiceDate": "2026-09-01",
            "dueDate": "2026-10-01",
            "lines": [
                {"txnAmount": "100.00", "glAccount": {"id": "4000"}},
                {"txnAmount": 25.5, "memo": "Shipping"},
            ],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_sage_signed_webhooks_verify_in_both_header_forms(admin, sink):
    server = admin.server
    verifier = SageSignatureVerifier([server.config.client_secret])
    invoice = _invoice(admin)
    admin("PATCH", admin.records(f"accounts-receivable/invoice/{invoice['key']}"), {"description": "Changed"})
    admin("POST", admin.records("accounts-receivable/customer"), {"name": "Third Co"})
    admin("POST", admin.records("accounts-receivable/customer"), {"name": "Fourth Co"})
    received = sink.wait_for(4)

    forms = []
    for request in received:
        headers, raw = _lowered(request["headers"]), request["raw"]
        signature = headers["x-ia-sage-signature"]
        forms.append("bare" if signature.count(".") == 2 else "envelope")
        delivery = verifier.verify(signature, raw)  # HS256, iss, exp, payload_signature
        assert delivery.tenant_id == tenant_id(COMPANY) and delivery.app_id == server.config.client_id
        claims = delivery.claims
        assert claims["iat"] > 10**12 and claims["exp"] - claims["iat"] == 3_600_000  # milliseconds
        assert claims["payload_signature_alg"] == "SHA-256"
        token = signature if forms[-1] == "bare" else json.loads(base64.b64decode(signature))["jwtData"]
        assert headers["authorization"] == f"Bearer {token}"
        context = json.loads(base64.b64decode(headers["x-clientcontext"]))
        assert context["COMPANY"] == COMPANY and context["OBJECTNAME"] == request["body"]["object"]
        assert {"ENTITY", "USER", "RESTOBJECTNAME", "DOCTYPE", "ID", "VID", "EVENT", "EVENTNAME"} <= set(
            context
        )
        assert headers["idempotency-key"] == headers["x-idempotencykey"]
        assert "x-trusted-context" not in headers
    assert sorted(forms) == ["bare", "bare", "envelope", "envelope"]  # they alternate
    # A delivery's body swapped under its signature no longer verifies.
    with pytest.raises(AuthenticationError):
        verifier.verify(_lowered(received[0]["headers"])["x-ia-sage-signature"], received[1]["raw"])


def test_each_company_has_its_own_tenant_id():
    assert tenant_id("ACME") == tenant_id("ACME") != tenant_id("OTHER")


@pytest.mark.parametrize("scheme", ["bearer-jwks"])
def test_mutations_fire_webhooks_the_receiver_accepts(admin, sink):
    server = admin.server
    jwt_verifier = JwtVerifier(JwksKeySource(server.jwks_url), issuer=server.config.issuer)
    context_verifier = TrustedContextVerifier(server.config.client_id)

    invoice = _invoice(admin)
    assert invoice["totalTxnAmount"] == "125.50" and len(invoice["lines"]) == 2
    key = invoice["key"]
    admin("PATCH", admin.records(f"accounts-receivable/invoice/{key}"), {"description": "Changed"})
    admin("DELETE", admin.records(f"accounts-receivable/invoice/{key}"))
    received = sink.wait_for(3)

    # Deliveries run on a pool, so (as with Intacct) they may arrive in any order.
    assert sorted(r["body"]["action"] for r in received) == ["add", "delete", "set"]
    keys = set()
    for request in received:
        body = request["body"]
        assert set(body) == {"object", "action", "key", "id", "companyId", "occurredAt"}
        assert (body["object"], body["key"], body["id"], body["companyId"]) == (
            "ARINVOICE",
            key,
            invoice["id"],
            COMPANY,
        )
        assert body["occurredAt"].endswith("Z") and len(body["occurredAt"]) == 20
        assert request["path"] == f"/webhooks/intacct/{COMPANY}"
        headers = request["headers"]
        assert "x-ia-sage-signature" not in _lowered(headers)
        token = headers["Authorization"].removeprefix("Bearer ")
        assert jwt.get_unverified_header(token)["kid"] == server.simulator.key.kid
        claims = jwt_verifier.verify(token)
        company_claim_matches(claims, COMPANY)
        assert 240 <= claims["exp"] - claims["iat"] <= 360
        context = context_verifier.verify(headers["X-Trusted-Context"], COMPANY)
        assert context["clientId"] == server.config.client_id
        keys.add(str(uuid.UUID(headers["Idempotency-Key"])))
    assert len(keys) == 3  # one idempotency key per event


def test_retries_repeat_the_idempotency_key_until_accepted(admin, sink):
    sink.statuses = [503, 503, 202]
    customer = admin("POST", admin.records("accounts-receivable/customer"), {"name": "Retry Co"}).json()
    received = sink.wait_for(3)
    admin.idle()
    assert len({r["headers"]["Idempotency-Key"] for r in received}) == 1
    assert {_lowered(r["headers"])["x-idempotencykey"] for r in received} == {
        received[0]["headers"]["Idempotency-Key"]
    }
    assert all(r["body"] == received[0]["body"] for r in received)
    assert received[0]["body"]["object"] == "CUSTOMER" and received[0]["body"]["key"] == customer["key"]
    log = admin("GET", "/webhooks/deliveries").json()["deliveries"]
    assert [(d["attempt"], d["status"], d["outcome"]) for d in log] == [
        (1, 503, "retrying"),
        (2, 503, "retrying"),
        (3, 202, "delivered"),
    ]
    assert [d["retryInSeconds"] for d in log[:2]] == pytest.approx([10 * TIME_SCALE, 30 * TIME_SCALE])
    assert {d["eventId"] for d in log} == {received[0]["headers"]["Idempotency-Key"]}


def test_no_retry_on_400(admin, sink):
    sink.statuses = [400, 202]
    admin("POST", admin.records("general-ledger/account"), {"id": "9999", "name": "Suspense"})
    admin.idle()
    assert len(sink.requests) == 1
    assert admin("GET", "/webhooks/deliveries").json()["deliveries"][-1]["outcome"] == "refused"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_dropped_after_four_attempts(admin, sink, status):
    sink.statuses = [status] * 4 + [202]
    admin("POST", admin.records("general-ledger/account"), {"id": "9998", "name": "Clearing"})
    admin.idle()
    assert len(sink.requests) == 4
    log = admin("GET", "/webhooks/deliveries").json()["deliveries"]
    assert [d["outcome"] for d in log] == ["retrying"] * 3 + ["dropped"]


def test_connection_errors_are_retried_then_dropped(admin):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    admin("PATCH", f"/companies/{COMPANY}/webhooks", {"url": f"http://127.0.0.1:{closed_port}/hook"})
    admin("POST", admin.records("accounts-receivable/customer"), {"name": "Nobody Listens"})
    admin.idle()
    log = admin("GET", "/webhooks/deliveries").json()["deliveries"]
    assert [(d["status"], d["outcome"]) for d in log] == [(None, "retrying")] * 3 + [(None, "dropped")]
    assert all(d["error"] for d in log)


def test_webhooks_off_switch_and_object_selection(admin, sink):
    admin("PATCH", f"/companies/{COMPANY}/webhooks", {"enabled": False})
    admin("POST", admin.records("accounts-receivable/customer"), {"name": "Lost Webhook Co"})
    admin.idle()
    assert sink.requests == [] and admin("GET", "/webhooks/deliveries").json()["deliveries"] == []

    admin("PATCH", f"/companies/{COMPANY}/webhooks", {"enabled": True, "objects": ["CUSTOMER"]})
    _invoice(admin)
    admin("POST", admin.records("accounts-receivable/customer"), {"name": "Heard Co"})
    received = sink.wait_for(1)
    admin.idle()
    assert [r["body"]["object"] for r in sink.requests] == ["CUSTOMER"]
    assert received[0]["body"]["action"] == "add"


def test_a_line_change_fires_its_parents_trigger(admin, sink):
    invoice = _invoice(admin)
    sink.wait_for(1)
    line = admin(
        "POST",
        admin.records("accounts-receivable/invoice-line"),
        {"invoice": {"key": invoice["key"]}, "txnAmount": "10.00"},
    ).json()
    received = sink.wait_for(2)
    assert received[1]["body"] | {"occurredAt": None} == {
        "object": "ARINVOICE",
        "action": "set",
        "key": invoice["key"],
        "id": invoice["id"],
        "companyId": COMPANY,
        "occurredAt": None,
    }
    refreshed = admin("GET", admin.records(f"accounts-receivable/invoice/{invoice['key']}")).json()
    assert refreshed["totalTxnAmount"] == "135.50" and len(refreshed["lines"]) == 3
    assert line["lineNumber"] == 3  # appended after the two existing lines
    admin("DELETE", admin.records(f"accounts-receivable/invoice-line/{line['key']}"))
    assert sink.wait_for(3)[2]["body"]["action"] == "set"


def test_a_payment_pays_its_invoices_and_fires_its_own_trigger(admin, sink):
    invoice = _invoice(admin)
    payment = admin(
        "POST",
        admin.records("accounts-receivable/payment"),
        {
            "customer": {"id": "C-000001"},
            "paymentSummary": {"receiptDate": "2026-09-10"},
            "paymentDetails": [
                {"arInvoice": {"key": invoice["key"]}, "txnCurrency": {"paymentAmount": "25.50"}}
            ],
        },
    ).json()
    assert payment["txnCurrency"]["totalAmount"] == "25.50"
    assert payment["paymentDetails"][0]["arInvoice"]["key"] == invoice["key"]
    sink.wait_for(2)
    admin.idle()
    assert sorted(r["body"]["object"] for r in sink.requests) == ["ARINVOICE", "ARPYMT"]  # no invoice "set"
    paid = admin("GET", admin.records(f"accounts-receivable/invoice/{invoice['key']}")).json()
    assert (paid["state"], paid["paymentInformation"]["totalTxnAmountPaid"], paid["totalTxnAmountDue"]) == (
        "partiallyPaid",
        "25.50",
        "100.00",
    )
    admin("PATCH", admin.records(f"accounts-receivable/payment/{payment['key']}"), {"state": "reversed"})
    unpaid = admin("GET", admin.records(f"accounts-receivable/invoice/{invoice['key']}")).json()
    assert (unpaid["state"], unpaid["totalTxnAmountDue"]) == ("posted", "125.50")
    assert Decimal(unpaid["paymentInformation"]["totalTxnAmountPaid"]) == 0


def test_delivery_never_blocks_the_mutation(tmp_path):
    gate = threading.Event()
    with WebhookSink(gate=gate) as slow, SimulatorServer(make_config(tmp_path, port=0)) as server:
        admin = Admin(server)
        admin("POST", "/companies", {"companyId": COMPANY, "webhooks": {"url": slow.url()}})
        for number in range(3):
            response = admin(
                "POST", admin.records("accounts-receivable/customer"), {"name": f"Fast {number}"}
            )
            assert response.status_code == 201  # answered while the endpoint is still holding
        assert slow.requests == [] and server.simulator.webhooks.pending() == 3
        gate.set()
        assert len(slow.wait_for(3)) == 3
        admin.idle()
