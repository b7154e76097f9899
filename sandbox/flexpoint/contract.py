"""flexpoint-sync-api.yaml as an executable check: every request is compared with the file.

The YAML shipped in this package is loaded once (lazily, never at import) and every rule the
simulator enforces comes from it: parameter schemas, request bodies, and the resource schemas
each item's ``data`` must match. Validation is JSON Schema Draft 2020-12 (OpenAPI 3.1's
dialect) over a referencing registry holding the whole document, so ``$ref``s resolve as
they are written, with ``date`` and ``date-time`` formats really checked.

A failure is a list of :class:`Violation`, each naming where (a JSON pointer into the body,
or the parameter), why, and which rule of the YAML it broke: the workers' contract bugs
show up here, so the reason must be exact.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sandbox.flexpoint.compiler import Predicate, SchemaCompiler, Unsupported, ecma_pattern
from sandbox.flexpoint.versions import parse_date, parse_timestamp
from sandbox.logs import get_logger

SPEC_FILE = "flexpoint-sync-api.yaml"
BASE_URI = "urn:flexpoint:sync-api"
BATCH_PATH = "/v1/accounts/{accountId}/accounting/{resource}/batch"
LIST_PATH = "/v1/accounts/{accountId}/accounting/{resource}"
RECORD_PATH = "/v1/accounts/{accountId}/accounting/{resource}/{externalId}"
STATUS_PATH = "/v1/accounts/{accountId}/integrations/sage-intacct"
POSTING_PATH = "/v1/accounts/{accountId}/payment-postings/{paymentId}"

# The YAML says each item's data follows "the schema named after the resource" without a
# machine-readable link; this table is that link, checked against the YAML's enum at load.
RESOURCE_SCHEMAS: dict[str, str] = {
    "customers": "Customer",
    "invoices": "Invoice",
    "payments": "Payment",
    "adjustments": "Adjustment",
    "gl-accounts": "GlAccount",
    "journal-entries": "JournalEntry",
    "bank-accounts": "BankAccount",
    "deposits": "Deposit",
    "other-receipts": "OtherReceipt",
    "entities": "Entity",
}

# Plain words for the shared schemas, appended to a reason that names one of them.
_SCHEMA_HINTS = {
    "Money": 'a decimal string with up to 2 fractional digits, e.g. "1250.00"',
    "Date": "a calendar date YYYY-MM-DD",
    "Timestamp": "an RFC 3339 date-time, e.g. 2026-11-24T10:00:00Z",
}
_MAX_VIOLATIONS = 100
_SHORT = 60


@dataclass(frozen=True)
class Violation:
    """One way a request breaks the contract."""

    location: str  # "path", "query", "header" or "body"
    pointer: str  # a JSON pointer into the body, or the parameter's name
    reason: str
    rule: str | None  # where the broken rule lives in the YAML, as a JSON pointer fragment

    def to_dict(self) -> dict[str, Any]:
        key = "pointer" if self.location == "body" else "name"
        return {"in": self.location, key: self.pointer, "reason": self.reason, "rule": self.rule}

    def describe(self) -> str:
        where = self.pointer or "/" if self.location == "body" else self.pointer
        return f"{self.location} {where}: {self.reason}"


class FormatFailure(ValueError):
    """Raised by the format checks so the cause reaches the violation's reason."""


def _check_date(instance: object) -> bool:
    if isinstance(instance, str):
        try:
            parse_date(instance)
        except ValueError as exc:
            raise FormatFailure(str(exc)) from None
    return True


def _check_date_time(instance: object) -> bool:
    if isinstance(instance, str):
        try:
            parse_timestamp(instance)
        except ValueError as exc:
            raise FormatFailure(str(exc)) from None
    return True


def _accepts_date(instance: str) -> bool:
    try:
        parse_date(instance)
    except ValueError:
        return False
    return True


def _accepts_date_time(instance: str) -> bool:
    try:
        parse_timestamp(instance)
    except ValueError:
        return False
    return True


_ecma_pattern = functools.lru_cache(maxsize=256)(ecma_pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # Draft 2020-12's pattern, with ECMA-262 meaning (see compiler.ecma_pattern).
    if validator.is_type(instance, "string") and _ecma_pattern(pattern).search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# jsonschema's Draft 2020-12 validator with the one keyword whose Python reading differs.
ContractValidator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def _format_checker() -> FormatChecker:
    # Only the formats the YAML uses, with our own strict parsers: the timestamps accepted
    # here are exactly those the store can order, and no optional dependency can silently
    # turn a check off.
    checker = FormatChecker(formats=())
    checker.checks("date", raises=FormatFailure)(_check_date)
    checker.checks("date-time", raises=FormatFailure)(_check_date_time)
    return checker


@dataclass(frozen=True)
class Parameter:
    """One parameter of an operation, with its schema from the YAML."""

    name: str
    location: str
    required: bool
    schema: Mapping[str, Any]
    rule: str  # the parameter's location in the YAML


class Operation:
    """One method on one path of the YAML: its parameters and request body."""

    def __init__(self, contract: Contract, method: str, path: str) -> None:
        self.method = method
        self.path = path
        self.pointer = pointer = f"#/paths/{_escape(path)}/{method}"
        spec = contract.document["paths"][path][method]
        self.parameters: list[Parameter] = []
        for index, raw in enumerate(spec.get("parameters", [])):
            rule = f"{pointer}/parameters/{index}"
            if "$ref" in raw:
                rule = raw["$ref"]
                raw = contract.resolve(raw["$ref"])
            self.parameters.append(
                Parameter(raw["name"], raw["in"], bool(raw.get("required")), raw["schema"], rule)
            )
        body = spec.get("requestBody")
        self.body_required = bool(body and body.get("required"))
        self.body_schema = body["content"]["application/json"]["schema"]["$ref"] if body else None
        self._contract = contract

    def check_parameters(
        self, path: Mapping[str, str], query: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[dict[str, Any], list[Violation]]:
        """Coerce and validate the parameters; return their values and any violations."""
        sources = {"path": path, "query": query, "header": headers}
        values: dict[str, Any] = {}
        violations: list[Violation] = []
        for param in self.parameters:
            raw = sources[param.location].get(param.name)
            if raw is None:
                if param.required:
                    violations.append(
                        Violation(
                            param.location, param.name, "is required but missing", f"{param.rule}/required"
                        )
                    )
                elif "default" in param.schema:
                    values[param.name] = param.schema["default"]
                continue
            value, problem = _coerce(raw, param.schema)
            if problem:
                violations.append(Violation(param.location, param.name, problem, f"{param.rule}/schema/type"))
                continue
            found = self._contract.validate_schema(param.schema, value, param.location, param.name)
            violations.extend(found)
            if not found:
                values[param.name] = value
        return values, violations

    def check_body(self, body: Any) -> list[Violation]:
        """Validate a parsed JSON body against the operation's request schema."""
        if self.body_schema is None:
            return []
        return self._contract.validate(self.body_schema, body)


def _coerce(raw: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    # Query and header values arrive as text; OpenAPI's default (form/simple) styles spell
    # integers in decimal and booleans as true/false.
    kind = schema.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]+", raw):
            return None, f"must be an integer, got {_short(raw)}"
        return int(raw), None
    if kind == "boolean":
        if raw not in ("true", "false"):
            return None, f"must be true or false, got {_short(raw)}"
        return raw == "true", None
    return raw, None


class Contract:
    """The loaded YAML: operations, schemas, and validation that explains itself."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource(BASE_URI, resource)
        self.format_checker = _format_checker()
        # Every schema object's location in the YAML, so a failure can name the rule it broke
        # (the validator hands back the very dict objects of the document).
        self._locations: dict[int, str] = dict(_walk(document, "#"))
        self._validators: dict[str, Any] = {}
        self._compiler = SchemaCompiler(
            self.resolve,
            {"date": _accepts_date, "date-time": _accepts_date_time},
            frozenset(ContractValidator.VALIDATORS),
        )
        self._predicates: dict[str, Predicate | None] = {}
        self.resources: tuple[str, ...] = tuple(
            self.resolve("#/components/parameters/resource")["schema"]["enum"]
        )
        if set(self.resources) != set(RESOURCE_SCHEMAS):
            raise ValueError(f"{SPEC_FILE}: resources {sorted(self.resources)} differ from RESOURCE_SCHEMAS")
        missing = [
            name for name in RESOURCE_SCHEMAS.values() if name not in document["components"]["schemas"]
        ]
        if missing:
            raise ValueError(f"{SPEC_FILE}: no schema for {missing}")
        self._operations = {
            (method, path): Operation(self, method, path)
            for path, item in document["paths"].items()
            for method in item
            if method in ("get", "put", "post", "delete", "patch")
        }
        # Compiled now, in one thread: a reference being compiled holds a placeholder that a
        # concurrent first request must never see.
        self._compile_lock = threading.Lock()
        for name in document["components"]["schemas"]:
            self._compile(f"#/components/schemas/{name}")

    def resolve(self, ref: str) -> Any:
        """The object a local ``#/...`` reference points to."""
        return self.registry.resolver(base_uri=BASE_URI).lookup(ref).contents

    def operation(self, method: str, path: str) -> Operation:
        """The YAML's operation for a method (lower case) and a path template."""
        return self._operations[(method, path)]

    def resource_schema(self, resource: str) -> str:
        """The reference of the schema an item's ``data`` must match for ``resource``."""
        return f"#/components/schemas/{RESOURCE_SCHEMAS[resource]}"

    def validate(self, ref: str, instance: Any, prefix: str = "") -> list[Violation]:
        """Validate a body (or part of one, at ``prefix``) against a schema of the YAML."""
        if self.fast_check(ref, instance):
            return []
        violations = self.full_check(ref, instance, prefix)
        if not violations:
            # The compiled predicate refused what jsonschema accepts: jsonschema is the
            # authority, but the disagreement is a bug in compiler.py worth seeing.
            get_logger(__name__).warning("flexpoint_contract_disagreement", schema=ref, pointer=prefix or "/")
        return violations

    def fast_check(self, ref: str, instance: Any) -> bool | None:
        """The compiled predicate's verdict, or None when the schema could not be compiled."""
        if ref not in self._predicates:
            with self._compile_lock:
                if ref not in self._predicates:
                    self._compile(ref)
        predicate = self._predicates[ref]
        return None if predicate is None else predicate(instance)

    def full_check(self, ref: str, instance: Any, prefix: str = "") -> list[Violation]:
        """jsonschema's verdict alone (Draft 2020-12 over the registry), with the reasons.

        ``ref`` is any ``#/...`` pointer into the YAML, e.g. an operation's response schema.
        """
        return self._explain(self._ref_validator(ref).iter_errors(instance), "body", prefix)

    def validate_schema(
        self, schema: Mapping[str, Any], instance: Any, location: str, name: str
    ) -> list[Violation]:
        """Validate a value against a schema object of the YAML: the compiled predicate first, as
        for bodies (jsonschema per parameter was most of a small request's check); jsonschema
        explains a refusal."""
        # Referenced by its place in the document, so $refs inside it resolve against the YAML.
        where = self._locations.get(id(schema))
        if where and self.fast_check(where, instance):
            return []
        validator = self._ref_validator(where) if where else self._validator(schema)
        errors = validator.iter_errors(instance)
        return [Violation(location, name, v.reason, v.rule) for v in self._explain(errors, location, "")]

    def _compile(self, ref: str) -> None:
        try:
            self._predicates[ref] = self._compiler.compile_ref(ref)
        except Unsupported:
            self._predicates[ref] = None  # jsonschema alone decides for this schema

    def check_items(self, resource: str, body: Any) -> list[Violation]:
        """The rules the YAML states in words for a batch's items: data required unless
        deleted, and data matching the schema named after the resource."""
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or resource not in RESOURCE_SCHEMAS:
            return []
        ref = self.resource_schema(resource)
        violations: list[Violation] = []
        for index, item in enumerate(items[: _MAX_VIOLATIONS * 5]):
            if not isinstance(item, dict):
                continue
            pointer = f"/items/{index}/data"
            if "data" not in item:
                if item.get("deleted", False) is False:
                    violations.append(
                        Violation(
                            "body",
                            pointer,
                            "is required unless deleted is true",
                            "#/components/schemas/Item/properties/data/description",
                        )
                    )
            elif isinstance(item["data"], dict):
                violations.extend(self.validate(ref, item["data"], pointer))
            if len(violations) >= _MAX_VIOLATIONS:
                break
        return violations[:_MAX_VIOLATIONS]

    def _ref_validator(self, ref: str) -> Any:
        validator = self._validators.get(ref)
        if validator is None:
            validator = self._validators[ref] = self._validator({"$ref": f"{BASE_URI}{ref}"})
        return validator

    def _validator(self, schema: Mapping[str, Any]) -> Any:
        return ContractValidator(schema, registry=self.registry, format_checker=self.format_checker)

    def _explain(self, errors: Iterable[ValidationError], location: str, prefix: str) -> list[Violation]:
        seen: set[tuple[str, str]] = set()
        found: list[Violation] = []
        try:
            for error in itertools.islice(errors, _MAX_VIOLATIONS):
                for violation in self._describe(error, location, prefix):
                    if (violation.pointer, violation.reason) not in seen:
                        seen.add((violation.pointer, violation.reason))
                        found.append(violation)
        except RecursionError:
            # jsonschema renders a refused value with repr(); a value nested ~1000 deep cannot be.
            found.append(Violation(location, prefix, "holds a value nested too deeply to be checked", None))
        return found

    def _rule(self, error: ValidationError) -> str | None:
        where = self._locations.get(id(error.schema))
        return f"{where}/{error.validator}" if where else None

    def _hint(self, error: ValidationError) -> str:
        where = self._locations.get(id(error.schema), "")
        name = where.removeprefix("#/components/schemas/")
        if "/" in name or name == where:
            return ""
        hint = _SCHEMA_HINTS.get(name)
        return f" ({name} is {hint})" if hint else f" ({name})"

    def _describe(self, error: ValidationError, location: str, prefix: str) -> Iterator[Violation]:
        pointer = prefix + "".join(f"/{_escape(str(part))}" for part in error.absolute_path)
        rule = self._rule(error)
        keyword, instance, value = error.validator, error.instance, error.validator_value
        if keyword == "required" and isinstance(instance, dict):
            for name in value:
                if name not in instance:
                    yield Violation(location, f"{pointer}/{_escape(name)}", "is required but missing", rule)
            return
        if keyword == "additionalProperties" and isinstance(instance, dict):
            allowed = list(error.schema.get("properties", {}))
            for name in instance:
                if name not in allowed:
                    yield Violation(
                        location,
                        f"{pointer}/{_escape(name)}",
                        f"is not allowed here (additionalProperties is false; allowed: {', '.join(allowed)})",
                        rule,
                    )
            return
        yield Violation(location, pointer, self._reason(error), rule)

    def _reason(self, error: ValidationError) -> str:
        if error.validator in ("oneOf", "anyOf") and error.context:
            by_branch: dict[Any, ValidationError] = {}
            for sub in error.context:
                by_branch.setdefault(sub.relative_schema_path[0], sub)
            forms = "; ".join(self._reason(sub) for sub in by_branch.values())
            return f"matches none of the allowed forms: {forms}"
        return _reason(error) + self._hint(error)


def _reason(error: ValidationError) -> str:
    keyword, instance, value = error.validator, error.instance, error.validator_value
    if keyword == "type":
        expected = " or ".join(value) if isinstance(value, list) else value
        return f"must be {expected}, got {_json_type(instance)} {_short(instance)}"
    if keyword == "pattern":
        return f"{_short(instance)} does not match {value}"
    if keyword == "format":
        cause = f": {error.cause}" if error.cause else ""
        return f"{_short(instance)} is not a valid {value}{cause}"
    if keyword == "enum":
        return f"{_short(instance)} is not one of {', '.join(_short(v) for v in value)}"
    if keyword == "const":
        return f"must be {_short(value)}, got {_short(instance)}"
    if keyword in ("minLength", "maxLength"):
        bound = "at least" if keyword == "minLength" else "at most"
        return f"has {len(instance)} characters; must have {bound} {value}"
    if keyword in ("minItems", "maxItems"):
        bound = "at least" if keyword == "minItems" else "at most"
        return f"has {len(instance)} items; must have {bound} {value}"
    if keyword in ("minimum", "maximum"):
        bound = "at least" if keyword == "minimum" else "at most"
        return f"is {_short(instance)}; must be {bound} {value}"
    if keyword in ("oneOf", "anyOf"):
        return f"{_short(instance)} matches more than one of the allowed forms"
    return error.message if len(error.message) <= 200 else error.message[:200] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except RecursionError:
        return "(a deeply nested value)"
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _walk(node: Any, pointer: str) -> Iterator[tuple[int, str]]:
    if isinstance(node, dict):
        yield id(node), pointer
        for key, child in node.items():
            yield from _walk(child, f"{pointer}/{_escape(str(key))}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _walk(child, f"{pointer}/{index}")


def read_spec_text() -> str:
    """The YAML shipped in this package (never the repository's copy outside it)."""
    return importlib.resources.files("sandbox.flexpoint").joinpath(SPEC_FILE).read_text(encoding="utf-8")


@functools.cache
def load_contract() -> Contract:
    """The contract, parsed once per process on first use."""
    return Contract(yaml.safe_load(read_spec_text()))
