"""The FlexPoint simulator against flexpoint-sync-api.yaml: validation, sourceVersion rules,
idempotency, connection status and pagination, through Flask's test client."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.flexpoint import FlexPointConfig, close_app, create_app
from sandbox.flexpoint.contract import LIST_PATH, RESOURCE_SCHEMAS, load_contract
from schemas.catalog import BY_RESOURCE

TOKEN = "sandbox-token"
ACCOUNT = "acct-1"
CONNECTION = "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b"
T0 = "2026-11-24T10:00:00Z"
T1 = "2026-11-24T10:00:01Z"
T2 = "2026-11-24T10:00:02Z"

VALID: dict[str, dict[str, Any]] = {
    "customers": {
        "customerId": "C-100",
        "name": "Acme Corp",
        "email": "ap@acme.test",
        "phone": None,
        "billingAddress": {
            "line1": "1 Main St",
            "line2": None,
            "city": "Austin",
            "region": "TX",
            "postalCode": "78701",
            "country": "US",
        },
        "currency": "USD",
        "creditLimit": "5000.00",
        "paymentTerm": "Net 30",
        "status": "active",
    },
    "invoices": {
        "invoiceNumber": "INV-1042",
        "customerId": "C-100",
        "invoiceDate": "2026-11-24",
        "dueDate": "2026-12-24",
        "currency": "USD",
        "totalAmount": "1250.00",
        "amountPaid": "250.00",
        "amountDue": "1000.00",
        "state": "partially_paid",
        "description": None,
        "referenceNumber": "PO-7",
        "entityId": None,
        "lines": [
            {"lineNumber": 1, "description": "Widgets", "glAccountNumber": "4000", "amount": "1250.00"}
        ],
    },
    "payments": {
        "customerId": "C-100",
        "receivedDate": "2026-11-25",
        "amount": "250.00",
        "currency": "USD",
        "method": "ACH",
        "referenceNumber": None,
        "state": "complete",
        "depositBankAccountId": "BOA-1",
        "appliedTo": [{"invoiceExternalId": "1042", "amount": "250.00"}],
    },
    "adjustments": {
        "customerId": "C-100",
        "adjustmentDate": "2026-11-26",
        "amount": "-15.50",
        "currency": "USD",
        "description": "Short pay",
        "invoiceExternalId": "1042",
    },
    "gl-accounts": {
        "accountNumber": "4000",
        "title": "Sales",
        "accountType": "income_statement",
        "normalBalance": "credit",
        "category": "Revenue",
        "status": "active",
    },
    "journal-entries": {
        "journal": "GJ",
        "entryNumber": "17",
        "postingDate": "2026-11-30",
        "description": None,
        "state": "posted",
        "lines": [
            {
                "lineNumber": 1,
                "glAccountNumber": "1000",
                "debit": "100.00",
                "credit": "0.00",
                "memo": None,
                "locationId": "HQ",
                "departmentId": None,
            },
            {"lineNumber": 2, "glAccountNumber": "4000", "debit": "0", "credit": "100"},
        ],
    },
    "bank-accounts": {
        "bankAccountId": "BOA-1",
        "name": "Operating",
        "bankName": "Bank of America",
        "accountNumberLast4": "4321",
        "currency": "USD",
        "glAccountNumber": "1000",
        "status": "active",
    },
    "deposits": {
        "bankAccountId": "BOA-1",
        "depositDate": "2026-11-27",
        "amount": "250.00",
        "currency": "USD",
        "description": None,
        "paymentExternalIds": ["88", "89"],
    },
    "other-receipts": {
        "receivedDate": "2026-11-28",
        "amount": "99.99",
        "currency": "USD",
        "payer": "Landlord",
        "description": None,
        "bankAccountId": None,
    },
    "entities": {"entityId": "US-EAST", "name": "US East", "currency": "USD", "status": "inactive"},
}

# resource -> (change to make the example invalid, pointer inside data, rule in the YAML)
INVALID: dict[str, tuple[dict[str, Any], str, str]] = {
    "customers": (
        {"creditLimit": "5000.001"},
        "/creditLimit",
        "#/components/schemas/Customer/properties/creditLimit/oneOf",
    ),
    "invoices": ({"invoiceDate": "2026-02-30"}, "/invoiceDate", "#/components/schemas/Date/format"),
    "payments": (
        {"appliedTo": [{"amount": "1.00"}]},
        "/appliedTo/0/invoiceExternalId",
        "#/components/schemas/Payment/properties/appliedTo/items/required",
    ),
    "adjustments": ({"amount": 15.5}, "/amount", "#/components/schemas/Money/type"),
    "gl-accounts": (
        {"accountType": "asset"},
        "/accountType",
        "#/components/schemas/GlAccount/properties/accountType/enum",
    ),
    "journal-entries": (
        {"lines": [{"lineNumber": 1, "glAccountNumber": "1000", "debit": "1,000.00", "credit": "0"}]},
        "/lines/0/debit",
        "#/components/schemas/Money/pattern",
    ),
    "bank-accounts": (
        {"accountNumberLast4": "123456789"},
        "/accountNumberLast4",
        "#/components/schemas/BankAccount/properties/accountNumberLast4/pattern",
    ),
    "deposits": (
        {"paymentExternalIds": ["88", 89]},
        "/paymentExternalIds/1",
        "#/components/schemas/Deposit/properties/paymentExternalIds/items/type",
    ),
    "other-receipts": ({"receivedDate": None}, "/receivedDate", "#/components/schemas/Date/type"),
    "entities": ({"status": "enabled"}, "/status", "#/components/schemas/Entity/properties/status/enum"),
}


class Api:
    """Calls the simulator the way a worker does, with the token and a fresh key per call."""

    def __init__(self, app) -> None:
        self.app = app
        self.client = app.test_client()
        self._keys = 0

    def key(self) -> str:
        self._keys += 1
        return f"test-key-{self._keys:06d}"

    def batch(
        self,
        resource: str,
        items: list[dict[str, Any]],
        *,
        key: str | None = None,
        account: str = ACCOUNT,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        payload = (
            body
            if body is not None
            else {"source": "sage-intacct", "connectionId": CONNECTION, "items": items}
        )
        return self.client.post(
            f"/v1/accounts/{account}/accounting/{resource}/batch",
            data=json.dumps(payload),
            content_type="application/json",
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Idempotency-Key": key or self.key(),
                **(headers or {}),
            },
        )

    def upsert(
        self, resource: str, external_id: str, version: str, data: dict | None = None, **kwargs
    ) -> str:
        item = {"externalId": external_id, "sourceVersion": version, "data": data or VALID[resource]}
        response = self.batch(resource, [item], **kwargs)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["results"][0]["status"]

    def delete(self, resource: str, external_id: str, version: str) -> str:
        response = self.batch(
            resource, [{"externalId": external_id, "sourceVersion": version, "deleted": True}]
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["results"][0]["status"]

    def get(self, path: str, **headers: str):
        return self.client.get(path, headers={"Authorization": f"Bearer {TOKEN}", **headers})

    def record(self, resource: str, external_id: str, account: str = ACCOUNT) -> dict[str, Any]:
        response = self.get(f"/v1/accounts/{account}/accounting/{resource}/{external_id}")
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def put_status(self, body: dict[str, Any], *, key: str = "status-key-1", account: str = ACCOUNT):
        return self.client.put(
            f"/v1/accounts/{account}/integrations/sage-intacct",
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key},
        )


@pytest.fixture
def app(tmp_path):
    app = create_app(FlexPointConfig(data_dir=tmp_path, max_body_bytes=2 * 1024 * 1024))
    yield app
    close_app(app)


@pytest.fixture
def api(app) -> Api:
    return Api(app)


def violations(response) -> list[dict[str, Any]]:
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert_error_body(body)
    assert body["error"]["code"] == "invalid_request"
    return body["error"]["details"]["violations"]


def assert_error_body(body: Any) -> None:
    assert load_contract().full_check("#/components/schemas/Error", body) == []


def the_violation(response, pointer: str) -> dict[str, Any]:
    found = [v for v in violations(response) if v.get("pointer", v.get("name")) == pointer]
    assert found, f"no violation at {pointer}: {violations(response)}"
    # The message leads with the first violation, so a log line alone says what is wrong.
    assert found[0]["reason"] in response.get_json()["error"]["message"] or len(violations(response)) > 1
    return found[0]


def item(external_id: str = "1", version: str = T0, **extra: Any) -> dict[str, Any]:
    return {"externalId": external_id, "sourceVersion": version, "data": VALID["invoices"], **extra}


# -- the contract itself --------------------------------------------------------------------


def test_contract_resources_match_the_service_catalog():
    assert set(load_contract().resources) == set(BY_RESOURCE) == set(RESOURCE_SCHEMAS)


@pytest.mark.parametrize("resource", sorted(VALID))
def test_each_resource_schema_accepts_a_valid_example(api, resource):
    assert api.upsert(resource, "1", T0) == "created"
    assert api.record(resource, "1")["data"] == VALID[resource]


@pytest.mark.parametrize("resource", sorted(INVALID))
def test_each_resource_schema_refuses_an_invalid_example_with_the_exact_place(api, resource):
    change, pointer, rule = INVALID[resource]
    data = {**VALID[resource], **change}
    response = api.batch(resource, [{"externalId": "1", "sourceVersion": T0, "data": data}])
    violation = the_violation(response, f"/items/0/data{pointer}")
    assert violation["in"] == "body"
    assert violation["rule"] == rule
    assert api.get(f"/v1/accounts/{ACCOUNT}/accounting/{resource}/1").status_code == 404


def _mutations(draw, value: Any) -> Any:
    """A copy of ``value`` with one random place replaced, removed or added to."""
    value = copy.deepcopy(value)
    containers = []

    def walk(node: Any) -> None:
        if isinstance(node, dict | list):
            containers.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(value)
    node = draw(st.sampled_from(containers))
    junk = draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-3, 3),
            st.floats(allow_nan=False, width=32),
            st.text(max_size=12),
            st.sampled_from(
                ["1250.00", "1250.001", "2026-02-30", "2026-11-24", "1234", "active", "1250.00\n", "١٢٣٤"]
            ),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
        )
    )
    if isinstance(node, dict):
        keys = list(node)
        action = draw(st.sampled_from(["replace", "remove", "add"] if keys else ["add"]))
        if action == "add":
            node[draw(st.text(min_size=1, max_size=8))] = junk
        elif action == "remove":
            del node[draw(st.sampled_from(keys))]
        else:
            node[draw(st.sampled_from(keys))] = junk
    elif node:
        node[draw(st.integers(0, len(node) - 1))] = junk
    else:
        node.append(junk)
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_compiled_checks_agree_with_jsonschema(data):
    """The fast predicates decide acceptance; they must never differ from jsonschema's verdict."""
    contract = load_contract()
    resource = data.draw(st.sampled_from(sorted(VALID)))
    ref = contract.resource_schema(resource)
    body = {
        "source": "sage-intacct",
        "connectionId": "c",
        "items": [{"externalId": "1", "sourceVersion": T0, "deleted": False, "data": VALID[resource]}],
    }
    cases = (
        (ref, VALID[resource]),
        ("#/components/schemas/BatchRequest", body),
        ("#/components/schemas/ConnectionStatus", STATUS),
    )
    for schema, instance in cases:
        mutated = _mutations(data.draw, instance)
        fast = contract.fast_check(schema, mutated)
        assert fast is not None
        assert fast == (contract.full_check(schema, mutated) == []), mutated


def test_parameter_checks_agree_with_jsonschema():
    # Parameters take the compiled predicate first too: it must accept exactly what jsonschema does.
    contract = load_contract()
    values = ["", "a", "acct-1", "a" * 7, "a" * 8, "a" * 64, "a" * 65, "a" * 201, "acct.1", "x\n", "invoices",
              "1", "0", "1001", 0, 1, 1000, 1001, -1, True, False]  # fmt: skip
    for (method, path), operation in contract._operations.items():
        for param in operation.parameters:
            where = contract._locations[id(param.schema)]
            assert contract.fast_check(where, None) is not None, (method, path, param.name)
            for value in values:
                expected = contract.full_check(where, value) == []
                assert (
                    contract.validate_schema(param.schema, value, param.location, param.name) == []
                ) == expected


def test_every_schema_of_the_yaml_compiles_to_a_fast_check():
    contract = load_contract()
    for name in contract.document["components"]["schemas"]:
        assert contract.fast_check(f"#/components/schemas/{name}", None) is not None, name


# -- each class of validation failure -------------------------------------------------------


@pytest.mark.parametrize("account", ["acct.1", "a" * 65, "acct%201"])
def test_account_id_outside_its_pattern(api, account):
    violation = the_violation(api.batch("invoices", [item()], account=account), "accountId")
    assert violation["in"] == "path"
    assert violation["rule"] == "#/components/parameters/accountId/schema/pattern"


def test_unknown_resource(api):
    violation = the_violation(api.batch("widgets", [item()]), "resource")
    assert "not one of" in violation["reason"]
    assert violation["rule"] == "#/components/parameters/resource/schema/enum"


def test_missing_idempotency_key(api):
    response = api.client.post(
        f"/v1/accounts/{ACCOUNT}/accounting/invoices/batch",
        data=json.dumps({"source": "sage-intacct", "connectionId": "c", "items": [item()]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    violation = the_violation(response, "Idempotency-Key")
    assert violation == {
        "in": "header",
        "name": "Idempotency-Key",
        "reason": "is required but missing",
        "rule": "#/paths/~1v1~1accounts~1{accountId}~1accounting~1{resource}~1batch/post/parameters/2/required",
    }


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("1234567", "has 7 characters; must have at least 8"),
        ("k" * 201, "has 201 characters; must have at most 200"),
    ],
)
def test_idempotency_key_of_the_wrong_length(api, key, reason):
    assert the_violation(api.batch("invoices", [item()], key=key), "Idempotency-Key")["reason"] == reason


def test_extra_property_on_the_batch_and_on_an_item(api):
    body = {"source": "sage-intacct", "connectionId": "c", "items": [item(note="x")], "dryRun": True}
    response = api.batch("invoices", [], body=body)
    assert "additionalProperties is false" in the_violation(response, "/dryRun")["reason"]
    assert (
        the_violation(response, "/items/0/note")["rule"] == "#/components/schemas/Item/additionalProperties"
    )


def test_more_than_500_items(api):
    response = api.batch("invoices", [item(str(n)) for n in range(501)])
    violation = the_violation(response, "/items")
    assert violation["reason"] == "has 501 items; must have at most 500"
    assert violation["rule"] == "#/components/schemas/BatchRequest/properties/items/maxItems"


def test_exactly_500_items_are_accepted(api):
    response = api.batch("invoices", [item(str(n)) for n in range(500)])
    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 500


def test_empty_items_and_missing_fields(api):
    assert the_violation(api.batch("invoices", []), "/items")["reason"] == "has 0 items; must have at least 1"
    response = api.batch("invoices", [], body={"items": [{"sourceVersion": T0, "data": {}}]})
    for pointer in ("/source", "/connectionId", "/items/0/externalId"):
        assert the_violation(response, pointer)["reason"] == "is required but missing"


def test_wrong_source(api):
    body = {"source": "netsuite", "connectionId": "c", "items": [item()]}
    assert (
        the_violation(api.batch("invoices", [], body=body), "/source")["reason"]
        == 'must be "sage-intacct", got "netsuite"'
    )


@pytest.mark.parametrize("deleted", [None, False])
def test_data_missing_on_a_live_item(api, deleted):
    entry = {"externalId": "1", "sourceVersion": T0}
    if deleted is not None:
        entry["deleted"] = deleted
    violation = the_violation(api.batch("invoices", [entry]), "/items/0/data")
    assert violation["reason"] == "is required unless deleted is true"


def test_data_may_be_missing_on_a_delete(api):
    assert api.delete("invoices", "1", T0) == "deleted"


def test_item_data_of_the_wrong_resource(api):
    response = api.batch("customers", [item()])  # an invoice sent as a customer
    reasons = {v["pointer"]: v["reason"] for v in violations(response)}
    assert reasons["/items/0/data/name"] == "is required but missing"
    assert reasons["/items/0/data/status"] == "is required but missing"


@pytest.mark.parametrize(
    "amount", ["1250.001", "1,250.00", "1250.", "$1250", "1250.00\n", "١٢٥٠", 1250, "", " 1"]
)
def test_money_must_be_a_decimal_string(api, amount):
    data = {**VALID["invoices"], "totalAmount": amount}
    violation = the_violation(api.batch("invoices", [item(data=data)]), "/items/0/data/totalAmount")
    assert violation["rule"].startswith("#/components/schemas/Money/")
    if isinstance(amount, str):
        assert "Money is a decimal string with up to 2 fractional digits" in violation["reason"]


@pytest.mark.parametrize("day", ["2026-02-30", "24/11/2026", "20261124", "2026-11-24T00:00:00Z", "2026-1-5"])
def test_dates_are_real_calendar_days(api, day):
    data = {**VALID["invoices"], "invoiceDate": day}
    violation = the_violation(api.batch("invoices", [item(data=data)]), "/items/0/data/invoiceDate")
    assert violation["rule"] == "#/components/schemas/Date/format"
    assert f'"{day}" is not a valid date' in violation["reason"]


@pytest.mark.parametrize(
    "version",
    [
        "2026-11-24T10:00:00",
        "2026-11-24 10:00:00Z",
        "2026-11-31T10:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T10:00:60Z",
        "1732442400",
        "2026-11-24",
    ],
)
def test_source_version_must_be_rfc3339(api, version):
    violation = the_violation(api.batch("invoices", [item(version=version)]), "/items/0/sourceVersion")
    assert violation["rule"] == "#/components/schemas/Timestamp/format"
    assert "date-time" in violation["reason"]


def test_account_number_last4_is_four_digits(api):
    for bad in ("12345", "12a4", "4321\n"):
        data = {**VALID["bank-accounts"], "accountNumberLast4": bad}
        response = api.batch("bank-accounts", [{"externalId": "1", "sourceVersion": T0, "data": data}])
        assert the_violation(response, "/items/0/data/accountNumberLast4")["reason"].endswith(
            "does not match ^[0-9]{4}$"
        )


def test_every_violation_is_listed_not_only_the_first(api):
    bad = {**VALID["invoices"], "totalAmount": "1.001", "state": "draft"}
    response = api.batch("invoices", [item("1", data=bad), item("2", version="yesterday")], key="short")
    places = {v.get("pointer", v.get("name")) for v in violations(response)}
    assert {
        "Idempotency-Key",
        "/items/0/data/totalAmount",
        "/items/0/data/state",
        "/items/1/sourceVersion",
    } <= places
    assert "(and 3 more in details)" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("content_type", "raw", "reason"),
    [
        ("text/plain", b"{}", "must be application/json, got text/plain"),
        ("application/json", b"", "is required but empty"),
        ("application/json", b'{"source": ', "is not valid JSON"),
        ("application/json", b'{"x": NaN}', "NaN is not JSON"),
        ("application/json", b'{"x": "\xff"}', "is not UTF-8"),
        ("application/json", b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    ],
)
def test_body_that_is_not_json(api, content_type, raw, reason):
    response = api.client.post(
        f"/v1/accounts/{ACCOUNT}/accounting/invoices/batch",
        data=raw,
        content_type=content_type,
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": api.key()},
    )
    assert any(reason in v["reason"] for v in violations(response)), violations(response)


def test_deeply_nested_values_are_refused_not_crashed_on(api):
    deep: Any = "x"
    for _ in range(800):
        deep = {"a": deep}
    data = {**VALID["entities"], "name": deep}
    response = api.batch("entities", [{"externalId": "1", "sourceVersion": T0, "data": data}])
    assert response.status_code == 400
    assert violations(response)[0]["pointer"].startswith("/items/0/data")


def test_oversized_body_is_413(api):
    items = [item(str(n), data={**VALID["invoices"], "description": "x" * 5000}) for n in range(500)]
    response = api.batch("invoices", items)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert_error_body(response.get_json())


@pytest.mark.parametrize(
    ("query", "name", "reason"),
    [
        ("limit=0", "limit", "is 0; must be at least 1"),
        ("limit=1001", "limit", "is 1001; must be at most 1000"),
        ("limit=ten", "limit", 'must be an integer, got "ten"'),
        ("includeDeleted=yes", "includeDeleted", 'must be true or false, got "yes"'),
        ("cursor=bm90LWEtY3Vyc29y", "cursor", "is not a cursor this server issued (use nextCursor as is)"),
    ],
)
def test_list_query_parameters(api, query, name, reason):
    api.upsert("invoices", "1", T0)
    response = api.get(f"/v1/accounts/{ACCOUNT}/accounting/invoices?{query}")
    violation = the_violation(response, name)
    assert (violation["in"], violation["reason"]) == ("query", reason)


def test_status_body_is_validated(api):
    response = api.put_status(
        {
            "state": "sleeping",
            "missingPermissions": ["payroll"],
            "backfill": {"invoices": {"done": -1}},
            "reportedAt": "now",
        }
    )
    reasons = {v["pointer"]: v["reason"] for v in violations(response)}
    assert reasons["/connectionId"] == "is required but missing"
    assert reasons["/state"].startswith('"sleeping" is not one of')
    assert reasons["/missingPermissions/0"].startswith('"payroll" is not one of')
    assert reasons["/backfill/invoices/done"] == "is -1; must be at least 0"
    assert reasons["/reportedAt"].startswith('"now" is not a valid date-time')


# -- sourceVersion semantics ------------------------------------------------------------------


def test_created_then_unchanged_then_updated_then_stale(api):
    assert api.upsert("invoices", "1", T1) == "created"
    assert api.upsert("invoices", "1", T1) == "unchanged"
    changed = {**VALID["invoices"], "amountDue": "0.00", "state": "paid"}
    assert api.upsert("invoices", "1", T2, changed) == "updated"
    assert api.upsert("invoices", "1", T1) == "stale"
    stored = api.record("invoices", "1")
    assert (stored["sourceVersion"], stored["data"]["state"], stored["deleted"]) == (T2, "paid", False)


def test_equal_version_with_different_data_is_applied(api):
    api.upsert("invoices", "1", T1)
    changed = {**VALID["invoices"], "description": "second change in the same second"}
    assert api.upsert("invoices", "1", T1, changed) == "updated"
    assert api.record("invoices", "1")["data"]["description"] == "second change in the same second"


def test_identical_data_is_judged_as_json_not_as_text(api):
    api.upsert("invoices", "1", T1)
    reordered = dict(reversed(list(VALID["invoices"].items())))
    assert api.upsert("invoices", "1", T1, reordered) == "unchanged"


def test_delete_stores_a_tombstone_and_a_newer_upsert_revives_it(api):
    api.upsert("invoices", "1", T0)
    assert api.delete("invoices", "1", T1) == "deleted"
    tombstone = api.record("invoices", "1")
    assert (tombstone["deleted"], tombstone["data"], tombstone["sourceVersion"]) == (True, None, T1)
    assert api.upsert("invoices", "1", T0) == "stale"  # an old update cannot undo the delete
    assert api.upsert("invoices", "1", T1) == "stale"  # nor one as old as the delete
    assert api.upsert("invoices", "1", T2) == "updated"
    revived = api.record("invoices", "1")
    assert (revived["deleted"], revived["data"], revived["sourceVersion"]) == (False, VALID["invoices"], T2)


def test_delete_older_than_the_stored_version_is_stale(api):
    api.upsert("invoices", "1", T2)
    assert api.delete("invoices", "1", T1) == "stale"
    assert api.record("invoices", "1")["deleted"] is False


def test_delete_at_the_stored_version_is_applied_and_repeating_it_is_unchanged(api):
    api.upsert("invoices", "1", T1)
    assert api.delete("invoices", "1", T1) == "deleted"
    assert api.delete("invoices", "1", T1) == "unchanged"
    assert api.delete("invoices", "1", T2) == "deleted"
    assert api.record("invoices", "1")["sourceVersion"] == T2


def test_delete_of_an_unknown_record_leaves_a_tombstone_that_outranks_older_upserts(api):
    assert api.delete("invoices", "9", T1) == "deleted"
    assert api.upsert("invoices", "9", T0) == "stale"


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        ("2026-11-24T11:00:00+01:00", "unchanged"),  # the same instant as 10:00:00Z
        ("2026-11-24T05:00:00.000-05:00", "unchanged"),
        ("2026-11-24t10:00:00z", "unchanged"),
        ("2026-11-24T10:30:00+01:00", "stale"),  # 09:30Z: earlier, though it reads later
        ("2026-11-24T10:00:00.5Z", "updated"),
        ("2026-11-24T09:59:59.999999999-00:01", "updated"),  # 10:00:59.999999999Z
    ],
)
def test_versions_are_compared_as_instants(api, later, expected):
    api.upsert("invoices", "1", T0)
    assert api.upsert("invoices", "1", later) == expected


def test_stored_versions_are_shown_in_utc(api):
    api.upsert("invoices", "1", "2026-11-24T11:00:00.250+01:00")
    assert api.record("invoices", "1")["sourceVersion"] == "2026-11-24T10:00:00.25Z"


def test_one_key_twice_in_a_batch_applies_in_order(api):
    response = api.batch("invoices", [item("1", T2), item("1", T1), item("2", T1, deleted=True)])
    assert [r["status"] for r in response.get_json()["results"]] == ["created", "stale", "deleted"]
    assert api.record("invoices", "1")["sourceVersion"] == T2


def test_resources_and_accounts_are_separate_key_spaces(api):
    api.upsert("invoices", "1", T2)
    assert api.upsert("payments", "1", T1) == "created"
    assert api.upsert("invoices", "1", T1, account="acct-2") == "created"


# -- idempotency ------------------------------------------------------------------------------


def test_same_key_same_body_replays_the_first_response_verbatim(api):
    first = api.batch("invoices", [item("1", T1)], key="replay-key-1")
    api.upsert("invoices", "1", T2, {**VALID["invoices"], "state": "paid"})
    again = api.batch("invoices", [item("1", T1)], key="replay-key-1")
    assert again.status_code == 200
    assert again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert json.loads(first.get_data())["results"][0]["status"] == "created"
    assert api.record("invoices", "1")["data"]["state"] == "paid"  # the replay applied nothing


def test_same_key_with_the_body_spelled_differently_is_the_same_body(api):
    api.batch("invoices", [item("1", T1)], key="replay-key-2")
    body = {"items": [item("1", T1)], "connectionId": CONNECTION, "source": "sage-intacct"}
    response = api.client.post(
        f"/v1/accounts/{ACCOUNT}/accounting/invoices/batch",
        data=json.dumps(body, indent=4, sort_keys=True),
        content_type="application/json",
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "replay-key-2"},
    )
    assert response.status_code == 200
    assert response.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("change", ["body", "resource"])
def test_same_key_different_request_is_409_and_changes_nothing(api, change):
    api.batch("invoices", [item("1", T1)], key="conflict-key")
    if change == "body":
        response = api.batch(
            "invoices", [item("1", T2, data={**VALID["invoices"], "state": "void"})], key="conflict-key"
        )
    else:
        response = api.batch(
            "payments",
            [{"externalId": "1", "sourceVersion": T1, "data": VALID["payments"]}],
            key="conflict-key",
        )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert_error_body(response.get_json())
    assert api.record("invoices", "1")["sourceVersion"] == T1
    assert api.get(f"/v1/accounts/{ACCOUNT}/accounting/payments/1").status_code == 404


def test_idempotency_keys_are_scoped_to_the_account(api):
    api.batch("invoices", [item("1", T1)], key="shared-key-1")
    response = api.batch("invoices", [item("1", T2)], key="shared-key-1", account="acct-2")
    assert response.status_code == 200
    assert response.get_json()["results"][0]["status"] == "created"


def test_a_refused_request_does_not_consume_its_key(api):
    assert api.batch("invoices", [item("1", "not-a-time")], key="retry-key-1").status_code == 400
    assert api.batch("invoices", [item("1", T1)], key="retry-key-1").status_code == 200


# -- connection status ------------------------------------------------------------------------

STATUS = {
    "connectionId": CONNECTION,
    "state": "connected",
    "reason": None,
    "message": None,
    "companyId": "ACME-CO",
    "entityId": None,
    "missingPermissions": [],
    "webhookUrl": "https://flexsync.test/webhooks/intacct/x",
    "backfill": {"invoices": {"done": 10, "total": 100, "finished": False}},
    "reportedAt": T1,
}


def test_status_put_needs_an_idempotency_key(api):
    response = api.client.put(
        f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct",
        json=STATUS,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert the_violation(response, "Idempotency-Key")["reason"] == "is required but missing"


def test_status_put_stores_and_get_returns_it(api):
    assert api.get(f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct").status_code == 404
    assert api.put_status(STATUS).status_code == 200
    assert api.get(f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct").get_json() == STATUS


def test_status_put_with_the_same_key_never_conflicts_and_the_last_wins(api):
    failed = {
        **STATUS,
        "state": "failed",
        "reason": "missing_permission",
        "missingPermissions": ["cash-management"],
        "message": "Add Cash Management to the FlexPoint role.",
    }
    assert api.put_status(STATUS, key="same-status-key").status_code == 200
    assert api.put_status(failed, key="same-status-key").status_code == 200
    got = api.get(f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct").get_json()
    assert (got["state"], got["reason"]) == ("failed", "missing_permission")
    assert load_contract().full_check("#/components/schemas/ConnectionStatus", got) == []


def test_unknown_account_and_record_are_404(api):
    for path in (
        "/v1/accounts/nobody/accounting/invoices",
        "/v1/accounts/nobody/accounting/invoices/1",
        "/v1/accounts/nobody/integrations/sage-intacct",
    ):
        response = api.get(path)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "account_not_found"
    api.upsert("invoices", "1", T0)
    response = api.get(f"/v1/accounts/{ACCOUNT}/accounting/invoices/2")
    assert (response.status_code, response.get_json()["error"]["code"]) == (404, "record_not_found")


def test_strict_accounts_answer_404_until_created(tmp_path):
    app = create_app(FlexPointConfig(data_dir=tmp_path, auto_create_accounts=False))
    try:
        api = Api(app)
        response = api.batch("invoices", [item()])
        assert (response.status_code, response.get_json()["error"]["code"]) == (404, "account_not_found")
        assert api.put_status(STATUS).status_code == 404
        created = api.client.post(
            "/sandbox/accounts", json={"accountId": ACCOUNT}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert created.status_code == 201
        assert api.upsert("invoices", "1", T0) == "created"
    finally:
        close_app(app)


# -- pagination -------------------------------------------------------------------------------


def _pages(api: Api, query: str) -> list[list[dict[str, Any]]]:
    list_schema = (
        "#/paths/" + LIST_PATH.replace("/", "~1") + "/get/responses/200/content/application~1json/schema"
    )
    pages, cursor = [], None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        response = api.get(f"/v1/accounts/{ACCOUNT}/accounting/customers?{query}{suffix}")
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        assert load_contract().full_check(list_schema, page) == []
        pages.append(page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            return pages


def test_cursor_pagination_through_more_than_a_page_with_and_without_tombstones(api):
    items = [{"externalId": f"C{n:03d}", "sourceVersion": T0, "data": VALID["customers"]} for n in range(25)]
    api.batch("customers", items)
    api.batch(
        "customers",
        [{"externalId": f"C{n:03d}", "sourceVersion": T1, "deleted": True} for n in range(0, 25, 5)],
    )

    live = _pages(api, "limit=10")
    assert [len(page) for page in live] == [10, 10]
    ids = [r["externalId"] for page in live for r in page]
    assert ids == sorted(f"C{n:03d}" for n in range(25) if n % 5)
    assert all(r["deleted"] is False for page in live for r in page)

    everything = _pages(api, "limit=10&includeDeleted=true")
    assert [len(page) for page in everything] == [10, 10, 5]
    records = [r for page in everything for r in page]
    assert [r["externalId"] for r in records] == [f"C{n:03d}" for n in range(25)]
    assert [r["externalId"] for r in records if r["deleted"]] == [f"C{n:03d}" for n in range(0, 25, 5)]
    assert all(r["data"] is None for r in records if r["deleted"])

    default = api.get(f"/v1/accounts/{ACCOUNT}/accounting/customers").get_json()
    assert (len(default["items"]), default["nextCursor"]) == (20, None)


def test_responses_match_the_yaml(api):
    contract = load_contract()
    response = api.batch("invoices", [item("1"), item("2", deleted=True)])
    assert contract.full_check("#/components/schemas/BatchResponse", response.get_json()) == []
    assert contract.full_check("#/components/schemas/StoredRecord", api.record("invoices", "1")) == []
    assert contract.full_check("#/components/schemas/StoredRecord", api.record("invoices", "2")) == []
