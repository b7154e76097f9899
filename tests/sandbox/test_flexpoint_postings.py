"""FlexPoint's payment-postings endpoint and the collected payments behind it, against a running
simulator: PUT/GET per flexpoint-sync-api.yaml, 404 for an unknown payment, contract refusals,
last report wins with the whole history kept, and the injected faults."""

from __future__ import annotations

import pytest
import requests

from sandbox.flexpoint import FlexPointConfig, FlexPointServer

TOKEN = "sandbox-token"
ACCOUNT = "acct-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def collected(payment_id: str = "pay-1", **changes) -> dict:
    payment = {
        "paymentId": payment_id,
        "connectionId": "conn-1",
        "customerId": "C-1",
        "receivedOn": "2026-12-01",
        "amount": "100.00",
        "currency": "USD",
        "method": "ach",
        "depositBankAccountId": "BANK-01",
        "allocations": [{"invoiceExternalId": "17", "amount": "100.00"}],
        "memo": None,
    }
    payment.update(changes)
    return payment


def posting(state: str = "posted", payment_id: str = "pay-1", **changes) -> dict:
    body = {
        "connectionId": "conn-1",
        "paymentId": payment_id,
        "state": state,
        "intacctKey": "5678" if state in ("posted", "reversed") else None,
        "reason": None,
        "message": None,
        "postedAt": "2026-12-01T10:00:00Z" if state in ("posted", "reversed") else None,
        "reportedAt": "2026-12-01T10:00:01Z",
    }
    body.update(changes)
    return body


class FlexPoint:
    def __init__(self, url: str) -> None:
        self.url = url

    def admin(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(method, f"{self.url}/sandbox{path}", json=body, headers=AUTH, timeout=10)

    def put(
        self, body: dict, key: str | None = "posting-key-1", payment_id: str = "pay-1"
    ) -> requests.Response:
        headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
        return requests.put(
            f"{self.url}/v1/accounts/{ACCOUNT}/payment-postings/{payment_id}",
            json=body,
            headers=headers,
            timeout=10,
        )

    def get(self, payment_id: str = "pay-1") -> requests.Response:
        return requests.get(
            f"{self.url}/v1/accounts/{ACCOUNT}/payment-postings/{payment_id}", headers=AUTH, timeout=10
        )


@pytest.fixture
def fp(tmp_path):
    with FlexPointServer(FlexPointConfig(port=0, data_dir=tmp_path / "flexpoint")) as server:
        client = FlexPoint(server.url)
        assert client.admin("POST", f"/accounts/{ACCOUNT}/payments", collected()).status_code == 201
        yield client


def test_a_report_is_stored_and_read_back(fp):
    response = fp.put(posting("posting"))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "posting"
    assert fp.get().json() == posting("posting")


def test_the_last_report_wins_and_every_report_is_kept(fp):
    assert fp.put(posting("posting"), key="k-posting-1").status_code == 200
    assert fp.put(posting("posted"), key="k-posted-01").status_code == 200
    again = fp.put(posting("posted"), key="k-posted-01")
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert fp.get().json()["state"] == "posted" and fp.get().json()["intacctKey"] == "5678"
    shown = fp.admin("GET", f"/accounts/{ACCOUNT}/payments/pay-1").json()
    assert shown["state"] == "posted"
    assert [(r["state"], r["replayed"]) for r in shown["reports"]] == [
        ("posting", False),
        ("posted", False),
        ("posted", True),
    ]
    assert shown["payment"]["amount"] == "100.00"


def test_an_unknown_payment_is_404(fp):
    response = fp.put(posting(payment_id="pay-unknown"), payment_id="pay-unknown")
    assert response.status_code == 404 and response.json()["error"]["code"] == "payment_not_found"
    assert fp.get("pay-unknown").status_code == 404
    assert fp.get().status_code == 404  # known payment, nothing reported yet


@pytest.mark.parametrize(
    ("body", "key", "field"),
    [
        (posting(), None, "Idempotency-Key"),
        (posting(), "short", "Idempotency-Key"),
        (posting(state="done"), "posting-key-1", "state"),
        (posting(reason="bad_luck"), "posting-key-1", "reason"),
        (posting(extra=1), "posting-key-1", "extra"),
        ({k: v for k, v in posting().items() if k != "reportedAt"}, "posting-key-1", "reportedAt"),
        (posting(payment_id="pay-2"), "posting-key-1", "paymentId"),
        (posting(connectionId="conn-2"), "posting-key-1", "connectionId"),
    ],
)
def test_a_report_that_breaks_the_contract_is_400_naming_the_field(fp, body, key, field):
    response = fp.put(body, key=key)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["message"]
    assert fp.get().status_code == 404  # nothing stored


def test_a_failed_report_with_reason_and_message(fp):
    failed = posting(
        "failed", reason="invoice_not_open", message="Invoice 17 is already paid in Sage Intacct; check it."
    )
    assert fp.put(failed).status_code == 200
    assert fp.get().json()["reason"] == "invoice_not_open"


def test_injected_faults_apply_to_postings(fp):
    assert fp.admin("PUT", "/faults", {"script": [503, 429]}).status_code == 200
    first, second = fp.put(posting()), fp.put(posting())
    assert (first.status_code, second.status_code) == (503, 429)
    assert second.headers["Retry-After"]
    assert fp.get().status_code == 404  # neither was applied
    assert fp.put(posting()).status_code == 200


def test_collected_payments_are_validated_and_kept_once(fp):
    again = fp.admin("POST", f"/accounts/{ACCOUNT}/payments", collected())
    assert again.status_code == 200 and again.json()["created"] is False
    other = fp.admin("POST", f"/accounts/{ACCOUNT}/payments", collected(memo="a different payment"))
    assert other.status_code == 409
    bad = fp.admin("POST", f"/accounts/{ACCOUNT}/payments", collected("pay-3", amount="1.001"))
    assert bad.status_code == 400 and "amount" in bad.json()["error"]["message"]
    both = fp.admin(
        "POST", f"/accounts/{ACCOUNT}/payments", collected("pay-4", undepositedGLAccountId="1499")
    )
    assert both.status_code == 400
    over = collected("pay-5", allocations=[{"invoiceExternalId": "17", "amount": "100.01"}])
    assert fp.admin("POST", f"/accounts/{ACCOUNT}/payments", over).status_code == 400
    listed = fp.admin("GET", f"/accounts/{ACCOUNT}/payments").json()["payments"]
    assert [p["payment"]["paymentId"] for p in listed] == ["pay-1"]
