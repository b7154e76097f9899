"""SQL expressions that render records as JSON inside SQLite, so no row passes through Python.

A query row is ``json_object('key', ..., 'customer.id', ...)`` (flat, keyed by the requested
names); a GET record is the same fields nested by their dots. Asking the query service for a
prefix (``customer``, ``audit``) yields that nested object.
"""

from __future__ import annotations

from .errors import not_a_valid_field
from .objects import Field, Kind, ObjectType

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# nested_record_sql per object type, by identity (the type is kept so its id is never reused).
_NESTED: dict[int, tuple[ObjectType, str]] = {}


def _literal(text: str) -> str:
    # Only called with object paths and field names already checked against objects.py;
    # quoting anyway keeps that an invariant rather than a hope.
    return "'" + text.replace("'", "''") + "'"


def value_sql(obj: ObjectType, field: Field) -> str:
    """The SQL expression rendering one field's JSON value."""
    if field.kind in (Kind.KEY, Kind.REF):
        return f"CAST({field.column} AS TEXT)"
    if field.kind is Kind.DATETIME:
        return f"strftime('{TIMESTAMP_FORMAT}', {field.column}, 'unixepoch')"
    if field.kind is Kind.HREF:
        return f"{_literal('/objects/' + obj.path + '/')} || key"
    if field.kind is Kind.REF_HREF:
        column = field.name[: -len("href")].replace(".", "__") + "key"
        return f"{_literal('/objects/' + (field.target or '') + '/')} || {column}"
    if field.kind is Kind.BOOL:
        return f"CASE WHEN {field.column} IS NULL THEN NULL WHEN {field.column} THEN json('true') ELSE json('false') END"
    return field.column


def _tree(fields: list[tuple[list[str], Field]]) -> dict:
    tree: dict = {}
    for parts, field in fields:
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = field
    return tree


def _object_sql(obj: ObjectType, tree: dict) -> str:
    members = []
    for name, node in tree.items():
        value = value_sql(obj, node) if isinstance(node, Field) else _object_sql(obj, node)
        members.append(f"{_literal(name)}, {value}")
    return f"json_object({', '.join(members)})"


def nested_record_sql(obj: ObjectType) -> str:
    """The whole record as nested JSON, as a GET answers it (built once per object type)."""
    cached = _NESTED.get(id(obj))
    if cached is None:
        sql = _object_sql(obj, _tree([(f.name.split("."), f) for f in obj.fields if f.readable]))
        cached = _NESTED[id(obj)] = (obj, sql)
    return cached[1]


def field_sql(obj: ObjectType, name: str) -> str:
    """A requested field: a leaf's value, or a prefix's nested object; 400 for an unknown name."""
    field = obj.by_name.get(name)
    if field is not None and field.readable:
        return value_sql(obj, field)
    prefix = name + "."
    below = [
        (f.name[len(prefix) :].split("."), f) for f in obj.fields if f.name.startswith(prefix) and f.readable
    ]
    if not below:
        raise not_a_valid_field(name, name, obj.path)
    return _object_sql(obj, _tree(below))


def flat_row_sql(obj: ObjectType, names: list[str]) -> str:
    """A query row: an object keyed by exactly the requested (dotted) names."""
    return "json_object(" + ", ".join(f"{_literal(n)}, {field_sql(obj, n)}" for n in names) + ")"
