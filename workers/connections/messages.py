"""FlexPoint's connection messages (exchange ``flexpoint.connections``): connect and disconnect.

The provisioning worker loads every message through these schemas; ``flexsync connect`` and
``flexsync disconnect`` dump theirs through them, so both ends agree on one definition.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

CONNECT_ROUTING_KEY = "connection.connect"
DISCONNECT_ROUTING_KEY = "connection.disconnect"

_ID = validate.Length(min=1, max=64)
# FlexPoint's accountId path pattern (its API, and the payment messages): the id goes into
# FlexPoint's URL paths, so a message with any other account id is refused when it is loaded.
_ACCOUNT_ID = validate.Regexp(
    r"^[A-Za-z0-9_-]{1,64}\Z",
    error="Must be 1 to 64 letters, digits, '_' or '-' (FlexPoint's account id pattern).",
)


class _Message(Schema):
    class Meta:
        # A field FlexPoint adds later must not dead-letter every connect: ignore what we don't use.
        unknown = EXCLUDE

    messageId = fields.String(required=True, validate=validate.Length(min=1, max=200))
    accountId = fields.String(required=True, validate=_ACCOUNT_ID)
    connectionId = fields.String(required=True, validate=_ID)
    requestedAt = fields.AwareDateTime(required=True, format="iso", default_timezone=None)


class ConnectMessageSchema(_Message):
    """Connect (or reconnect, rotating credentials) an account to a Sage Intacct company."""

    companyId = fields.String(required=True, validate=_ID)
    entityId = fields.String(load_default=None, allow_none=True, validate=_ID)
    userId = fields.String(required=True, validate=_ID)
    # Kept encrypted for the XML API fallback; never sent to the REST API, logged or returned.
    userPassword = fields.String(
        load_default=None, allow_none=True, load_only=True, validate=validate.Length(max=500)
    )


class DisconnectMessageSchema(_Message):
    """Disconnect an account: stop syncing and forget its secrets."""

    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


SCHEMAS: dict[str, type[_Message]] = {
    CONNECT_ROUTING_KEY: ConnectMessageSchema,
    DISCONNECT_ROUTING_KEY: DisconnectMessageSchema,
}


def load_message(routing_key: str, body: Any) -> dict[str, Any]:
    """The validated message for ``routing_key``; raises marshmallow's ValidationError (or KeyError
    for a routing key that is not a connection message)."""
    return SCHEMAS[routing_key]().load(body)
