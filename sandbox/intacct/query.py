"""The query service: validates a query body and runs it as one SQL statement per page.

Filters, ``filterExpression``, ``orderBy`` and paging become a WHERE / ORDER BY / LIMIT over
the object's table; rows are rendered to JSON by SQLite (see :mod:`render`).
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import bad_request, not_a_valid_field
from .objects import Field, Kind, ObjectType, lookup
from .render import field_sql, flat_row_sql
from .store import MAX_KEY, lookup_index

MAX_PAGE_SIZE = 4000
DEFAULT_PAGE_SIZE = 100
DEFAULT_FIELDS = ("key", "id", "href")
_OPERATORS = {
    "$eq": "=",
    "$ne": "IS NOT",
    "$gt": ">",
    "$gte": ">=",
    "$lt": "<",
    "$lte": "<=",
    "$in": "IN",
    "$notIn": "NOT IN",
    "$between": "BETWEEN",
    "$contains": "LIKE",
    "$startsWith": "LIKE",
    "$endsWith": "LIKE",
}
_PATTERNS = {"$contains": "%{}%", "$startsWith": "{}%", "$endsWith": "%{}"}
# SQLite's bound-parameter limit is 32,766; leave room for the rest of the statement.
_MAX_PARAMETERS = 30_000
_TOKEN = re.compile(r"\s*(?:(\d+)|(\()|(\))|(and|or)\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Condition:
    """A piece of WHERE clause with its bound values."""

    sql: str
    params: tuple[Any, ...]
    # An index that serves this condition when it must hold (equality on a parent key or id).
    index: str | None = None


@dataclass(frozen=True)
class Query:
    """A validated query: what to select, where, in which order, which page."""

    obj: ObjectType
    fields: tuple[str, ...]
    where: Condition
    order_by: str
    start: int
    size: int


@dataclass(frozen=True)
class Page:
    """One page of query rows, already rendered to JSON by SQLite."""

    rows_json: list[str]
    total: int
    start: int
    size: int

    def meta(self) -> dict[str, Any]:
        """``ia::meta``: totalCount, start, pageSize, next and previous (1-based, or null)."""
        following = self.start + self.size
        return {
            "totalCount": self.total,
            "start": self.start,
            "pageSize": self.size,
            "next": following if following <= self.total else None,
            "previous": max(1, self.start - self.size) if self.start > 1 else None,
        }

    def body(self) -> str:
        """The response body, spliced from SQLite's JSON rows (no per-row Python work)."""
        return (
            '{"ia::result": [' + ",".join(self.rows_json) + '], "ia::meta": ' + json.dumps(self.meta()) + "}"
        )


# -- values ---------------------------------------------------------------------------------


def _epoch(value: Any, name: str) -> float:
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
        except ValueError:
            pass
    raise bad_request(f"'{name}' needs an RFC 3339 date-time, not {value!r}")


def coerce(field: Field, value: Any) -> Any:
    """A filter value converted to the field's stored type; 400 when it cannot be."""
    if value is None:
        return None
    name = field.name
    if field.kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise bad_request(f"'{name}' needs true or false, not {value!r}")
        return int(value)
    if field.kind is Kind.NUMBER:
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            return float(Decimal(str(value)))
        except (InvalidOperation, ValueError):
            raise bad_request(f"'{name}' needs a number, not {value!r}") from None
    if field.kind in (Kind.KEY, Kind.REF, Kind.INT):
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
            raise bad_request(f"'{name}' needs a whole number, not {value!r}")
        if int(value) > MAX_KEY:
            raise bad_request(f"'{name}' is larger than any key or number Intacct stores: {value!r}")
        return int(value)
    if field.kind is Kind.DECIMAL:
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            return float(Decimal(str(value)))
        except (InvalidOperation, ValueError):
            raise bad_request(f"'{name}' needs a decimal amount, not {value!r}") from None
    if field.kind is Kind.DATETIME:
        return _epoch(value, name)
    if field.kind is Kind.DATE:
        try:
            return date.fromisoformat(str(value)[:10]).isoformat()
        except ValueError:
            raise bad_request(f"'{name}' needs a date (YYYY-MM-DD), not {value!r}") from None
    if isinstance(value, dict | list):
        raise bad_request(f"'{name}' needs a single value, not {value!r}")
    return value if isinstance(value, str) else str(value)


def _column_sql(field: Field) -> str:
    # Money is stored as text ("1250.00") and must compare as a number.
    return f"CAST({field.column} AS REAL)" if field.kind is Kind.DECIMAL else field.column


def _leaf(obj: ObjectType, name: Any, purpose: str) -> Field:
    if not isinstance(name, str):
        raise bad_request(f"Cannot {purpose} on {name!r}: a field name is a string")
    field = obj.by_name.get(name)
    if field is None or not field.readable:
        raise not_a_valid_field(name, name, obj.path)
    if not field.stored:
        raise bad_request(f"Cannot {purpose} on '{name}': it is computed")
    return field


# -- filters ----------------------------------------------------------------------------------


def _condition(obj: ObjectType, position: int, spec: Any) -> Condition:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise bad_request(f"Filter {position} must be an object with one operator, like {{'$eq': {{...}}}}")
    operator, operand = next(iter(spec.items()))
    if operator not in _OPERATORS:
        raise bad_request(
            f"Filter {position}: unsupported operator '{operator}'; use {', '.join(_OPERATORS)}"
        )
    if not isinstance(operand, dict) or len(operand) != 1:
        raise bad_request(f"Filter {position}: '{operator}' takes an object with one field")
    name, value = next(iter(operand.items()))
    field = _leaf(obj, name, "filter")
    column = _column_sql(field)
    if operator in ("$in", "$notIn"):
        if not isinstance(value, list):
            raise bad_request(f"Filter {position}: '{operator}' takes a list of values")
        values = [coerce(field, v) for v in value if v is not None]
        if not values:
            return Condition("0" if operator == "$in" else "1", ())
        index = lookup_index(obj, field) if operator == "$in" else None
        return Condition(
            f"{column} {_OPERATORS[operator]} ({', '.join('?' * len(values))})", tuple(values), index
        )
    if operator == "$between":
        if not isinstance(value, list) or len(value) != 2:
            raise bad_request(f"Filter {position}: '$between' takes a list of two values")
        low, high = (coerce(field, v) for v in value)
        return Condition(f"{column} BETWEEN ? AND ?", (low, high))
    if operator in _PATTERNS:
        if field.kind in (Kind.DATE, Kind.DATETIME) or not isinstance(value, str):
            raise bad_request(f"Filter {position}: '{operator}' takes text and cannot be used with dates")
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return Condition(f"{field.column} LIKE ? ESCAPE '\\'", (_PATTERNS[operator].format(escaped),))
    coerced = coerce(field, value)
    if coerced is None:
        if operator not in ("$eq", "$ne"):
            raise bad_request(f"Filter {position}: '{operator}' cannot compare with null")
        return Condition(f"{field.column} IS {'NOT ' if operator == '$ne' else ''}NULL", ())
    index = lookup_index(obj, field) if operator == "$eq" else None
    return Condition(f"{column} {_OPERATORS[operator]} ?", (coerced,), index)


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    text = expression.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise bad_request(f"filterExpression: unexpected text at '{text[position:]}'")
        tokens.append(match.group(match.lastindex).lower())
        position = match.end()
    return tokens


class _ExpressionParser:
    """``or`` of ``and``s of filter numbers (1-based) and parenthesised groups."""

    def __init__(self, tokens: list[str], conditions: list[Condition]) -> None:
        self.tokens = tokens
        self.position = 0
        self.conditions = conditions
        self.used: set[int] = set()

    def parse(self) -> Condition:
        if not self.tokens:
            raise bad_request("filterExpression is empty")
        result = self._or()
        if self.position != len(self.tokens):
            raise bad_request(f"filterExpression: unexpected '{self.tokens[self.position]}'")
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _join(self, word: str, operand) -> Condition:
        parts = [operand()]
        while self._peek() == word:
            self.position += 1
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return Condition(
            "(" + f" {word.upper()} ".join(p.sql for p in parts) + ")",
            tuple(param for p in parts for param in p.params),
        )

    def _or(self) -> Condition:
        return self._join("or", self._and)

    def _and(self) -> Condition:
        return self._join("and", self._operand)

    def _operand(self) -> Condition:
        word = self._peek()
        self.position += 1
        if word == "(":
            inner = self._or()
            if self._peek() != ")":
                raise bad_request("filterExpression: missing ')'")
            self.position += 1
            return inner
        if word is None or not word.isdigit():
            raise bad_request(f"filterExpression: expected a filter number, found '{word or 'the end'}'")
        number = int(word)
        if not 1 <= number <= len(self.conditions):
            raise bad_request(f"filterExpression refers to filter {number}; there are {len(self.conditions)}")
        self.used.add(number)
        return self.conditions[number - 1]


def _where(obj: ObjectType, filters: Any, expression: Any) -> Condition:
    if filters is None:
        filters = []
    if not isinstance(filters, list):
        raise bad_request("'filters' must be a list")
    conditions = [_condition(obj, n, spec) for n, spec in enumerate(filters, start=1)]
    if expression is None:
        if not conditions:
            return Condition("1", ())
        return Condition(
            " AND ".join(f"({c.sql})" for c in conditions),
            tuple(p for c in conditions for p in c.params),
            _first_index(conditions),
        )
    if not isinstance(expression, str):
        raise bad_request("'filterExpression' must be a string like '1 and (2 or 3)'")
    if expression.strip().lower() in ("and", "or"):  # all of them, or any of them
        word = f" {expression.strip().lower()} "
        expression = word.join(str(n) for n in range(1, len(conditions) + 1)) if conditions else ""
        if not conditions:
            return Condition("1", ())
    tokens = _tokens(expression)
    parser = _ExpressionParser(tokens, conditions)
    result = parser.parse()
    if "or" not in tokens:  # a pure conjunction: every condition must hold
        result = Condition(
            result.sql, result.params, _first_index([conditions[n - 1] for n in sorted(parser.used)])
        )
    unused = sorted(set(range(1, len(conditions) + 1)) - parser.used)
    if unused:
        # A filter silently ignored would hide a client bug; say so instead.
        raise bad_request(f"filterExpression does not use filter(s) {unused}")
    return result


def _first_index(conditions: list[Condition]) -> str | None:
    # SQLite's planner, seeing ORDER BY key, tends to walk the primary key and test every row;
    # for "lines of these parents" walking the parent-key index and sorting is far cheaper.
    return next((c.index for c in conditions if c.index), None)


def _order_by(obj: ObjectType, order_by: Any) -> str:
    if order_by is None:
        order_by = []
    if not isinstance(order_by, list):
        raise bad_request("'orderBy' must be a list like [{'key': 'asc'}]")
    terms, names = [], set()
    for spec in order_by:
        if not isinstance(spec, dict) or len(spec) != 1:
            raise bad_request("each orderBy entry must be an object with one field")
        name, direction = next(iter(spec.items()))
        field = _leaf(obj, name, "order")
        if not isinstance(direction, str) or direction.lower() not in ("asc", "desc"):
            raise bad_request(f"orderBy direction for '{name}' must be 'asc' or 'desc'")
        terms.append(f"{_column_sql(field)} {direction.upper()}")
        names.add(name)
    if "key" not in names:
        terms.append("key ASC")  # a total order, so pages neither overlap nor skip
    return ", ".join(terms)


def _positive(body: dict[str, Any], name: str, default: int, maximum: int | None = None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"'{name}' must be a whole number of at least 1")
    if maximum is not None and value > maximum:
        raise bad_request(f"'{name}' can be at most {maximum}")
    return value


def parse_object(body: Any) -> ObjectType:
    """The body's ``object``; 400 when the body is not an object or names no known object."""
    if not isinstance(body, dict):
        raise bad_request("The query body must be a JSON object")
    path = body.get("object")
    obj = lookup(path) if isinstance(path, str) else None
    if obj is None:
        raise bad_request(f"Unknown object {path!r}")
    return obj


def parse_query(obj: ObjectType, body: dict[str, Any]) -> Query:
    """Validate the rest of a query body; 400 with the reason for anything wrong."""
    known = {
        "object",
        "fields",
        "filters",
        "filterExpression",
        "filterParameters",
        "orderBy",
        "start",
        "size",
    }
    unknown = set(body) - known
    if unknown:
        raise bad_request(f"Unknown query parameter(s): {', '.join(sorted(unknown))}")
    fields = body.get("fields") or list(DEFAULT_FIELDS)
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise bad_request("'fields' must be a list of field names")
    fields = list(dict.fromkeys(fields))
    for name in fields:
        field_sql(obj, name)  # validates
    query = Query(
        obj=obj,
        fields=tuple(fields),
        where=_where(obj, body.get("filters"), body.get("filterExpression")),
        order_by=_order_by(obj, body.get("orderBy")),
        start=_positive(body, "start", 1),
        size=_positive(body, "size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    )
    if len(query.where.params) > _MAX_PARAMETERS:
        raise bad_request(f"Too many filter values (at most {_MAX_PARAMETERS})")
    return query


def run(conn: sqlite3.Connection, company_id: str, query: Query) -> Page:
    """Count the matches and render the requested page."""
    table, where = query.obj.table, f"company_id = ? AND ({query.where.sql})"
    if query.where.index:
        table += f" INDEXED BY {query.where.index}"
    params = (company_id, *query.where.params)
    total = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()[0]
    rows: list[str] = []
    if query.start <= total:
        sql = (
            f"SELECT {flat_row_sql(query.obj, list(query.fields))} FROM {table} "
            f"WHERE {where} ORDER BY {query.order_by} LIMIT ? OFFSET ?"
        )
        rows = [row[0] for row in conn.execute(sql, (*params, query.size, query.start - 1))]
    return Page(rows, total, query.start, query.size)
