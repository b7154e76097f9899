"""The Intacct REST surface under ``/ia/api/v1``: token, object GETs, the query service, and the
payment write-back (create ``POST /objects/accounts-receivable/payment``, reverse ``POST
/workflows/accounts-receivable/payment/reverse``; rules in :mod:`payments`). A write is admitted
like a read (slot, injected latency/5xx/timeouts, area) and counted in the stats as
``accounts-receivable/payment:create`` or ``:reverse``; then the Add permission (403), the body
(400), the books (404/422) and the commit; then maybe a commit-then-fail fault, whose hold keeps
the company's slot as a hung Intacct request would.

Also the JWKS at ``/.well-known/jwks.json`` (outside the API prefix, as a publisher would host
it). Responses for records and pages are spliced from JSON that SQLite rendered.
"""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from .errors import IntacctError, OAuthError, bad_request
from .objects import ObjectType, lookup
from .payment_requests import parse_create, parse_reverse
from .payments import PAYMENT, result_body
from .query import DEFAULT_FIELDS, MAX_PAGE_SIZE, Condition, Query, parse_object, parse_query, run
from .render import nested_record_sql
from .simulator import Simulator
from .store import MAX_KEY
from .tokens import Principal, entity_exists
from .webhooks import rfc3339

MAX_BATCH_KEYS = 500
ENTITY_HEADER = "X-IA-API-Param-Entity"

api = Blueprint("intacct_api", __name__, url_prefix="/ia/api/v1")
jwks = Blueprint("intacct_jwks", __name__)


def simulator() -> Simulator:
    """The simulator behind the current app."""
    return current_app.extensions["intacct_simulator"]


def _json_text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="application/json")


# -- request lifecycle ------------------------------------------------------------------------


@api.before_request
def _started() -> None:
    g.started = time.perf_counter()


@api.after_request
def _record(response: Response) -> Response:
    # The injected latency counts from the call's admission: the answer leaves when it has passed.
    answer_at = g.pop("answer_at", None)
    if answer_at is not None:
        simulator().faults.hold(answer_at - time.perf_counter())
    company_id = g.get("company_id")
    if company_id is not None:
        simulator().stats.answered(
            company_id,
            response.status_code,
            {
                "at": rfc3339(simulator().clock()),
                "method": request.method,
                "path": request.path,
                "companyId": company_id,
                "object": g.get("object_path"),
                "entity": request.headers.get(ENTITY_HEADER),
                "tokenEntity": g.get("token_entity"),
                "status": response.status_code,
                "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
            },
        )
    return response


@api.teardown_request
def _release(_error: BaseException | None) -> None:
    company_id = g.pop("slot", None)
    if company_id is not None:
        simulator().release(company_id)


def _admitted(principal: Principal, latency: float) -> None:
    """An admitted call: its slot, released when the request ends, and when it may be answered."""
    g.slot = principal.company_id
    g.answer_at = time.perf_counter() + latency


def _principal() -> Principal:
    principal = simulator().tokens.authenticate(request.headers.get("Authorization"))
    g.company_id = principal.company_id
    g.token_entity = principal.entity_id
    entity = request.headers.get(ENTITY_HEADER)
    if entity and not entity_exists(simulator().store, principal.company_id, entity):
        raise bad_request(f"Unknown entity '{entity}' in {ENTITY_HEADER}")
    return principal


def _admit(principal: Principal, obj: ObjectType) -> None:
    g.object_path = obj.path
    _admitted(principal, simulator().admit(principal, obj.path, obj))


def _object(area: str, name: str) -> ObjectType:
    obj = lookup(f"{area}/{name}")
    if obj is None:
        raise IntacctError(404, "notFound", f"Unknown object '{area}/{name}'")
    return obj


def _page_arg(name: str, default: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1 or (maximum is not None and int(raw) > maximum):
        limit = f" and at most {maximum}" if maximum else ""
        raise bad_request(f"'{name}' must be a whole number of at least 1{limit}")
    return int(raw)


# -- token ----------------------------------------------------------------------------------


@api.post("/oauth2/token")
def token() -> Any:
    """Client-credentials token; injected 5xx and timeouts apply, latency and the cap do not."""
    sim = simulator()
    form: dict[str, Any] = request.form.to_dict()
    if not form and request.is_json:
        body = request.get_json(silent=True)
        form = {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    company_id = form.get("username", "").partition("@")[2].partition("|")[0]
    if company_id:
        g.company_id = company_id
        g.object_path = "oauth2/token"
        sim.stats.call(company_id, "oauth2/token")
    sim.inject_faults(latency=False)
    response = jsonify(sim.tokens.issue(form))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- objects --------------------------------------------------------------------------------


@api.get("/objects/<area>/<name>")
def list_records(area: str, name: str) -> Response:
    """Only key, id and href, paged with ``start`` and ``size`` like the query service."""
    principal = _principal()
    obj = _object(area, name)
    _admit(principal, obj)
    query = Query(
        obj=obj,
        fields=DEFAULT_FIELDS,
        where=Condition("1", ()),
        order_by="key ASC",
        start=_page_arg("start", 1),
        size=_page_arg("size", 100, MAX_PAGE_SIZE),
    )
    with simulator().store.read() as conn:
        page = run(conn, principal.company_id, query)
    return _json_text(page.body())


@api.get("/objects/<area>/<name>/<keys>")
def get_records(area: str, name: str, keys: str) -> Response:
    """One record by key, or (comma-separated keys) up to 500 found records as a list."""
    principal = _principal()
    obj = _object(area, name)
    _admit(principal, obj)
    batch = "," in keys
    wanted = list(dict.fromkeys(k.strip() for k in keys.split(",") if k.strip()))
    if len(wanted) > MAX_BATCH_KEYS:
        raise bad_request(f"A batch GET takes at most {MAX_BATCH_KEYS} keys; {len(wanted)} given")
    numeric = [int(k) for k in wanted if k.isdigit() and int(k) <= MAX_KEY]  # larger: no such record
    found: dict[int, str] = {}
    if numeric:
        marks = ", ".join("?" * len(numeric))
        sql = (
            f"SELECT key, {nested_record_sql(obj)} FROM {obj.table} WHERE company_id = ? AND key IN ({marks})"
        )
        with simulator().store.read() as conn:
            found = dict(conn.execute(sql, (principal.company_id, *numeric)).fetchall())
    if not batch:
        if not found:
            raise IntacctError(404, "notFound", f"No {obj.path} with key '{keys}'")
        record = next(iter(found.values()))
        return _json_text(
            '{"ia::result": '
            + record
            + ', "ia::meta": {"totalCount": 1, "totalSuccess": 1, "totalError": 0}}'
        )
    rows = [found[k] for k in dict.fromkeys(numeric) if k in found]
    meta = f'{{"totalCount": {len(wanted)}, "totalSuccess": {len(rows)}, "totalError": {len(wanted) - len(rows)}}}'
    return _json_text('{"ia::result": [' + ",".join(rows) + '], "ia::meta": ' + meta + "}")


# -- payment write-back ------------------------------------------------------------------------


def _json_body() -> Any:
    """The request's JSON (None when there is no payload); 400 when it does not parse."""
    if not request.get_data():
        return None
    body = request.get_json(silent=True)
    if body is None:
        raise bad_request("The payload is not valid JSON")
    return body


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise bad_request("Idempotency-Key must be 1 to 255 characters")
    return key or None


def _admit_write(operation: str) -> Principal:
    """A write's admission: counted as ``<object>:<operation>``, slot, faults, area, Add permission."""
    principal = _principal()
    g.object_path = f"{PAYMENT.path}:{operation}"
    _admitted(principal, simulator().admit(principal, g.object_path, PAYMENT))
    if not principal.company.received_payments_add:
        raise IntacctError(
            403,
            "permissionDenied",
            "The user's role lacks Accounts Receivable's Add permission on received payments",
            details=[{"area": PAYMENT.permission_area, "object": PAYMENT.path, "permission": "add"}],
        )
    return principal


@api.post(f"/objects/{PAYMENT.path}")
def create_payment() -> Response:
    """Create an applied payment; 201 ``{"ia::result": {"key", "id", "href"}}``."""
    principal = _admit_write("create")
    payment = parse_create(_json_body())
    key = simulator().payments.create(principal.company, payment, _idempotency_key())
    simulator().fail_after_commit(principal.company)
    return _json_text(result_body(key), 201)


@api.post(f"/workflows/{PAYMENT.path}/reverse")
def reverse_payment() -> Response:
    """Reverse a complete payment: 200 with the new ``reversal`` record; a reversed one is a 422."""
    principal = _admit_write("reverse")
    reversal = parse_reverse(_json_body())
    key = simulator().payments.reverse(principal.company, reversal, _idempotency_key())
    simulator().fail_after_commit(principal.company)
    return _json_text(result_body(key, "reversal"))


# -- query ----------------------------------------------------------------------------------


@api.post("/services/core/query")
def query() -> Response:
    """The query service: filters, filterExpression, orderBy, 1-based start, size up to 4000."""
    principal = _principal()
    body = request.get_json(silent=True)
    obj = parse_object(body)
    _admit(principal, obj)
    parsed = parse_query(obj, body)
    with simulator().store.read() as conn:
        page = run(conn, principal.company_id, parsed)
    return _json_text(page.body())


# -- errors ---------------------------------------------------------------------------------


@api.errorhandler(IntacctError)
def _intacct_error(error: IntacctError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


@api.errorhandler(OAuthError)
def _oauth_error(error: OAuthError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers["Cache-Control"] = "no-store"
    return response


# -- JWKS -----------------------------------------------------------------------------------


@jwks.get("/.well-known/jwks.json")
def jwks_document() -> Response:
    """The public half of the simulator's signing key, for webhook receivers."""
    response = jsonify(simulator().key.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
