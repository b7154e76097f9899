"""The FlexPoint client against the real FlexPoint simulator on a socket: batching, idempotent
retries, typed errors, status reports, pagination, and no token anywhere it could leak.

No HTTP mocks and no sleeping: the client's ``sleep`` is a recorder, and the simulator's seeded
or scripted faults decide exactly which requests fail.
"""

from __future__ import annotations

import io
import json
import logging
import random
import socket
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from clients.flexpoint import (
    FlexPointClient,
    FlexPointError,
    FlexPointRateLimited,
    FlexPointRejected,
    FlexPointRetries,
    FlexPointUnauthorized,
    FlexPointUnavailable,
)
from clients.flexpoint.batches import idempotency_key
from clients.flexpoint.contract import MAX_BATCH_ITEMS, REASONS, RESOURCES, STATES, STATUS_FIELDS
from config import Settings, SettingsError
from observability.logging import REDACTED, configure_logging, get_logger, redactor
from reliability.retry_after import parse_retry_after
from sandbox.flexpoint import FlexPointConfig, FlexPointServer
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[1]
# Random per run, so a token found anywhere can only have come from this run's client.
TOKEN = f"fp-test-token-{uuid.uuid4().hex}"
CONNECTION = "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b"
T0 = "2026-11-24T10:00:00Z"
T1 = "2026-11-24T10:00:01Z"
T2 = "2026-11-24T10:00:02Z"


def entity(external_id: str, version: str = T1, *, name: str = "US East", **data: Any) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "sourceVersion": version,
        "data": {"entityId": external_id, "name": name, "currency": "USD", "status": "active", **data},
    }


def invoice(external_id: str, total: str) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "sourceVersion": T1,
        "data": {
            "invoiceNumber": f"INV-{external_id}",
            "customerId": "C-100",
            "invoiceDate": "2026-11-24",
            "currency": "USD",
            "totalAmount": total,
            "amountDue": total,
            "state": "open",
            "lines": [{"lineNumber": 1, "amount": total}],
        },
    }


def tombstone(external_id: str, version: str) -> dict[str, Any]:
    return {"externalId": external_id, "sourceVersion": version, "deleted": True}


class Sandbox:
    """The simulator's admin API, as the tests read and steer it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def reset(self) -> None:
        self.session.post(f"{self.url}/sandbox/reset", timeout=10).raise_for_status()
        self.faults(
            serverErrorRate=0, rateLimitRate=0, latencyMs=0, retryAfterSeconds=1, script=[], seed=None
        )

    def faults(self, **settings: Any) -> None:
        self.session.put(f"{self.url}/sandbox/faults", json=settings, timeout=10).raise_for_status()

    def requests(self, account: str) -> list[dict[str, Any]]:
        """The account's requests, oldest first."""
        response = self.session.get(
            f"{self.url}/sandbox/requests", params={"limit": 1000, "accountId": account}, timeout=10
        )
        return list(reversed(response.json()["requests"]))

    def summary(self) -> dict[str, Any]:
        return self.session.get(f"{self.url}/sandbox/summary", timeout=10).json()


class Sleeps(list):
    """Stands in for time.sleep: remembers every wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # One simulator for the module (starting one costs ~1 s); each test resets it.
    config = FlexPointConfig(port=0, data_dir=tmp_path_factory.mktemp("flexpoint"), token=TOKEN)
    with FlexPointServer(config) as running:
        yield running


@pytest.fixture
def sandbox(server) -> Sandbox:
    admin = Sandbox(server.url)
    admin.reset()
    yield admin
    admin.session.close()


@pytest.fixture
def account() -> str:
    return f"acct-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(server, sleeps):
    clients = []

    def make(**options: Any) -> FlexPointClient:
        options.setdefault("sleep", sleeps)
        options.setdefault("rng", random.Random(7))
        client = FlexPointClient(options.pop("base_url", server.url), options.pop("token", TOKEN), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client, sandbox) -> FlexPointClient:
    return make_client()


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["status"] for r in results]


# -- upserts ----------------------------------------------------------------------------------


def test_upsert_round_trip_created_updated_unchanged_stale_deleted(client, account):
    first = client.upsert(account, "entities", CONNECTION, [entity("a"), entity("b")])
    assert first == [{"externalId": "a", "status": "created"}, {"externalId": "b", "status": "created"}]
    second = client.upsert(account, "entities", CONNECTION, [entity("a", T2, name="Renamed"), entity("b")])
    assert statuses(second) == ["updated", "unchanged"]
    third = client.upsert(account, "entities", CONNECTION, [entity("a", T0), tombstone("b", T2)])
    assert statuses(third) == ["stale", "deleted"]

    stored = client.get_record(account, "entities", "a")
    assert (stored["sourceVersion"], stored["deleted"], stored["data"]["name"]) == (T2, False, "Renamed")
    gone = client.get_record(account, "entities", "b")
    assert (gone["deleted"], gone["data"], gone["sourceVersion"]) == (True, None, T2)
    assert client.get_record(account, "entities", "never-sent") is None
    assert [r["externalId"] for r in client.iter_records(account, "entities")] == ["a"]
    assert [r["externalId"] for r in client.iter_records(account, "entities", include_deleted=True)] == [
        "a",
        "b",
    ]


def test_empty_upsert_sends_nothing(client, sandbox, account):
    assert client.upsert(account, "entities", CONNECTION, []) == []
    assert sandbox.requests(account) == []


def test_1200_items_go_out_as_three_batches_and_results_keep_item_order(client, sandbox, account):
    # Ids chosen so that FlexPoint's storage order (by externalId) differs from ours.
    ids = [f"e{(n * 7919) % 1200:04d}" for n in range(1200)]
    results = client.upsert(account, "entities", CONNECTION, [entity(i) for i in ids])
    assert [r["externalId"] for r in results] == ids
    assert set(statuses(results)) == {"created"}
    posts = sandbox.requests(account)
    assert [(p["method"], p["status"], p["items"]) for p in posts] == [("POST", 200, 500)] * 2 + [
        ("POST", 200, 200)
    ]
    keys = [p["idempotencyKey"] for p in posts]
    assert len(set(keys)) == 3 and all(len(k) == 64 for k in keys)
    assert sum(1 for _ in client.iter_records(account, "entities")) == 1200


def test_the_same_items_sent_by_another_call_are_a_new_write_not_a_replay(client, sandbox, account):
    items = [entity("a"), tombstone("b", T1)]
    first = client.upsert(account, "entities", CONNECTION, items)
    again = client.upsert(account, "entities", CONNECTION, [dict(i) for i in items])
    # Applied again, and FlexPoint's sourceVersion rule makes that harmless.
    assert statuses(first) == ["created", "deleted"]
    assert statuses(again) == ["unchanged", "unchanged"]
    sent, resent = sandbox.requests(account)
    assert (sent["replayed"], resent["replayed"]) == (False, False)
    assert sent["idempotencyKey"] != resent["idempotencyKey"]


def test_a_record_changed_and_changed_back_within_one_second_ends_changed_back(client, account):
    """Issue 28: an invoice paid down and its payment reversed within one second of Intacct's
    clock is sent due 100, 40, then 100 again at one sourceVersion. The third write has the
    first one's body; FlexPoint must apply it, not answer it with the first write's answer."""

    def due(amount: str) -> dict[str, Any]:
        item = invoice("1042", "100.00")
        item["data"]["amountDue"] = amount
        return item

    assert statuses(client.upsert(account, "invoices", CONNECTION, [due("100.00")])) == ["created"]
    assert statuses(client.upsert(account, "invoices", CONNECTION, [due("40.00")])) == ["updated"]
    assert statuses(client.upsert(account, "invoices", CONNECTION, [due("100.00")])) == ["updated"]
    assert client.get_record(account, "invoices", "1042")["data"]["amountDue"] == "100.00"


def test_a_changed_body_gets_a_new_key_never_a_409(client, sandbox, account):
    client.upsert(account, "entities", CONNECTION, [entity("a")])
    # Same id and version, different data: FlexPoint applies it (same-second change).
    assert statuses(client.upsert(account, "entities", CONNECTION, [entity("a", name="Other")])) == [
        "updated"
    ]
    # The same items from another connection are another body too.
    client.upsert(account, "entities", "another-connection", [entity("a", name="Other")])
    keys = [p["idempotencyKey"] for p in sandbox.requests(account)]
    assert len(set(keys)) == 3


def test_idempotency_key_is_deterministic_per_write_and_ignores_key_order():
    body = {"source": "sage-intacct", "connectionId": "c", "items": [entity("a")]}
    reordered = json.loads(json.dumps(body, sort_keys=True))
    reordered["items"][0] = dict(reversed(list(reordered["items"][0].items())))
    key = idempotency_key("acct-1", "entities", body, "w-1")
    assert key == idempotency_key("acct-1", "entities", reordered, "w-1")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != idempotency_key("acct-2", "entities", body, "w-1")
    assert key != idempotency_key("acct-1", "customers", body, "w-1")
    assert key != idempotency_key("acct-1", "entities", body, "w-2")


# -- refusals ---------------------------------------------------------------------------------


def test_a_body_the_contract_refuses_is_rejected_at_once_naming_the_field(client, sandbox, sleeps, account):
    with pytest.raises(FlexPointRejected) as caught:
        client.upsert(account, "invoices", CONNECTION, [invoice("1041", "10.00"), invoice("1042", "12.345")])
    error = caught.value
    assert (error.status, error.code, error.transient) == (400, "invalid_request", False)
    assert [v["pointer"] for v in error.details["violations"]] == [
        "/items/1/data/totalAmount",
        "/items/1/data/amountDue",
        "/items/1/data/lines/0/amount",
    ]
    assert error.external_ids == ("1042",)
    assert "/items/1/data/totalAmount" in str(error) and "externalId 1042" in str(error)
    assert (len(sandbox.requests(account)), sleeps) == (1, [])
    # The batch is atomic: the valid invoice beside the bad one was not stored either.
    assert client.get_record(account, "invoices", "1041") is None


def test_a_refusal_in_a_later_batch_names_the_item_by_its_position_in_the_whole_call(client, account):
    items = [entity(f"e{n:03d}") for n in range(MAX_BATCH_ITEMS + 1)]
    items[-1] = entity("e500", status="archived")
    with pytest.raises(FlexPointRejected) as caught:
        client.upsert(account, "entities", CONNECTION, items)
    assert caught.value.external_ids == ("e500",)
    assert caught.value.details["violations"][0]["pointer"] == "/items/0/data/status"
    # The first batch was confirmed before the second failed; it stays applied.
    assert sum(1 for _ in client.iter_records(account, "entities")) == MAX_BATCH_ITEMS


def test_a_wrong_token_is_unauthorized_at_once_and_the_token_is_not_in_the_message(
    make_client, sandbox, sleeps, account
):
    wrong = f"wrong-token-{uuid.uuid4().hex}"
    client = make_client(token=wrong)
    with pytest.raises(FlexPointUnauthorized) as caught:
        client.upsert(account, "entities", CONNECTION, [entity("a")])
    error = caught.value
    assert (error.status, error.transient, sleeps) == (401, False, [])
    assert "FLEXPOINT_API_TOKEN" in str(error)
    assert wrong not in str(error) and wrong not in repr(error.details) and TOKEN not in str(error)
    with pytest.raises(FlexPointUnauthorized):
        client.get_status(account)


def test_a_token_echoed_back_by_flexpoint_is_scrubbed_from_the_error(client, account):
    # A worker bug that put the token into a field: FlexPoint's refusal quotes the value.
    with pytest.raises(FlexPointRejected) as caught:
        client.upsert(account, "entities", CONNECTION, [entity("a", status=TOKEN)])
    text = f"{caught.value} {caught.value.details!r}"
    assert TOKEN not in text
    assert REDACTED in str(caught.value)


# -- transient failures -----------------------------------------------------------------------


def test_injected_5xx_are_retried_until_every_item_is_stored_exactly_once(
    make_client, sandbox, sleeps, account
):
    client = make_client(max_attempts=4)
    # Seed 43 fails six of the nine requests, never four in a row (see sandbox/flexpoint/faults.py).
    sandbox.faults(serverErrorRate=0.5, seed=43)
    ids = [f"e{n:04d}" for n in range(1200)]
    results = client.upsert(account, "entities", CONNECTION, [entity(i) for i in ids])
    assert [r["externalId"] for r in results] == ids and set(statuses(results)) == {"created"}

    log = sandbox.requests(account)
    failed = [r for r in log if r["status"] != 200]
    assert {r["status"] for r in failed} == {500, 503}
    assert len(failed) == len(sleeps) == 6
    # Applied once per batch: the outcomes of the answered requests add up to the items sent.
    outcomes = Counter()
    for request in log:
        if request["status"] == 200 and not request["replayed"]:
            outcomes.update(request["outcomes"])
    assert outcomes == {"created": 1200}
    sandbox.faults(serverErrorRate=0)
    assert [r["externalId"] for r in client.iter_records(account, "entities")] == ids
    assert sandbox.summary()["accounts"][account]["resources"]["entities"] == {"live": 1200, "deleted": 0}


def test_429_waits_exactly_the_retry_after_flexpoint_asked_for(client, sandbox, sleeps, account):
    sandbox.faults(retryAfterSeconds=3, script=[429, 429])
    assert statuses(client.upsert(account, "entities", CONNECTION, [entity("a")])) == ["created"]
    assert sleeps == [3.0, 3.0]
    assert [r["status"] for r in sandbox.requests(account)] == [429, 429, 200]


def test_a_retry_after_too_long_to_wait_here_is_handed_to_the_caller(client, sandbox, sleeps, account):
    sandbox.faults(retryAfterSeconds=120, script=[429])
    with pytest.raises(FlexPointRateLimited) as caught:
        client.upsert(account, "entities", CONNECTION, [entity("a")])
    assert (caught.value.retry_after, caught.value.transient, sleeps) == (120.0, True, [])


def test_5xx_back_off_exponentially_with_full_jitter(make_client, sandbox, sleeps, account):
    client = make_client(rng=random.Random(42))
    sandbox.faults(script=[503, 500, 503])
    assert statuses(client.upsert(account, "entities", CONNECTION, [entity("a")])) == ["created"]
    # Full jitter, as the contract of the retry says: uniform in [0, min(cap, base * 2**(n-1))],
    # drawn from the client's seeded source; computed here, not by the policy under test.
    policy, rng = FlexPointRetries(), random.Random(42)
    assert sleeps == [rng.uniform(0, min(policy.cap, policy.base * 2 ** (n - 1))) for n in (1, 2, 3)]
    for attempt, slept in enumerate(sleeps, start=1):
        assert 0 <= slept <= min(policy.cap, policy.base * 2 ** (attempt - 1))


def test_when_every_attempt_fails_the_error_is_unavailable_after_max_attempts(
    make_client, sandbox, sleeps, account
):
    client = make_client(max_attempts=4)
    sandbox.faults(script=[503, 500, 503, 503, 503])
    with pytest.raises(FlexPointUnavailable) as caught:
        client.upsert(account, "entities", CONNECTION, [entity("a")])
    error = caught.value
    assert (error.status, error.attempts, error.transient) == (503, 4, True)
    assert "after 4 attempts" in str(error)
    assert len(sleeps) == 3 and len(sandbox.requests(account)) == 4
    sandbox.faults(script=[])
    assert client.get_record(account, "entities", "a") is None


def test_a_timed_out_batch_is_replayed_by_its_retry_not_applied_twice(make_client, sandbox, account):
    sandbox.faults(latencyMs=400)

    def sleep_then_heal(_seconds: float) -> None:
        # The timed-out request is still being applied; retry once it is, so the retry
        # demonstrably meets the stored answer.
        sandbox.faults(latencyMs=0)
        wait_until(lambda: sandbox.requests(account), timeout=5, message="the first attempt to finish")

    client = make_client(timeout=(2, 0.1), sleep=sleep_then_heal)
    assert statuses(client.upsert(account, "entities", CONNECTION, [entity("a")])) == ["created"]
    first, retry = sandbox.requests(account)
    assert (first["status"], first["replayed"], first["outcomes"]) == (200, False, {"created": 1})
    assert (retry["status"], retry["replayed"]) == (200, True)
    assert first["idempotencyKey"] == retry["idempotencyKey"]


def test_an_unreachable_flexpoint_is_unavailable(make_client, sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    calls = []
    client = make_client(
        base_url=f"http://127.0.0.1:{port}", max_attempts=2, on_call=lambda *a: calls.append(a)
    )
    with pytest.raises(FlexPointUnavailable) as caught:
        client.upsert("acct-1", "entities", CONNECTION, [entity("a")])
    assert caught.value.attempts == 2 and len(sleeps) == 1
    assert [(resource, status) for resource, status, _ in calls] == [("entities", "connection_error")] * 2


def test_on_call_sees_every_attempt_and_a_failing_hook_breaks_nothing(make_client, sandbox, account):
    calls = []
    client = make_client(on_call=lambda *args: calls.append(args))
    sandbox.faults(script=[503])
    client.upsert(account, "entities", CONNECTION, [entity("a")])
    client.report_status(account, {"connectionId": CONNECTION, "state": "connected"})
    assert [(resource, status) for resource, status, _ in calls] == [
        ("entities", 503),
        ("entities", 200),
        ("integration-status", 200),
    ]
    assert all(seconds >= 0 for _, _, seconds in calls)

    def broken(*_args: Any) -> None:
        raise RuntimeError("metrics backend down")

    assert statuses(make_client(on_call=broken).upsert(account, "entities", CONNECTION, [entity("b")])) == [
        "created"
    ]


# -- connection status ------------------------------------------------------------------------


def test_report_status_stores_it_and_the_last_report_wins(client, sandbox, account):
    assert client.get_status(account) is None
    connecting = {"connectionId": CONNECTION, "state": "connecting", "reportedAt": "2026-11-24T10:00:00Z"}
    connected = {
        "connectionId": CONNECTION,
        "state": "connected",
        "reason": None,
        "message": None,
        "companyId": "ACME-CO",
        "entityId": None,
        "missingPermissions": [],
        "webhookUrl": f"https://flexsync.test/webhooks/intacct/{CONNECTION}",
        "backfill": {"invoices": {"done": 10, "total": 40, "finished": False}},
        "reportedAt": "2026-11-24T10:00:05Z",
    }
    client.report_status(account, connecting)
    client.report_status(account, connected)
    assert client.get_status(account) == connected
    puts = [r for r in sandbox.requests(account) if r["method"] == "PUT"]
    assert len(puts) == 2 and len({p["idempotencyKey"] for p in puts}) == 2


def test_report_status_stamps_reported_at_when_absent(client, account):
    before = datetime.now(UTC) - timedelta(seconds=1)
    client.report_status(
        account,
        {
            "connectionId": CONNECTION,
            "state": "failed",
            "reason": "missing_permission",
            "missingPermissions": ["cash-management"],
            "message": "Give the Web Services user's role Cash Management read permission.",
        },
    )
    stored = client.get_status(account)
    assert stored["reason"] == "missing_permission"
    assert datetime.fromisoformat(stored["reportedAt"].replace("Z", "+00:00")) >= before


@pytest.mark.parametrize(
    "status",
    [
        {"state": "connected"},
        {"connectionId": CONNECTION, "state": "happy"},
        {"connectionId": CONNECTION, "state": "failed", "reason": "bad_luck"},
        {"connectionId": CONNECTION, "state": "connected", "missingPermission": []},
    ],
)
def test_a_status_outside_the_contract_is_a_programming_error(client, sandbox, account, status):
    with pytest.raises(ValueError):
        client.report_status(account, status)
    assert sandbox.requests(account) == []


# -- reads ------------------------------------------------------------------------------------


def test_iter_records_walks_every_page_with_and_without_tombstones(client, sandbox, account):
    ids = [f"e{n:02d}" for n in range(25)]
    client.upsert(account, "entities", CONNECTION, [entity(i) for i in ids])
    client.upsert(account, "entities", CONNECTION, [tombstone(i, T2) for i in ids[::5]])
    live = [r["externalId"] for r in client.iter_records(account, "entities", page_size=10)]
    assert live == [i for i in ids if i not in ids[::5]]
    everything = list(client.iter_records(account, "entities", include_deleted=True, page_size=10))
    assert [r["externalId"] for r in everything] == ids
    assert [r["externalId"] for r in everything if r["deleted"]] == ids[::5]
    gets = [r for r in sandbox.requests(account) if r["method"] == "GET"]
    assert len(gets) == 2 + 3
    assert sum("cursor=" in (g["query"] or "") for g in gets) == 1 + 2


def test_reads_of_an_account_flexpoint_does_not_know_are_empty(client):
    assert list(client.iter_records("acct-unknown", "invoices")) == []
    assert client.get_record("acct-unknown", "invoices", "1") is None
    assert client.get_status("acct-unknown") is None


def test_external_ids_with_reserved_characters_round_trip(client, account):
    odd = "INV/2026 #7?x=1"
    client.upsert(account, "invoices", CONNECTION, [{**invoice("x", "1.00"), "externalId": odd}])
    assert client.get_record(account, "invoices", odd)["externalId"] == odd


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "acct/1", "acct 1", "acct-1\n", "äccount", "x" * 65, None, 42])
def test_account_ids_outside_the_yaml_pattern_are_refused_before_sending(client, sandbox, bad):
    calls = [
        lambda: client.upsert(bad, "entities", CONNECTION, [entity("a")]),
        lambda: client.report_status(bad, {"connectionId": CONNECTION, "state": "connected"}),
        lambda: client.get_record(bad, "entities", "a"),
        lambda: client.iter_records(bad, "entities"),
        lambda: client.get_status(bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="account id"):
            call()
    assert sandbox.summary()["requests"]["total"] == 0


def test_account_ids_at_the_edges_of_the_pattern_are_accepted(client):
    for account in ("x" * 64, "A_b-9"):
        assert statuses(client.upsert(account, "entities", CONNECTION, [entity("a")])) == ["created"]


def test_unknown_resources_are_refused_before_sending(client, sandbox, account):
    with pytest.raises(ValueError, match="unknown FlexPoint resource"):
        client.upsert(account, "invoice", CONNECTION, [invoice("1", "1.00")])
    with pytest.raises(ValueError, match="unknown FlexPoint resource"):
        client.iter_records(account, "../sandbox")
    assert sandbox.requests(account) == []


def test_the_client_checks_what_the_yaml_says():
    spec = yaml.safe_load((REPO / "sandbox/flexpoint/flexpoint-sync-api.yaml").read_text())
    parameters, schemas = spec["components"]["parameters"], spec["components"]["schemas"]
    assert set(parameters["resource"]["schema"]["enum"]) == RESOURCES
    assert parameters["accountId"]["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    assert schemas["BatchRequest"]["properties"]["items"]["maxItems"] == MAX_BATCH_ITEMS
    status = schemas["ConnectionStatus"]["properties"]
    assert set(status) == STATUS_FIELDS
    assert set(status["state"]["enum"]) == STATES and set(status["reason"]["enum"]) == REASONS


def test_from_settings_names_the_missing_variable():
    with pytest.raises(SettingsError, match="FLEXPOINT_API_URL"):
        FlexPointClient.from_settings(Settings(flexsync_env="test"), process="sync")
    settings = Settings(flexpoint_api_url="http://flexpoint.test", flexpoint_api_token=TOKEN)
    with FlexPointClient.from_settings(settings, process="sync") as client:
        assert client.base_url == "http://flexpoint.test" and TOKEN not in repr(client)


# -- retry policy -----------------------------------------------------------------------------


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now.timestamp) == 7.0
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now.timestamp) == 0.0
    )
    assert parse_retry_after(None) is parse_retry_after("soon") is parse_retry_after("nan") is None


def test_a_429_without_retry_after_backs_off_with_jitter():
    policy = FlexPointRetries(max_attempts=3)
    limited = FlexPointRateLimited("429", retry_after=None)
    assert 0 <= policy.delay(limited, 2, random.Random(1)) <= policy.base * 2
    assert policy.delay(limited, 3, random.Random(1)) is None
    assert policy.delay(FlexPointRejected("400"), 1, random.Random(1)) is None


# -- secrets ----------------------------------------------------------------------------------


def test_the_client_registers_its_token_for_redaction(make_client):
    fresh = f"fp-fresh-token-{uuid.uuid4().hex}"
    make_client(token=fresh)
    assert redactor().redact_text(f"sent {fresh} along") == f"sent {REDACTED} along"


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    settings = Settings(flexsync_env="test", log_format="json", log_level="DEBUG", flexpoint_api_token=TOKEN)
    configure_logging(settings, stream=stream)
    yield stream
    logging.getLogger().handlers.clear()


def test_the_token_never_appears_in_the_logs(make_client, sandbox, account, captured_logs):
    client = make_client()
    sandbox.faults(script=[429, 503])
    client.upsert(account, "entities", CONNECTION, [entity("a")])
    log = get_logger("test")
    for failing in (
        lambda: make_client(token=f"wrong-{TOKEN}").upsert(account, "entities", CONNECTION, [entity("b")]),
        lambda: client.upsert(account, "entities", CONNECTION, [entity("c", status=TOKEN)]),
    ):
        with pytest.raises(FlexPointError) as caught:
            failing()
        log.error("flexpoint_write_failed", reason=str(caught.value), exc_info=caught.value)
    text = captured_logs.getvalue()
    assert "flexpoint_retry" in text and "flexpoint_write_failed" in text
    assert TOKEN not in text and "Authorization" not in text
