"""The Sync API of flexpoint-sync-api.yaml: batch upserts, inspection reads, connection status.

Each view checks its request against the YAML's operation first (parameters, then body) and
answers 400 with every violation found; only a request that matches the contract reaches the
store. Authentication and fault injection happen before, in the app's hooks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from flask import Blueprint, Response, g, request

from sandbox.flexpoint.contract import BATCH_PATH, LIST_PATH, RECORD_PATH, STATUS_PATH, Violation
from sandbox.flexpoint.errors import (
    AccountNotFound,
    IdempotencyConflict,
    InvalidRequest,
    RecordNotFound,
    StatusNotFound,
)
from sandbox.flexpoint.runtime import Sandbox, current_sandbox
from sandbox.flexpoint.store import BatchItem, BatchWrite
from sandbox.flexpoint.versions import State, parse_timestamp

blueprint = Blueprint("flexpoint_sync_api", __name__)
_CURSOR_PREFIX = "1:"


def canonical_json(value: Any) -> str:
    """One text per JSON value: what "identical data" and "the same body" compare."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_text(value: Any) -> str:
    """Compact JSON, as every answer is written."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_response(text: str | bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(text, status=status, mimetype="application/json", headers=headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json_body(rule: str) -> tuple[Any, list[Violation]]:
    """The request's JSON body, or violations saying why it is not one (``rule``: the YAML's
    requestBody of the operation)."""
    if request.mimetype != "application/json":
        shown = request.content_type or "none"
        return None, [
            Violation("header", "Content-Type", f"must be application/json, got {shown}", f"{rule}/content")
        ]
    raw = request.get_data(cache=False)
    if not raw:
        return None, [Violation("body", "", "is required but empty", None)]
    try:
        # RFC 8259: JSON exchanged between systems is UTF-8; NaN and Infinity are not JSON.
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant), []
    except UnicodeDecodeError as exc:
        return None, [Violation("body", "", f"is not UTF-8 ({exc.reason} at byte {exc.start})", None)]
    except ValueError as exc:
        return None, [Violation("body", "", f"is not valid JSON ({exc})", None)]
    except RecursionError:
        return None, [Violation("body", "", "nests too deeply to be read", None)]


def contract_error(violations: list[Violation]) -> InvalidRequest:
    """The 400 for a request that breaks the contract: first reason in the message, all in details."""
    first = violations[0].describe()
    more = f" (and {len(violations) - 1} more in details)" if len(violations) > 1 else ""
    return InvalidRequest(
        f"request does not match flexpoint-sync-api.yaml: {first}{more}",
        details={"violations": [v.to_dict() for v in violations]},
    )


def check_request(
    sandbox: Sandbox, method: str, path: str, path_params: dict[str, str], *, body: bool = False
):
    """Check the request against one operation of the YAML: (operation, values, body, violations)."""
    operation = sandbox.contract.operation(method, path)
    values, violations = operation.check_parameters(path_params, request.args, request.headers)
    parsed = None
    if body:
        parsed, problems = read_json_body(f"{operation.pointer}/requestBody")
        violations += problems or operation.check_body(parsed)
    return operation, values, parsed, violations


@blueprint.post("/v1/accounts/<account_id>/accounting/<resource>/batch")
def upsert_batch(account_id: str, resource: str) -> Response:
    """Upsert or delete up to 500 records of one resource (sourceVersion rules in versions.py)."""
    sandbox = current_sandbox()
    _, values, body, violations = check_request(
        sandbox, "post", BATCH_PATH, {"accountId": account_id, "resource": resource}, body=True
    )
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        g.items = len(body["items"])
        if "resource" in values:
            violations += sandbox.contract.check_items(resource, body)
    if violations:
        raise contract_error(violations)
    items = []
    digest = hashlib.sha256(json.dumps(["POST", request.path, body["source"], body["connectionId"]]).encode())
    for item in body["items"]:
        deleted = item.get("deleted", False)
        version = parse_timestamp(item["sourceVersion"])
        data = canonical_json(item["data"]) if "data" in item else None
        # The request's fingerprint, from the canonical parts already computed: "the same body"
        # means the same JSON value, whatever the key order or spacing of a retry.
        head = json.dumps(
            [item["externalId"], item["sourceVersion"], item.get("deleted")], ensure_ascii=False
        )
        digest.update(f"{head}{data or 'null'}".encode())
        items.append(
            BatchItem(
                item["externalId"], State(version.key, deleted, None if deleted else data), version.text
            )
        )
    key = values["Idempotency-Key"]
    fingerprint = digest.hexdigest()
    outcome = sandbox.store.apply_batch(
        BatchWrite(
            account_id,
            resource,
            body["connectionId"],
            items,
            key,
            fingerprint,
            create_account=sandbox.config.auto_create_accounts,
        ),
        render=lambda results: json.dumps({"results": results}, separators=(",", ":")).encode(),
    )
    if outcome.kind == "conflict":
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used in this account for a different request;"
            " a new request needs a new key",
            details={"idempotencyKey": key},
        )
    if outcome.kind == "no_account":
        raise AccountNotFound(f"account {account_id!r} does not exist")
    g.outcomes = outcome.counts
    headers = None
    if outcome.kind == "replayed":
        g.replayed = True
        headers = {"Idempotent-Replayed": "true"}
    return _json_response(outcome.body, outcome.status, headers)


def _encode_cursor(external_id: str) -> str:
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + external_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return text.removeprefix(_CURSOR_PREFIX) if text.startswith(_CURSOR_PREFIX) else None


def _require_account(sandbox: Sandbox, account_id: str) -> None:
    if not sandbox.store.account_exists(account_id):
        raise AccountNotFound(f"account {account_id!r} does not exist (accounts appear on their first write)")


@blueprint.get("/v1/accounts/<account_id>/accounting/<resource>")
def list_records(account_id: str, resource: str) -> Response:
    """A page of stored records in externalId order; tombstones only with includeDeleted=true."""
    sandbox = current_sandbox()
    _, values, _, violations = check_request(
        sandbox, "get", LIST_PATH, {"accountId": account_id, "resource": resource}
    )
    after = None
    if "cursor" in values:
        after = _decode_cursor(values["cursor"])
        if after is None:
            violations.append(
                Violation(
                    "query", "cursor", "is not a cursor this server issued (use nextCursor as is)", None
                )
            )
    if violations:
        raise contract_error(violations)
    _require_account(sandbox, account_id)
    limit = values["limit"]
    rows = sandbox.store.list_records(
        account_id, resource, after=after, limit=limit + 1, include_deleted=values["includeDeleted"]
    )
    next_cursor = _encode_cursor(rows[limit - 1].external_id) if len(rows) > limit else None
    items = ",".join(row.to_json_text() for row in rows[:limit])
    return _json_response(f'{{"items":[{items}],"nextCursor":{json.dumps(next_cursor)}}}')


@blueprint.get("/v1/accounts/<account_id>/accounting/<resource>/<path:external_id>")
def get_record(account_id: str, resource: str, external_id: str) -> Response:
    """One stored record, tombstones included (``deleted: true``, ``data: null``)."""
    sandbox = current_sandbox()
    _, _, _, violations = check_request(
        sandbox,
        "get",
        RECORD_PATH,
        {"accountId": account_id, "resource": resource, "externalId": external_id},
    )
    if violations:
        raise contract_error(violations)
    _require_account(sandbox, account_id)
    record = sandbox.store.get_record(account_id, resource, external_id)
    if record is None:
        raise RecordNotFound(f"no {resource} record {external_id!r} in account {account_id!r}")
    return _json_response(record.to_json_text())


@blueprint.put("/v1/accounts/<account_id>/integrations/sage-intacct")
def put_status(account_id: str) -> Response:
    """Store the reported connection state; the last report wins, whatever its key."""
    sandbox = current_sandbox()
    _, _, body, violations = check_request(sandbox, "put", STATUS_PATH, {"accountId": account_id}, body=True)
    if violations:
        raise contract_error(violations)
    text = json_text(body)
    if not sandbox.store.put_status(account_id, text, create_account=sandbox.config.auto_create_accounts):
        raise AccountNotFound(f"account {account_id!r} does not exist")
    return _json_response(text)


@blueprint.get("/v1/accounts/<account_id>/integrations/sage-intacct")
def get_status(account_id: str) -> Response:
    """The last reported connection state."""
    sandbox = current_sandbox()
    _, _, _, violations = check_request(sandbox, "get", STATUS_PATH, {"accountId": account_id})
    if violations:
        raise contract_error(violations)
    _require_account(sandbox, account_id)
    text = sandbox.store.get_status(account_id)
    if text is None:
        raise StatusNotFound(f"no Sage Intacct connection status was reported for account {account_id!r}")
    return _json_response(text)
