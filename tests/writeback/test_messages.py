"""The payment messages' schema, the create body's mapping, and Intacct's refusals mapped to reasons."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from marshmallow import ValidationError

from clients.flexpoint.postings import check_posting, posting_key
from clients.intacct import IntacctRejected, IntacctUnavailable, PermissionDenied, RateLimited, RecordNotFound
from clients.intacct.payments import create_body, description_for, outcome_unknown, reference_for
from tests.intacct_digest import find_spec_dir
from workers.runtime.failures import ATTEMPTS, ORIGINAL_QUEUE, Failure, destination
from workers.writeback.messages import load_message
from workers.writeback.reasons import for_refusal


def post(**changes):
    message = {
        "messageId": "m-1",
        "accountId": "acct-1",
        "connectionId": "conn-1",
        "paymentId": "pay-1",
        "customerId": "C-00042",
        "receivedOn": "2026-12-01",
        "amount": "1250.00",
        "currency": "USD",
        "method": "ach",
        "depositBankAccountId": "BANK-01",
        "allocations": [{"invoiceExternalId": "1234", "amount": "1000.00"}],
        "memo": "thanks",
        "requestedAt": "2026-12-01T10:00:00Z",
    }
    message.update(changes)
    return message


def test_amounts_load_as_exact_decimals_from_strings():
    loaded = load_message("payment.post", post(amount="0.10"))
    assert loaded["amount"] == Decimal("0.10") and isinstance(loaded["amount"], Decimal)
    assert loaded["receivedOn"] == date(2026, 12, 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 1250.0},
        {"amount": "12.345"},
        {"amount": "0.00"},
        {"amount": "NaN"},
        {"method": "bitcoin"},
        {"depositBankAccountId": None},
        {"undepositedGLAccountId": "1499"},
        {"paymentId": "has space"},
        {"allocations": [{"invoiceExternalId": "1,2", "amount": "1.00"}]},
        {
            "allocations": [
                {"invoiceExternalId": "7", "amount": "1.00"},
                {"invoiceExternalId": "7", "amount": "2.00"},
            ]
        },
        {"requestedAt": "2026-12-01T10:00:00"},
    ],
)
def test_malformed_posts_are_refused_naming_the_field(changes):
    with pytest.raises(ValidationError):
        load_message("payment.post", post(**changes))


def test_the_create_body_follows_intacct_rest_md():
    body = create_body(load_message("payment.post", post()), "FP-ABCDEFGHIJKLMNOPQR")
    assert body == {
        "customer": {"id": "C-00042"},
        "paymentMethod": "eft",
        "paymentSummary": {"receiptDate": "2026-12-01"},
        "financialEntity": {"entityId": "BANK-01"},
        "txnCurrency": {"currency": "USD", "amountToPay": "1250.00"},
        "referenceNumber": "FP-ABCDEFGHIJKLMNOPQR",
        "description": "FlexPoint payment pay-1: thanks",
        "paymentDetails": [{"arInvoice": {"key": "1234"}, "txnCurrency": {"paymentAmount": "1000.00"}}],
    }
    assert "receiptDate" not in body
    undeposited = create_body(
        load_message(
            "payment.post", post(depositBankAccountId=None, undepositedGLAccountId="1499", method="card")
        ),
        "FP-pay-1",
    )
    assert undeposited["undepositedGLAccount"] == {"id": "1499"} and "financialEntity" not in undeposited
    assert undeposited["paymentMethod"] == "creditCard"


@pytest.mark.parametrize(
    ("method", "expected"),
    [("ach", "eft"), ("card", "creditCard"), ("check", "printedCheck"), ("wire", "eft"), ("cash", "cash")],
)
def test_each_method_maps_to_intacts_payment_method(method, expected):
    assert create_body(load_message("payment.post", post(method=method)), "FP-x")["paymentMethod"] == expected


def _detail(code, target):
    return [{"code": code, "target": target, "message": "..."}]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermissionDenied("403", area="accounts-receivable", status=403), "permission_denied"),
        (
            RecordNotFound("404", status=404, details=_detail("notFound", "/customer/id")),
            "customer_not_found",
        ),
        (
            RecordNotFound("404", status=404, details=_detail("notFound", "/financialEntity/entityId")),
            "bank_account_not_found",
        ),
        (
            RecordNotFound("404", status=404, details=_detail("notFound", "/undepositedGLAccount/id")),
            "bank_account_not_found",
        ),
        (
            RecordNotFound("404", status=404, details=_detail("notFound", "/paymentDetails/0/arInvoice/key")),
            "invoice_not_found",
        ),
        (IntacctRejected("422", status=422, details=_detail("invoiceNotOpen", "x")), "invoice_not_open"),
        (IntacctRejected("422", status=422, details=_detail("overApplication", "x")), "over_application"),
        (IntacctRejected("422", status=422, details=_detail("currencyMismatch", "x")), "currency_mismatch"),
        (
            IntacctRejected(
                "422", status=422, details=_detail("periodClosed", "/paymentSummary/receiptDate")
            ),
            "period_closed",
        ),
        (
            IntacctRejected("422", status=422, details=_detail("invoiceCustomerMismatch", "x")),
            "invoice_not_found",
        ),
        (IntacctRejected("HTTP 422: the receipt date is in a closed period", status=422), "period_closed"),
        (
            IntacctRejected("HTTP 400 invalidRequest: bad", status=400, code="invalidRequest"),
            "invalid_request",
        ),
        # By status and slash-path target alone, whatever the code and the text say.
        (IntacctRejected("422", status=422, details=_detail("x", "/customer/id")), "customer_not_found"),
        (
            IntacctRejected("422", status=422, details=_detail("x", "/paymentSummary/receiptDate")),
            "period_closed",
        ),
        (
            IntacctRejected(
                "422", status=422, details=_detail("x", "/paymentDetails/0/txnCurrency/paymentAmount")
            ),
            "over_application",
        ),
        (
            IntacctRejected(
                "422", status=422, details=_detail("businessRule", "/paymentDetails/0/arInvoice/key")
            ),
            "invoice_not_open",
        ),
        (
            IntacctRejected(
                "HTTP 422: currency differs",
                status=422,
                details=_detail("x", "/paymentDetails/0/arInvoice/key"),
            ),
            "currency_mismatch",
        ),
        (
            IntacctRejected("422", status=422, details=_detail("x", "/txnCurrency/currency")),
            "currency_mismatch",
        ),
        # A schema refusal naming a field is our body's fault, not the customer's data.
        (
            IntacctRejected(
                "400", status=400, code="invalidRequest", details=_detail("invalidRequest", "/customer/id")
            ),
            "invalid_request",
        ),
    ],
)
def test_intaccts_refusals_map_to_the_postings_reasons(error, reason):
    verdict = for_refusal(error, load_message("payment.post", post()))
    assert verdict.reason == reason
    assert verdict.message


def test_the_permission_message_names_the_setup_step():
    verdict = for_refusal(
        PermissionDenied("403", area="accounts-receivable", status=403), load_message("payment.post", post())
    )
    assert "Accounts Receivable > Received payments: Add" in verdict.message


def test_posting_reports_are_checked_against_the_yaml_and_keyed_by_content():
    report = {
        "connectionId": "c",
        "paymentId": "p",
        "state": "posted",
        "intacctKey": "1",
        "intacctReference": "FP-ABCDEFGHIJKLMNOPQR",
        "reportedAt": "2026-12-01T10:00:00.000000Z",
    }
    check_posting(report)
    for wrong in (
        {**report, "state": "done"},
        {**report, "reason": "oops"},
        {**report, "extra": 1},
        {**report, "reportedAt": None},
        {**report, "intacctReference": "FP-" + "A" * 19},
    ):
        with pytest.raises(ValueError):
            check_posting(wrong)
    assert posting_key("a", "p", report) == posting_key("a", "p", dict(reversed(list(report.items()))))
    assert posting_key("a", "p", report) != posting_key("a", "p", {**report, "intacctKey": "2"})


def test_a_postable_payment_stays_on_the_longest_delay_instead_of_being_dead_lettered():
    headers = {ATTEMPTS: 9, ORIGINAL_QUEUE: "writeback"}
    patient = destination(
        Failure("outcome_unknown", RuntimeError(), transient=True),
        queue="writeback",
        routing_key="payment.post",
        headers=headers,
    )
    assert not patient.dead and patient.queue == "writeback.delay.300s"
    bug = destination(
        Failure("worker_error", RuntimeError(), transient=True),
        queue="writeback",
        routing_key="payment.post",
        headers=headers,
    )
    assert bug.dead, "a handler bug stays bounded"


def test_the_posting_contract_checks_follow_the_yaml():
    import yaml

    from clients.flexpoint import postings

    spec_dir = find_spec_dir()
    source = (
        spec_dir / "flexpoint-sync-api.yaml"
        if spec_dir is not None
        else Path(__file__).resolve().parents[2] / "sandbox/flexpoint/flexpoint-sync-api.yaml"
    )
    spec = yaml.safe_load(source.read_text())
    schema = spec["components"]["schemas"]["PaymentPosting"]
    assert set(schema["properties"]) == postings.FIELDS
    assert set(schema["required"]) == set(postings.REQUIRED)
    assert set(schema["properties"]["state"]["enum"]) == postings.STATES
    assert set(schema["properties"]["reason"]["enum"]) == postings.REASONS


def test_the_target_names_the_invoice_at_its_index():
    message = load_message(
        "payment.post",
        post(
            amount="30.00",
            allocations=[
                {"invoiceExternalId": "11", "amount": "10.00"},
                {"invoiceExternalId": "22", "amount": "20.00"},
            ],
        ),
    )
    verdict = for_refusal(
        RecordNotFound("404", status=404, details=_detail("notFound", "/paymentDetails/1/arInvoice/key")),
        message,
    )
    assert verdict.reason == "invoice_not_found" and "Invoice 22 " in verdict.message
    assert "apply the payment" in verdict.message


def test_the_reference_is_fp_and_18_base32_characters_of_the_account_and_payment():
    import base64
    import hashlib

    reference = reference_for("acct-1", "pay-1")
    expected = base64.b32encode(hashlib.sha256(b"acct-1:pay-1").digest()).decode().rstrip("=")[:18]
    assert reference == "FP-" + expected and len(reference) == 21
    assert reference.upper() == reference and "=" not in reference
    assert reference_for("acct-1", "x" * 64) != reference_for("acct-2", "x" * 64)
    assert len(reference_for("acct-1", "x" * 64)) == 21


def test_the_description_names_the_flexpoint_payment_within_sages_1000_characters():
    assert description_for("pay-9", None) == "FlexPoint payment pay-9"
    assert len(description_for("pay-9", "m" * 1000)) == 1000


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (IntacctUnavailable("timeout"), True),
        (IntacctUnavailable("502", status=502), True),
        (IntacctUnavailable("408", status=408), True),
        (IntacctRejected("409", status=409), True),
        (RateLimited("429", retry_after=None, status=429), False),
        (IntacctRejected("422", status=422), False),
        (RecordNotFound("404", status=404), False),
    ],
)
def test_which_answers_leave_a_writes_outcome_unknown(error, unknown):
    assert outcome_unknown(error) is unknown
