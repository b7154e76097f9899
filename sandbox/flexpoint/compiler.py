"""The YAML's schemas compiled into plain Python predicates: the fast yes/no of validation.

jsonschema explains failures precisely but costs ~0.5 ms per invoice here, which would make a
500-item batch take a quarter of a second; the workers push 100,000+ records through the
simulator in benchmarks. So every body is first checked by a predicate compiled from the
same schema (a few microseconds per item); only a body it refuses goes to jsonschema, which
then says exactly why. The compiler knows the keywords the YAML uses; a schema with any other
keyword the validator asserts is not compiled (:class:`Unsupported`) and jsonschema decides
alone, so the fast path can never silently skip a rule. Keywords no validator knows are
ignored, as JSON Schema says. The tests check both agree, also on generated data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Any], bool]

# Keywords that only annotate: they never make an instance invalid.
_ANNOTATIONS = frozenset(
    {
        "description",
        "title",
        "default",
        "examples",
        "example",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
    }
)


class Unsupported(ValueError):
    """The schema uses a keyword this compiler does not implement."""


def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a JSON Schema ``pattern`` with ECMA-262 meaning, as the spec requires.

    Python differs in two ways that matter to a contract check: ``$`` also matches before a
    final newline (so ``"1250.00\\n"`` would pass as Money), and ``\\d``/``\\w`` match other
    scripts' digits and letters. A trailing unescaped ``$`` becomes ``\\Z`` and ASCII mode is on.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern, re.ASCII)


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema defines it (``1 == 1.0`` but ``true != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Predicate] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: _is_number(v) and (isinstance(v, int) or (math.isfinite(v) and v.is_integer())),
}


# JSON types that are exactly one Python type (json.loads gives dict, list, str, bool, None).
_PLAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "null": type(None),
    "boolean": bool,
    "object": dict,
    "array": list,
    "string": str,
}


def _all_of(checks: list[Predicate]) -> Predicate:
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)

    return lambda v: all(each(v) for each in checks)


class SchemaCompiler:
    """Compiles schemas of one document; ``resolve`` looks up local ``#/...`` references,
    ``asserting`` lists every keyword the reference validator enforces."""

    def __init__(
        self, resolve: Callable[[str], Any], formats: Mapping[str, Predicate], asserting: frozenset[str]
    ) -> None:
        self._resolve = resolve
        self._formats = formats
        self._asserting = asserting  # the keywords the reference validator enforces
        self._by_ref: dict[str, Predicate] = {}

    def compile_ref(self, ref: str) -> Predicate:
        """The predicate for the schema at a local reference (memoised)."""
        if not ref.startswith("#/"):
            raise Unsupported(f"non-local $ref {ref}")
        found = self._by_ref.get(ref)
        if found is None:
            # A placeholder first, so a recursive reference compiles (it calls through later).
            cell: list[Predicate] = []
            self._by_ref[ref] = lambda v: cell[0](v)
            try:
                cell.append(self.compile(self._resolve(ref)))
            except Unsupported:
                del self._by_ref[ref]
                raise
            self._by_ref[ref] = found = cell[0]
        return found

    def compile(self, schema: Any) -> Predicate:
        """The predicate for one schema object."""
        if schema is True or schema == {}:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        checks: list[Predicate] = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS or keyword in ("properties", "additionalProperties"):
                continue
            build = getattr(self, "_kw_" + keyword.lstrip("$"), None)
            if build is None:
                if keyword in self._asserting:
                    raise Unsupported(f"keyword {keyword}")
                continue  # unknown to JSON Schema: an annotation (e.g. a YAML slip), never a rule
            checks.append(build(value, schema))
        if "properties" in schema or "additionalProperties" in schema:
            checks.append(self._object_shape(schema))
        return _all_of(checks)

    def _object_shape(self, schema: Mapping[str, Any]) -> Predicate:
        properties = {name: self.compile(sub) for name, sub in schema.get("properties", {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        extra = None if extra_schema is True else self.compile(extra_schema)

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for name, item in value.items():
                rule = properties.get(name, extra)
                if rule is not None and not rule(item):
                    return False
            return True

        return check

    def _kw_ref(self, value: str, _schema: Any) -> Predicate:
        return self.compile_ref(value)

    def _kw_type(self, value: str | list[str], _schema: Any) -> Predicate:
        names = [value] if isinstance(value, str) else list(value)
        plain = tuple(_PLAIN_TYPES[name] for name in names if name in _PLAIN_TYPES)
        others = [_TYPES[name] for name in names if name not in _PLAIN_TYPES]
        if not others:
            # The common case, one isinstance call: bool is only in the tuple when asked for.
            return lambda v: isinstance(v, plain)
        return lambda v: isinstance(v, plain) or any(kind(v) for kind in others)

    def _kw_required(self, value: list[str], _schema: Any) -> Predicate:
        names = tuple(value)
        return lambda v: not isinstance(v, dict) or all(name in v for name in names)

    def _kw_enum(self, value: list[Any], _schema: Any) -> Predicate:
        options = tuple(value)
        # A string equals (as JSON) only an equal string, null only null: no scan of the options.
        strings = frozenset(option for option in options if type(option) is str)
        takes_null = any(option is None for option in options)

        def check(v: Any) -> bool:
            if type(v) is str:
                return v in strings
            if v is None:
                return takes_null
            return any(json_equal(v, option) for option in options)

        return check

    def _kw_const(self, value: Any, _schema: Any) -> Predicate:
        return lambda v: json_equal(v, value)

    def _kw_pattern(self, value: str, _schema: Any) -> Predicate:
        regex = ecma_pattern(value)
        return lambda v: not isinstance(v, str) or regex.search(v) is not None

    def _kw_format(self, value: str, _schema: Any) -> Predicate:
        checker = self._formats.get(value)
        if checker is None:
            return lambda v: True  # not asserted, as in the jsonschema side's FormatChecker
        return lambda v: not isinstance(v, str) or checker(v)

    def _kw_minLength(self, value: int, _schema: Any) -> Predicate:
        return lambda v: not isinstance(v, str) or len(v) >= value

    def _kw_maxLength(self, value: int, _schema: Any) -> Predicate:
        return lambda v: not isinstance(v, str) or len(v) <= value

    def _kw_minItems(self, value: int, _schema: Any) -> Predicate:
        return lambda v: not isinstance(v, list) or len(v) >= value

    def _kw_maxItems(self, value: int, _schema: Any) -> Predicate:
        return lambda v: not isinstance(v, list) or len(v) <= value

    def _kw_minimum(self, value: float, _schema: Any) -> Predicate:
        return lambda v: not _is_number(v) or v >= value

    def _kw_maximum(self, value: float, _schema: Any) -> Predicate:
        return lambda v: not _is_number(v) or v <= value

    def _kw_items(self, value: Any, _schema: Any) -> Predicate:
        each = self.compile(value)

        def check(value: Any) -> bool:
            if isinstance(value, list):
                for item in value:
                    if not each(item):
                        return False
            return True

        return check

    def _kw_oneOf(self, value: list[Any], _schema: Any) -> Predicate:
        branches = [self.compile(sub) for sub in value]
        return lambda v: sum(1 for branch in branches if branch(v)) == 1

    def _kw_anyOf(self, value: list[Any], _schema: Any) -> Predicate:
        branches = [self.compile(sub) for sub in value]
        return lambda v: any(branch(v) for branch in branches)
