"""The service against Sage's published Intacct schema (the digests in ``shared/spec/intacct-openapi``).

Every field path the service reads or writes (the field maps, the queries the sync and the write-back
send, the create and reverse bodies) must be in the digest's table for that object; every create body
the service builds must carry the published required properties and respect maxLength and enums; every
published state of the objects the service imports must be mapped or deliberately skipped. Runs in CI
with no network: the digests are files. Drifting from Sage, in the product or in a digest, fails here.
"""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from clients.intacct.client import Page
from clients.intacct.payments import (
    OPEN_INVOICE_STATES,
    PAYMENT_METHODS,
    REVERSAL_STATE,
    REVERSED_PAYMENT_STATES,
    PaymentWrites,
    create_body,
    reference_for,
    reverse_body,
)
from schemas import intacct_fields
from schemas.catalog import BY_RESOURCE
from schemas.intacct_fields import BY_OBJECT_PATH, FIELD_MAPS, Invoice, Payment, PaymentDetail
from schemas.mappings import MAPPINGS, line_source, query_fields
from schemas.mappings.ledger import JOURNAL_ENTRY_STATES
from schemas.mappings.receivables import INVOICE_STATES, PAYMENT_STATES
from schemas.mappings.records import flatten
from tests import intacct_digest
from tests.intacct_digest import PublishedObject


def _spec_dir() -> Path:
    found = intacct_digest.find_spec_dir()
    if found is None:
        reason = "no shared/spec/intacct-openapi above the repository (set FLEXSYNC_SPEC_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the Intacct contract cannot be checked in CI: {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def spec_dir() -> Path:
    return _spec_dir()


@pytest.fixture(scope="module")
def published(spec_dir: Path) -> dict[str, PublishedObject]:
    objects = intacct_digest.load(spec_dir)
    # Guards every test below: a parser that found nothing would let everything pass.
    assert len(objects) >= 15 and len(objects["accounts-receivable/payment"].fields) > 50
    assert "receiptDate" not in objects["accounts-receivable/payment"].fields
    return objects


def _unpublished(published: dict[str, PublishedObject], object_path: str, paths: Any) -> list[str]:
    assert object_path in published, f"{object_path} is not an object of the digests"
    fields = published[object_path].fields
    return sorted(p for p in paths if p not in fields)


# -- reads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field_map", FIELD_MAPS, ids=lambda m: m.object_path)
def test_every_field_map_names_only_published_fields(published, field_map):
    assert _unpublished(published, field_map.object_path, field_map.paths().values()) == []


def test_every_synced_object_and_line_object_has_a_field_map():
    for resource in MAPPINGS:
        assert BY_RESOURCE[resource].rest_path in BY_OBJECT_PATH
        source = line_source(resource)
        if source is not None:
            assert source.rest_path in BY_OBJECT_PATH
            assert source.parent_field == BY_OBJECT_PATH[source.rest_path].paths()["PARENT"]


@pytest.mark.parametrize("resource", sorted(MAPPINGS))
def test_the_syncs_queries_ask_only_for_published_fields(published, resource):
    assert _unpublished(published, BY_RESOURCE[resource].rest_path, query_fields(resource)) == []
    source = line_source(resource)
    if source is not None:
        assert _unpublished(published, source.rest_path, (*source.fields, source.parent_field)) == []


def test_the_parent_pointers_of_line_objects_are_the_published_ones(published):
    parents = {m.object_path: m.paths()["PARENT"] for m in FIELD_MAPS if "PARENT" in m.paths()}
    assert parents == {
        "accounts-receivable/invoice-line": "invoice.key",
        "accounts-receivable/payment-detail": "arPayment.key",
        "accounts-receivable/adjustment-line": "arAdjustment.key",
        "general-ledger/journal-entry-line": "journalEntry.key",
        "cash-management/deposit-detail": "deposit.key",
        "cash-management/other-receipt-line": "otherReceipts.key",
    }
    for object_path, parent in parents.items():
        assert parent in published[object_path].fields


class RecordingClient:
    """The Intacct client's read surface, recording what the write-back asks for."""

    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []

    def query(self, connection: Any, object_path: str, **request: Any) -> Page:
        self.queries.append({"object": object_path, **request})
        return Page(rows=[], total_count=0, next_start=None)


def _filter_fields(filters: list[dict[str, Any]]) -> list[str]:
    return [name for condition in filters for operands in condition.values() for name in operands]


def test_the_write_backs_reads_ask_only_for_published_fields(published):
    client = RecordingClient()
    PaymentWrites(client).find_by_reference(None, reference_for("acct-1", "pay-1"))  # type: ignore[arg-type]
    (query,) = client.queries
    assert query["object"] == Payment.object_path
    named = [*query["fields"], *_filter_fields(query["filters"]), *(k for o in query["order_by"] for k in o)]
    assert _unpublished(published, Payment.object_path, named) == []
    # The pre-checks read these of the invoices' batch GET.
    assert _unpublished(published, Invoice.object_path, [Invoice.STATE, Invoice.CURRENCY, Invoice.DUE]) == []


# -- states ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("object_path", "mapped", "skipped"),
    [
        ("accounts-receivable/invoice", INVOICE_STATES, {"draft", "reversal"}),
        ("accounts-receivable/payment", PAYMENT_STATES, {"reversal"}),
        ("general-ledger/journal-entry", JOURNAL_ENTRY_STATES, set()),
    ],
)
def test_every_published_state_is_mapped_or_deliberately_skipped(published, object_path, mapped, skipped):
    enum = set(published[object_path].fields["state"].enum)
    assert enum, f"{object_path}.state publishes no enum"
    assert set(mapped) | skipped == enum


def test_the_write_backs_state_sets_are_published_states(published):
    assert set(published[Invoice.object_path].fields["state"].enum) >= OPEN_INVOICE_STATES
    payment_states = set(published[Payment.object_path].fields["state"].enum)
    assert payment_states >= REVERSED_PAYMENT_STATES and REVERSAL_STATE in payment_states


# -- writes ---------------------------------------------------------------------------------


def _post(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "accountId": "acct-1",
        "paymentId": "pay_" + "9" * 60,  # FlexPoint ids hold up to 64 characters
        "customerId": "C-00042",
        "receivedOn": date(2026, 12, 1),
        "amount": Decimal("1250.00"),
        "currency": "USD",
        "method": "ach",
        "depositBankAccountId": "BANK-01",
        "undepositedGLAccountId": None,
        "allocations": [
            {"invoiceExternalId": "1234", "amount": Decimal("1000.00")},
            {"invoiceExternalId": "1235", "amount": Decimal("200.00")},
        ],
        "memo": "m" * 1000,
    }
    message.update(changes)
    return message


CREATES = {
    "bank": _post(),
    "undeposited": _post(depositBankAccountId=None, undepositedGLAccountId="1499", method="card", memo=None),
    "overpayment": _post(allocations=[], method="check"),
    **{f"method-{m}": _post(method=m) for m in PAYMENT_METHODS},
}


def _violations(
    body: dict[str, Any], payment: PublishedObject, detail: PublishedObject, rules: dict
) -> list[str]:
    problems: list[str] = []

    def check(obj: PublishedObject, flat: dict[str, Any], where: str) -> None:
        for path, value in flat.items():
            field = obj.fields.get(path)
            if field is None:
                problems.append(f"{where}{path}: not in the published schema")
                continue
            if field.read_only:
                problems.append(f"{where}{path}: read-only")
            if field.max_length is not None and isinstance(value, str) and len(value) > field.max_length:
                problems.append(f"{where}{path}: {len(value)} characters, maxLength {field.max_length}")
            if field.enum and value not in field.enum:
                problems.append(f"{where}{path}: {value!r} not in {field.enum}")

    details = body.get("paymentDetails", [])
    top = {k: v for k, v in body.items() if k != "paymentDetails"}
    check(payment, flatten(top), "")
    for pair in rules["one_of"]:
        present = [name for name in pair if name in body]
        if len(present) != 1:
            problems.append(f"exactly one of {pair} required, got {present}")
    for parent, members in rules["nested"].items():
        for member in members:
            if parent in body and member not in body[parent]:
                problems.append(f"{parent}.{member}: required")
    for index, item in enumerate(details):
        check(detail, flatten(item), f"paymentDetails/{index}/")
        for member in rules["detail"]:
            if member not in item:
                problems.append(f"paymentDetails/{index}/{member}: required")
        for parent, members in rules["detail_nested"].items():
            for member in members:
                if parent in item and member not in item[parent]:
                    problems.append(f"paymentDetails/{index}/{parent}.{member}: required")
    return problems


@pytest.mark.parametrize("case", sorted(CREATES))
def test_every_payment_create_body_validates_against_the_published_schema(published, spec_dir, case):
    post = CREATES[case]
    body = create_body(post, reference_for(post["accountId"], post["paymentId"]))
    rules = intacct_digest.required_payment_create(spec_dir)
    assert rules["one_of"] and rules["nested"] and rules["detail"], "the required properties were not parsed"
    payment = published[Payment.object_path]
    detail = published[PaymentDetail.object_path]
    assert _violations(body, payment, detail, rules) == []
    # The receipt date is where Sage puts it, and the write-back names it through the field map.
    assert body["paymentSummary"]["receiptDate"] == "2026-12-01"


def test_the_body_checker_catches_what_sage_refuses(published, spec_dir):
    # Guards the test above: each of these mistakes must be reported.
    rules = intacct_digest.required_payment_create(spec_dir)
    good = create_body(CREATES["bank"], "FP-ABCDEFGHIJKLMNOPQR")
    payment, detail = published[Payment.object_path], published[PaymentDetail.object_path]
    wrong = [
        {**good, "receiptDate": "2026-12-01"},
        {**good, "paymentSummary": {}},
        {**good, "referenceNumber": "FP-" + "A" * 19},
        {**good, "paymentMethod": "ach"},
        {**good, "undepositedGLAccount": {"id": "1499"}},
        {**good, "paymentDetails": [{"arInvoice": {"key": "1"}, "txnAmount": "1.00"}]},
        {**good, "paymentDetails": [{"txnCurrency": {"paymentAmount": "1.00"}}]},
        {**good, "txnCurrency": {"totalPaid": "1.00", "currency": "USD"}},
    ]
    for body in wrong:
        assert _violations(body, payment, detail, rules), body


def test_the_reverse_body_is_the_published_workflow_request(spec_dir):
    text = (spec_dir / "intacct-openapi" / "accounts-receivable.md").read_text(encoding="utf-8")
    section = text.split("### 3.2 `POST /workflows/accounts-receivable/payment/reverse`", 1)[1]
    request_line = next(line for line in section.splitlines() if line.startswith("Request schema"))
    published_fields = {name for name in intacct_digest._TICKED.findall(request_line) if "-" not in name}
    assert published_fields == set(intacct_fields.PAYMENT_REVERSE_FIELDS)
    assert "/workflows/accounts-receivable/payment/reverse" in text
    assert intacct_fields.PAYMENT_REVERSE_PATH == "workflows/accounts-receivable/payment/reverse"
    required = intacct_digest.required_workflow(spec_dir, "### 3.2")
    for memo in ("reversed by FlexPoint", None):
        body = reverse_body("5678", "2026-12-03", memo)
        assert set(body) <= published_fields
        assert set(required) <= set(body)


# -- the product and the simulator, each held to the digest, held to each other ----------------


def test_every_field_the_service_names_is_one_the_simulator_serves():
    """The simulator is written from the digests, never from the product (it imports nothing of
    it); this is where the two meet: every field-map path is a field, or an embedded array, of the
    simulator's schema for that object."""
    from sandbox.intacct.schema import SCHEMAS

    missing = [
        (field_map.object_path, path)
        for field_map in FIELD_MAPS
        for path in field_map.paths().values()
        if path not in SCHEMAS[field_map.object_path].by_path
        and path not in SCHEMAS[field_map.object_path].arrays
    ]
    assert missing == []


def test_the_simulators_enums_and_lengths_are_the_digests(published: dict[str, PublishedObject]):
    """Every enum and maxLength the simulator enforces is the digest's, so a refusal the service
    meets in the sandbox is one Sage would give."""
    from sandbox.intacct.schema import SCHEMAS

    differences = []
    for path, schema in SCHEMAS.items():
        for spec in schema.fields:
            digest = published[path].fields.get(spec.path)
            if digest is None:
                continue  # a bare href the digest's tables leave implicit
            sim_enum = {value for value in spec.enum or () if value is not None}
            if spec.enum is not None and sim_enum != set(digest.enum):
                differences.append((path, spec.path, "enum", sorted(sim_enum), sorted(digest.enum)))
            if spec.max_length != digest.max_length:
                differences.append((path, spec.path, "maxLength", spec.max_length, digest.max_length))
    assert differences == []
