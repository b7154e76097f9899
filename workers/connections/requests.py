"""Connect and disconnect messages, as FlexPoint sends them, published from the command line."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError

from broker.admin import unreachable
from broker.publisher import ConfirmingPublisher, PublishError
from broker.topology import CONNECTIONS_EXCHANGE
from reliability.errors import OpsError
from workers.connections.messages import (
    CONNECT_ROUTING_KEY,
    DISCONNECT_ROUTING_KEY,
    ConnectMessageSchema,
    DisconnectMessageSchema,
)


def _now_text(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def _checked(schema: Any, message: dict[str, Any]) -> dict[str, Any]:
    """The message, after the worker's own schema accepted it (so we never send a poison)."""
    try:
        schema.load(message)
    except ValidationError as exc:
        fields = "; ".join(
            f"{name}: {' '.join(map(str, errs))}" for name, errs in exc.normalized_messages().items()
        )
        raise OpsError(f"invalid message ({fields})") from None
    return message


def connect_message(
    *,
    account_id: str,
    company_id: str,
    user_id: str,
    entity_id: str | None = None,
    connection_id: str | None = None,
    user_password: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A validated connect message; ``userPassword`` only when given."""
    message: dict[str, Any] = {
        "messageId": str(uuid.uuid4()),
        "accountId": account_id,
        "connectionId": connection_id or str(uuid.uuid4()),
        "companyId": company_id,
        "entityId": entity_id,
        "userId": user_id,
        "requestedAt": _now_text(now),
    }
    if user_password:
        message["userPassword"] = user_password
    return _checked(ConnectMessageSchema(), message)


def disconnect_message(
    *, account_id: str, connection_id: str, reason: str, now: datetime | None = None
) -> dict[str, Any]:
    """A validated disconnect message."""
    message = {
        "messageId": str(uuid.uuid4()),
        "accountId": account_id,
        "connectionId": connection_id,
        "reason": reason,
        "requestedAt": _now_text(now),
    }
    return _checked(DisconnectMessageSchema(), message)


def publish_message(
    amqp_url: str,
    routing_key: str,
    message: dict[str, Any],
    *,
    timeout: float = 10.0,
) -> None:
    """Publish one connection message to ``flexpoint.connections`` and wait for its confirm."""
    assert routing_key in (CONNECT_ROUTING_KEY, DISCONNECT_ROUTING_KEY)
    publisher = ConfirmingPublisher(amqp_url, CONNECTIONS_EXCHANGE.name)
    publisher.start(wait=timeout)
    try:
        if not publisher.ready:
            raise unreachable(amqp_url, f"no confirming channel within {timeout:.0f} s")
        publisher.publish_and_wait(
            routing_key,
            json.dumps(message).encode(),
            timeout=timeout,
            message_id=message["messageId"],
        )
    except PublishError as exc:
        raise OpsError(
            f"RabbitMQ did not accept the {routing_key} message ({exc}); is the topology declared? "
            "run `flexsync topology`, then try again"
        ) from None
    finally:
        publisher.close(timeout=2.0)
