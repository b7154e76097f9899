"""FlexPoint's connection messages (exchange ``flexpoint.connections``): connect and disconnect.

The provisioning worker loads every message through these schemas; ``flexsync connect`` and
``flexsync disconnect`` dump theirs through them, so both ends agree on one definition.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from schemas.flexpoint_messages import SHORT_ID, FlexPointMessage

CONNECT_ROUTING_KEY = "connection.connect"
DISCONNECT_ROUTING_KEY = "connection.disconnect"


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
