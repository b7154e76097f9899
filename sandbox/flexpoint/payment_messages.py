"""The messages FlexPoint publishes when it collects or reverses a payment, and their publishing.

Exchange ``flexpoint.payments`` (topic, durable), routing keys ``payment.post`` and
``payment.reverse``, JSON bodies with exactly BRIEF.md's fields. Publishing declares the exchange
(idempotent, so ``pay`` works before the service declared its topology) and waits for the
broker's confirm through the service's own :class:`broker.publisher.ConfirmingPublisher`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Exchange

from broker.publisher import ConfirmingPublisher, PublishError, PublishUnroutable
from broker.urls import kombu_url

PAYMENTS_EXCHANGE = Exchange("flexpoint.payments", type="topic", durable=True)
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
        with Connection(kombu_url(amqp_url), connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1)
            PAYMENTS_EXCHANGE(connection.default_channel).declare()
    except Exception as exc:  # kombu, amqp and socket errors alike: one line for a person
        raise PaymentPublishError(f"RabbitMQ is unreachable ({type(exc).__name__}); check AMQP_URL") from None
    publisher = ConfirmingPublisher(amqp_url, PAYMENTS_EXCHANGE.name)
    publisher.start(wait=timeout)
    try:
        if not publisher.ready:
            raise PaymentPublishError(f"no confirming channel to RabbitMQ within {timeout:.0f} s")
        publisher.publish_and_wait(
            routing_key, json.dumps(message).encode(), timeout=timeout, message_id=message["messageId"]
        )
    except PublishUnroutable:
        raise PaymentPublishError(
            f"no queue is bound to {PAYMENTS_EXCHANGE.name} for {routing_key}: run `flexsync topology` "
            "(or start the writeback worker), then try again"
        ) from None
    except PublishError as exc:
        raise PaymentPublishError(f"RabbitMQ did not confirm the {routing_key} message ({exc})") from None
    finally:
        publisher.close(timeout=2.0)
