"""Request bodies checked against the published schema (:mod:`schema`), as Sage's API refuses them.

Every problem found becomes one ``details[]`` entry with a slash-path ``target``
(``/paymentDetails/0/arInvoice/key``); the answer is one 400 ``invalidRequest`` "Payload contains
errors" (REST-1064) listing them: a field not in the schema (REST-1043, Sage's), a missing required
property, a value longer than maxLength, an enum value not published, a value of the wrong type, a
read-only field written (the last four errorIds are the simulator's conventions).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from .errors import IntacctError, detail, invalid_payload, slash_path
from .schema import SCHEMAS, FieldSpec, ObjectSchema, Required

_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]{1,2})?$")


def _problem(problem: str, message: str, path: str) -> dict[str, Any]:
    return detail("invalidRequest", message, slash_path(path), problem)


def _type_problem(spec: FieldSpec, value: Any) -> str | None:
    kind = spec.type
    if kind == "string":
        return None if isinstance(value, str) else "a string"
    if kind == "dp2":
        text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        ok = isinstance(text, str) and _DECIMAL.match(text) is not None
        return None if ok else "an amount with at most 2 decimals"
    if kind == "date":
        if isinstance(value, str) and len(value) == 10:
            try:
                date.fromisoformat(value)
                return None
            except ValueError:
                pass
        return "a date (YYYY-MM-DD)"
    if kind == "integer":
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if kind == "number":
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if kind == "boolean":
        return None if isinstance(value, bool) else "true or false"
    return "a date-time" if not isinstance(value, str) else None


def _check_leaf(spec: FieldSpec, value: Any, path: str, problems: list[dict[str, Any]]) -> None:
    if spec.read_only:
        problems.append(_problem("readOnlyField", f"{slash_path(path)} is read-only", path))
        return
    if value is None:
        return
    wanted = _type_problem(spec, value)
    if wanted is not None:
        problems.append(_problem("invalidValue", f"{slash_path(path)} must be {wanted}", path))
        return
    if spec.enum is not None and value not in spec.enum:
        allowed = ", ".join(v for v in spec.enum if v is not None)
        problems.append(
            _problem(
                "invalidEnumValue", f"{value!r} is not a valid value for {slash_path(path)}: {allowed}", path
            )
        )
    if spec.max_length is not None and isinstance(value, str) and len(value) > spec.max_length:
        problems.append(
            _problem(
                "valueTooLong",
                f"{slash_path(path)} holds at most {spec.max_length} characters; {len(value)} given",
                path,
            )
        )


def _walk(schema: ObjectSchema, node: dict[str, Any], prefix: str, at: str, problems: list) -> None:
    """Check every member of ``node`` (the part of the body at dotted ``prefix``; ``at`` is the
    body path including array positions, for targets)."""
    fields = schema.by_path
    for name, value in node.items():
        dotted = f"{prefix}{name}"
        where = f"{at}{name}"
        if not prefix and name in schema.arrays:
            if not isinstance(value, list):
                problems.append(_problem("invalidValue", f"{slash_path(where)} must be an array", where))
                continue
            items = SCHEMAS[schema.arrays[name]]
            for position, item in enumerate(value):
                item_at = f"{where}[{position}]"
                if not isinstance(item, dict):
                    problems.append(
                        _problem("invalidValue", f"{slash_path(item_at)} must be an object", item_at)
                    )
                    continue
                _walk(items, item, "", item_at + ".", problems)
            continue
        spec = fields.get(dotted)
        below = dotted in schema.prefixes  # some field lies below it
        if spec is None and isinstance(value, dict) and below:
            _walk(schema, value, dotted + ".", where + ".", problems)
        elif spec is None:
            problems.append(_problem("notAValidField", f"{slash_path(where)} is not a valid field", where))
        else:
            _check_leaf(spec, value, where, problems)


def _present(node: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return False
        node = node[part]
    return True


def _check_required(required: Required, node: dict[str, Any], at: str, problems: list) -> None:
    for path in required.always:
        if not _present(node, path):
            problems.append(
                _problem("requiredFieldMissing", f"{slash_path(at + path)} is required", at + path)
            )
    for path in required.if_parent:
        parent = path.rpartition(".")[0]
        if _present(node, parent) and not _present(node, path):
            problems.append(
                _problem("requiredFieldMissing", f"{slash_path(at + path)} is required", at + path)
            )
    for group in required.one_of:
        given = [name for name in group if _present(node, name)]
        if len(given) != 1:
            message = f"Give exactly one of {', '.join('/' + n for n in group)}"
            target = at + (given[1] if len(given) > 1 else group[-1])
            problems.append(_problem("requiredFieldMissing", message, target))
    for array, item_required in required.items.items():
        items = node.get(array)
        if isinstance(items, list):
            for position, item in enumerate(items):
                if isinstance(item, dict):
                    _check_required(item_required, item, f"{at}{array}[{position}].", problems)


def validate(schema: ObjectSchema, body: Any) -> dict[str, Any]:
    """The body, when it fits the schema; else 400 listing every problem with its target."""
    if body is None:
        raise IntacctError(
            400,
            "invalidRequest",
            "A POST request requires a payload",
            error_id="REST-1028",
            message_id="IA.REQUEST_REQUIRES_A_PAYLOAD",
        )
    if not isinstance(body, dict):
        raise invalid_payload([_problem("invalidValue", "The payload must be a JSON object", "")])
    problems: list[dict[str, Any]] = []
    _walk(schema, body, "", "", problems)
    _check_required(schema.required, body, "", problems)
    if problems:
        raise invalid_payload(problems)
    return body
