"""The sandbox's own admin API under ``/sandbox``: inspection, reset, faults, accounts.

Not part of FlexPoint's contract; it exists so tests, benchmarks and people can see and steer
the simulator. Everything but ``/sandbox/health`` needs the same bearer token as the Sync API.

Payments FlexPoint collected (the write-back's source): ``POST /sandbox/accounts/<id>/payments``
records one (the ``payment.post`` message's fields: paymentId, connectionId, customerId,
receivedOn, amount, currency, method, depositBankAccountId | undepositedGLAccountId, allocations,
memo; 201 new, 200 the same again, 409 a different one under that paymentId);
``POST .../payments/<paymentId>/reverse`` ({reversedOn, memo}) notes a reversal request;
``GET .../payments`` and ``GET .../payments/<paymentId>`` show them with their current posting
``state``, ``lastPosting`` and every report received (``reports``).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from sandbox.flexpoint.errors import AccountNotFound, IdempotencyConflict, InvalidRequest, NotFound
from sandbox.flexpoint.faults import parse_settings
from sandbox.flexpoint.payments import PaymentInvalid, validate_payment
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


# -- collected payments ---------------------------------------------------------------------------


@blueprint.post("/accounts/<account_id>/payments")
def create_payment(account_id: str) -> Response:
    """Record a payment FlexPoint collected (the account is created if new)."""
    try:
        payment = validate_payment(_body())
    except PaymentInvalid as exc:
        raise InvalidRequest(f"invalid payment: {exc}") from None
    created = current_sandbox().payments.record(account_id, payment)
    if created is None:
        raise IdempotencyConflict(f"payment {payment['paymentId']!r} was already recorded with other details")
    return _json({"accountId": account_id, "payment": payment, "created": created}, 201 if created else 200)


@blueprint.post("/accounts/<account_id>/payments/<payment_id>/reverse")
def reverse_payment(account_id: str, payment_id: str) -> Response:
    """Note that FlexPoint asked for a collected payment to be reversed."""
    body = _body()
    if not isinstance(body, dict) or not isinstance(body.get("reversedOn"), str):
        raise InvalidRequest("invalid reversal: reversedOn (YYYY-MM-DD) is required")
    reversal = {"reversedOn": body["reversedOn"], "memo": body.get("memo")}
    if not current_sandbox().payments.request_reverse(account_id, payment_id, reversal):
        raise NotFound(f"no payment {payment_id!r} in account {account_id!r}")
    return _json({"accountId": account_id, "paymentId": payment_id, "reverseRequested": reversal})


@blueprint.get("/accounts/<account_id>/payments")
def list_payments(account_id: str) -> Response:
    """Collected payments with their posting state and report history."""
    return _json({"accountId": account_id, "payments": current_sandbox().payments.payments(account_id)})


@blueprint.get("/accounts/<account_id>/payments/<payment_id>")
def show_payment(account_id: str, payment_id: str) -> Response:
    """One collected payment with its posting state and report history."""
    found = current_sandbox().payments.payments(account_id, payment_id)
    if not found:
        raise NotFound(f"no payment {payment_id!r} in account {account_id!r}")
    return _json(found[0])
