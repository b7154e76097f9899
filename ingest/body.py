"""Loading a webhook body: :class:`~ingest.messages.WebhookBodySchema`'s answer, made cheap for
the bodies Intacct sends.

Marshmallow's ``load`` was the largest cost of an accepted request in the profile (~70 us). A
body of the template's plain shape (each field a string, a whole-number key, or null where the
schema allows it) is checked here against rules read from the schema itself (its fields,
their Length and OneOf validators, defaults, nullability) and gives the very dict the schema
would. Anything else, and every body the rules refuse, goes to marshmallow, which decides and
words the errors; a schema with fields, validators or hooks this module does not know of is
always left to marshmallow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields, missing, validate

from clients.intacct.client import record_key_problem
from ingest.messages import RecordKey, message_id_problem

# The schema's own hooks, whose effect is repeated below; any other hook turns the fast path off.
_KNOWN_HOOKS = {
    "pre_load": {"_fold_case"},
    "validates": {"_object_is_a_name", "_key_names_one_record", "_event_id_is_a_message_id"},
}


@dataclass(frozen=True)
class _Rule:
    name: str
    required: bool
    allow_none: bool
    default: Any
    whole_numbers: bool  # a RecordKey: an int (not a bool) loads as its text
    min_length: int | None
    max_length: int | None
    choices: frozenset[str] | None


def _rule(name: str, field: fields.Field) -> _Rule | None:
    if type(field) not in (fields.String, RecordKey) or field.data_key not in (None, name):
        return None
    min_length = max_length = None
    choices = None
    for validator in field.validators:
        if type(validator) is validate.Length and validator.equal is None:
            min_length, max_length = validator.min, validator.max
        elif type(validator) is validate.OneOf:
            choices = frozenset(validator.choices)
        else:
            return None
    default = field.load_default
    if callable(default):
        return None
    return _Rule(
        name,
        field.required,
        field.allow_none,
        default,
        type(field) is RecordKey,
        min_length,
        max_length,
        choices,
    )


class BodyLoader:
    """``load(document)`` returns what ``schema.load(document)`` returns, or raises its error."""

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        self._rules = self._fast_rules(schema)

    def load(self, document: dict[str, Any]) -> dict[str, Any]:
        if self._rules is not None:
            body = self._fast(document, self._rules)
            if body is not None:
                return body
        return self._schema.load(document)

    @staticmethod
    def _fast_rules(schema: Schema) -> tuple[_Rule, ...] | None:
        hooks = {kind: {name for name, *_ in entries} for kind, entries in schema._hooks.items() if entries}
        if hooks != _KNOWN_HOOKS or schema.many or schema.partial or schema.only or schema.exclude:
            return None
        found = [_rule(name, field) for name, field in schema.load_fields.items()]
        rules = tuple(rule for rule in found if rule is not None)
        if len(rules) < len(found) or not {"object", "action"} <= {r.name for r in rules}:
            return None
        return rules

    def _fast(self, document: dict[str, Any], rules: tuple[_Rule, ...]) -> dict[str, Any] | None:
        """The loaded body, or None when marshmallow must decide."""
        body = dict(document)  # unknown fields are kept as they are (INCLUDE)
        action = body.get("action")
        if isinstance(action, str):
            body["action"] = action.strip().lower()  # the schema's pre_load
        for rule in rules:
            if rule.name not in body:
                if rule.required:
                    return None
                if rule.default is not missing:
                    body[rule.name] = rule.default
                continue
            value = body[rule.name]
            if value is None:
                if not rule.allow_none:
                    return None
                continue
            if rule.whole_numbers and type(value) is int:
                value = body[rule.name] = str(value)
            if type(value) is not str:
                return None
            if rule.min_length is not None and len(value) < rule.min_length:
                return None
            if rule.max_length is not None and len(value) > rule.max_length:
                return None
            if rule.choices is not None and value not in rule.choices:
                return None
        name = body["object"]
        # The schema's @validates("object"); a null object never gets this far.
        if not name.replace("_", "").isalnum():
            return None
        # The schema's @validates("key") and @validates("eventId").
        if record_key_problem(body["key"]) is not None:
            return None
        event_id = body.get("eventId")
        if event_id is not None and message_id_problem(event_id) is not None:
            return None
        return body
