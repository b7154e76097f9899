"""FlexPoint's payment messages (exchange ``flexpoint.payments``): ``payment.post`` and ``payment.reverse``.

The writeback worker loads every message through these schemas; amounts are loaded as Decimal
from strings (a float would not be exact), and a post's allocations may not exceed its amount.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from schemas.flexpoint_messages import PATH_ID, SHORT_ID, FlexPointMessage

POST_ROUTING_KEY = "payment.post"
REVERSE_ROUTING_KEY = "payment.reverse"
METHODS = ("ach", "card", "check", "wire", "cash")


class MoneyField(fields.Field):
    """A decimal amount with at most two places, given as a string ("1250.00"); a number is refused."""

    default_error_messages = {"invalid": 'Not a money amount: give a string such as "1250.00".'}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            amount = Decimal(value.strip())
        except ArithmeticError:
            raise self.make_error("invalid") from None
        if not amount.is_finite() or amount.as_tuple().exponent < -2:  # type: ignore[operator]
            raise self.make_error("invalid")
        return amount

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else f"{Decimal(value):.2f}"


class _Message(FlexPointMessage):
    paymentId = fields.String(required=True, validate=PATH_ID)


class AllocationSchema(Schema):
    """One invoice the payment pays: its Intacct key and the amount applied."""

    class Meta:
        unknown = EXCLUDE

    invoiceExternalId = fields.String(required=True, validate=validate.Regexp(r"^[^,/\s]{1,64}\Z"))
    amount = MoneyField(required=True, validate=validate.Range(min=Decimal("0.01")))


class PostMessageSchema(_Message):
    """Post one collected payment into Intacct, applied to the invoices it pays."""

    customerId = fields.String(required=True, validate=SHORT_ID)
    receivedOn = fields.Date(required=True)
    amount = MoneyField(required=True, validate=validate.Range(min=Decimal("0.01")))
    currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}\Z"))
    method = fields.String(required=True, validate=validate.OneOf(METHODS))
    depositBankAccountId = fields.String(load_default=None, allow_none=True, validate=SHORT_ID)
    undepositedGLAccountId = fields.String(load_default=None, allow_none=True, validate=SHORT_ID)
    allocations = fields.List(fields.Nested(AllocationSchema), required=True)
    memo = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))

    @validates_schema
    def _one_destination_and_allocations_within_amount(self, data: dict[str, Any], **_: Any) -> None:
        bank, gl = data.get("depositBankAccountId"), data.get("undepositedGLAccountId")
        if (bank is None) == (gl is None):
            raise ValidationError(
                "give exactly one of depositBankAccountId and undepositedGLAccountId", "depositBankAccountId"
            )
        keys = [a["invoiceExternalId"] for a in data.get("allocations", [])]
        if len(keys) != len(set(keys)):
            raise ValidationError("an invoice appears twice in allocations", "allocations")


class ReverseMessageSchema(_Message):
    """Undo a payment: reverse it in Intacct if posted, else withdraw it before it is."""

    reversedOn = fields.Date(required=True)
    memo = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))


SCHEMAS: dict[str, type[_Message]] = {
    POST_ROUTING_KEY: PostMessageSchema,
    REVERSE_ROUTING_KEY: ReverseMessageSchema,
}

# One instance of each, made once: building a schema costs three times loading a message with it,
# and loading keeps nothing on the instance, so the worker threads share them.
_LOADERS = {routing_key: schema() for routing_key, schema in SCHEMAS.items()}


def load_message(routing_key: str, body: Any) -> dict[str, Any]:
    """The validated message for ``routing_key``; raises marshmallow's ValidationError (or KeyError
    for a routing key that is not a payment message)."""
    return _LOADERS[routing_key].load(body)


def allocated(message: dict[str, Any]) -> Decimal:
    """The sum applied to invoices (the rest of ``amount`` is an overpayment)."""
    return sum((a["amount"] for a in message["allocations"]), Decimal("0"))
