"""Schemas of the receiver's API: the inbound webhook body, the envelope it publishes, answers."""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load, validate, validates

from clients.intacct.client import record_key_problem
from schemas.catalog import ACTIONS, SyncedObject

_TEXT = validate.Length(min=1, max=200)
# The eventId travels as the AMQP message_id, a short string: at most 255 bytes of UTF-8.
MESSAGE_ID_MAX_BYTES = 255


def message_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an event id (the AMQP ``message_id``), or None when it can.

    A short string holds at most 255 UTF-8 bytes, and a lone surrogate (a ``\\ud800`` escape
    in the JSON) has no UTF-8 form at all; control characters are refused too, as they have no
    place in an id and make log lines and headers ambiguous.
    """
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "Must be text without lone surrogates (\\ud800-\\udfff escapes)."
    if size > MESSAGE_ID_MAX_BYTES:
        return f"Must be at most {MESSAGE_ID_MAX_BYTES} bytes in UTF-8 (this is {size})."
    if not value.isprintable():
        return "Must not contain control or other unprintable characters."
    return None


class RecordKey(fields.String):
    """A record key: Intacct sends RECORDNO as text, but an unquoted template yields a number."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class WebhookBodySchema(Schema):
    """The JSON body of a Platform Trigger webhook (the template FlexPoint gives customers).

    Unknown fields are kept and travel in the envelope's ``payload``.
    """

    class Meta:
        unknown = INCLUDE

    object = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Intacct object name, e.g. ARINVOICE", "example": "ARINVOICE"},
    )
    action = fields.String(
        load_default="set",
        validate=validate.OneOf(sorted(ACTIONS)),
        metadata={"description": "add, set or delete (create/update also accepted)"},
    )
    key = RecordKey(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "The record's RECORDNO", "example": "1042"},
    )
    id = RecordKey(
        load_default=None,
        allow_none=True,
        validate=_TEXT,
        metadata={"description": "The record's human ID (RECORDID)"},
    )
    companyId = fields.String(load_default=None, allow_none=True, validate=_TEXT)
    occurredAt = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=64),
        metadata={"description": "When the change happened, as Intacct formats it"},
    )
    eventId = fields.String(load_default=None, allow_none=True, validate=_TEXT)

    @pre_load
    def _fold_case(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("action"), str):
            data = {**data, "action": data["action"].strip().lower()}
        return data

    @validates("object")
    def _object_is_a_name(self, value: str, **_: Any) -> None:
        if not value.replace("_", "").isalnum():
            raise ValidationError("Must be an Intacct object name such as ARINVOICE.")

    @validates("key")
    def _key_names_one_record(self, value: str, **_: Any) -> None:
        problem = record_key_problem(value)
        if problem is not None:
            raise ValidationError(problem)

    @validates("eventId")
    def _event_id_is_a_message_id(self, value: str | None, **_: Any) -> None:
        problem = None if value is None else message_id_problem(value)
        if problem is not None:
            raise ValidationError(problem)


ENVELOPE_VERSION = 1


def envelope_body(
    synced: SyncedObject,
    *,
    connection_id: str,
    company_id: str,
    event_id: str,
    action: str,
    key: str,
    record_id: str | None,
    occurred_at: str | None,
    received_at: str,
    idempotency_key: str,
    auth_scheme: str,
    payload: dict[str, Any],
    payload_json: bytes | None = None,
) -> bytes:
    """The JSON of an event envelope (:class:`EnvelopeSchema`) for a record of a connection.

    Written field by field (the receiver builds one per webhook): the same bytes as
    ``json.dumps`` of the envelope with compact separators. ``payload_json``, when given, is
    ``payload`` as it arrived (the receiver's raw body): it is placed in the envelope as it is
    instead of being encoded again, if it is UTF-8 JSON text; any JSON parser reads the same
    ``payload`` from either form.
    """
    # The fields typed str are quoted directly; only the optional ones need _json_value.
    head = "".join(
        (
            '{"envelopeVersion":',
            str(ENVELOPE_VERSION),
            ',"eventId":',
            _quote(event_id),
            ',"connectionId":',
            _quote(connection_id),
            ',"companyId":',
            _quote(company_id),
            ',"object":',
            _quote(synced.intacct_object),
            ',"module":',
            _quote(synced.module),
            ',"resource":',
            _quote(synced.resource),
            ',"action":',
            _quote(action),
            ',"key":',
            _quote(key),
            ',"id":',
            _json_value(record_id),
            ',"occurredAt":',
            _json_value(occurred_at),
            ',"receivedAt":',
            _quote(received_at),
            ',"idempotencyKey":',
            _quote(idempotency_key),
            ',"authScheme":',
            _quote(auth_scheme),
            ',"payload":',
        )
    ).encode()
    if payload_json is not None and is_utf8_json(payload_json):
        return b"".join((head, payload_json, b"}"))
    return b"".join((head, json.dumps(payload, separators=(",", ":")).encode(), b"}"))


def is_utf8_json(document: bytes) -> bool:
    """``json.detect_encoding(document) == "utf-8"``, answered at once for a JSON object.

    No byte-order mark starts with ``{``, and a NUL after it would be UTF-16 or UTF-32: a
    document starting with ``{`` and then any other byte is UTF-8 to ``json.loads``.
    """
    if document[:1] == b"{" and document[1:2] != b"\x00":
        return True
    return json.detect_encoding(document) == "utf-8"


def _json_value(value: Any) -> str:
    """``json.dumps(value)`` for the envelope's fields, with the common cases done directly."""
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"))


class EnvelopeSchema(Schema):
    """What the receiver publishes to ``intacct.events``: the event, never record data."""

    envelopeVersion = fields.Integer(required=True)
    eventId = fields.String(required=True)
    connectionId = fields.String(required=True)
    companyId = fields.String(required=True)
    object = fields.String(required=True)
    module = fields.String(required=True)
    resource = fields.String(required=True)
    action = fields.String(required=True, validate=validate.OneOf(["create", "update", "delete"]))
    key = fields.String(required=True)
    id = fields.String(allow_none=True)
    occurredAt = fields.String(allow_none=True)
    receivedAt = fields.String(required=True)
    idempotencyKey = fields.String(required=True)
    authScheme = fields.String(
        required=True, validate=validate.OneOf(["jwt", "hmac", "reconcile", "event-queue"])
    )
    payload = fields.Dict(required=True, metadata={"description": "The webhook body as received"})


class AcceptedSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["accepted", "duplicate"]))
    eventId = fields.String(required=True)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"example": "bad_signature"})
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", metadata={"description": "Field errors, for 400"})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)
