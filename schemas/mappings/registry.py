"""The mappings by FlexPoint resource, and the calls a worker makes: records in, items out."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from marshmallow import ValidationError

from ..intacct_fields import PaymentDetail
from . import cash, company, ledger, receivables
from .base import IdentitySchema, LineSource, ResourceMapping, SourceSchema, natural_order
from .errors import MappingError
from .fieldtypes import Key, Timestamp
from .records import flatten
from .values import shown

MAPPINGS: dict[str, ResourceMapping] = {
    m.resource: m for m in (*ledger.MAPPINGS, *receivables.MAPPINGS, *cash.MAPPINGS, *company.MAPPINGS)
}


def mapping_for(resource: str) -> ResourceMapping:
    """The mapping of a FlexPoint resource (``invoices``); KeyError for an unknown one."""
    try:
        return MAPPINGS[resource]
    except KeyError:
        raise KeyError(f"no mapping for resource {resource!r}") from None


def query_fields(resource: str) -> tuple[str, ...]:
    """The Intacct fields (dotted) to request when querying the resource's records."""
    return mapping_for(resource).fields


def line_source(resource: str) -> LineSource | None:
    """Where the resource's line records live (object path, parent field, fields), or None."""
    return mapping_for(resource).lines


def map_record(
    resource: str,
    record: Mapping[str, Any],
    lines: Iterable[Mapping[str, Any]] = (),
    *,
    entity_id: str | None = None,
) -> dict[str, Any]:
    """An Intacct record (nested or flat) and its line records -> one FlexPoint batch item.

    A record the resource does not import (a draft invoice) becomes a tombstone at its own
    version. ``entity_id`` (the connection's entity) fills ``entityId`` when the record names
    none. Raises MappingError naming every field that cannot be mapped.
    """
    mapping = mapping_for(resource)
    if not isinstance(record, Mapping):
        raise MappingError(resource, None, {"record": [f"not an object: {shown(record)}"]})
    flat = flatten(record)
    key = _key_for_messages(flat.get("key"))
    errors: dict[str, list[str]] = {}
    identity = _load(IdentitySchema, flat, errors)
    if mapping.skip is not None and mapping.skip(flat):
        if errors:
            raise MappingError(resource, key, errors)
        return {**identity, "deleted": True}
    labels: list[str] = []
    source = mapping.lines
    if source is not None:
        flat[source.name], labels = _line_records(source, key, lines, errors)
    elif lines is not None and any(True for _ in lines):
        raise ValueError(f"{resource} records have no lines")
    if entity_id:
        flat.setdefault("entity.id", entity_id)
    data = _load(mapping.schema, flat, errors, labels)
    if errors:
        raise MappingError(resource, key, errors)
    return {**identity, "data": data}


def tombstone(resource: str, key: Any, observed_at: Any) -> dict[str, Any]:
    """The item deleting a record: for a delete event, a 404 on fetch, a record gone from a sweep.

    ``observed_at`` (RFC 3339 text, datetime or Unix seconds) is when the deletion was seen.
    """
    mapping_for(resource)
    errors: dict[str, list[str]] = {}
    external_id = _deserialized(Key(), key, "key", errors)
    version = _deserialized(Timestamp(), observed_at, "observedAt", errors)
    if errors:
        raise MappingError(resource, _key_for_messages(key), errors)
    return {"externalId": external_id, "sourceVersion": version, "deleted": True}


def applied_invoice_keys(details: Iterable[Mapping[str, Any]]) -> list[str]:
    """The keys of the invoices a payment's details apply to: those to refresh after it."""
    keys: set[str] = set()
    for detail in details:
        if isinstance(detail, Mapping):
            value = _key_for_messages(flatten(detail).get(PaymentDetail.INVOICE))
            if value:
                keys.add(value)
    return sorted(keys, key=natural_order)


@functools.cache
def _schema(schema_class: type[SourceSchema]) -> SourceSchema:
    # Schemas keep no state between loads; building one per record would cost more than mapping it.
    return schema_class()


def _load(
    schema_class: type[SourceSchema],
    flat: dict[str, Any],
    errors: dict[str, list[str]],
    labels: Sequence[str] = (),
) -> dict[str, Any]:
    try:
        return _schema(schema_class).load(flat)
    except ValidationError as exc:
        errors.update(_field_errors(exc.messages, labels))
        return {}


def _line_records(
    source: LineSource, key: str | None, lines: Any, errors: dict[str, list[str]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Flat line records and, for error messages, a label for each (``key=45`` or ``#3``)."""
    if isinstance(lines, Mapping | str | bytes) or not isinstance(lines, Iterable):
        errors[source.name] = [f"not a list of line records: {shown(lines)}"]
        return [], []
    flat_lines, labels = [], []
    for position, line in enumerate(lines, start=1):
        if not isinstance(line, Mapping):
            errors[f"{source.name}[#{position}]"] = [f"not an object: {shown(line)}"]
            continue
        flat_line = flatten(line)
        line_key = _key_for_messages(flat_line.get("key"))
        label = f"key={line_key}" if line_key else f"#{position}"
        parent = source.parent_key(line)
        if parent is not None and key is not None and parent != key:
            # A worker grouping lines wrongly must not graft them onto another record.
            errors[f"{source.name}[{label}].{source.parent_field}"] = [
                f"belongs to record {parent}, not {key}"
            ]
        flat_lines.append(flat_line)
        labels.append(label)
    return flat_lines, labels


def _field_errors(messages: Any, labels: Sequence[str]) -> dict[str, list[str]]:
    """marshmallow's nested messages -> {Intacct field: messages}, lines labelled by key."""
    if not isinstance(messages, Mapping):
        return {"record": _texts(messages)}
    errors: dict[str, list[str]] = {}
    for name, problem in messages.items():
        field = "record" if name == "_schema" else str(name)
        if not isinstance(problem, Mapping):
            errors[field] = _texts(problem)
            continue
        # A list of lines: {index: {line field: messages}}.
        for index, line_problem in problem.items():
            label = labels[index] if isinstance(index, int) and index < len(labels) else f"#{index}"
            for line_field, texts in _field_errors(line_problem, []).items():
                suffix = "" if line_field == "record" else f".{line_field}"
                errors[f"{field}[{label}]{suffix}"] = texts
    return errors


def _texts(problem: Any) -> list[str]:
    return [str(p) for p in problem] if isinstance(problem, list) else [str(problem)]


def _deserialized(field: Any, value: Any, name: str, errors: dict[str, list[str]]) -> Any:
    try:
        return field.deserialize(value)
    except ValidationError as exc:
        errors[name] = _texts(exc.messages)
        return None


def _key_for_messages(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value).strip()[:200] or None
    return None
