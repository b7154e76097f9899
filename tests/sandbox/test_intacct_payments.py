"""The payment write-back against a running Intacct simulator (intacct-rest.md "Writing payments"):
create applied to invoices, every refusal with its code and target, the reference query, reverse,
commit-then-fail, and the concurrency cap on writes."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
import requests

from sandbox.intacct.server import SimulatorServer
from tests.sandbox.conftest_intacct import COMPANY, WebhookSink, make_config, token_form, wait

PAYMENT = "accounts-receivable/payment"


class Books:
    """A running simulator with one company's customers, accounts and invoices, and HTTP helpers."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.sim = server.simulator
        self.admin_url = f"{server.base_url}/sandbox"
        self.api_url = server.api_url
        token = requests.post(f"{self.api_url}/oauth2/token", data=token_form(), timeout=10).json()
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}

    def admin(self, method: str, path: str, body: dict | None = None, **params) -> requests.Response:
        return requests.request(method, self.admin_url + path, json=body, params=params, timeout=10)

    def record(self, path: str, body: dict) -> dict:
        response = self.admin("POST", f"/companies/{COMPANY}/objects/{path}", body)
        assert response.status_code == 201, response.text
        return response.json()

    def invoice(self, amount: str = "1000.00", customer: str = "C-1", **fields) -> dict:
        return self.record(
            "accounts-receivable/invoice",
            {
                "customer": {"id": customer},
                "lines": [{"txnAmount": amount, "glAccount": {"id": "4000"}}],
                **fields,
            },
        )

    def get_invoice(self, key: str) -> dict:
        response = self.admin("GET", f"/companies/{COMPANY}/objects/accounts-receivable/invoice/{key}")
        return response.json()

    def pay(self, body: dict, timeout: float = 10) -> requests.Response:
        return requests.post(
            f"{self.api_url}/objects/{PAYMENT}", json=body, headers=self.headers, timeout=timeout
        )

    def reverse(self, body: dict) -> requests.Response:
        return requests.post(
            f"{self.api_url}/workflows/{PAYMENT}/reverse", json=body, headers=self.headers, timeout=10
        )

    def stored(self, reference: str) -> list[dict]:
        response = self.admin("GET", f"/companies/{COMPANY}/payments", referenceNumber=reference)
        assert response.status_code == 200, response.text
        return response.json()["payments"]

    def company(self, **settings) -> None:
        response = self.admin("PATCH", f"/companies/{COMPANY}", settings)
        assert response.status_code == 200, response.text


@pytest.fixture
def sink():
    with WebhookSink() as endpoint:
        yield endpoint


@pytest.fixture
def books(tmp_path, sink):
    with SimulatorServer(make_config(tmp_path, port=0, timeout_hold_seconds=5)) as server:
        created = requests.post(
            f"{server.base_url}/sandbox/companies", json={"companyId": COMPANY}, timeout=10
        )
        assert created.status_code == 201, created.text
        books = Books(server)
        books.record("accounts-receivable/customer", {"id": "C-1", "name": "Acme Retail"})
        books.record("accounts-receivable/customer", {"id": "C-2", "name": "Other Co"})
        books.record(
            "cash-management/checking-account",
            {"id": "BANK-01", "bankAccountDetails": {"bankName": "First National", "currency": "USD"}},
        )
        books.record("general-ledger/account", {"id": "1499", "name": "Undeposited funds"})
        books.company(webhooks={"url": sink.url("/webhooks/intacct/{companyId}")})
        yield books


def body(
    invoice_key: str | None = None, amount: str = "1000.00", applied: str | None = None, **changes
) -> dict:
    payment = {
        "customer": {"id": "C-1"},
        "paymentMethod": "eft",
        "paymentSummary": {"receiptDate": "2026-12-01"},
        "financialEntity": {"entityId": "BANK-01"},
        "txnCurrency": {"currency": "USD", "amountToPay": amount},
        "referenceNumber": "FP-pay-1",
        "documentNumber": "CHK-1",
        "description": "FlexPoint payment pay-1",
        "paymentDetails": []
        if invoice_key is None
        else [{"arInvoice": {"key": invoice_key}, "txnCurrency": {"paymentAmount": applied or amount}}],
    }
    payment.update(changes)
    return {name: value for name, value in payment.items() if value is not None}


def fired(sink: WebhookSink, action: str, key: str) -> None:
    """Wait for the ARPYMT trigger of one payment and action (other triggers fire around it)."""

    def seen() -> bool:
        return any(
            r["body"]["object"] == "ARPYMT" and (r["body"]["action"], r["body"]["key"]) == (action, key)
            for r in sink.requests
        )

    wait(sink.changed, seen, 10, f"ARPYMT {action} {key}")


def refused(
    response: requests.Response, status: int, code: str, target: str | None, reason: str | None = None
):
    assert response.status_code == status, response.text
    error = response.json()["ia::result"]["ia::error"]
    assert error["code"] == code
    assert target in [d["target"] for d in error["details"]], error
    if reason:
        assert error["details"][0]["additionalInfo"]["placeholders"]["REASON"] == reason
    return error


def overpayment(books: Books, key: str) -> str | None:
    """The stored overPaymentAmount: write-only, so never served; read from the store."""
    with books.sim.store.read() as conn:
        row = conn.execute(
            "SELECT overPaymentAmount FROM o_accounts_receivable__payment WHERE key = ?", (int(key),)
        ).fetchone()
    return row[0]


# -- create ---------------------------------------------------------------------------------


def test_a_payment_applied_in_full_pays_the_invoice_and_fires_arpymt(books, sink):
    invoice = books.invoice("1000.00")
    response = books.pay(body(invoice["key"], "1000.00"))
    assert response.status_code == 201, response.text
    result = response.json()["ia::result"]
    assert result["key"] == result["id"] and result["href"] == f"/objects/{PAYMENT}/{result['key']}"

    paid = books.get_invoice(invoice["key"])
    assert (paid["state"], paid["totalTxnAmountDue"], paid["paymentInformation"]["totalTxnAmountPaid"]) == (
        "paid",
        "0.00",
        "1000.00",
    )
    [payment] = books.stored("FP-pay-1")
    assert payment["key"] == result["key"] and payment["state"] == "complete"
    assert (
        payment["paymentMethod"],
        payment["paymentSummary"]["receiptDate"],
        payment["txnCurrency"]["currency"],
    ) == ("eft", "2026-12-01", "USD")
    assert payment["txnCurrency"]["totalAmount"] == "1000.00" and "overPaymentAmount" not in payment
    assert overpayment(books, result["key"]) is None
    assert [
        (d["arInvoice"]["key"], d["txnCurrency"]["paymentAmount"], d["arPayment"]["key"])
        for d in payment["paymentDetails"]
    ] == [(invoice["key"], "1000.00", result["key"])]
    fired(sink, "add", result["key"])


def test_a_partial_application_and_an_overpayment(books):
    first, second = books.invoice("600.00"), books.invoice("400.00")
    response = books.pay(
        body(
            amount="1250.00",
            paymentDetails=[
                {"arInvoice": {"key": first["key"]}, "txnCurrency": {"paymentAmount": "600.00"}},
                {"arInvoice": {"key": second["key"]}, "txnCurrency": {"paymentAmount": "150.10"}},
            ],
            undepositedGLAccount={"id": "1499"},
            financialEntity=None,
        )
    )
    assert response.status_code == 201, response.text
    del_first, del_second = books.get_invoice(first["key"]), books.get_invoice(second["key"])
    assert (del_first["state"], del_first["totalTxnAmountDue"]) == ("paid", "0.00")
    assert (del_second["state"], del_second["totalTxnAmountDue"]) == ("partiallyPaid", "249.90")
    [payment] = books.stored("FP-pay-1")
    assert Decimal(overpayment(books, payment["key"])) == Decimal("499.90")
    assert payment["undepositedGLAccount"]["id"] == "1499" and payment["financialEntity"]["entityId"] is None


def test_the_query_service_finds_a_payment_by_reference_number(books):
    invoice = books.invoice("300.00")
    key = books.pay(body(invoice["key"], "100.00", referenceNumber="FP-abc")).json()["ia::result"]["key"]
    books.pay(body(invoice["key"], "100.00", referenceNumber="FP-other"))
    response = requests.post(
        f"{books.api_url}/services/core/query",
        json={
            "object": PAYMENT,
            "fields": ["key", "referenceNumber", "state", "txnCurrency.totalAmount"],
            "filters": [{"$eq": {"referenceNumber": "FP-abc"}}],
        },
        headers=books.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["ia::result"] == [
        {"key": key, "referenceNumber": "FP-abc", "state": "complete", "txnCurrency.totalAmount": "100.00"}
    ]


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "target"),
    [
        ({"customer": "C-1"}, "/customer"),
        ({"paymentSummary": {"receiptDate": "12/01/2026"}}, "/paymentSummary/receiptDate"),
        ({"txnCurrency": {"currency": "USD", "amountToPay": "1.005"}}, "/txnCurrency/amountToPay"),
        ({"txnCurrency": {"currency": "USD", "amountToPay": "-5.00"}}, "/txnCurrency/amountToPay"),
        # Not numbers, or numbers no ledger holds: refused like any bad amount, never a 500.
        ({"txnCurrency": {"currency": "USD", "amountToPay": "abc"}}, "/txnCurrency/amountToPay"),
        ({"txnCurrency": {"currency": "USD", "amountToPay": "NaN"}}, "/txnCurrency/amountToPay"),
        ({"txnCurrency": {"currency": "USD", "amountToPay": "1e30"}}, "/txnCurrency/amountToPay"),
        ({"txnCurrency": {"currency": "USD", "amountToPay": "9" * 40}}, "/txnCurrency/amountToPay"),
        (
            {"paymentDetails": [{"arInvoice": {"key": "9" * 30}, "txnCurrency": {"paymentAmount": "1.00"}}]},
            "/paymentDetails/0/arInvoice/key",
        ),
        (
            {"paymentDetails": [{"arInvoice": {"key": "x"}, "txnCurrency": {"paymentAmount": "1e40"}}]},
            "/paymentDetails/0/txnCurrency/paymentAmount",
        ),
        ({"paymentDetails": [{"arInvoice": {"key": "x"}}]}, "/paymentDetails/0/txnCurrency/paymentAmount"),
        (
            {"paymentDetails": [{"arInvoice": {"key": "x"}, "txnCurrency": {"paymentAmount": "1.00"}}]},
            "/paymentDetails/0/arInvoice/key",
        ),
    ],
)
def test_a_malformed_body_is_400_naming_the_field(books, changes, target):
    refused(books.pay(body(**changes)), 400, "invalidRequest", target)
    assert books.stored("FP-pay-1") == []


def test_unknown_records_are_404_naming_them(books):
    invoice = books.invoice("100.00")
    cases = [
        (body(invoice["key"], "100.00", customer={"id": "C-404"}), "/customer/id"),
        (
            body(invoice["key"], "100.00", financialEntity={"entityId": "BANK-99"}),
            "/financialEntity/entityId",
        ),
        (
            body(invoice["key"], "100.00", financialEntity=None, undepositedGLAccount={"id": "1498"}),
            "/undepositedGLAccount/id",
        ),
        (body("99999", "100.00"), "/paymentDetails/0/arInvoice/key"),
    ]
    for payment, target in cases:
        error = refused(books.pay(payment), 404, "notFound", target)
        assert "does not exist" in error["message"]
    assert books.stored("FP-pay-1") == []
    assert books.get_invoice(invoice["key"])["totalTxnAmountDue"] == "100.00"


@pytest.mark.parametrize("state", ["draft", "paid", "reversed", "reversal", "noValue"])
def test_an_invoice_that_is_not_open_is_refused(books, state):
    invoice = books.invoice("100.00", state=state)
    refused(
        books.pay(body(invoice["key"], "50.00")),
        422,
        "businessRule",
        "/paymentDetails/0/arInvoice/key",
        "invoiceNotOpen",
    )


def test_business_rules_over_application_currency_customer_and_totals(books):
    invoice = books.invoice("100.00")
    refused(
        books.pay(body(invoice["key"], "100.01")),
        422,
        "businessRule",
        "/paymentDetails/0/txnCurrency/paymentAmount",
        "overApplication",
    )
    euro = books.invoice("100.00", currency={"txnCurrency": "EUR"})
    refused(
        books.pay(body(euro["key"], "10.00")),
        422,
        "businessRule",
        "/txnCurrency/currency",
        "currencyMismatch",
    )
    theirs = books.invoice("100.00", customer="C-2")
    refused(
        books.pay(body(theirs["key"], "10.00")),
        422,
        "businessRule",
        "/paymentDetails/0/arInvoice/key",
        "invoiceCustomerMismatch",
    )
    refused(
        books.pay(body(invoice["key"], "50.00", applied="60.00")),
        422,
        "businessRule",
        "/txnCurrency/amountToPay",
        "overApplication",
    )
    assert books.stored("FP-pay-1") == []


def test_a_receipt_date_in_a_closed_period_is_refused(books):
    invoice = books.invoice("100.00")
    books.company(booksClosedThrough="2026-11-30")
    refused(
        books.pay(body(invoice["key"], "100.00", paymentSummary={"receiptDate": "2026-11-30"})),
        422,
        "businessRule",
        "/paymentSummary/receiptDate",
        "periodClosed",
    )
    assert books.pay(body(invoice["key"], "100.00")).status_code == 201


def test_a_role_without_add_on_received_payments_gets_403(books):
    invoice = books.invoice("100.00")
    books.company(receivedPaymentsAdd=False)
    response = books.pay(body(invoice["key"], "100.00"))
    assert response.status_code == 403
    error = response.json()["ia::result"]["ia::error"]
    assert error["code"] == "permissionDenied" and error["details"][0]["permission"] == "add"
    assert books.stored("FP-pay-1") == []
    # Reads in the area still work: the switch is about adding payments only.
    read = requests.get(f"{books.api_url}/objects/{PAYMENT}", headers=books.headers, timeout=10)
    assert read.status_code == 200


# -- reverse --------------------------------------------------------------------------------


def test_reverse_raises_the_amount_due_again_and_a_second_reverse_is_422(books, sink):
    invoice = books.invoice("500.00")
    key = books.pay(body(invoice["key"], "500.00")).json()["ia::result"]["key"]
    fired(sink, "add", key)
    response = books.reverse({"key": key, "reversedDate": "2026-12-03", "memo": "customer disputed"})
    assert response.status_code == 200, response.text
    result = response.json()["ia::result"]
    reversal_key = result["key"]
    assert reversal_key != key and result["state"] == "reversal"
    assert result["href"] == f"/objects/{PAYMENT}/{reversal_key}"
    original, reversal = books.stored("FP-pay-1")  # the reference is copied onto the reversal
    assert (original["key"], original["state"]) == (key, "reversed")
    assert (reversal["key"], reversal["state"]) == (reversal_key, "reversal")
    assert reversal["paymentSummary"]["receiptDate"] == "2026-12-03"
    assert reversal["description"] == "customer disputed" and reversal["customer"]["id"] == "C-1"
    assert reversal["txnCurrency"]["totalAmount"] == "-500.00" and reversal["paymentDetails"] == []
    restored = books.get_invoice(invoice["key"])
    assert (restored["state"], restored["totalTxnAmountDue"]) == ("posted", "500.00")
    fired(sink, "set", key)
    fired(sink, "add", reversal_key)

    for again in (key, reversal_key):
        refused(
            books.reverse({"key": again, "reversedDate": "2026-12-04"}),
            422,
            "businessRule",
            "/key",
            "alreadyReversed",
        )
    refused(books.reverse({"key": "9999", "reversedDate": "2026-12-04"}), 404, "notFound", "/key")
    refused(books.reverse({"key": key}), 400, "invalidRequest", "/reversedDate")


def test_a_reverse_dated_in_a_closed_period_is_refused(books):
    invoice = books.invoice("500.00")
    key = books.pay(body(invoice["key"], "500.00")).json()["ia::result"]["key"]
    books.company(booksClosedThrough="2026-12-31")
    refused(
        books.reverse({"key": key, "reversedDate": "2026-12-31"}),
        422,
        "businessRule",
        "/reversedDate",
        "periodClosed",
    )
    assert books.stored("FP-pay-1")[0]["state"] == "complete"


# -- faults, counters, cap --------------------------------------------------------------------


def test_commit_then_500_leaves_the_payment_in_place(books):
    invoice = books.invoice("100.00")
    assert books.admin("PATCH", "/faults", {"commitErrorRate": 1.0}).status_code == 200
    response = books.pay(body(invoice["key"], "100.00"))
    assert response.status_code == 500
    assert response.json()["ia::result"]["ia::error"]["code"] == "internalError"
    [payment] = books.stored("FP-pay-1")
    assert payment["state"] == "complete"
    assert books.get_invoice(invoice["key"])["state"] == "paid"


def test_commit_then_timeout_per_company_leaves_the_payment_in_place(books):
    invoice = books.invoice("100.00")
    books.company(writeFaults={"commitTimeoutRate": 1.0})
    with pytest.raises(requests.Timeout):
        books.pay(body(invoice["key"], "100.00"), timeout=0.5)
    assert len(books.stored("FP-pay-1")) == 1
    books.company(writeFaults=None)  # back to the global rates (none)
    assert books.pay(body(amount="5.00", referenceNumber="FP-pay-2")).status_code == 201


def test_injected_503s_apply_to_writes_before_anything_is_stored(books):
    invoice = books.invoice("100.00")
    books.admin("PATCH", "/faults", {"errorRate": 1.0, "errorStatus": 503})
    assert books.pay(body(invoice["key"], "100.00")).status_code == 503
    assert books.stored("FP-pay-1") == []


def test_creates_and_reverses_are_counted(books):
    invoice = books.invoice("100.00")
    books.admin("DELETE", "/stats")
    key = books.pay(body(invoice["key"], "100.00")).json()["ia::result"]["key"]
    books.pay(body(invoice["key"], "100.00"))  # refused: already paid; still a call
    books.reverse({"key": key, "reversedDate": "2026-12-02"})
    calls = books.admin("GET", "/stats", companyId=COMPANY).json()["calls"][COMPANY]
    assert calls[f"{PAYMENT}:create"] == 2 and calls[f"{PAYMENT}:reverse"] == 1


def test_writes_hold_a_concurrency_slot_and_are_refused_429_beyond_the_cap(books):
    invoice = books.invoice("100.00")
    books.company(concurrencyCap=1)
    books.admin("PATCH", "/faults", {"latencyMs": 5000})
    answers: list[int] = []
    first = threading.Thread(
        target=lambda: answers.append(books.pay(body(invoice["key"], "100.00")).status_code)
    )
    first.start()
    try:
        assert books.sim.limiter.wait_for(COMPANY, 1, 10)
        second = books.pay(body(amount="1.00", referenceNumber="FP-pay-2"))
        assert second.status_code == 429 and second.headers["Retry-After"]
    finally:
        books.admin("PATCH", "/faults", {"latencyMs": 0})  # releases the held request
        first.join(10)
    assert answers == [201]
    assert [p["referenceNumber"] for p in books.stored("FP-pay-1")] == ["FP-pay-1"]
    assert books.stored("FP-pay-2") == []


def test_money_stays_exact_across_many_small_applications(books):
    invoice = books.invoice("0.30")
    for number in range(3):
        response = books.pay(body(invoice["key"], "0.10", referenceNumber=f"FP-cent-{number}"))
        assert response.status_code == 201, response.text
    paid = books.get_invoice(invoice["key"])
    assert (paid["state"], paid["totalTxnAmountDue"], paid["paymentInformation"]["totalTxnAmountPaid"]) == (
        "paid",
        "0.00",
        "0.30",
    )


# -- the CLI --------------------------------------------------------------------------------


def test_the_cli_sets_commit_faults_payment_rules_and_lists_payments(books):
    from click.testing import CliRunner

    from sandbox.intacct.cli import intacct

    def cli(*args: str) -> str:
        result = CliRunner().invoke(intacct, ["--url", books.server.base_url, *args])
        assert result.exit_code == 0, result.output
        # Webhook threads may log into the captured stdout meanwhile: keep the command's JSON.
        lines = result.output.splitlines()
        return "\n".join(lines[lines.index("{") : lines.index("}") + 1])

    invoice = books.invoice("100.00")
    assert json.loads(cli("faults", "--commit-error-rate", "1"))["commitErrorRate"] == 1.0
    assert books.pay(body(invoice["key"], "40.00")).status_code == 500
    cli("faults", "--reset")
    shown = json.loads(cli("faults", "--company", COMPANY, "--commit-timeout-rate", "0.25"))
    assert shown["writeFaults"] == {"commitErrorRate": 0.0, "commitTimeoutRate": 0.25}
    assert json.loads(cli("faults", "--company", COMPANY, "--reset"))["writeFaults"] is None
    rules = json.loads(
        cli("payments", "rules", "--company", COMPANY, "--no-add", "--books-closed-through", "2026-10-31")
    )
    assert (rules["receivedPaymentsAdd"], rules["booksClosedThrough"]) == (False, "2026-10-31")
    assert books.pay(body(invoice["key"], "10.00")).status_code == 403
    listed = json.loads(cli("payments", "list", "--company", COMPANY, "--reference", "FP-pay-1"))
    assert listed["count"] == 1 and listed["payments"][0]["txnCurrency"]["totalAmount"] == "40.00"


def test_two_payments_racing_for_one_invoice_cannot_both_apply(books):
    invoice = books.invoice("100.00")
    books.company(concurrencyCap=4)
    start = threading.Barrier(2)
    answers: list[int] = []

    def race(reference: str) -> None:
        start.wait(5)
        answers.append(books.pay(body(invoice["key"], "100.00", referenceNumber=reference)).status_code)

    threads = [threading.Thread(target=race, args=(f"FP-race-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(answers) == [201, 422]
    stored = books.stored("FP-race-0") + books.stored("FP-race-1")
    assert len(stored) == 1
    assert books.get_invoice(invoice["key"])["paymentInformation"]["totalTxnAmountPaid"] == "100.00"


def test_a_data_dir_from_before_the_write_back_gains_its_columns(tmp_path):
    import sqlite3

    from sandbox.intacct.store import Store

    path = tmp_path / "old" / "intacct.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        for column in ("referenceNumber", "overPaymentAmount", "paymentSummary__receiptDate"):
            conn.execute(f"ALTER TABLE o_accounts_receivable__payment DROP COLUMN {column}")
    Store(path).close()
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(o_accounts_receivable__payment)")}
    assert {"referenceNumber", "overPaymentAmount", "paymentSummary__receiptDate"} <= columns


def test_records_read_right_from_data_dirs_whose_columns_are_ordered_differently(tmp_path):
    # Store.fetch caches its column names: an old data dir has its newer columns last.
    import sqlite3

    from sandbox.intacct.objects import OBJECT_TYPES
    from sandbox.intacct.store import Store

    payment = OBJECT_TYPES["accounts-receivable/payment"]
    old, new = tmp_path / "old" / "intacct.db", tmp_path / "new" / "intacct.db"
    Store(old).close()
    with sqlite3.connect(old) as conn:
        conn.execute("ALTER TABLE o_accounts_receivable__payment DROP COLUMN referenceNumber")
    for path in (new, old, new):
        store = Store(path)
        with store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO o_accounts_receivable__payment (company_id, key, referenceNumber, state) "
                "VALUES ('C', 1, 'FP-1', 'complete')"
            )
        with store.read() as conn:
            record = store.fetch(conn, payment, "C", 1)
        store.close()
        assert record is not None
        assert (record["referenceNumber"], record["state"], record["key"]) == ("FP-1", "complete", 1)


# -- the published schema's refusals ------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "target", "error_id"),
    [
        ({"receiptDate": "2026-12-01"}, "/receiptDate", "REST-1043"),  # not in the schema
        ({"txnCurrency": {"currency": "USD", "totalAmountX": "1"}}, "/txnCurrency/totalAmountX", "REST-1043"),
        ({"paymentSummary": None}, "/paymentSummary/receiptDate", "REST-1040"),  # required
        ({"txnCurrency": {"amountToPay": "1.00"}}, "/txnCurrency/currency", "REST-1040"),
        ({"undepositedGLAccount": {"id": "1499"}}, "/financialEntity", "REST-1040"),  # both
        ({"financialEntity": None}, "/financialEntity", "REST-1040"),  # neither
        ({"payerName": "Walk-in"}, "/payerName", "REST-1040"),  # customer and payerName
        ({"referenceNumber": "FP-" + "A" * 19}, "/referenceNumber", "REST-1041"),  # 22 > 21
        ({"description": "x" * 1001}, "/description", "REST-1041"),
        ({"customer": {"id": "C" * 22}}, "/customer/id", "REST-1041"),
        ({"paymentMethod": "ach"}, "/paymentMethod", "REST-1042"),  # not a published value
        ({"state": "posted"}, "/state", "REST-1042"),
        ({"txnCurrency": {"currency": "USD", "totalPaid": "1.00"}}, "/txnCurrency/totalPaid", "REST-1045"),
    ],
)
def test_the_schema_refuses_unknown_missing_long_and_unpublished_values(books, changes, target, error_id):
    invoice = books.invoice("100.00")
    error = refused(books.pay(body(invoice["key"], "100.00", **changes)), 400, "invalidRequest", target)
    assert (error["errorId"], error["additionalInfo"]["messageId"]) == (
        "REST-1064",
        "IA.PAYLOAD_CONTAINS_ERRORS",
    )
    [problem] = [d for d in error["details"] if d["target"] == target]
    assert problem["errorId"] == error_id and problem["code"] == "invalidRequest"
    assert books.stored("FP-pay-1") == [] and books.stored("FP-" + "A" * 19) == []


def test_an_empty_body_is_refused_with_sages_no_payload_error(books):
    response = requests.post(f"{books.api_url}/objects/{PAYMENT}", headers=books.headers, timeout=10)
    assert response.status_code == 400
    error = response.json()["ia::result"]["ia::error"]
    assert (error["code"], error["errorId"]) == ("invalidRequest", "REST-1028")
    assert response.json()["ia::meta"] == {"totalCount": 1, "totalSuccess": 0, "totalError": 1}


def test_a_reference_of_21_characters_is_kept_whole(books):
    invoice = books.invoice("100.00")
    reference = "FP-" + "B" * 18
    assert books.pay(body(invoice["key"], "100.00", referenceNumber=reference)).status_code == 201
    [payment] = books.stored(reference)
    assert payment["referenceNumber"] == reference


def test_a_query_field_not_on_the_object_is_400_rest_1043_naming_it(books):
    for fields, filters, target in [
        (["key", "receiptDate"], [], "receiptDate"),
        (["key"], [{"$eq": {"totalTxnAmount": "1.00"}}], "totalTxnAmount"),
        (["key", "overPaymentAmount"], [], "overPaymentAmount"),  # write-only: never read
    ]:
        response = requests.post(
            f"{books.api_url}/services/core/query",
            json={"object": PAYMENT, "fields": fields, "filters": filters},
            headers=books.headers,
            timeout=10,
        )
        assert response.status_code == 400, response.text
        error = response.json()["ia::result"]["ia::error"]
        assert (error["code"], error["errorId"]) == ("invalidRequest", "REST-1043")
        assert error["details"][0]["target"] == target and error["details"][0]["errorId"] == "REST-1043"


# -- Idempotency-Key ------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_is_409_and_nothing_is_written_twice(books, sink):
    invoice = books.invoice("300.00")
    key_header = {**books.headers, "Idempotency-Key": "posting-1-create"}
    first = requests.post(
        f"{books.api_url}/objects/{PAYMENT}",
        json=body(invoice["key"], "100.00"),
        headers=key_header,
        timeout=10,
    )
    assert first.status_code == 201, first.text
    again = requests.post(
        f"{books.api_url}/objects/{PAYMENT}",
        json=body(invoice["key"], "100.00"),
        headers=key_header,
        timeout=10,
    )
    assert again.status_code == 409, again.text
    assert again.json()["ia::result"]["ia::error"]["code"] == "conflict"
    assert len(books.stored("FP-pay-1")) == 1
    assert books.get_invoice(invoice["key"])["totalTxnAmountDue"] == "200.00"
    # Another key is another write; a reverse keeps its own key too.
    other = {**books.headers, "Idempotency-Key": "posting-2-create"}
    assert (
        requests.post(
            f"{books.api_url}/objects/{PAYMENT}",
            json=body(invoice["key"], "100.00", referenceNumber="FP-pay-2"),
            headers=other,
            timeout=10,
        ).status_code
        == 201
    )
    reverse_header = {**books.headers, "Idempotency-Key": "posting-1-reverse"}
    payment_key = first.json()["ia::result"]["key"]
    reverse = {"key": payment_key, "reversedDate": "2026-12-03"}
    url = f"{books.api_url}/workflows/{PAYMENT}/reverse"
    assert requests.post(url, json=reverse, headers=reverse_header, timeout=10).status_code == 200
    assert requests.post(url, json=reverse, headers=reverse_header, timeout=10).status_code == 409


def test_a_refused_write_does_not_use_up_its_key(books):
    invoice = books.invoice("100.00")
    headers = {**books.headers, "Idempotency-Key": "k-1"}
    url = f"{books.api_url}/objects/{PAYMENT}"
    assert (
        requests.post(url, json=body(invoice["key"], "100.01"), headers=headers, timeout=10).status_code
        == 422
    )
    assert (
        requests.post(url, json=body(invoice["key"], "100.00"), headers=headers, timeout=10).status_code
        == 201
    )


def test_idempotency_keys_are_kept_48_hours_time_scaled(tmp_path):
    from sandbox.intacct.simulator import Simulator
    from tests.sandbox.conftest_intacct import FakeClock

    clock = FakeClock()
    sim = Simulator(make_config(tmp_path, time_scale=0.01), clock=clock)
    try:
        with sim.store.write() as conn:
            sim.store.put_company(conn, COMPANY, {"companyId": COMPANY})
            sim.payments._claim(conn, COMPANY, "k", "create")
        clock.advance(48 * 3600 * 0.01 - 1)
        with pytest.raises(Exception, match="already used"), sim.store.write() as conn:
            sim.payments._claim(conn, COMPANY, "k", "create")
        clock.advance(2)
        with sim.store.write() as conn:
            sim.payments._claim(conn, COMPANY, "k", "create")  # expired: usable again
    finally:
        sim.close()
