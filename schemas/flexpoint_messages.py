"""What every message FlexPoint publishes to the service has in common (flexpoint-sync-api.yaml):
its id, the account and connection it is for, and when it was asked for.

The connections and the write-back capabilities each define their messages on this base.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

# The length every other id of a message may have (Intacct company, user, entity, customer...).
SHORT_ID = validate.Length(min=1, max=64)
# FlexPoint's accountId/paymentId path pattern: such an id goes into FlexPoint's URL paths, so a
# message with any other one is refused when it is loaded.
PATH_ID = validate.Regexp(
    r"^[A-Za-z0-9_-]{1,64}\Z",
    error="Must be 1 to 64 letters, digits, '_' or '-' (FlexPoint's id pattern).",
)


class FlexPointMessage(Schema):
    class Meta:
        # A field FlexPoint adds later must not dead-letter every message: ignore what we don't use.
        unknown = EXCLUDE

    messageId = fields.String(required=True, validate=validate.Length(min=1, max=200))
    accountId = fields.String(required=True, validate=PATH_ID)
    connectionId = fields.String(required=True, validate=SHORT_ID)
    requestedAt = fields.AwareDateTime(required=True, format="iso", default_timezone=None)
