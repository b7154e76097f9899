"""The messages FlexPoint publishes when it collects or reverses a payment, and their publishing.

Exchange ``flexpoint.payments`` (topic, durable), routing keys ``payment.post`` and
``payment.reverse``, JSON bodies with exactly BRIEF.md's fields. Publishing declares the exchange
(idempotent, so ``pay`` works before the service declared its topology) and waits for the
broker's confirm (:func:`sandbox.amqp.publish_json`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.amqp import NotRouted, PublishFailed, publish_json

PAYMENTS_EXCHANGE = "flexpoint.payments"
POST_ROUTING_KEY = "payment.post"
REVERSE_ROUTING_KEY = "payment.reverse"


class PaymentPublishError(Exception):
    """The broker did not take the message; the text says what to do."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def post_message(account_id: str, payment: dict[str, Any]) -> dict[str, Any]:
    """``payment.post`` for a collected payment (as :func:`payments.validate_payment` keeps it)."""
    destination = (
        {"depositBankAccountId": payment["depositBankAccountId"]}
        if payment.get("depositBankAccountId")
        else {"undepositedGLAccountId": payment["undepositedGLAccountId"]}
    )
    return {
        "messageId": str(uuid.uuid4()),
        "accountId": account_id,
        "connectionId": payment["connectionId"],
        "paymentId": payment["paymentId"],
        "customerId": payment["customerId"],
        "receivedOn": payment["receivedOn"],
        "amount": payment["amount"],
        "currency": payment["currency"],
        "method": payment["method"],
        **destination,
        "allocations": [
            {"invoiceExternalId": a["invoiceExternalId"], "amount": a["amount"]}
            for a in payment["allocations"]
        ],
        "memo": payment.get("memo"),
        "requestedAt": _now(),
    }


def reverse_message(
    account_id: str, connection_id: str, payment_id: str, reversed_on: str, memo: str | None
) -> dict[str, Any]:
    """``payment.reverse`` for a payment FlexPoint collected earlier."""
    return {
        "messageId": str(uuid.uuid4()),
        "accountId": account_id,
        "connectionId": connection_id,
        "paymentId": payment_id,
        "reversedOn": reversed_on,
        "memo": memo,
        "requestedAt": _now(),
    }


def publish(amqp_url: str, routing_key: str, message: dict[str, Any], *, timeout: float = 10.0) -> None:
    """Publish one message persistently and wait for RabbitMQ's confirm; PaymentPublishError if not."""
    try:
        publish_json(amqp_url, PAYMENTS_EXCHANGE, routing_key, message, timeout=timeout)
    except NotRouted:
        raise PaymentPublishError(
            f"no queue is bound to {PAYMENTS_EXCHANGE} for {routing_key}: run `flexsync topology` "
            "(or start the writeback worker), then try again"
        ) from None
    except PublishFailed as exc:
        raise PaymentPublishError(str(exc)) from None
