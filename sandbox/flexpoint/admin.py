"""The sandbox's own admin API under ``/sandbox``: inspection, reset, faults, accounts.

Not part of FlexPoint's contract; it exists so tests, benchmarks and people can see and steer
the simulator. Everything but ``/sandbox/health`` needs the same bearer token as the Sync API.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from sandbox.flexpoint.errors import AccountNotFound, InvalidRequest
from sandbox.flexpoint.faults import parse_settings
from sandbox.flexpoint.runtime import current_sandbox

blueprint = Blueprint("flexpoint_sandbox_admin", __name__, url_prefix="/sandbox")


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, separators=(",", ":")), status=status, mimetype="application/json")


def _body() -> Any:
    raw = request.get_data(cache=False)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"body is not valid JSON ({exc})") from None


@blueprint.get("/health")
def health() -> Response:
    """Liveness, without a token (the launcher waits on it)."""
    return _json({"status": "ok", "service": "flexpoint-sandbox"})


@blueprint.get("/summary")
def summary() -> Response:
    """Per account and resource: live records and tombstones; request and fault counters."""
    sandbox = current_sandbox()
    return _json(
        {**sandbox.store.summary(), "requests": sandbox.requests.counts(), "faults": sandbox.faults.stats()}
    )


@blueprint.get("/requests")
def requests_log() -> Response:
    """The last requests (newest first): ``limit`` (default 100) and ``accountId`` filter."""
    sandbox = current_sandbox()
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidRequest(f"limit must be a positive integer, got {raw!r}")
    entries = sandbox.requests.recent(int(raw), account_id=request.args.get("accountId"))
    return _json({"requests": entries})


@blueprint.post("/reset")
def reset() -> Response:
    """Wipe all stored data, the request log and fault counters (fault settings stay)."""
    sandbox = current_sandbox()
    sandbox.store.reset()
    sandbox.requests.clear()
    sandbox.faults.reset_stats()
    return _json({"reset": True})


def _faults_view() -> Response:
    faults = current_sandbox().faults
    return _json({"settings": faults.settings.to_json(), **faults.stats()})


@blueprint.get("/faults")
def get_faults() -> Response:
    """The fault settings in force and what was injected so far."""
    return _faults_view()


@blueprint.put("/faults")
def put_faults() -> Response:
    """Change fault settings; absent fields keep their value, a ``seed`` restarts the sequence."""
    faults = current_sandbox().faults
    body = _body()
    try:
        settings = parse_settings(faults.settings, body)
    except ValueError as exc:
        raise InvalidRequest(f"invalid fault settings: {exc}") from None
    faults.configure(settings, reseed="seed" in body)
    return _faults_view()


@blueprint.post("/accounts")
def create_account() -> Response:
    """Create an account explicitly (needed when the sandbox runs with strict accounts)."""
    sandbox = current_sandbox()
    body = _body()
    account_id = body.get("accountId") if isinstance(body, dict) else None
    operation = sandbox.contract.operation("get", "/v1/accounts/{accountId}/integrations/sage-intacct")
    _, violations = operation.check_parameters(
        {"accountId": account_id} if isinstance(account_id, str) else {}, {}, {}
    )
    if violations:
        raise InvalidRequest(f"accountId {violations[0].reason}")
    created = sandbox.store.create_account(account_id)
    return _json({"accountId": account_id, "created": created}, 201 if created else 200)


@blueprint.delete("/accounts/<account_id>")
def delete_account(account_id: str) -> Response:
    """Remove an account and all it holds (FlexPoint closed the account)."""
    if not current_sandbox().store.delete_account(account_id):
        raise AccountNotFound(f"account {account_id!r} does not exist")
    return Response(status=204)
