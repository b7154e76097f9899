"""Intacct records -> FlexPoint items, checked against flexpoint-sync-api.yaml itself.

Records are built from intacct-rest.md's field lists, nested as a REST GET returns them.
Every item a test produces is validated against the YAML's Item schema and the resource's
data schema (JSON Schema 2020-12, formats checked).
"""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.flexpoint.contract import load_contract
from schemas.catalog import BY_RESOURCE
from schemas.intacct_fields import BY_OBJECT_PATH
from schemas.mappings import (
    MAPPINGS,
    MappingError,
    applied_invoice_keys,
    line_source,
    map_record,
    query_fields,
    tombstone,
    unflatten,
)
from schemas.mappings.values import calendar_date, money, utc_timestamp

MODIFIED = "2026-11-24T10:00:00Z"


# -- the contract: validated by the FlexPoint simulator's own contract module ----------------


def contract_errors(schema_name: str, instance: Any) -> list[str]:
    """jsonschema's verdict (Draft 2020-12, formats checked) against a schema of the YAML."""
    return [v.describe() for v in load_contract().full_check(f"#/components/schemas/{schema_name}", instance)]


def assert_valid(resource: str, item: dict[str, Any]) -> dict[str, Any]:
    """The item is a valid Item and, unless a tombstone, its data a valid resource record."""
    assert contract_errors("Item", item) == []
    if item.get("deleted"):
        assert "data" not in item
    else:
        data_ref = load_contract().resource_schema(resource)
        assert [v.describe() for v in load_contract().full_check(data_ref, item["data"])] == []
    return item


def test_the_format_checker_really_checks_formats():
    # Guards every other test: a checker without rfc3339-validator would pass anything.
    assert contract_errors("Item", {"externalId": "1", "sourceVersion": "yesterday"})
    assert contract_errors("Date", "2026-02-30")


# -- realistic records ----------------------------------------------------------------------


def audit(modified: str = MODIFIED) -> dict[str, Any]:
    return {
        "createdDateTime": "2026-11-01T08:00:00Z",
        "modifiedDateTime": modified,
        "createdBy": "Admin",
        "modifiedBy": "Admin",
    }


def customer_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "41",
        "id": "C-0041",
        "href": "/objects/accounts-receivable/customer/41",
        "name": "Northwind Traders",
        "status": "active",
        "creditLimit": 25000,
        "currency": "USD",
        "term": {"id": "Net 30"},
        "contacts": {
            "default": {
                "email1": "ap@northwind.example",
                "phone1": "+1 415 555 0100",
                "mailingAddress": {
                    "addressLine1": "1 Market St",
                    "addressLine2": "Suite 300",
                    "city": "San Francisco",
                    "state": "CA",
                    "postCode": "94105",
                    "country": "United States",
                },
            }
        },
        "audit": audit(),
    }
    record.update(changes)
    return record


def invoice_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "1042",
        "id": "INV-1042",
        "href": "/objects/accounts-receivable/invoice/1042",
        "invoiceNumber": "INV-1042",
        "customer": {"key": "41", "id": "C-0041"},
        "invoiceDate": "2026-11-20",
        "dueDate": "2026-12-20",
        "state": "partiallyPaid",
        "currency": {"txnCurrency": "USD", "baseCurrency": "USD"},
        "totalTxnAmount": "1250",
        "paymentInformation": {"totalTxnAmountPaid": "250.5", "totalTxnAmountSelectedForPayment": "0.00"},
        "totalTxnAmountDue": "999.50",
        "referenceNumber": "PO-77",
        "description": "November services",
        "audit": audit(),
    }
    record.update(changes)
    return record


def invoice_line(key: str, number: Any, amount: str, **changes: Any) -> dict[str, Any]:
    line = {
        "key": key,
        "invoice": {"key": "1042"},
        "lineNumber": number,
        "txnAmount": amount,
        "glAccount": {"id": "4000"},
        "memo": f"line {number}",
    }
    line.update(changes)
    return line


def payment_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "880",
        "id": "880",
        "customer": {"id": "C-0041"},
        "paymentMethod": "printedCheck",
        "paymentSummary": {"receiptDate": "2026-11-25"},
        "txnCurrency": {"currency": "USD", "totalAmount": "700.00"},
        "baseCurrency": {"currency": "USD", "totalAmount": "700.00"},
        "state": "complete",
        "financialEntity": {"entityId": "BOA-OPS"},
        "documentNumber": "CHK-5512",
        "audit": audit(),
    }
    record.update(changes)
    return record


def payment_detail(key: str, invoice_key: str | None, amount: str) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "key": key,
        "arPayment": {"key": "880"},
        "txnCurrency": {"paymentAmount": amount},
    }
    if invoice_key is not None:
        detail["arInvoice"] = {"key": invoice_key}
    return detail


def adjustment_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "77",
        "id": "ADJ-000077",
        "customer": {"id": "C-0041"},
        "createdDate": "2026-11-26",
        "glPostingDate": "2026-11-27",
        "txnCurrency": {"currency": "USD", "totalEntered": "-45.10"},
        "description": "Damaged goods credit",
        "state": "posted",
        "documentNumber": "1042",
        "audit": audit(),
    }
    record.update(changes)
    return record


def gl_account_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "9",
        "id": "1000",
        "name": "Operating Cash",
        "accountType": "balanceSheet",
        "normalBalance": "debit",
        "category": "Cash and Cash Equivalents",
        "status": "active",
        "audit": audit(),
    }
    record.update(changes)
    return record


def journal_entry_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "310",
        "id": "GJ-310",
        "glJournal": {"id": "GJ"},
        "postingDate": "2026-11-30",
        "description": "Accrue November rent",
        "state": "posted",
        "audit": audit(),
    }
    record.update(changes)
    return record


def journal_line(
    key: str, number: int, account: str, amount: str, side: str, **changes: Any
) -> dict[str, Any]:
    line = {
        "key": key,
        "journalEntry": {"key": "310"},
        "lineNumber": number,
        "glAccount": {"id": account},
        "txnAmount": amount,
        "txnType": side,
        "description": None,
        "dimensions": {"location": {"id": "SF"}, "department": {"id": "OPS"}},
    }
    line.update(changes)
    return line


def bank_account_record(number: Any = "0012 3456-7890", **changes: Any) -> dict[str, Any]:
    record = {
        "key": "3",
        "id": "BOA-OPS",
        "bankAccountDetails": {
            "accountNumber": number,
            "bankName": "Bank of America",
            "routingNumber": "121000358",
            "currency": "USD",
        },
        "accounting": {"glAccount": {"id": "1000"}},
        "status": "active",
        "audit": audit(),
    }
    record.update(changes)
    return record


def deposit_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "55",
        "id": "DEP-000055",
        "bankAccount": {"id": "BOA-OPS"},
        "depositId": "SLIP-0055",
        "txnDate": "2026-11-26",
        "postingDate": "2026-11-27",
        "txnTotalEntered": "1400.00",
        "totalEntered": "1400.00",
        "description": "Checks of Nov 25-26",
        "txnCurrency": "USD",
        "baseCurrency": "USD",
        "state": "approve",
        "audit": audit(),
    }
    record.update(changes)
    return record


def other_receipt_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "12",
        "id": "12",
        "txnDate": "2026-11-28",
        "txnPaidDate": "2026-11-28",
        "depositDate": "2026-11-29",
        "payer": "City of Oakland",
        "txnTotalEntered": "310.4",
        "description": "Tax refund",
        "bankAccount": {"id": "BOA-OPS"},
        "paymentMethod": "eft",
        "txnCurrency": "USD",
        "state": "approved",
        "audit": audit(),
    }
    record.update(changes)
    return record


def entity_record(**changes: Any) -> dict[str, Any]:
    record = {
        "key": "1",
        "id": "US",
        "name": "Northwind US",
        "baseCurrency": {"id": "USD"},
        "status": "active",
        "audit": audit(),
    }
    record.update(changes)
    return record


def mapped(resource: str, record: dict[str, Any], lines: Any = (), **kwargs: Any) -> dict[str, Any]:
    return assert_valid(resource, map_record(resource, record, lines, **kwargs))


# -- the registry ---------------------------------------------------------------------------


def test_every_resource_of_the_catalog_and_the_contract_has_a_mapping():
    assert set(MAPPINGS) == set(BY_RESOURCE) == set(load_contract().resources)


@pytest.mark.parametrize("resource", sorted(MAPPINGS))
def test_requested_fields_come_from_the_objects_field_map(resource):
    # That each path is published is tests/test_intacct_contract.py's to check, from Sage's schema.
    field_map = BY_OBJECT_PATH[BY_RESOURCE[resource].rest_path]
    fields = query_fields(resource)
    assert fields[:3] == ("key", "id", "audit.modifiedDateTime")
    assert len(set(fields)) == len(fields)
    assert set(fields) <= set(field_map.paths().values())
    source = line_source(resource)
    if source is not None:
        line_map = BY_OBJECT_PATH[source.rest_path]
        assert source.parent_field == line_map.paths()["PARENT"]
        assert set(source.fields) <= set(line_map.paths().values())
        assert source.fields[:2] == ("key", source.parent_field)


def test_line_sources_are_the_four_of_intacct_rest_md():
    sources = {r: (s.rest_path, s.parent_field) for r in MAPPINGS if (s := line_source(r))}
    assert sources == {
        "invoices": ("accounts-receivable/invoice-line", "invoice.key"),
        "payments": ("accounts-receivable/payment-detail", "arPayment.key"),
        "journal-entries": ("general-ledger/journal-entry-line", "journalEntry.key"),
        "deposits": ("cash-management/deposit-detail", "deposit.key"),
    }


def test_line_source_groups_lines_fetched_for_many_parents():
    source = line_source("invoices")
    rows = [
        {"key": "1", "invoice.key": "10"},
        {"key": "2", "invoice": {"key": "11"}},
        {"key": "3", "invoice.key": 10},
        {"key": "4"},
    ]
    assert source.group(rows) == {"10": [rows[0], rows[2]], "11": [rows[1]]}


def test_an_unknown_resource_is_a_programming_error_not_a_mapping_error():
    with pytest.raises(KeyError, match="vendors"):
        map_record("vendors", {"key": "1"})
    with pytest.raises(KeyError):
        tombstone("vendors", "1", MODIFIED)


def test_lines_for_a_resource_without_lines_are_refused():
    with pytest.raises(ValueError, match="customers records have no lines"):
        map_record("customers", customer_record(), [{"key": "1"}])


# -- customers ------------------------------------------------------------------------------


def test_customer_maps_every_field():
    item = mapped("customers", customer_record())
    assert item == {
        "externalId": "41",
        "sourceVersion": "2026-11-24T10:00:00Z",
        "data": {
            "customerId": "C-0041",
            "name": "Northwind Traders",
            "email": "ap@northwind.example",
            "phone": "+1 415 555 0100",
            "billingAddress": {
                "line1": "1 Market St",
                "line2": "Suite 300",
                "city": "San Francisco",
                "region": "CA",
                "postalCode": "94105",
                "country": "United States",
            },
            "currency": "USD",
            "creditLimit": "25000.00",
            "paymentTerm": "Net 30",
            "status": "active",
        },
    }


@pytest.mark.parametrize(
    ("intacct", "flexpoint"), [("active", "active"), ("activeNonPosting", "active"), ("inactive", "inactive")]
)
def test_customer_status(intacct, flexpoint):
    assert mapped("customers", customer_record(status=intacct))["data"]["status"] == flexpoint


def test_customer_without_contact_terms_or_limit():
    record = customer_record(contacts={"default": {"email1": "", "mailingAddress": None}}, creditLimit=None)
    del record["term"]
    data = mapped("customers", record)["data"]
    assert data["email"] is None and data["phone"] is None and data["creditLimit"] is None
    assert data["paymentTerm"] is None
    assert data["billingAddress"] == dict.fromkeys(
        ["line1", "line2", "city", "region", "postalCode", "country"]
    )


def test_customer_with_an_unknown_status_names_the_field():
    with pytest.raises(MappingError) as caught:
        map_record("customers", customer_record(status="onHold"))
    assert caught.value.errors == {
        "status": ["unknown value 'onHold' (expected one of: active, activeNonPosting, inactive)"]
    }


# -- invoices -------------------------------------------------------------------------------


def test_invoice_maps_every_field_with_lines_in_line_number_order():
    lines = [
        invoice_line("7", 2, "250", memo=None),
        invoice_line("6", "1", "1000.00", glAccount={"id": "4010"}),
    ]
    item = mapped("invoices", invoice_record(), lines)
    assert item == {
        "externalId": "1042",
        "sourceVersion": "2026-11-24T10:00:00Z",
        "data": {
            "invoiceNumber": "INV-1042",
            "customerId": "C-0041",
            "invoiceDate": "2026-11-20",
            "dueDate": "2026-12-20",
            "currency": "USD",
            "totalAmount": "1250.00",
            "amountPaid": "250.50",
            "amountDue": "999.50",
            "state": "partially_paid",
            "description": "November services",
            "referenceNumber": "PO-77",
            "entityId": None,
            "lines": [
                {"lineNumber": 1, "description": "line 1", "glAccountNumber": "4010", "amount": "1000.00"},
                {"lineNumber": 2, "description": None, "glAccountNumber": "4000", "amount": "250.00"},
            ],
        },
    }


@pytest.mark.parametrize(
    ("intacct", "flexpoint"),
    [
        ("posted", "open"),
        ("selected", "open"),
        ("partiallyPaid", "partially_paid"),
        ("paid", "paid"),
        ("noValue", "paid"),
        ("reversed", "void"),
    ],
)
def test_invoice_states(intacct, flexpoint):
    assert mapped("invoices", invoice_record(state=intacct))["data"]["state"] == flexpoint


@pytest.mark.parametrize("resource", ["invoices", "payments", "adjustments"])
def test_a_reversal_record_is_not_imported(resource):
    # The mirror record a reverse creates: its original already shows the reversal.
    record = {"invoices": invoice_record, "payments": payment_record, "adjustments": adjustment_record}[
        resource
    ]
    item = mapped(resource, record(state="reversal"))
    assert item == {
        "externalId": item["externalId"],
        "sourceVersion": "2026-11-24T10:00:00Z",
        "deleted": True,
    }


def test_a_draft_invoice_is_not_imported_but_tombstoned_at_its_own_version():
    item = mapped(
        "invoices", invoice_record(state="draft", totalTxnAmountDue=None), [invoice_line("6", 1, "x")]
    )
    # The lines are not even read: a draft is removed whatever it holds.
    assert item == {"externalId": "1042", "sourceVersion": "2026-11-24T10:00:00Z", "deleted": True}


def test_a_draft_invoice_without_a_version_is_still_an_error():
    record = invoice_record(state="draft")
    del record["audit"]
    with pytest.raises(MappingError) as caught:
        map_record("invoices", record)
    assert caught.value.errors == {"audit.modifiedDateTime": ["Missing data for required field."]}


@pytest.mark.parametrize("state", ["approved", "", None, 3])
def test_an_invoice_in_an_unknown_or_missing_state_is_a_mapping_error(state):
    with pytest.raises(MappingError) as caught:
        map_record("invoices", invoice_record(state=state))
    assert list(caught.value.errors) == ["state"]


def test_a_eur_invoice_keeps_its_transaction_currency_amounts():
    record = invoice_record(
        currency={"txnCurrency": "EUR", "baseCurrency": "USD", "exchangeRate": {"rate": "1.0832"}},
        totalTxnAmount="1000",
        paymentInformation={"totalTxnAmountPaid": "0"},
        totalTxnAmountDue="1000",
        totalBaseAmount="1083.20",
        state="posted",
    )
    data = mapped("invoices", record, [invoice_line("6", 1, "1000", txnAmount="1000", baseAmount="1083.20")])[
        "data"
    ]
    assert (data["currency"], data["totalAmount"], data["amountDue"]) == ("EUR", "1000.00", "1000.00")
    assert data["lines"][0]["amount"] == "1000.00"
    assert "1083.20" not in json.dumps(data)


def test_an_invoice_with_zero_lines_is_valid():
    data = mapped(
        "invoices",
        invoice_record(
            totalTxnAmount="0", paymentInformation={"totalTxnAmountPaid": "0"}, totalTxnAmountDue="0"
        ),
    )["data"]
    assert data["lines"] == []
    assert data["totalAmount"] == "0.00"


def test_invoice_number_falls_back_to_the_id_and_amount_paid_to_zero():
    record = invoice_record(invoiceNumber=None, paymentInformation=None, id="INV-9")
    data = mapped("invoices", record)["data"]
    assert (data["invoiceNumber"], data["amountPaid"]) == ("INV-9", "0.00")


def test_invoice_entity_from_the_record_else_from_the_connection():
    assert mapped("invoices", invoice_record(), entity_id="US")["data"]["entityId"] == "US"
    record = invoice_record(entity={"key": "2", "id": "CA"})
    assert mapped("invoices", record, entity_id="US")["data"]["entityId"] == "CA"


def test_invoice_due_date_may_be_absent_and_dates_may_be_date_times():
    record = invoice_record(dueDate=None, invoiceDate="2026-11-20T23:30:00-08:00")
    data = mapped("invoices", record)["data"]
    assert (data["invoiceDate"], data["dueDate"]) == ("2026-11-20", None)


def test_order_entry_delete_then_recreate_gives_two_independent_items():
    # Order Entry deleted invoice 1042 and re-created the same invoice number as 1043.
    gone = assert_valid("invoices", tombstone("invoices", "1042", "2026-11-24T10:00:05+00:00"))
    recreated = mapped(
        "invoices",
        invoice_record(key="1043", audit=audit("2026-11-24T10:00:05Z")),
        [invoice_line("8", 1, "1250", invoice={"key": "1043"})],
    )
    assert gone == {"externalId": "1042", "sourceVersion": "2026-11-24T10:00:05Z", "deleted": True}
    assert recreated["externalId"] == "1043"
    assert recreated["data"]["invoiceNumber"] == "INV-1042"
    batch = {"source": "sage-intacct", "connectionId": "c-1", "items": [gone, recreated]}
    assert contract_errors("BatchRequest", batch) == []


def test_lines_of_another_invoice_are_refused():
    with pytest.raises(MappingError) as caught:
        map_record("invoices", invoice_record(), [invoice_line("6", 1, "10", invoice={"key": "999"})])
    assert caught.value.errors == {"invoice-line[key=6].invoice.key": ["belongs to record 999, not 1042"]}


# -- payments -------------------------------------------------------------------------------


def test_payment_applied_to_several_invoices():
    details = [
        payment_detail("3", "1042", "400"),
        payment_detail("1", "987", "200.5"),
        payment_detail("2", "1001", "99.5"),
    ]
    item = mapped("payments", payment_record(), details)
    assert item["data"] == {
        "customerId": "C-0041",
        "receivedDate": "2026-11-25",
        "amount": "700.00",
        "currency": "USD",
        "method": "printedCheck",
        "referenceNumber": "CHK-5512",
        "state": "complete",
        "depositBankAccountId": "BOA-OPS",
        "appliedTo": [
            {"invoiceExternalId": "987", "amount": "200.50"},
            {"invoiceExternalId": "1001", "amount": "99.50"},
            {"invoiceExternalId": "1042", "amount": "400.00"},
        ],
    }
    # The worker refreshes these invoices: their amounts due changed.
    assert applied_invoice_keys(details) == ["987", "1001", "1042"]


def test_payment_details_not_naming_an_invoice_are_left_out():
    details = [payment_detail("1", "1042", "100"), payment_detail("2", None, "50")]
    data = mapped("payments", payment_record(totalTxnAmount="150"), details)["data"]
    assert data["appliedTo"] == [{"invoiceExternalId": "1042", "amount": "100.00"}]
    assert applied_invoice_keys(details) == ["1042"]


def test_applied_invoice_keys_read_flat_rows_and_deduplicate():
    rows = [
        {"arInvoice.key": "5"},
        {"arInvoice": {"key": 5}},
        {"arInvoice.key": ""},
        "junk",
        {"arInvoice.key": True},
        {"invoice.key": "6"},  # not a published name: ignored
    ]
    assert applied_invoice_keys(rows) == ["5"]


@pytest.mark.parametrize(
    ("intacct", "flexpoint"),
    [("complete", "complete"), ("reconciled", "complete"), ("reversed", "voided"), ("draft", "draft")],
)
def test_payment_states(intacct, flexpoint):
    assert mapped("payments", payment_record(state=intacct))["data"]["state"] == flexpoint


def test_a_reversed_payment_is_imported_as_voided():
    data = mapped("payments", payment_record(state="reversed"), [payment_detail("1", "1042", "700")])["data"]
    assert data["state"] == "voided"
    assert data["appliedTo"] == [{"invoiceExternalId": "1042", "amount": "700.00"}]


def test_a_draft_payment_is_imported_as_a_draft():
    item = mapped("payments", payment_record(state="draft", documentNumber=None, financialEntity=None))
    assert item["data"]["state"] == "draft"
    assert item["data"]["referenceNumber"] is None and item["data"]["depositBankAccountId"] is None
    assert item["data"]["appliedTo"] == []


def test_a_payment_in_another_currency():
    data = mapped("payments", payment_record(txnCurrency={"currency": "GBP", "totalAmount": "80.1"}))["data"]
    assert (data["currency"], data["amount"]) == ("GBP", "80.10")


def test_a_payment_detail_with_a_bad_amount_names_the_detail():
    with pytest.raises(MappingError) as caught:
        map_record("payments", payment_record(), [payment_detail("1", "1042", "7OO")])
    assert caught.value.errors == {
        "payment-detail[key=1].txnCurrency.paymentAmount": ["not a decimal amount: '7OO'"]
    }


# -- adjustments ----------------------------------------------------------------------------


def test_adjustment_keeps_its_sign_and_invoice():
    item = mapped("adjustments", adjustment_record())
    assert item["data"] == {
        "customerId": "C-0041",
        "adjustmentDate": "2026-11-26",
        "amount": "-45.10",
        "currency": "USD",
        "description": "Damaged goods credit",
        "invoiceExternalId": "1042",
    }


def test_adjustment_without_invoice_and_a_draft_adjustment():
    record = adjustment_record(documentNumber=None)
    assert mapped("adjustments", record)["data"]["invoiceExternalId"] is None
    assert mapped("adjustments", adjustment_record(state="draft"))["deleted"] is True


def test_adjustment_date_falls_back_to_the_gl_posting_date():
    assert (
        mapped("adjustments", adjustment_record(createdDate=None))["data"]["adjustmentDate"] == "2026-11-27"
    )
    with pytest.raises(MappingError, match="createdDate: Missing, and so is glPostingDate"):
        map_record("adjustments", adjustment_record(createdDate=None, glPostingDate=None))


# -- general ledger -------------------------------------------------------------------------


def test_gl_account():
    assert mapped("gl-accounts", gl_account_record())["data"] == {
        "accountNumber": "1000",
        "title": "Operating Cash",
        "accountType": "balance_sheet",
        "normalBalance": "debit",
        "category": "Cash and Cash Equivalents",
        "status": "active",
    }
    record = gl_account_record(
        accountType="incomeStatement", normalBalance="credit", status="inactive", category=None
    )
    data = mapped("gl-accounts", record)["data"]
    assert (data["accountType"], data["normalBalance"], data["status"], data["category"]) == (
        "income_statement",
        "credit",
        "inactive",
        None,
    )


def test_gl_account_with_an_unknown_type():
    with pytest.raises(MappingError, match=r"gl-accounts record key 9: accountType: unknown value 'asset'"):
        map_record("gl-accounts", gl_account_record(accountType="asset"))


def test_journal_entry_splits_amounts_into_debit_and_credit():
    lines = [
        journal_line("2", 2, "2000", "1500", "credit", description="Rent payable"),
        journal_line("1", 1, "6100", "1500.00", "debit", dimensions={"location": {"id": "SF"}}),
    ]
    item = mapped("journal-entries", journal_entry_record(), lines)
    assert item["data"] == {
        "journal": "GJ",
        "entryNumber": "GJ-310",
        "postingDate": "2026-11-30",
        "description": "Accrue November rent",
        "state": "posted",
        "lines": [
            {
                "lineNumber": 1,
                "glAccountNumber": "6100",
                "debit": "1500.00",
                "credit": "0.00",
                "memo": None,
                "locationId": "SF",
                "departmentId": None,
            },
            {
                "lineNumber": 2,
                "glAccountNumber": "2000",
                "debit": "0.00",
                "credit": "1500.00",
                "memo": "Rent payable",
                "locationId": "SF",
                "departmentId": "OPS",
            },
        ],
    }


@pytest.mark.parametrize("state", ["draft", "posted", "reversed"])
def test_journal_entry_states_including_draft(state):
    assert mapped("journal-entries", journal_entry_record(state=state))["data"]["state"] == state


def test_journal_entry_line_errors_name_the_line_and_field():
    lines = [journal_line("1", 1, "6100", "10", "both"), journal_line("2", 2, "", "10", "credit")]
    with pytest.raises(MappingError) as caught:
        map_record("journal-entries", journal_entry_record(), lines)
    assert caught.value.errors == {
        "journal-entry-line[key=1].txnType": ["unknown value 'both' (expected one of: debit, credit)"],
        "journal-entry-line[key=2].glAccount.id": ["Missing data for required field."],
    }


# -- cash management ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "last4"),
    [
        ("0012 3456-7890", "7890"),
        ("DE89 3704 0044 0532 0130 00", "3000"),
        ("12-34", "1234"),
        ("987", None),
        ("ab-1", None),
        (123456789, "6789"),
    ],
)
def test_bank_account_keeps_only_the_last_4_digits(number, last4):
    item = mapped("bank-accounts", bank_account_record(number))
    assert item["data"]["accountNumberLast4"] == last4
    serialized = json.dumps(item)
    digits = "".join(c for c in str(number) if c.isdigit())
    # QUALITY S3: neither the number as written nor its digits appear anywhere in the item.
    assert str(number) not in serialized
    if len(digits) > 4:
        assert digits not in serialized
        assert digits[:-4] not in serialized
    # The routing number is not the mapping's to send either.
    assert "121000358" not in serialized


def test_bank_account_maps_every_field():
    assert mapped("bank-accounts", bank_account_record())["data"] == {
        "bankAccountId": "BOA-OPS",
        "name": "Bank of America ****7890",
        "bankName": "Bank of America",
        "accountNumberLast4": "7890",
        "currency": "USD",
        "glAccountNumber": "1000",
        "status": "active",
    }


def test_a_bank_account_that_cannot_be_mapped_never_quotes_its_number():
    record = bank_account_record("4400 1234 5678 9012", status="closed", accounting=None)
    record["bankAccountDetails"]["currency"] = None
    with pytest.raises(MappingError) as caught:
        map_record("bank-accounts", record)
    assert set(caught.value.errors) == {"status", "bankAccountDetails.currency"}
    assert "9012" not in str(caught.value) and "5678" not in str(caught.value)
    with pytest.raises(MappingError) as caught:
        map_record("bank-accounts", bank_account_record(["4400123456789012"]))
    assert "4400" not in str(caught.value)


def test_deposit_lists_the_payments_it_deposits():
    details = [
        # intacct-rest.md's convention: a detail's key is the deposited payment's record key.
        {"key": "880", "deposit": {"key": "55"}, "txnTotalEntered": "700", "state": "deposited"},
        {"key": "91", "deposit": {"key": "55"}, "txnTotalEntered": "700", "state": "deposited"},
        {"key": "880", "deposit": {"key": "55"}, "txnTotalEntered": "0", "state": "deposited"},
    ]
    assert mapped("deposits", deposit_record(), details)["data"] == {
        "bankAccountId": "BOA-OPS",
        "depositDate": "2026-11-26",
        "amount": "1400.00",
        "currency": "USD",
        "description": "Checks of Nov 25-26",
        "paymentExternalIds": ["91", "880"],
    }


def test_a_deposit_is_dated_by_its_transaction_date_and_a_void_one_leaves():
    with pytest.raises(MappingError, match="txnDate: Missing data for required field"):
        map_record("deposits", deposit_record(txnDate=None))
    assert mapped("deposits", deposit_record(state="void"))["deleted"] is True


@pytest.mark.parametrize(("state", "deleted"), [("approved", False), ("reversed", True), ("reversal", True)])
def test_other_receipt_reversals_are_not_imported(state, deleted):
    assert bool(mapped("other-receipts", other_receipt_record(state=state)).get("deleted")) is deleted


def test_other_receipt():
    assert mapped("other-receipts", other_receipt_record())["data"] == {
        "receivedDate": "2026-11-28",
        "amount": "310.40",
        "currency": "USD",
        "payer": "City of Oakland",
        "description": "Tax refund",
        "bankAccountId": "BOA-OPS",
    }


# -- company --------------------------------------------------------------------------------


def test_entity():
    assert mapped("entities", entity_record())["data"] == {
        "entityId": "US",
        "name": "Northwind US",
        "currency": "USD",
        "status": "active",
    }
    assert mapped("entities", entity_record(baseCurrency=None, status="inactive"))["data"]["currency"] is None


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("10", "10.00"),
        ("10.5", "10.50"),
        ("-3.333", "-3.33"),
        ("-3.335", "-3.34"),  # half-even: 3.335 -> 3.34 (4 is even)
        ("2.665", "2.66"),  # half-even: 2.665 -> 2.66 (6 is even), not 2.67
        ("2.675", "2.68"),
        ("0.005", "0.00"),
        ("-0.004", "0.00"),  # no negative zero
        ("+7", "7.00"),
        (" 12.30 ", "12.30"),
        (".5", "0.50"),
        ("1250.", "1250.00"),
        ("12345678901234567890.12", "12345678901234567890.12"),
        (10, "10.00"),
        (10.5, "10.50"),
        (2.675, "2.68"),  # the JSON text 2.675, not the binary double just below it
    ],
)
def test_money_rounds_half_even_to_cents(amount, expected):
    assert money(amount) == expected


@pytest.mark.parametrize(
    "amount",
    ["abc", "", "1e3", "1,000.00", "1_000", "NaN", "Infinity", "--1", "١٢", True, None, [], float("nan")],
)
def test_money_refuses_anything_but_a_decimal(amount):
    with pytest.raises(ValueError):
        money(amount)


def test_money_out_of_range_is_an_error_not_an_exception_of_decimal():
    with pytest.raises(ValueError, match="out of range"):
        money("9" * 40)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24", "2026-11-24"),
        ("2026-11-24T10:00:00Z", "2026-11-24"),
        ("2026-11-24T23:30:00-08:00", "2026-11-24"),  # the day as written, not moved to UTC
        ("2026-11-24T00:30:00+02:00", "2026-11-24"),
        ("2026-11-24 08:00:00", "2026-11-24"),
    ],
)
def test_dates(value, expected):
    assert calendar_date(value) == expected


@pytest.mark.parametrize(
    "value", ["2026-02-30", "24/11/2026", "11/24/2026", "2026-11-24Tgarbage", "20261124", 20261124]
)
def test_dates_refuse_garbage(value):
    with pytest.raises(ValueError):
        calendar_date(value)


def test_a_garbage_date_in_a_record_is_a_mapping_error_naming_it():
    with pytest.raises(MappingError) as caught:
        map_record("payments", payment_record(paymentSummary={"receiptDate": "next Tuesday"}))
    assert caught.value.errors == {"paymentSummary.receiptDate": ["not a date (YYYY-MM-DD): 'next Tuesday'"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:00:00+01:00", "2026-11-24T09:00:00Z"),
        ("2026-11-24T10:00:00Z", "2026-11-24T10:00:00Z"),
        ("2026-11-24t10:00:00z", "2026-11-24T10:00:00Z"),
        ("2026-11-24T20:30:00-05:00", "2026-11-25T01:30:00Z"),
        ("2026-11-24T10:00:00.250+00:00", "2026-11-24T10:00:00.25Z"),
        ("2026-11-24T10:00:00.000Z", "2026-11-24T10:00:00Z"),
        ("2026-11-24T10:00:00", "2026-11-24T10:00:00Z"),  # no offset: read as UTC
        (datetime(2026, 11, 24, 10, tzinfo=timezone(timedelta(hours=1))), "2026-11-24T09:00:00Z"),
        (datetime(2026, 11, 24, 10), "2026-11-24T10:00:00Z"),
        (1795514400, "2026-11-24T10:00:00Z"),
    ],
)
def test_timestamps_become_utc_with_z(value, expected):
    assert utc_timestamp(value) == expected


@pytest.mark.parametrize(
    "value", ["2026-11-24", "yesterday", "2026-11-24T25:00:00Z", "2026-11-24T10:00:00+24:00", True]
)
def test_timestamps_refuse_garbage(value):
    with pytest.raises(ValueError):
        utc_timestamp(value)


def test_source_version_is_normalised_in_the_item():
    item = mapped("entities", entity_record(audit=audit("2026-11-24T10:00:00+01:00")))
    assert item["sourceVersion"] == "2026-11-24T09:00:00Z"


# -- tombstones -----------------------------------------------------------------------------


@pytest.mark.parametrize("resource", sorted(MAPPINGS))
def test_tombstones_of_every_resource(resource):
    item = assert_valid(resource, tombstone(resource, 1042, "2026-11-24T10:00:00+01:00"))
    assert item == {"externalId": "1042", "sourceVersion": "2026-11-24T09:00:00Z", "deleted": True}


def test_tombstone_at_an_observed_datetime():
    observed = datetime(2026, 11, 24, 9, 0, 0, 500000, tzinfo=UTC)
    assert tombstone("payments", "9", observed)["sourceVersion"] == "2026-11-24T09:00:00.5Z"


def test_a_tombstone_without_key_or_time_is_a_mapping_error():
    with pytest.raises(MappingError) as caught:
        tombstone("invoices", "", "soon")
    assert set(caught.value.errors) == {"key", "observedAt"}


# -- errors ---------------------------------------------------------------------------------


def test_mapping_error_names_the_record_and_every_field():
    record = invoice_record(totalTxnAmount="12,50", invoiceDate="2026-13-01")
    del record["customer"]
    with pytest.raises(MappingError) as caught:
        map_record("invoices", record, [invoice_line("6", "one", "1"), "not a line"])
    error = caught.value
    assert (error.resource, error.key) == ("invoices", "1042")
    assert str(error) == (
        "cannot map invoices record key 1042: "
        "customer.id: Missing data for required field; "
        "invoice-line[#2]: not an object: 'not a line'; "
        "invoice-line[key=6].lineNumber: not a line number: 'one'; "
        "invoiceDate: not a date (YYYY-MM-DD): '2026-13-01'; "
        "totalTxnAmount: not a decimal amount: '12,50'"
    )


def test_mapping_error_without_a_key():
    record = customer_record()
    del record["key"]
    with pytest.raises(MappingError, match="customers record without a key: key: Missing data") as caught:
        map_record("customers", record)
    assert caught.value.key is None


def test_mapping_error_for_a_record_that_is_not_an_object():
    with pytest.raises(MappingError, match="record: not an object"):
        map_record("customers", ["C-1"])  # type: ignore[arg-type]


def test_mapping_error_survives_pickling():
    error = MappingError("invoices", "1", {"state": ["unknown value 'x'"]})
    copy_ = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (copy_.resource, copy_.key, copy_.errors, str(copy_)) == (
        error.resource,
        "1",
        error.errors,
        str(error),
    )


# -- shapes ---------------------------------------------------------------------------------


def test_unflatten_builds_the_nested_record_of_a_query_row():
    row = {
        "key": "1042",
        "customer.id": "C-0041",
        "currency.txnCurrency": "USD",
        "audit": {"createdDateTime": "2026-11-01T08:00:00Z"},
        "audit.modifiedDateTime": MODIFIED,
    }
    assert unflatten(row) == {
        "key": "1042",
        "customer": {"id": "C-0041"},
        "currency": {"txnCurrency": "USD"},
        "audit": {"createdDateTime": "2026-11-01T08:00:00Z", "modifiedDateTime": MODIFIED},
    }


@pytest.mark.parametrize(
    "row", [{"customer": "C-1", "customer.id": "C-1"}, {"customer.id": "C-1", "customer": "C-1"}]
)
def test_unflatten_refuses_a_name_that_is_both_a_value_and_an_object(row):
    with pytest.raises(ValueError, match="customer"):
        unflatten(row)


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


@pytest.mark.parametrize(
    ("resource", "record", "lines"),
    [
        ("invoices", invoice_record(), [invoice_line("6", 1, "1250")]),
        ("payments", payment_record(), [payment_detail("1", "1042", "700")]),
        ("customers", customer_record(), []),
        ("bank-accounts", bank_account_record(), []),
    ],
)
def test_query_rows_map_like_get_records(resource, record, lines):
    # Exactly the requested fields, flat, as the query service answers them.
    fields = query_fields(resource)
    row = {name: value for name, value in _flat(record).items() if name in fields}
    line_rows = [_flat(line) for line in lines]
    expected = map_record(resource, record, lines)
    assert map_record(resource, row, line_rows) == expected
    assert map_record(resource, unflatten(row), [unflatten(r) for r in line_rows]) == expected


def test_mapping_does_not_change_its_inputs():
    record, lines = invoice_record(), [invoice_line("6", 1, "1250")]
    before = copy.deepcopy((record, lines))
    map_record("invoices", record, lines)
    assert (record, lines) == before


# -- junk -----------------------------------------------------------------------------------

_FIELD_NAMES = sorted(
    {name for m in MAPPINGS.values() for name in m.fields}
    | {name for m in MAPPINGS.values() if m.lines for name in m.lines.fields}
    | {"entity.id", "invoice.key"}
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["", " ", "0", "-1.005", "2026-11-24", "2026-11-24T10:00:00+01:00", "draft", "posted", "debit"]
    ),
    st.decimals(allow_nan=True).map(str),
)
_JUNK = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
# Mostly the real field names (flat or nested), so junk reaches every field's checks.
_JUNK_RECORDS = st.one_of(
    st.dictionaries(st.sampled_from(_FIELD_NAMES), _JUNK, max_size=14),
    st.dictionaries(st.sampled_from(_FIELD_NAMES), _JUNK, max_size=14).map(
        lambda row: unflatten(row) if _unflattens(row) else row
    ),
    _JUNK,
)


def _unflattens(row: dict[str, Any]) -> bool:
    try:
        unflatten(row)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    resource=st.sampled_from(sorted(MAPPINGS)),
    record=_JUNK_RECORDS,
    lines=st.one_of(st.lists(_JUNK_RECORDS, max_size=3), _JUNK),
)
def test_junk_raises_only_mapping_error(resource, record, lines):
    if line_source(resource) is None:
        lines = ()
    try:
        item = map_record(resource, record, lines)
    except MappingError as error:
        assert error.errors and str(error).startswith(f"cannot map {resource} record")
    else:
        assert_valid(resource, item)


REALISTIC = {
    "customers": (customer_record, list),
    "invoices": (invoice_record, lambda: [invoice_line("6", 1, "1000"), invoice_line("7", 2, "250")]),
    "payments": (payment_record, lambda: [payment_detail("1", "1042", "700")]),
    "adjustments": (adjustment_record, list),
    "gl-accounts": (gl_account_record, list),
    "journal-entries": (
        journal_entry_record,
        lambda: [journal_line("1", 1, "6100", "5", "debit"), journal_line("2", 2, "2000", "5", "credit")],
    ),
    "bank-accounts": (bank_account_record, list),
    "deposits": (deposit_record, lambda: [{"key": "3", "deposit": {"key": "55"}, "payment": {"key": "880"}}]),
    "other-receipts": (other_receipt_record, list),
    "entities": (entity_record, list),
}


def test_every_resource_has_a_realistic_record_for_the_fuzzer():
    assert set(REALISTIC) == set(MAPPINGS)


def _corrupted(data: st.DataObject, record: dict[str, Any]) -> dict[str, Any]:
    flat = _flat(record)
    for name in data.draw(st.lists(st.sampled_from(sorted(flat)), max_size=3, unique=True)):
        if data.draw(st.booleans()):
            del flat[name]
        else:
            flat[name] = data.draw(_JUNK)
    return flat


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resource=st.sampled_from(sorted(MAPPINGS)), data=st.data())
def test_corrupted_records_map_to_valid_items_or_raise_mapping_error(resource, data):
    # Realistic records with a few fields dropped or replaced by junk: both outcomes happen.
    make_record, make_lines = REALISTIC[resource]
    record = _corrupted(data, make_record())
    lines = [_corrupted(data, line) for line in make_lines()]
    try:
        item = map_record(resource, record, lines)
    except MappingError as error:
        assert error.resource == resource and error.errors
        assert all(field in str(error) for field in error.errors)
    else:
        assert_valid(resource, item)
        assert "0012 3456" not in json.dumps(item) and "123456" not in json.dumps(item)
