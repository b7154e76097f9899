"""FlexPoint's connection messages (exchange ``flexpoint.connections``): connect and disconnect.

The provisioning worker loads every message through these schemas; ``flexsync connect`` and
``flexsync disconnect`` dump theirs through them, so both ends agree on one definition.
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import fields, validate

from schemas.flexpoint_messages import SHORT_ID, FlexPointMessage

CONNECT_ROUTING_KEY = "connection.connect"
DISCONNECT_ROUTING_KEY = "connection.disconnect"

# The connect message's secret: the user password FlexPoint sends, and the sealed form it takes
# in our delay queues (workers/connections/sealing.py).
PASSWORD_FIELD = "userPassword"  # noqa: S105 (a field name, not a password)
SEALED_FIELD = "userPasswordSealed"


class ConnectMessageSchema(FlexPointMessage):
    """Connect (or reconnect, rotating credentials) an account to a Sage Intacct company."""

    companyId = fields.String(required=True, validate=SHORT_ID)
    entityId = fields.String(load_default=None, allow_none=True, validate=SHORT_ID)
    userId = fields.String(required=True, validate=SHORT_ID)
    # Kept encrypted for the XML API fallback; never sent to the REST API, logged or returned.
    userPassword = fields.String(
        load_default=None, allow_none=True, load_only=True, validate=validate.Length(max=500)
    )


class DisconnectMessageSchema(FlexPointMessage):
    """Disconnect an account: stop syncing and forget its secrets."""

    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


SCHEMAS: dict[str, type[FlexPointMessage]] = {
    CONNECT_ROUTING_KEY: ConnectMessageSchema,
    DISCONNECT_ROUTING_KEY: DisconnectMessageSchema,
}


def load_message(routing_key: str, body: Any) -> dict[str, Any]:
    """The validated message for ``routing_key``; raises marshmallow's ValidationError (or KeyError
    for a routing key that is not a connection message)."""
    return SCHEMAS[routing_key]().load(body)


def without_password(body: Any) -> bytes:
    """The message body with no password, clear or sealed, for wherever a message is kept: the
    dead-letter queue and the dead-letter table (kept, listed and shown to operators).

    Removed, not masked: a replayed connect without it keeps the stored password, whereas a
    placeholder would be taken for the new one. Any other body is returned unchanged.
    """
    raw = body if isinstance(body, bytes) else str(body).encode()
    try:
        document = body if isinstance(body, dict) else json.loads(raw)
    except (TypeError, ValueError):
        return raw
    if not isinstance(document, dict) or (
        document.get(PASSWORD_FIELD) in (None, "") and SEALED_FIELD not in document
    ):
        return raw if not isinstance(body, dict) else json.dumps(body, separators=(",", ":")).encode()
    kept = {k: v for k, v in document.items() if k not in (PASSWORD_FIELD, SEALED_FIELD)}
    return json.dumps(kept, separators=(",", ":")).encode()
