"""The admin HTTP API under ``/sandbox``: companies, records, seeding, faults, limits, inspection.

For the payment write-back: ``PATCH /sandbox/companies/<id>`` takes ``receivedPaymentsAdd``
(false: creates answer 403), ``booksClosedThrough`` ("2026-10-31": receipts on or before it are
refused) and ``writeFaults`` ({"commitErrorRate", "commitTimeoutRate"}, this company's own
commit-then-fail rates; null: the global ones of ``/sandbox/faults``) and ``outage`` (true: every
API call of the company answers 503, as when one customer's Intacct is down);
``GET /sandbox/companies/<id>/payments?referenceNumber=FP-1`` lists the stored payments carrying a
reference (an oracle's "exactly once" count, not through any client).

Bodies and answers are camelCase JSON; errors are ``{"error": {"code", "message"}}``. When the
config sets an admin token, every call needs it as a bearer token.
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import hmac
import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from .companies import Company
from .errors import AdminError
from .faults import FaultSettings
from .objects import OBJECT_TYPES, ObjectType, lookup
from .render import nested_record_sql
from .seed import SeedOptions, seed_company
from .simulator import Simulator, fault_settings
from .store import Store

admin = Blueprint("intacct_admin", __name__, url_prefix="/sandbox")


def simulator() -> Simulator:
    """The simulator behind the current app."""
    return current_app.extensions["intacct_simulator"]


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise AdminError(400, "invalid_json", "the body must be a JSON object")
    return body


def _int_arg(name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise AdminError(400, "invalid_parameter", f"{name} must be a whole number of at least {minimum}")
    return int(raw)


def _company(company_id: str) -> Company:
    stored = simulator().store.company(company_id)
    if stored is None:
        raise AdminError(404, "unknown_company", f"no company {company_id!r}")
    return Company.from_json(stored)


def _object(area: str, name: str) -> ObjectType:
    obj = lookup(f"{area}/{name}")
    if obj is None:
        raise AdminError(404, "unknown_object", f"no object {area}/{name}; known: {', '.join(OBJECT_TYPES)}")
    return obj


@admin.before_request
def _authorize() -> None:
    expected = simulator().config.admin_token
    if not expected:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise AdminError(401, "unauthorized", "the admin API needs the sandbox admin token")


@admin.errorhandler(AdminError)
def _admin_error(error: AdminError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status
    return response


@admin.errorhandler(ValueError)
def _value_error(error: ValueError) -> Response:
    return _admin_error(AdminError(400, "invalid_value", str(error)))


@admin.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _admin_error(AdminError(error.code or 500, "http_error", error.description or error.name))


@admin.get("/health")
def health() -> Any:
    """Liveness: answers while the server runs."""
    return {"status": "ok"}


# -- companies ------------------------------------------------------------------------------


@admin.get("/companies")
def list_companies() -> Any:
    """Every company's settings."""
    return {"companies": simulator().store.companies()}


@admin.post("/companies")
def create_company() -> Any:
    """Create a company: users and their areas, senderAuthorized, webhooks, entities to create."""
    sim, body = simulator(), _body()
    company = Company.from_json(body)
    entities = body.get("entities", [])
    if not isinstance(entities, list):
        raise AdminError(400, "invalid_company", "entities must be a list of entity records")
    with sim.store.write() as conn:
        if conn.execute("SELECT 1 FROM companies WHERE company_id = ?", (company.company_id,)).fetchone():
            raise AdminError(409, "company_exists", f"company {company.company_id!r} already exists")
        Store.put_company(conn, company.company_id, company.to_json())
    for entity in entities:
        sim.records.create(
            company.company_id,
            OBJECT_TYPES["company-config/entity"],
            {"id": entity} if isinstance(entity, str) else entity,
        )
    return _company_view(company), 201


def _company_view(company: Company) -> dict[str, Any]:
    return {**company.to_json(), "counts": simulator().store.counts(company.company_id)}


@admin.get("/companies/<company_id>")
def show_company(company_id: str) -> Any:
    """One company's settings and its record counts per object."""
    return _company_view(_company(company_id))


@admin.patch("/companies/<company_id>")
def update_company(company_id: str) -> Any:
    """Change settings (users, senderAuthorized, webhooks, concurrencyCap); others stay."""
    body = _body()
    if body.get("companyId", company_id) != company_id:
        raise AdminError(400, "invalid_company", "companyId cannot change")
    if "entities" in body:
        raise AdminError(
            400, "invalid_company", "entities are records: create them under objects/company-config/entity"
        )
    return _merge_settings(company_id, {k: v for k, v in body.items() if k != "companyId"})


@admin.patch("/companies/<company_id>/webhooks")
def update_webhooks(company_id: str) -> Any:
    """The triggers alone: {"url": ..., "objects": [...]}; {"enabled": false} simulates lost webhooks."""
    return {"webhooks": _merge_settings(company_id, {"webhooks": _body()})["webhooks"]}


def _merge_settings(company_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    sim = simulator()
    with sim.store.write() as conn:
        row = conn.execute("SELECT config FROM companies WHERE company_id = ?", (company_id,)).fetchone()
        if row is None:
            raise AdminError(404, "unknown_company", f"no company {company_id!r}")
        company = Company.from_json(json.loads(row[0])).merged(settings)
        Store.put_company(conn, company_id, company.to_json())
    return company.to_json()


@admin.delete("/companies/<company_id>")
def delete_company(company_id: str) -> Any:
    """Delete a company and every record it holds."""
    with simulator().store.write() as conn:
        if not Store.delete_company(conn, company_id):
            raise AdminError(404, "unknown_company", f"no company {company_id!r}")
    return "", 204


@admin.get("/companies/<company_id>/counts")
def company_counts(company_id: str) -> Any:
    """Records per object for one company."""
    _company(company_id)
    return {"counts": simulator().store.counts(company_id)}


@admin.post("/companies/<company_id>/seed")
def seed(company_id: str) -> Any:
    """Seed realistic data (see :class:`seed.SeedOptions`; camelCase keys); creates the company if new."""
    sim = simulator()
    options = SeedOptions.from_json(_body())
    Company.from_json({"companyId": company_id})  # validates the id of a company seeding creates
    return seed_company(sim.store, company_id, options, clock=sim.clock), 201


# -- records --------------------------------------------------------------------------------

_RECORDS = "/companies/<company_id>/objects/<area>/<name>"


@admin.get(_RECORDS)
def list_records(company_id: str, area: str, name: str) -> Any:
    """Full records, by key, paged with ``start`` (1-based) and ``size``."""
    _company(company_id)
    obj = _object(area, name)
    start, size = _int_arg("start", 1, minimum=1), _int_arg("size", 100, minimum=1)
    with simulator().store.read() as conn:
        total = conn.execute(
            f"SELECT COUNT(*) FROM {obj.table} WHERE company_id = ?", (company_id,)
        ).fetchone()[0]
        rows = conn.execute(
            f"SELECT {nested_record_sql(obj)} FROM {obj.table} WHERE company_id = ? ORDER BY key LIMIT ? OFFSET ?",
            (company_id, size, start - 1),
        ).fetchall()
    body = '{"records": [' + ",".join(r[0] for r in rows) + f'], "totalCount": {total}, "start": {start}}}'
    return Response(body, mimetype="application/json")


@admin.post(_RECORDS)
def create_record(company_id: str, area: str, name: str) -> Any:
    """Create a record (lines under "lines"/"details"); fires the company's trigger ("add")."""
    return simulator().records.create(company_id, _object(area, name), _body()), 201


@admin.get(_RECORDS + "/<int:key>")
def show_record(company_id: str, area: str, name: str, key: int) -> Any:
    """One record as a GET answers it, with its lines."""
    _company(company_id)
    return simulator().records.get(company_id, _object(area, name), key)


@admin.patch(_RECORDS + "/<int:key>")
def update_record(company_id: str, area: str, name: str, key: int) -> Any:
    """Change fields (bumps audit.modifiedDateTime); fires the trigger ("set")."""
    return simulator().records.update(company_id, _object(area, name), key, _body())


@admin.delete(_RECORDS + "/<int:key>")
def delete_record(company_id: str, area: str, name: str, key: int) -> Any:
    """Delete a record (and its lines); fires the trigger ("delete")."""
    simulator().records.delete(company_id, _object(area, name), key)
    return "", 204


@admin.get("/companies/<company_id>/payments")
def list_payments(company_id: str) -> Any:
    """Stored payments (with details), all or those with ``referenceNumber``."""
    _company(company_id)
    payments = simulator().payments.by_reference(company_id, request.args.get("referenceNumber"))
    return {"payments": payments, "count": len(payments)}


# -- faults, limits, stats, logs --------------------------------------------------------------


@admin.get("/faults")
def show_faults() -> Any:
    """The fault settings in force."""
    return simulator().faults.settings.to_json()


@admin.patch("/faults")
def update_faults() -> Any:
    """Change some fault settings (latencyMs, errorRate, errorStatus, timeoutRate, timeoutHoldSeconds,
    commitErrorRate, commitTimeoutRate, seed)."""
    faults = simulator().faults
    faults.configure(faults.settings.merged(_body()))
    return faults.settings.to_json()


@admin.put("/faults")
def replace_faults() -> Any:
    """Set all fault settings at once; unspecified ones return to "no fault"."""
    faults = simulator().faults
    faults.configure(FaultSettings().merged(_body()))
    return faults.settings.to_json()


@admin.delete("/faults")
def reset_faults() -> Any:
    """Back to the configuration's fault settings."""
    sim = simulator()
    sim.faults.configure(fault_settings(sim.config))
    return sim.faults.settings.to_json()


def _limits_view(sim: Simulator) -> dict[str, Any]:
    return {
        "concurrencyCap": sim.limiter.cap,
        "retryAfterSeconds": sim.retry_after_seconds,
        "tokenTtlSeconds": sim.tokens.ttl_seconds,
    }


@admin.get("/limits")
def show_limits() -> Any:
    """The global concurrency cap, the 429's Retry-After and the token lifetime."""
    return _limits_view(simulator())


@admin.patch("/limits")
def update_limits() -> Any:
    """Change the global concurrency cap, the 429's Retry-After, or the TTL of new tokens."""
    sim, body = simulator(), _body()
    unknown = set(body) - {"concurrencyCap", "retryAfterSeconds", "tokenTtlSeconds"}
    if unknown:
        raise AdminError(400, "invalid_value", f"unknown limit(s): {', '.join(sorted(unknown))}")
    for name, value in body.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (0 if name == "retryAfterSeconds" else 1)
        ):
            raise AdminError(400, "invalid_value", f"{name} must be a whole number")
    sim.limiter.cap = body.get("concurrencyCap", sim.limiter.cap)
    sim.retry_after_seconds = body.get("retryAfterSeconds", sim.retry_after_seconds)
    sim.tokens.ttl_seconds = body.get("tokenTtlSeconds", sim.tokens.ttl_seconds)
    return _limits_view(sim)


@admin.get("/stats")
def show_stats() -> Any:
    """API calls per company and object, answers per status, requests in flight and the peak."""
    sim = simulator()
    company_id = request.args.get("companyId")
    return {
        **sim.stats.snapshot(company_id),
        "inFlight": sim.limiter.in_flight(),
        "peakInFlight": sim.limiter.peak(),
    }


@admin.delete("/stats")
def reset_stats() -> Any:
    """Zero the call counters, the request log and the in-flight peaks."""
    sim = simulator()
    sim.stats.reset()
    sim.limiter.reset_peak()
    return "", 204


@admin.get("/requests")
def show_requests() -> Any:
    """The most recent API requests (method, path, object, entity header, status, ms)."""
    limit = _int_arg("limit", 100)
    return {"requests": simulator().stats.requests(request.args.get("companyId"), limit)}


@admin.get("/webhooks/deliveries")
def show_deliveries() -> Any:
    """Every webhook attempt: event id (= Idempotency-Key), attempt, status or error, outcome."""
    sim = simulator()
    limit = _int_arg("limit", 100)
    return {
        "pending": sim.webhooks.pending(),
        "deliveries": sim.webhooks.deliveries(request.args.get("companyId"), limit),
    }


@admin.delete("/webhooks/deliveries")
def clear_deliveries() -> Any:
    """Empty the webhook delivery log."""
    simulator().webhooks.clear_log()
    return "", 204
