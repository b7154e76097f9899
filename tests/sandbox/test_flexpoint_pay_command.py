"""``flexsync sandbox flexpoint pay`` and ``postings`` against a running FlexPoint simulator and the
real RabbitMQ: the payment is recorded, and the message lands on a test queue bound to
``flexpoint.payments`` with exactly BRIEF.md's fields."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal

import pytest
import requests
from click.testing import CliRunner
from kombu import Connection, Exchange, Queue

from sandbox.cli import sandbox
from sandbox.flexpoint import FlexPointConfig, FlexPointServer
from tests.conftest import wait_until

AUTH = {"Authorization": "Bearer sandbox-token"}
POST_FIELDS = {
    "messageId",
    "accountId",
    "connectionId",
    "paymentId",
    "customerId",
    "receivedOn",
    "amount",
    "currency",
    "method",
    "allocations",
    "memo",
    "requestedAt",
}
REVERSE_FIELDS = {"messageId", "accountId", "connectionId", "paymentId", "reversedOn", "memo", "requestedAt"}


@pytest.fixture
def flexpoint_url(tmp_path):
    with FlexPointServer(FlexPointConfig(port=0, data_dir=tmp_path / "flexpoint")) as server:
        yield server.url


@pytest.fixture
def tap(amqp_url):
    """A test queue bound to flexpoint.payments for every payment routing key."""
    exchange = Exchange("flexpoint.payments", type="topic", durable=True)
    queue = Queue(
        f"test-payments-{uuid.uuid4().hex[:8]}", exchange, routing_key="payment.*", auto_delete=True
    )
    with Connection(amqp_url) as connection:
        bound = queue(connection.default_channel)
        exchange(connection.default_channel).declare()
        bound.declare()
        yield bound


def run(amqp_url: str, url: str, *args: str):
    result = CliRunner().invoke(sandbox, ["flexpoint", *args, "--url", url, "--amqp-url", amqp_url])
    return result


def take(queue) -> list:
    messages = []
    while (message := queue.get(no_ack=True)) is not None:
        messages.append(message)
    return messages


def test_pay_records_the_payment_and_publishes_payment_post(amqp_url, flexpoint_url, tap):
    result = run(
        amqp_url,
        flexpoint_url,
        "pay",
        "--account", "acct-1",
        "--connection", "conn-1",
        "--customer", "C-00042",
        "--amount", "1250.00",
        "--invoice", "17:1000.00",
        "--invoice", "18:150.10",
        "--bank", "BANK-01",
        "--method", "check",
        "--received-on", "2026-12-01",
        "--payment-id", "pay-42",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [message] = wait_until(lambda: take(tap), 10, message="payment.post on the test queue")
    assert message.delivery_info["routing_key"] == "payment.post"
    assert message.properties["delivery_mode"] == 2
    body = json.loads(message.body)
    assert set(body) == POST_FIELDS | {"depositBankAccountId"}
    assert (body["accountId"], body["connectionId"], body["paymentId"], body["customerId"]) == (
        "acct-1",
        "conn-1",
        "pay-42",
        "C-00042",
    )
    assert (body["amount"], body["currency"], body["method"], body["receivedOn"]) == (
        "1250.00",
        "USD",
        "check",
        "2026-12-01",
    )
    assert body["depositBankAccountId"] == "BANK-01" and body["memo"] is None
    assert body["allocations"] == [
        {"invoiceExternalId": "17", "amount": "1000.00"},
        {"invoiceExternalId": "18", "amount": "150.10"},
    ]
    assert sum(Decimal(a["amount"]) for a in body["allocations"]) <= Decimal(body["amount"])
    assert datetime.fromisoformat(body["requestedAt"]).tzinfo is not None
    uuid.UUID(body["messageId"])
    stored = requests.get(
        f"{flexpoint_url}/sandbox/accounts/acct-1/payments/pay-42", headers=AUTH, timeout=10
    )
    assert stored.json()["payment"]["amount"] == "1250.00" and stored.json()["state"] is None


def test_one_bare_invoice_takes_the_whole_amount_into_undeposited_funds(amqp_url, flexpoint_url, tap):
    result = run(
        amqp_url, flexpoint_url, "pay", "--account", "acct-1", "--connection", "conn-1",
        "--customer", "C-1", "--amount", "75.5", "--invoice", "17", "--undeposited", "1499",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [message] = wait_until(lambda: take(tap), 10, message="payment.post")
    body = json.loads(message.body)
    assert body["undepositedGLAccountId"] == "1499" and "depositBankAccountId" not in body
    assert body["amount"] == "75.50" and body["allocations"] == [
        {"invoiceExternalId": "17", "amount": "75.50"}
    ]
    assert body["paymentId"].startswith("fp-") and body["method"] == "ach"


def test_reverse_publishes_payment_reverse_for_a_recorded_payment(amqp_url, flexpoint_url, tap):
    common = ("--account", "acct-1")
    assert run(
        amqp_url, flexpoint_url, "pay", *common, "--connection", "conn-9", "--customer", "C-1",
        "--invoice", "17:10.00", "--bank", "BANK-01", "--payment-id", "pay-7",
    ).exit_code == 0  # fmt: skip
    wait_until(lambda: take(tap), 10, message="payment.post")
    result = run(
        amqp_url, flexpoint_url, "pay", *common, "--reverse", "pay-7", "--reversed-on", "2026-12-03",
        "--memo", "chargeback",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [message] = wait_until(lambda: take(tap), 10, message="payment.reverse")
    assert message.delivery_info["routing_key"] == "payment.reverse"
    body = json.loads(message.body)
    assert set(body) == REVERSE_FIELDS
    assert (body["connectionId"], body["paymentId"], body["reversedOn"], body["memo"]) == (
        "conn-9",
        "pay-7",
        "2026-12-03",
        "chargeback",
    )
    missing = run(amqp_url, flexpoint_url, "pay", *common, "--reverse", "pay-unknown")
    assert missing.exit_code != 0 and "pay-unknown" in missing.output
    assert take(tap) == []


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--invoice", "17:10.00"), "--connection"),
        (("--connection", "c", "--customer", "C-1", "--invoice", "17:10.00"), "--bank"),
        (
            ("--connection", "c", "--customer", "C-1", "--invoice", "17", "--invoice", "18", "--bank", "B"),
            "KEY:AMOUNT",
        ),
        (("--connection", "c", "--customer", "C-1", "--invoice", "17:1.001", "--bank", "B"), "2 decimals"),
        (
            (
                "--connection",
                "c",
                "--customer",
                "C-1",
                "--amount",
                "5.00",
                "--invoice",
                "17:6.00",
                "--bank",
                "B",
            ),
            "more than",
        ),
    ],
)
def test_bad_options_publish_nothing(amqp_url, flexpoint_url, tap, args, complaint):
    result = run(amqp_url, flexpoint_url, "pay", "--account", "acct-1", *args)
    assert result.exit_code != 0 and complaint in result.output, result.output
    assert take(tap) == []


def test_postings_shows_the_last_reported_state(amqp_url, flexpoint_url, tap):
    assert run(
        amqp_url, flexpoint_url, "pay", "--account", "acct-1", "--connection", "conn-1", "--customer", "C-1",
        "--invoice", "17:10.00", "--bank", "BANK-01", "--payment-id", "pay-8",
    ).exit_code == 0  # fmt: skip
    report = {
        "connectionId": "conn-1",
        "paymentId": "pay-8",
        "state": "posted",
        "intacctKey": "5678",
        "reportedAt": "2026-12-01T10:00:01Z",
    }
    put = requests.put(
        f"{flexpoint_url}/v1/accounts/acct-1/payment-postings/pay-8",
        json=report,
        headers={**AUTH, "Idempotency-Key": "posting-pay-8-posted"},
        timeout=10,
    )
    assert put.status_code == 200, put.text
    result = CliRunner().invoke(
        sandbox, ["flexpoint", "postings", "--account", "acct-1", "--url", flexpoint_url]
    )
    assert result.exit_code == 0, result.output
    assert "pay-8: 10.00 USD from C-1 -> posted key 5678, 1 report(s)" in result.output
