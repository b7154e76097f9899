"""The Intacct simulator's REST contract (intacct-rest.md): tokens, failure signals, object GETs,
the query service and the ia::error body. Pure contract cases run through Flask's test client."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import jwt
import pytest

from sandbox.intacct.objects import OBJECT_TYPES
from sandbox.intacct.seed import SeedOptions, seed_company
from tests.sandbox.conftest_intacct import (
    API,
    AS_OF,
    COMPANY,
    USER,
    FakeClock,
    bearer,
    build,
    query,
    token_form,
)

ERROR_FIELDS = {"code", "message", "errorId", "additionalInfo", "supportId", "details"}


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    app, sim = build(tmp_path, clock, token_ttl_seconds=600)
    seed_company(
        sim.store,
        COMPANY,
        SeedOptions(customers=20, invoices=60, other_receipts=6, entities=3, seed=5, as_of=AS_OF),
    )
    client = app.test_client()
    yield SimpleNamespace(client=client, sim=sim, clock=clock, headers=bearer(client))
    sim.close()


def ia_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["ia::result"]["ia::error"]
    assert set(error) == ERROR_FIELDS
    assert error["code"] == code
    assert error["message"]
    return error


def everything(client, headers, path, fields):
    response = query(client, headers, object=path, fields=fields, size=4000)
    assert response.status_code == 200
    return response.get_json()["ia::result"]


# -- token --------------------------------------------------------------------------------------


def test_token_carries_user_company_and_entity(env):
    client, sim = env.client, env.sim
    response = client.post(f"{API}/oauth2/token", data=token_form(entity="US"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    claims = jwt.decode(
        body["access_token"],
        sim.key.public_key,
        algorithms=["RS256"],
        audience="intacct-rest-api",
        options={"verify_exp": False},
    )
    assert (claims["companyId"], claims["userId"], claims["entityId"]) == (COMPANY, USER, "US")
    assert claims["exp"] - claims["iat"] == 600
    assert jwt.get_unverified_header(body["access_token"])["kid"] == sim.key.kid


@pytest.mark.parametrize(
    ("changes", "status", "error", "description"),
    [
        ({"client_id": "someone-else.app.sage.com"}, 401, "invalid_client", None),
        ({"client_secret": "wrong"}, 401, "invalid_client", None),
        ({"username": f"{USER}@NO-SUCH-CO"}, 400, "invalid_grant", "unknown company"),
        ({"username": f"nobody@{COMPANY}"}, 400, "invalid_grant", "unknown user"),
        ({"username": f"{USER}@{COMPANY}|XX"}, 400, "invalid_grant", "unknown entity"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", None),
        ({"username": "no-company"}, 400, "invalid_request", None),
    ],
)
def test_token_failure_signals(env, changes, status, error, description):
    client = env.client
    response = client.post(f"{API}/oauth2/token", data=token_form(**changes))
    assert response.status_code == status
    body = response.get_json()
    assert body["error"] == error
    if description:
        assert body["error_description"] == description
    assert "access_token" not in body


def test_sender_not_authorized_and_non_web_services_user(env):
    client = env.client
    client.patch(f"/sandbox/companies/{COMPANY}", json={"senderAuthorized": False})
    response = client.post(f"{API}/oauth2/token", data=token_form())
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "unauthorized_client",
        "error_description": "sender not authorized",
    }

    client.patch(
        f"/sandbox/companies/{COMPANY}",
        json={"senderAuthorized": True, "users": [{"userId": USER, "webServices": False}]},
    )
    response = client.post(f"{API}/oauth2/token", data=token_form())
    assert response.get_json() == {"error": "invalid_grant", "error_description": "unknown user"}


def test_company_changes_apply_to_the_next_call_with_the_same_token(env):
    # Companies are parsed once per stored text: a change through the admin API must still show at once.
    client, headers = env.client, env.headers
    path = f"{API}/objects/accounts-receivable/customer/1"
    assert client.get(path, headers=headers).status_code == 200
    client.patch(f"/sandbox/companies/{COMPANY}", json={"outage": True})
    ia_error(client.get(path, headers=headers), 503, "serviceUnavailable")
    client.patch(f"/sandbox/companies/{COMPANY}", json={"outage": False})
    assert client.get(path, headers=headers).status_code == 200
    client.patch(f"/sandbox/companies/{COMPANY}", json={"senderAuthorized": False})
    ia_error(client.get(path, headers=headers), 401, "tokenInvalid")
    client.patch(f"/sandbox/companies/{COMPANY}", json={"senderAuthorized": True})
    assert client.get(path, headers=headers).status_code == 200


def test_token_expires(env):
    client, clock, headers = env.client, env.clock, env.headers
    path = f"{API}/objects/accounts-receivable/customer/1"
    clock.advance(599)
    assert client.get(path, headers=headers).status_code == 200
    clock.advance(1)
    error = ia_error(client.get(path, headers=headers), 401, "tokenInvalid")
    assert "expired" in error["message"]


def test_missing_or_forged_token_is_refused(env):
    client = env.client
    path = f"{API}/objects/accounts-receivable/customer/1"
    ia_error(client.get(path), 401, "tokenInvalid")
    forged = jwt.encode(
        {"companyId": COMPANY, "exp": AS_OF * 2}, "a-secret-of-thirty-two-bytes-or-more", algorithm="HS256"
    )
    ia_error(client.get(path, headers={"Authorization": f"Bearer {forged}"}), 401, "tokenInvalid")


def test_role_missing_an_area_is_refused_on_that_area_only(env):
    client = env.client
    client.patch(
        f"/sandbox/companies/{COMPANY}",
        json={"users": [{"userId": USER, "areas": ["accounts-receivable", "cash-management"]}]},
    )
    headers = bearer(client)
    assert client.get(f"{API}/objects/accounts-receivable/invoice/1", headers=headers).status_code == 200
    error = ia_error(
        client.get(f"{API}/objects/general-ledger/account/1", headers=headers), 403, "permissionDenied"
    )
    assert error["details"][0]["area"] == "general-ledger"
    ia_error(query(client, headers, object="company-config/entity"), 403, "permissionDenied")
    ia_error(
        client.get(f"{API}/objects/general-ledger/journal-entry-line", headers=headers),
        403,
        "permissionDenied",
    )
    assert query(client, headers, object="cash-management/deposit").status_code == 200


def test_entity_header_must_name_an_entity_and_is_recorded(env):
    client, headers = env.client, env.headers
    path = f"{API}/objects/accounts-receivable/customer/1"
    ia_error(client.get(path, headers={**headers, "X-IA-API-Param-Entity": "ZZ"}), 400, "invalidRequest")
    assert client.get(path, headers={**headers, "X-IA-API-Param-Entity": "CA"}).status_code == 200
    last = client.get("/sandbox/requests", query_string={"companyId": COMPANY}).get_json()["requests"][-1]
    assert (last["entity"], last["object"], last["status"]) == ("CA", "accounts-receivable/customer", 200)


# -- object GETs --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(OBJECT_TYPES))
def test_every_object_single_batch_and_list(env, path):
    client, headers = env.client, env.headers
    single = client.get(f"{API}/objects/{path}/1", headers=headers)
    assert single.status_code == 200
    record = single.get_json()["ia::result"]
    assert record["key"] == "1" and record["href"] == f"/objects/{path}/1" and record["id"]
    assert set(record["audit"]) == {"createdDateTime", "modifiedDateTime", "createdBy", "modifiedBy"}
    assert (
        record["audit"]["modifiedDateTime"].endswith("Z") and len(record["audit"]["modifiedDateTime"]) == 20
    )
    assert single.get_json()["ia::meta"]["totalCount"] == 1

    batch = client.get(f"{API}/objects/{path}/2,1,99999,abc", headers=headers).get_json()
    assert [r["key"] for r in batch["ia::result"]] == ["2", "1"]
    assert batch["ia::meta"]["totalError"] == 2 and batch["ia::meta"]["totalSuccess"] == 2
    assert batch["ia::result"][1] == record

    listed = client.get(f"{API}/objects/{path}", headers=headers, query_string={"size": 2}).get_json()
    assert listed["ia::result"][0] == {"key": "1", "id": record["id"], "href": record["href"]}
    total = listed["ia::meta"]["totalCount"]
    assert len(listed["ia::result"]) == 2 and listed["ia::meta"]["next"] == (3 if total > 2 else None)


def test_records_are_nested_camel_case_with_string_amounts(env):
    client, headers = env.client, env.headers
    invoice = client.get(f"{API}/objects/accounts-receivable/invoice/3", headers=headers).get_json()[
        "ia::result"
    ]
    assert invoice["customer"]["id"].startswith("C-")
    assert invoice["currency"]["txnCurrency"] in {"USD", "CAD"}
    for name in ("totalTxnAmount", "totalTxnAmountDue"):
        assert isinstance(invoice[name], str) and Decimal(invoice[name]) >= 0
    customer = client.get(f"{API}/objects/accounts-receivable/customer/1", headers=headers).get_json()[
        "ia::result"
    ]
    assert "@" in customer["contacts"]["default"]["email1"]
    assert customer["contacts"]["default"]["mailingAddress"]["city"]


def test_batch_get_takes_at_most_500_keys(env):
    client, headers = env.client, env.headers
    keys = ",".join(str(k) for k in range(1, 502))
    ia_error(
        client.get(f"{API}/objects/accounts-receivable/invoice/{keys}", headers=headers),
        400,
        "invalidRequest",
    )
    keys = ",".join(str(k) for k in range(1, 501))
    body = client.get(f"{API}/objects/accounts-receivable/invoice/{keys}", headers=headers).get_json()
    seeded = invoice_count(client, headers)  # 60 seeded, plus a reversal record per reversed one
    assert len(body["ia::result"]) == seeded and body["ia::meta"]["totalError"] == 500 - seeded


def test_missing_record_and_unknown_object_answer_404_with_the_error_body(env):
    client, headers = env.client, env.headers
    ia_error(client.get(f"{API}/objects/accounts-receivable/invoice/99999", headers=headers), 404, "notFound")
    huge = "9" * 30  # a key larger than any stored one is simply not there, never a 500
    ia_error(
        client.get(f"{API}/objects/accounts-receivable/invoice/{huge}", headers=headers), 404, "notFound"
    )
    ia_error(client.get(f"{API}/objects/accounts-receivable/nothing/1", headers=headers), 404, "notFound")
    ia_error(client.get(f"{API}/no/such/route", headers=headers), 404, "notFound")


# -- query service ------------------------------------------------------------------------------

INVOICE = "accounts-receivable/invoice"


def test_query_default_fields_and_flat_dotted_rows(env):
    client, headers = env.client, env.headers
    rows = query(client, headers, object=INVOICE, size=2).get_json()["ia::result"]
    assert rows == [
        {"key": "1", "id": "INV-000001", "href": f"/objects/{INVOICE}/1"},
        {"key": "2", "id": "INV-000002", "href": f"/objects/{INVOICE}/2"},
    ]
    row = query(
        client, headers, object=INVOICE, fields=["key", "customer.id", "audit", "totalTxnAmount"], size=1
    ).get_json()["ia::result"][0]
    assert set(row) == {"key", "customer.id", "audit", "totalTxnAmount"}
    assert isinstance(row["customer.id"], str) and "modifiedDateTime" in row["audit"]


@pytest.mark.parametrize(
    "body",
    [
        {"object": "accounts-receivable/nothing"},
        {"object": INVOICE, "fields": ["nope"]},
        {"object": INVOICE, "filters": [{"$like": {"id": "x"}}]},
        {"object": INVOICE, "filters": [{"$eq": {"nope": "x"}}]},
        {"object": INVOICE, "filters": [{"$gt": {"audit.modifiedDateTime": "yesterday"}}]},
        {"object": INVOICE, "filters": [{"$eq": {"key": "abc"}}]},
        {"object": INVOICE, "filters": [{"$eq": {"key": "9" * 30}}]},  # no 500 on a number too large
        {"object": INVOICE, "filters": [{"$eq": {"id": "a"}}, {"$eq": {"id": "b"}}], "filterExpression": "1"},
        {"object": INVOICE, "filters": [{"$eq": {"id": "a"}}], "filterExpression": "1 and 2"},
        {
            "object": INVOICE,
            "filters": [{"$eq": {"id": "a"}}, {"$eq": {"id": "b"}}],
            "filterExpression": "(1 or 2",
        },
        {"object": INVOICE, "orderBy": [{"key": "sideways"}]},
        {"object": INVOICE, "size": 4001},
        {"object": INVOICE, "start": 0},
        {"object": INVOICE, "pageSize": 10},
    ],
)
def test_query_rejects_what_it_cannot_answer(env, body):
    client, headers = env.client, env.headers
    ia_error(client.post(f"{API}/services/core/query", json=body, headers=headers), 400, "invalidRequest")


@pytest.mark.parametrize("operator", ["$eq", "$gt", "$gte", "$lt", "$lte", "$in"])
def test_query_operators_on_modified_time(env, operator):
    client, headers = env.client, env.headers
    rows = everything(client, headers, INVOICE, ["key", "audit.modifiedDateTime"])
    stamps = sorted(r["audit.modifiedDateTime"] for r in rows)
    pivot = stamps[len(stamps) // 2]
    value = [pivot, stamps[0]] if operator == "$in" else pivot
    expected = {
        "$eq": lambda s: s == pivot,
        "$gt": lambda s: s > pivot,
        "$gte": lambda s: s >= pivot,
        "$lt": lambda s: s < pivot,
        "$lte": lambda s: s <= pivot,
        "$in": lambda s: s in value,
    }[operator]
    response = query(
        client,
        headers,
        object=INVOICE,
        fields=["key"],
        size=4000,
        filters=[{operator: {"audit.modifiedDateTime": value}}],
    )
    assert response.status_code == 200
    got = {r["key"] for r in response.get_json()["ia::result"]}
    assert got == {r["key"] for r in rows if expected(r["audit.modifiedDateTime"])}
    assert got  # the pivot is one of the values, so every operator matches something


def test_query_modified_time_accepts_offsets_and_fractions(env):
    client, headers = env.client, env.headers
    rows = everything(client, headers, INVOICE, ["key", "audit.modifiedDateTime"])
    pivot = sorted(r["audit.modifiedDateTime"] for r in rows)[30]
    later = pivot.replace("Z", ".500+00:00")
    got = query(
        client,
        headers,
        object=INVOICE,
        fields=["key"],
        size=4000,
        filters=[{"$gte": {"audit.modifiedDateTime": later}}],
    ).get_json()["ia::result"]
    assert {r["key"] for r in got} == {r["key"] for r in rows if r["audit.modifiedDateTime"] > pivot}


def test_query_on_parent_keys_reads_lines_per_parent(env):
    client, headers = env.client, env.headers
    lines = everything(
        client, headers, "accounts-receivable/invoice-line", ["key", "invoice.key", "txnAmount"]
    )
    invoices = everything(client, headers, INVOICE, ["key", "totalTxnAmount"])
    for invoice in invoices[:10]:
        response = query(
            client,
            headers,
            object="accounts-receivable/invoice-line",
            fields=["key", "lineNumber", "txnAmount"],
            filters=[{"$eq": {"invoice.key": invoice["key"]}}],
        )
        own = response.get_json()["ia::result"]
        assert 1 <= len(own) <= 5
        assert [r["lineNumber"] for r in own] == list(range(1, len(own) + 1))
        assert sum(Decimal(r["txnAmount"]) for r in own) == Decimal(invoice["totalTxnAmount"])
    wanted = ["3", "7", "11"]
    got = query(
        client,
        headers,
        object="accounts-receivable/invoice-line",
        fields=["key", "invoice.key"],
        size=4000,
        filters=[{"$in": {"invoice.key": wanted}}],
    ).get_json()["ia::result"]
    assert sorted(r["key"] for r in got) == sorted(r["key"] for r in lines if r["invoice.key"] in wanted)


def test_query_amounts_compare_as_numbers(env):
    client, headers = env.client, env.headers
    invoices = everything(client, headers, INVOICE, ["key", "totalTxnAmount"])
    got = query(
        client,
        headers,
        object=INVOICE,
        fields=["key"],
        size=4000,
        filters=[{"$gt": {"totalTxnAmount": "9000.5"}}],
    ).get_json()["ia::result"]
    assert {r["key"] for r in got} == {
        r["key"] for r in invoices if Decimal(r["totalTxnAmount"]) > Decimal("9000.5")
    }


def test_filter_expression_with_or_and_parentheses(env):
    client, headers = env.client, env.headers
    rows = everything(client, headers, INVOICE, ["key", "state", "totalTxnAmount", "customer.id"])
    customer = rows[0]["customer.id"]
    filters = [
        {"$eq": {"state": "paid"}},
        {"$eq": {"customer.id": customer}},
        {"$lt": {"totalTxnAmount": 5000}},
    ]

    def run(expression):
        response = query(
            client,
            headers,
            object=INVOICE,
            fields=["key"],
            size=4000,
            filters=filters,
            filterExpression=expression,
        )
        assert response.status_code == 200, response.get_json()
        return {r["key"] for r in response.get_json()["ia::result"]}

    paid = {r["key"] for r in rows if r["state"] == "paid"}
    theirs = {r["key"] for r in rows if r["customer.id"] == customer}
    small = {r["key"] for r in rows if Decimal(r["totalTxnAmount"]) < 5000}
    assert run("1 or (2 and 3)") == paid | (theirs & small)
    assert run("(1 or 2) and 3") == (paid | theirs) & small
    assert run("1 OR 2 AND 3") == paid | (theirs & small)  # and binds tighter
    default = query(client, headers, object=INVOICE, fields=["key"], size=4000, filters=filters).get_json()
    assert {r["key"] for r in default["ia::result"]} == paid & theirs & small


def test_order_by_fields_numbers_and_ties(env):
    client, headers = env.client, env.headers
    rows = query(
        client,
        headers,
        object=INVOICE,
        fields=["key", "state", "totalTxnAmount"],
        size=4000,
        orderBy=[{"state": "asc"}, {"totalTxnAmount": "desc"}],
    ).get_json()["ia::result"]
    assert rows == sorted(rows, key=lambda r: (r["state"], -Decimal(r["totalTxnAmount"]), int(r["key"])))
    keys = [
        r["key"]
        for r in query(client, headers, object=INVOICE, size=4000, orderBy=[{"key": "desc"}]).get_json()[
            "ia::result"
        ]
    ]
    assert keys == [str(k) for k in range(invoice_count(client, headers), 0, -1)]


def invoice_count(client, headers) -> int:
    """How many invoice records the seed made: the 60 asked for and their reversal records."""
    return query(client, headers, object=INVOICE, fields=["key"], size=1).get_json()["ia::meta"]["totalCount"]


def test_paging_with_one_based_start_next_and_previous(env):
    client, headers = env.client, env.headers
    seen, start, metas = [], 1, []
    while start is not None:
        body = query(client, headers, object=INVOICE, fields=["key"], start=start, size=25).get_json()
        seen += [r["key"] for r in body["ia::result"]]
        metas.append(body["ia::meta"])
        start = body["ia::meta"]["next"]
    seeded = invoice_count(client, headers)
    assert seen == [str(k) for k in range(1, seeded + 1)]
    metas = [m for m in metas if m["start"] <= 51]
    assert seeded < 75
    assert metas == [
        {"totalCount": seeded, "start": 1, "pageSize": 25, "next": 26, "previous": None},
        {"totalCount": seeded, "start": 26, "pageSize": 25, "next": 51, "previous": 1},
        {"totalCount": seeded, "start": 51, "pageSize": 25, "next": None, "previous": 26},
    ]
    beyond = query(client, headers, object=INVOICE, start=seeded + 1, size=25).get_json()
    assert beyond["ia::result"] == [] and beyond["ia::meta"]["next"] is None
