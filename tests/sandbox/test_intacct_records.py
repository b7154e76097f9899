"""The admin API: companies and record mutations (audit stamps, derived amounts, validation)."""

from __future__ import annotations

import pytest

from sandbox.intacct.seed import SeedOptions, seed_company
from tests.sandbox.conftest_intacct import API, AS_OF, COMPANY, FakeClock, bearer, build, query

CUSTOMERS = f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/customer"
INVOICES = f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/invoice"


@pytest.fixture
def env(tmp_path):
    clock = FakeClock(AS_OF + 0.2)
    app, sim = build(tmp_path, clock)
    client = app.test_client()
    assert (
        client.post(
            "/sandbox/companies",
            json={"companyId": COMPANY, "entities": ["US", {"id": "CA", "baseCurrency": {"id": "CAD"}}]},
        ).status_code
        == 201
    )
    yield client, clock
    sim.close()


def test_company_lifecycle(env):
    client, _ = env
    shown = client.get(f"/sandbox/companies/{COMPANY}").get_json()
    assert shown["users"] == [
        {
            "userId": "ws_flexpoint",
            "webServices": True,
            "areas": ["company", "general-ledger", "accounts-receivable", "cash-management"],
        }
    ]
    assert shown["senderAuthorized"] is True and shown["webhooks"]["enabled"] is True
    assert shown["counts"]["company-config/entity"] == 2
    assert client.post("/sandbox/companies", json={"companyId": COMPANY}).status_code == 409
    assert client.post("/sandbox/companies", json={"companyId": "bad id!"}).status_code == 400
    assert client.patch(f"/sandbox/companies/{COMPANY}", json={"colour": "red"}).status_code == 400
    assert (
        client.patch(
            f"/sandbox/companies/{COMPANY}", json={"users": [{"userId": "u", "areas": ["payroll"]}]}
        ).status_code
        == 400
    )
    changed = client.patch(
        f"/sandbox/companies/{COMPANY}", json={"users": ["svc_fp"], "webhooks": {"objects": ["CUSTOMER"]}}
    )
    assert changed.get_json()["users"][0]["userId"] == "svc_fp"
    assert changed.get_json()["webhooks"]["objects"] == ["CUSTOMER"]
    assert [c["companyId"] for c in client.get("/sandbox/companies").get_json()["companies"]] == [COMPANY]
    assert client.delete(f"/sandbox/companies/{COMPANY}").status_code == 204
    assert client.get(f"/sandbox/companies/{COMPANY}").status_code == 404
    assert client.delete(f"/sandbox/companies/{COMPANY}").status_code == 404


def test_audit_modified_time_has_one_second_resolution_and_never_goes_back(env):
    client, clock = env
    created = client.post(CUSTOMERS, json={"name": "Audit Co", "creditLimit": 5000}).get_json()
    assert created["id"] == "C-000001" and created["creditLimit"] == 5000
    first = created["audit"]["modifiedDateTime"]
    assert first == created["audit"]["createdDateTime"] == "2026-09-21T14:13:20Z"
    path = f"{CUSTOMERS}/{created['key']}"
    clock.advance(0.5)  # same second
    assert client.patch(path, json={"status": "inactive"}).get_json()["audit"]["modifiedDateTime"] == first
    clock.advance(5)
    later = client.patch(path, json={"name": "Audit Co 2"}).get_json()
    assert later["audit"]["modifiedDateTime"] == "2026-09-21T14:13:25Z"
    assert later["audit"]["createdDateTime"] == first
    clock.advance(-3600)  # a clock stepping back must not move the record back
    assert (
        client.patch(path, json={"name": "Audit Co 3"}).get_json()["audit"]["modifiedDateTime"]
        == later["audit"]["modifiedDateTime"]
    )


def test_invoice_totals_follow_lines_and_delete_removes_lines(env):
    client, _ = env
    invoice = client.post(
        INVOICES,
        json={
            "customer": {"id": "C-000001"},
            "lines": [{"txnAmount": "10.10"}, {"txnAmount": "0.90", "glAccount": {"id": "4100"}}],
        },
    ).get_json()
    assert (
        invoice["totalTxnAmount"],
        invoice["totalTxnAmountDue"],
        invoice["paymentInformation"]["totalTxnAmountPaid"],
    ) == (
        "11.00",
        "11.00",
        "0.00",
    )
    assert invoice["state"] == "posted" and invoice["invoiceNumber"] == invoice["id"] == "INV-000001"
    assert [line["lineNumber"] for line in invoice["lines"]] == [1, 2]
    replaced = client.patch(f"{INVOICES}/{invoice['key']}", json={"lines": [{"txnAmount": "5"}]}).get_json()
    assert replaced["totalTxnAmount"] == "5.00" and len(replaced["lines"]) == 1
    assert client.delete(f"{INVOICES}/{invoice['key']}").status_code == 204
    assert client.get(f"{INVOICES}/{invoice['key']}").status_code == 404
    headers = bearer(client)
    lines = query(
        client,
        headers,
        object="accounts-receivable/invoice-line",
        filters=[{"$eq": {"invoice.key": invoice["key"]}}],
    ).get_json()
    assert lines["ia::meta"]["totalCount"] == 0
    assert (
        client.get(f"{API}/objects/accounts-receivable/invoice/{invoice['key']}", headers=headers).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (CUSTOMERS, {"nickname": "x"}, 400),
        (CUSTOMERS, {"key": "7"}, 400),
        (CUSTOMERS, {"audit": {"modifiedDateTime": "2020-01-01T00:00:00Z"}}, 400),
        (CUSTOMERS, {"creditLimit": "lots"}, 400),
        (INVOICES, {"invoiceDate": "yesterday"}, 400),
        (f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/invoice-line", {"txnAmount": "1"}, 400),
        (
            f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/invoice-line",
            {"invoice": {"key": "999"}},
            422,
        ),
        (
            f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/payment",
            {"paymentDetails": [{"arInvoice": {"key": "999"}, "txnCurrency": {"paymentAmount": "1"}}]},
            422,
        ),
        (f"/sandbox/companies/{COMPANY}/objects/company-config/entity", {"id": "US"}, 409),
        (f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/nothing", {}, 404),
        ("/sandbox/companies/NO-SUCH/objects/accounts-receivable/customer", {}, 404),
    ],
)
def test_bad_mutations_are_refused_with_a_reason(env, path, body, status):
    client, _ = env
    response = client.post(path, json=body)
    assert response.status_code == status
    assert response.get_json()["error"]["message"]


def test_records_listing_and_counts(env):
    client, _ = env
    for number in range(5):
        client.post(CUSTOMERS, json={"name": f"Co {number}"})
    listed = client.get(CUSTOMERS, query_string={"start": 2, "size": 2}).get_json()
    assert [r["name"] for r in listed["records"]] == ["Co 1", "Co 2"] and listed["totalCount"] == 5
    assert (
        client.get(f"/sandbox/companies/{COMPANY}/counts").get_json()["counts"][
            "accounts-receivable/customer"
        ]
        == 5
    )
    assert client.get(f"{CUSTOMERS}/99").status_code == 404
    assert client.patch(f"{CUSTOMERS}/99", json={"name": "x"}).status_code == 404


def test_seeding_through_the_admin_api(env):
    client, _ = env
    response = client.post(
        "/sandbox/companies/NEW-CO/seed", json={"customers": 3, "invoices": 10, "asOf": AS_OF}
    )
    assert response.status_code == 201
    summary = response.get_json()
    assert (
        # 10 asked for, plus the reversal record of each reversed one
        summary["created"]["accounts-receivable/invoice"] >= 10 and summary["asOf"] == "2026-09-21T14:13:20Z"
    )
    assert client.get("/sandbox/companies/NEW-CO").status_code == 200
    assert client.post("/sandbox/companies/NEW-CO/seed", json={"invoices": -1}).status_code == 400
    assert client.post("/sandbox/companies/NEW-CO/seed", json={"colour": 1}).status_code == 400


def test_admin_token_guards_the_admin_api(tmp_path):
    app, sim = build(tmp_path, admin_token="let-me-in-please")
    try:
        client = app.test_client()
        assert client.get("/sandbox/companies").status_code == 401
        assert client.get("/sandbox/companies", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert (
            client.get("/sandbox/companies", headers={"Authorization": "Bearer let-me-in-please"}).status_code
            == 200
        )
        seed_company(sim.store, COMPANY, SeedOptions(customers=1, invoices=1, as_of=AS_OF))
        assert client.get("/.well-known/jwks.json").status_code == 200  # public, like any JWKS
    finally:
        sim.close()
