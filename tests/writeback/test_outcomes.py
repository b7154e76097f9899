"""The write-back's handling of unknown outcomes, idempotency keys, reversal records and companies,
against the real postings table and a scripted Intacct (no network, no sandbox)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from clients.intacct import IntacctRejected, IntacctUnavailable, RateLimited
from workers.writeback.handler import WritebackHandler
from workers.writeback.store import PostingStore, reference_for

SPAN = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Connection:
    connection_id: str = "conn-1"
    account_id: str = "acct-1"
    company_id: str = "CO-1"
    entity_id: str | None = None
    is_active: bool = True


@dataclass
class Connections:
    current: Connection = field(default_factory=Connection)

    def get(self, connection_id: str) -> Connection | None:
        return self.current if connection_id == self.current.connection_id else None


class ScriptedIntacct:
    """PaymentWrites' surface: each create answers the next scripted outcome (a key or an error);
    ``committed`` holds the payments Intacct really has, by reference."""

    def __init__(self) -> None:
        self.creates: list[tuple[dict[str, Any], str]] = []
        self.create_outcomes: list[tuple[bool, Any]] = []  # (committed?, key or error)
        self.committed: dict[str, dict[str, Any]] = {}
        self.lookups = 0
        self.reverses: list[tuple[str, str]] = []
        self.reverse_outcomes: list[Any] = []
        self.states: dict[str, str] = {}

    def one_slot(self, connection: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def invoices(self, connection: Any, keys: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
        return {
            k: {"state": "posted", "currency.txnCurrency": "USD", "totalTxnAmountDue": "5000.00"}
            for k in keys
        }, []

    def create(self, connection: Any, body: dict[str, Any], idempotency_key: str) -> str:
        self.creates.append((body, idempotency_key))
        committed, outcome = self.create_outcomes.pop(0)
        key = str(len(self.creates) + 100)
        if committed:
            self.committed[body["referenceNumber"]] = {"key": key, "state": "complete"}
            self.states[key] = "complete"
        if isinstance(outcome, Exception):
            raise outcome
        return key

    def find_by_reference(self, connection: Any, reference: str) -> list[dict[str, Any]]:
        self.lookups += 1
        row = self.committed.get(reference)
        return [row] if row else []

    def state_of(self, connection: Any, key: str) -> str | None:
        return self.states.get(key)

    def reverse(self, connection: Any, key: str, reversed_on: str, memo: Any, idempotency_key: str) -> None:
        self.reverses.append((key, idempotency_key))
        outcome = self.reverse_outcomes.pop(0)
        if outcome == "reverse":
            self.states[key] = "reversed"
        elif isinstance(outcome, Exception):
            raise outcome


class Reports:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def report_posting(self, account_id: str, payment_id: str, body: dict[str, Any]) -> None:
        self.sent.append(body)


@pytest.fixture
def world(engine):
    clock = Clock()
    postings = PostingStore(engine, clock=clock)
    intacct, reports, connections = ScriptedIntacct(), Reports(), Connections()
    handler = WritebackHandler(
        connections=connections,
        postings=postings,
        intacct=intacct,  # type: ignore[arg-type]
        flexpoint=reports,
        write_span=SPAN,
        clock=clock,
    )
    return handler, intacct, reports, postings, clock, connections


def post(**changes: Any) -> dict[str, Any]:
    message = {
        "messageId": "m-1",
        "accountId": "acct-1",
        "connectionId": "conn-1",
        "paymentId": "pay-1",
        "customerId": "C-1",
        "receivedOn": "2026-12-01",
        "amount": "100.00",
        "currency": "USD",
        "method": "ach",
        "depositBankAccountId": "BANK-01",
        "allocations": [{"invoiceExternalId": "7", "amount": "100.00"}],
        "memo": None,
        "requestedAt": "2026-12-01T10:00:00Z",
    }
    message.update(changes)
    return message


def reverse() -> dict[str, Any]:
    return {
        "messageId": "m-2",
        "accountId": "acct-1",
        "connectionId": "conn-1",
        "paymentId": "pay-1",
        "reversedOn": "2026-12-03",
        "memo": "refund",
        "requestedAt": "2026-12-02T10:00:00Z",
    }


@pytest.mark.parametrize(
    "lost",
    [
        IntacctUnavailable("502 from the gateway", status=502),
        IntacctUnavailable("504", status=504),
        IntacctUnavailable("read timeout"),
        IntacctUnavailable("408", status=408),
        IntacctRejected("409 repeated key", status=409),
    ],
)
@pytest.mark.parametrize("committed", [True, False])
def test_an_unknown_outcome_stays_creating_until_the_reference_query_after_the_window(world, lost, committed):
    handler, intacct, reports, postings, clock, _ = world
    intacct.create_outcomes = [(committed, lost), (True, None)]
    failure = handler.handle("payment.post", post())
    assert failure is not None and failure.reason == "outcome_unknown" and failure.transient
    row = postings.get("acct-1", "pay-1")
    assert row is not None and row.state == "creating", "never back to pending on a 5xx"
    # Redelivered before the write's window ended: no create, no lookup either.
    clock.now += SPAN / 2
    assert handler.handle("payment.post", post()).reason == "outcome_unknown"
    assert (len(intacct.creates), intacct.lookups) == (1, 0)
    clock.now += SPAN
    assert handler.handle("payment.post", post()) is None
    row = postings.get("acct-1", "pay-1")
    assert row is not None and row.state == "posted" and intacct.lookups == 1
    # Found: no second create. Absent: the same write sent again, under the same key.
    assert len(intacct.creates) == (1 if committed else 2)
    assert len({key for _, key in intacct.creates}) == 1
    assert reports.sent[-1]["state"] == "posted" and reports.sent[-1]["intacctReference"] == row.reference


def test_every_create_carries_the_reference_description_key_and_company(world):
    handler, intacct, reports, postings, _, _ = world
    intacct.create_outcomes = [(True, None)]
    assert handler.handle("payment.post", post()) is None
    body, key = intacct.creates[0]
    reference = reference_for("acct-1", "pay-1")
    assert body["referenceNumber"] == reference and len(reference) == 21
    assert body["description"] == "FlexPoint payment pay-1"
    assert body["paymentSummary"] == {"receiptDate": "2026-12-01"} and "receiptDate" not in body
    row = postings.get("acct-1", "pay-1")
    assert row is not None and (row.create_key, row.company_id, row.reference) == (key, "CO-1", reference)
    assert reports.sent[-1]["intacctReference"] == reference


def test_a_post_sent_again_after_a_refusal_is_a_new_write_with_a_new_key(world):
    handler, intacct, reports, postings, _, _ = world
    refusal = IntacctRejected("422", status=422, details=[{"target": "/customer/id", "message": "unknown"}])
    intacct.create_outcomes = [(False, refusal), (True, None)]
    assert handler.handle("payment.post", post()) is None
    assert reports.sent[-1]["reason"] == "customer_not_found"
    assert handler.handle("payment.post", post(messageId="m-again")) is None
    assert intacct.creates[0][1] != intacct.creates[1][1]
    row = postings.get("acct-1", "pay-1")
    assert row is not None and row.state == "posted"


def test_a_429_means_not_sent_and_keeps_the_writes_key(world):
    handler, intacct, _, postings, _, _ = world
    intacct.create_outcomes = [(False, RateLimited("429", retry_after=None, status=429)), (True, None)]
    assert handler.handle("payment.post", post()).reason == "intacct_unavailable"
    row = postings.get("acct-1", "pay-1")
    assert row is not None and row.state == "pending"
    assert handler.handle("payment.post", post()) is None
    assert intacct.creates[0][1] == intacct.creates[1][1]


def test_a_reverse_uses_the_published_workflow_once_with_one_key_and_knows_reversed(world):
    handler, intacct, reports, postings, clock, _ = world
    intacct.create_outcomes = [(True, None)]
    assert handler.handle("payment.post", post()) is None
    intacct.reverse_outcomes = [IntacctUnavailable("502", status=502), None]
    assert handler.handle("payment.reverse", reverse()).reason == "outcome_unknown"
    # Not reversed yet, and the window not over: not sent again.
    assert handler.handle("payment.reverse", reverse()).reason == "outcome_unknown"
    assert len(intacct.reverses) == 1
    clock.now += 2 * SPAN
    intacct.reverse_outcomes = ["reverse"]
    assert handler.handle("payment.reverse", reverse()) is None
    assert len(intacct.reverses) == 2 and intacct.reverses[0][1] == intacct.reverses[1][1]
    row = postings.get("acct-1", "pay-1")
    assert row is not None and row.state == "reversed" and reports.sent[-1]["state"] == "reversed"


@pytest.mark.parametrize("state", ["reversed", "reversal"])
def test_a_reverse_whose_answer_was_lost_is_recognised_in_either_published_state(world, state):
    handler, intacct, _, postings, _, _ = world
    intacct.create_outcomes = [(True, None)]
    assert handler.handle("payment.post", post()) is None
    key = postings.get("acct-1", "pay-1").intacct_key

    def lost_after_commit() -> IntacctUnavailable:
        intacct.states[key] = state
        return IntacctUnavailable("timeout")

    intacct.reverse_outcomes = [lost_after_commit()]
    assert handler.handle("payment.reverse", reverse()) is None
    assert postings.get("acct-1", "pay-1").state == "reversed"


def test_a_reverse_in_another_company_than_the_posting_is_refused(world):
    handler, intacct, _, postings, _, connections = world
    intacct.create_outcomes = [(True, None)]
    assert handler.handle("payment.post", post()) is None
    connections.current = Connection(company_id="CO-2")
    failure = handler.handle("payment.reverse", reverse())
    assert failure is not None and failure.reason == "company_changed" and not failure.transient
    assert "CO-1" in str(failure.exception) and "CO-2" in str(failure.exception)
    assert intacct.reverses == [] and postings.get("acct-1", "pay-1").state == "posted"
