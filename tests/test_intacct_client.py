"""The Intacct REST client against the real simulator over HTTP: tokens, failure signals, reads,
the entity header, retries on 5xx and 429, and no token ever printed.

Nothing sleeps: the client's sleep records the backoff it asks for, and clocks are injected.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from clients.intacct import (
    AREA_PROBES,
    AREAS,
    CompanyBusy,
    IntacctClient,
    IntacctError,
    IntacctRejected,
    IntacctRetries,
    IntacctUnavailable,
    PermissionDenied,
    RateLimited,
    TokenProvider,
    TokenRefused,
    build_session,
    create_client,
)
from clients.intacct.errors import area_of, parse_ia_error
from clients.intacct.slots import CompanySlots, company_slots
from clients.intacct.tokens import refresh_margin
from config.settings import Settings
from observability.logging import configure_logging, redactor
from reliability.backoff import Backoff
from reliability.retry_after import hint as retry_after
from sandbox.intacct.faults import FaultSettings
from sandbox.intacct.seed import SeedOptions, seed_company
from sandbox.intacct.server import SimulatorServer
from store import create_engine_for, upgrade
from store.models import IntacctSlot
from tests.sandbox.conftest_intacct import AS_OF, COMPANY, SECRET, USER, FakeClock, make_config
from workers.connections.store import ConnectionRecord

INVOICES = "accounts-receivable/invoice"
CUSTOMERS = "accounts-receivable/customer"
SEEDED = SeedOptions(customers=30, invoices=620, lines_per_invoice=1, seed=3, as_of=AS_OF)


def connection(
    company: str = COMPANY, user: str = USER, entity: str | None = None, connection_id: str = "conn-1"
) -> ConnectionRecord:
    now = datetime.now(UTC)
    return ConnectionRecord(
        connection_id=connection_id,
        account_id="acct-1",
        company_id=company,
        entity_id=entity,
        user_id=user,
        state="connected",
        webhook_secrets=(),
        created_at=now,
        updated_at=now,
    )


class ShiftedClock:
    """Real time, moved ahead when a test says so: the slots' leases age, their waits stay real."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift

    def advance(self, seconds: float) -> None:
        self.shift += seconds


@dataclass
class Harness:
    """The simulator, its clock, and a client whose clock and sleeps the test controls."""

    server: SimulatorServer
    sim_clock: FakeClock
    client_clock: FakeClock
    tokens: TokenProvider
    slots: CompanySlots
    slots_clock: ShiftedClock
    client: IntacctClient = field(init=False)
    sleeps: list[float] = field(default_factory=list)
    calls: list[tuple[str, str, int, float]] = field(default_factory=list)
    # Called after each recorded sleep: lets a test change the world while the client "waits".
    on_sleep: Callable[[], None] | None = None

    def advance(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()

    def admin(self, method: str, path: str, **body: Any) -> Any:
        response = requests.request(
            method, f"{self.server.base_url}/sandbox/{path}", json=body or None, timeout=10
        )
        assert response.ok, response.text
        return response.json() if response.content else None

    def stats(self, company: str = COMPANY) -> dict[str, Any]:
        return self.admin("GET", f"stats?companyId={company}")

    def token_calls(self, company: str = COMPANY) -> int:
        return self.stats(company)["calls"].get(company, {}).get("oauth2/token", 0)

    def logged_requests(self, company: str = COMPANY) -> list[dict[str, Any]]:
        return self.admin("GET", f"requests?companyId={company}&limit=1000")["requests"]

    def faults(self, **settings: Any) -> None:
        self.server.simulator.faults.configure(FaultSettings(**settings))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with running(tmp_path) as harness:
        yield harness


@contextlib.contextmanager
def running(tmp_path: Path, secret: str = SECRET, cap: int = 2, **client_options: Any) -> Iterator[Harness]:
    """The simulator seeded with one company, and a client on a fresh SQLite store (slots ``cap``)."""
    sim_clock = FakeClock()
    with SimulatorServer(make_config(tmp_path, port=0), clock=sim_clock) as server:
        seed_company(server.simulator.store, COMPANY, SEEDED)
        settings = Settings(flexsync_env="test", intacct_api_url=server.api_url, intacct_client_secret=secret)
        engine = create_engine_for(f"sqlite:///{tmp_path / 'db' / 'flexsync.db'}")
        upgrade(engine)
        session = build_session(pool_size=8)
        client_clock = FakeClock(start=0)
        tokens = TokenProvider(settings, session, client_clock)
        slots_clock = ShiftedClock()
        slots = CompanySlots(engine, cap=cap, clock=slots_clock)
        harness = Harness(server, sim_clock, client_clock, tokens, slots, slots_clock)
        harness.client = IntacctClient(
            settings,
            tokens=tokens,
            slots=slots,
            session=session,
            clock=client_clock,
            sleep=harness.advance,
            rng=random.Random(7),
            on_call=lambda *call: harness.calls.append(call),
            **client_options,
        )
        try:
            yield harness
        finally:
            session.close()
            engine.dispose()


# --- tokens ------------------------------------------------------------------------------------


def test_a_token_is_fetched_once_and_reused_by_every_thread(harness: Harness):
    conn = connection()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait(timeout=10)
            for key in ("1", "2"):
                assert harness.client.get(conn, CUSTOMERS, key) is not None
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert errors == []
    harness.client.query(conn, CUSTOMERS, fields=["key"], size=1)
    stats = harness.stats()
    assert harness.token_calls() == 1
    assert stats["calls"][COMPANY][CUSTOMERS] == 17


def test_a_token_is_renewed_shortly_before_it_expires(harness: Harness):
    harness.admin("PATCH", "limits", tokenTtlSeconds=300)
    conn = connection()
    harness.client.get(conn, CUSTOMERS, "1")
    harness.client_clock.advance(300 - 60 - 1)  # one second before the 60 s margin
    harness.client.get(conn, CUSTOMERS, "1")
    assert harness.token_calls() == 1
    harness.client_clock.advance(2)
    harness.client.get(conn, CUSTOMERS, "1")
    assert harness.token_calls() == 2
    assert harness.stats()["responses"][COMPANY].get("401") is None  # renewed before Intacct refused it


def test_refresh_margin_is_a_minute_or_a_tenth_but_at_most_half_the_lifetime():
    assert refresh_margin(43_200) == 4_320
    assert refresh_margin(300) == 60
    assert refresh_margin(100) == 50


def test_a_token_refused_as_expired_is_renewed_once_and_the_call_succeeds(harness: Harness):
    conn = connection()
    first = harness.tokens.token(conn)
    harness.sim_clock.advance(43_200 + 1)  # Intacct sees it expired; our clock does not know yet
    assert harness.client.get(conn, CUSTOMERS, "3")["key"] == "3"
    assert harness.token_calls() == 2
    assert harness.tokens.token(conn) != first
    assert harness.sleeps == []  # a renewal is not a backoff
    assert [call[2] for call in harness.calls] == [401, 200]


def test_tokens_are_kept_per_connection_and_forgotten_on_disconnect(harness: Harness):
    one, other = connection(connection_id="conn-1"), connection(entity="US", connection_id="conn-2")
    assert harness.tokens.token(one) != harness.tokens.token(other)
    assert harness.tokens.token(one) == harness.tokens.token(one)
    harness.tokens.forget("conn-1")
    harness.tokens.token(one)
    harness.tokens.token(other)
    assert harness.token_calls() == 3


@pytest.mark.parametrize(
    ("mistake", "reason", "status"),
    [
        ("client_secret", "internal_error", 401),
        ("company", "company_not_found", 400),
        ("entity", "company_not_found", 400),
        ("user", "invalid_credentials", 400),
        ("not_web_services", "invalid_credentials", 400),
        ("sender", "sender_not_authorized", 400),
    ],
)
def test_each_token_failure_signal_maps_to_its_connection_status_reason(
    tmp_path: Path, mistake: str, reason: str, status: int
):
    secret = "wrong-client-secret-123" if mistake == "client_secret" else SECRET
    with running(tmp_path, secret=secret) as harness:
        conn = connection()
        if mistake == "company":
            conn = connection(company="NO-SUCH-CO")
        elif mistake == "entity":
            conn = connection(entity="ATLANTIS")
        elif mistake == "user":
            conn = connection(user="nobody")
        elif mistake == "not_web_services":
            harness.admin("PATCH", f"companies/{COMPANY}", users=[{"userId": USER, "webServices": False}])
        elif mistake == "sender":
            harness.admin("PATCH", f"companies/{COMPANY}", senderAuthorized=False)
        with pytest.raises(TokenRefused) as raised:
            harness.client.get(conn, CUSTOMERS, "1")
        error = raised.value
        assert error.reason == reason and error.status == status
        assert error.transient is False
        assert secret not in str(error) and SECRET not in repr(error)
        assert harness.sleeps == []  # permanent: not retried
        if mistake != "company":
            assert harness.token_calls() == 1


def test_a_user_removed_after_connecting_surfaces_as_invalid_credentials(harness: Harness):
    conn = connection()
    harness.client.get(conn, CUSTOMERS, "1")
    harness.admin("PATCH", f"companies/{COMPANY}", users=[{"userId": "someone-else"}])
    with pytest.raises(TokenRefused) as raised:
        harness.client.get(conn, CUSTOMERS, "1")
    assert raised.value.reason == "invalid_credentials"
    assert [call[2] for call in harness.calls] == [200, 401]  # refused, renewal refused: no retry


def test_the_token_endpoint_down_is_retried_then_unavailable(harness: Harness):
    harness.faults(error_rate=1.0, error_status=503)
    with pytest.raises(IntacctUnavailable) as raised:
        harness.client.get(connection(), CUSTOMERS, "1")
    assert raised.value.transient is True and raised.value.status == 503
    assert "gave up after 3 attempt(s)" in str(raised.value)
    assert harness.token_calls() == 3
    assert len(harness.sleeps) == 2


# --- permissions ----------------------------------------------------------------------------------


def test_a_role_missing_areas_is_reported_per_area_by_the_probe(harness: Harness):
    harness.admin(
        "PATCH",
        f"companies/{COMPANY}",
        users=[{"userId": USER, "areas": ["general-ledger", "accounts-receivable"]}],
    )
    conn = connection()
    missing = []
    for area in AREAS:
        try:
            harness.client.read_permissions_probe(conn, area)
        except PermissionDenied as denied:
            assert denied.area == area and denied.transient is False and denied.status == 403
            assert denied.code == "permissionDenied"
            missing.append(area)
    assert missing == ["company", "cash-management"]
    assert harness.sleeps == []
    probes = [(r["object"], r["status"]) for r in harness.logged_requests() if r["object"] != "oauth2/token"]
    assert probes == [(AREA_PROBES[a], 403 if a in missing else 200) for a in AREAS]


def test_any_read_in_a_missing_area_raises_permission_denied_naming_it(harness: Harness):
    harness.admin("PATCH", f"companies/{COMPANY}", users=[{"userId": USER, "areas": ["company"]}])
    with pytest.raises(PermissionDenied) as raised:
        harness.client.get(connection(), "cash-management/checking-account", "1")
    assert raised.value.area == "cash-management"
    with pytest.raises(PermissionDenied) as raised:
        list(harness.client.query_all(connection(), INVOICES, fields=["key"]))
    assert raised.value.area == "accounts-receivable"
    with pytest.raises(ValueError, match="unknown permission area"):
        harness.client.read_permissions_probe(connection(), "payroll")


# --- reads ----------------------------------------------------------------------------------------


def test_get_returns_the_record_or_none_for_404(harness: Harness):
    conn = connection()
    record = harness.client.get(conn, INVOICES, "7")
    assert record["key"] == "7" and "totalTxnAmount" in record
    assert harness.client.get(conn, INVOICES, "999999") is None
    with pytest.raises(ValueError):
        harness.client.get(conn, INVOICES, "1,2")


def test_get_many_batches_500_keys_per_request_and_reports_the_missing(harness: Harness):
    conn = connection()
    keys = [str(k) for k in range(1, 599)] + ["900001", "900002"]
    records, missing = harness.client.get_many(conn, INVOICES, [*keys, "5"])  # a repeat is asked once
    assert [r["key"] for r in records] == keys[:598]
    assert missing == ["900001", "900002"]
    gets = [r for r in harness.logged_requests() if r["object"] == INVOICES]
    assert len(gets) == 2
    assert [len(r["path"].rsplit("/", 1)[1].split(",")) for r in gets] == [500, 100]


def test_get_many_with_one_key_or_none_found(harness: Harness):
    conn = connection()
    assert harness.client.get_many(conn, INVOICES, ["3"]) == ([harness.client.get(conn, INVOICES, "3")], [])
    assert harness.client.get_many(conn, INVOICES, ["800001"]) == ([], ["800001"])
    assert harness.client.get_many(conn, INVOICES, ["800001", "800002"]) == ([], ["800001", "800002"])
    assert harness.client.get_many(conn, INVOICES, []) == ([], [])


def test_query_applies_filters_and_pages(harness: Harness):
    conn = connection()
    filters = [{"$in": {"status": ["active", "inactive"]}}, {"$gt": {"key": "4"}}]
    everything = harness.client.query(conn, CUSTOMERS, fields=["key", "status"], size=1000)
    expected = [
        r["key"] for r in everything.rows if r["status"] in ("active", "inactive") and int(r["key"]) > 4
    ]
    page = harness.client.query(
        conn, CUSTOMERS, fields=["key", "id", "status"], filters=filters, filter_expression="1 and 2", size=5
    )
    assert page.total_count == len(expected) > 5
    assert [r["key"] for r in page.rows] == expected[:5]
    assert page.next_start == 6
    second = harness.client.query(conn, CUSTOMERS, fields=["key"], filters=filters, start=6, size=5)
    assert [r["key"] for r in second.rows] == expected[5:10]


def test_query_all_walks_every_page_by_key(harness: Harness):
    conn = connection()
    total = harness.client.query(conn, INVOICES, fields=["key"], size=1).total_count
    # The 620 invoices seeded, plus the ``reversal`` record each reversed one left (published states).
    reversals = harness.client.query(
        conn, INVOICES, fields=["key"], filters=[{"$eq": {"state": "reversal"}}], size=1
    ).total_count
    rows = list(
        harness.client.query_all(
            conn, INVOICES, fields=["id", "state"], filters=[{"$gte": {"key": "1"}}], size=200
        )
    )
    assert [int(r["key"]) for r in rows] == sorted(int(r["key"]) for r in rows)
    assert reversals > 0
    assert len(rows) == total == 620 + reversals and set(rows[0]) == {"key", "id", "state"}
    queries = [r for r in harness.logged_requests() if r["object"] == INVOICES]
    assert len(queries) == 2 + -(-total // 200)  # the two counts above, then one query per page


def test_query_all_keeps_the_callers_filter_expression_across_pages(harness: Harness):
    conn = connection()
    everything = harness.client.query(conn, CUSTOMERS, fields=["key", "status"], size=1000).rows
    wanted = [r["key"] for r in everything if r["status"] in ("active", "inactive")]
    rows = harness.client.query_all(
        conn,
        CUSTOMERS,
        fields=["status"],
        filters=[{"$eq": {"status": "active"}}, {"$eq": {"status": "inactive"}}],
        filter_expression="1 or 2",
        size=4,
    )
    assert [r["key"] for r in rows] == wanted and len(wanted) > 8
    bodies = [r for r in harness.logged_requests() if r["object"] == CUSTOMERS]
    assert len(bodies) == 1 + -(-len(wanted) // 4)


def test_query_all_skips_nothing_when_a_record_is_deleted_between_pages(harness: Harness):
    conn = connection()
    rows = harness.client.query_all(conn, CUSTOMERS, fields=["key"], size=5)
    seen = [next(rows)["key"] for _ in range(5)]
    harness.admin("DELETE", f"companies/{COMPANY}/objects/{CUSTOMERS}/2")  # already seen
    seen += [row["key"] for row in rows]
    assert seen == [str(k) for k in range(1, 31)]


def test_query_all_with_an_order_follows_the_pages_in_that_order(harness: Harness):
    rows = list(
        harness.client.query_all(
            connection(), CUSTOMERS, fields=["key", "id"], order_by=[{"id": "desc"}], size=7
        )
    )
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert len(rows) == 30


def test_a_malformed_query_is_rejected_without_retry(harness: Harness):
    with pytest.raises(IntacctRejected) as raised:
        harness.client.query(connection(), CUSTOMERS, fields=["noSuchField"])
    assert raised.value.status == 400 and raised.value.code == "invalidRequest"
    assert raised.value.transient is False
    assert "noSuchField" in str(raised.value)
    assert harness.sleeps == []


def test_the_entity_header_is_sent_for_a_connection_to_one_entity(harness: Harness):
    harness.client.get(connection(entity="US", connection_id="conn-us"), CUSTOMERS, "1")
    harness.client.get(connection(), CUSTOMERS, "1")
    entities = [
        (r["entity"], r["tokenEntity"]) for r in harness.logged_requests() if r["object"] == CUSTOMERS
    ]
    assert entities == [("US", "US"), (None, None)]


def test_a_write_carries_its_idempotency_key_and_a_read_none(harness: Harness, monkeypatch):
    sent: list[dict[str, str]] = []
    session = harness.client._session
    original = session.request

    def recording(method: str, url: str, **kwargs: Any) -> Any:
        if "/oauth2/" not in url:
            sent.append(dict(kwargs.get("headers") or {}))
        return original(method, url, **kwargs)

    monkeypatch.setattr(session, "request", recording)
    query = {"object": CUSTOMERS, "fields": ["key"], "size": 1}
    harness.client.write_once(
        connection(), "POST", "services/core/query", CUSTOMERS, query, idempotency_key="k-1"
    )
    harness.client.get(connection(), CUSTOMERS, "1")
    assert [h.get("Idempotency-Key") for h in sent] == ["k-1", None]
    assert all(h["Authorization"].startswith("Bearer ") for h in sent)


# --- 5xx, timeouts, 429 -----------------------------------------------------------------------------


def _seed_failing_first_then_passing(rate: float) -> int:
    return next(
        seed for seed in range(1000) if (rng := random.Random(seed)).random() < rate and rng.random() >= rate
    )


def test_a_5xx_is_retried_then_the_call_succeeds(harness: Harness):
    conn = connection()
    harness.tokens.token(conn)  # the token endpoint draws from the fault RNG too
    harness.faults(error_rate=0.5, error_status=502, seed=_seed_failing_first_then_passing(0.5))
    assert harness.client.get(conn, CUSTOMERS, "1")["key"] == "1"
    assert len(harness.sleeps) == 1 and 0 <= harness.sleeps[0] <= 0.2
    assert [call[2] for call in harness.calls] == [502, 200]
    assert all(call[:2] == (COMPANY, CUSTOMERS) for call in harness.calls)


def test_5xx_beyond_the_bound_raises_intacct_unavailable(harness: Harness):
    conn = connection()
    harness.tokens.token(conn)
    harness.faults(error_rate=1.0, error_status=503, seed=1)
    with pytest.raises(IntacctUnavailable) as raised:
        harness.client.get(conn, CUSTOMERS, "1")
    assert raised.value.transient is True and raised.value.code == "serviceUnavailable"
    assert harness.stats()["responses"][COMPANY]["503"] == 3
    assert len(harness.sleeps) == 2
    assert 0 <= harness.sleeps[0] <= 0.2 and 0 <= harness.sleeps[1] <= 0.4


def test_timeouts_are_retried_then_intacct_unavailable(tmp_path: Path):
    with running(tmp_path, cap=3, timeouts=(5.0, 0.2)) as harness:
        conn = connection()
        harness.tokens.token(conn)
        harness.admin("PATCH", "limits", concurrencyCap=3)
        harness.faults(timeout_rate=1.0, timeout_hold_seconds=10)
        with pytest.raises(IntacctUnavailable, match="ReadTimeout") as raised:
            harness.client.get(conn, CUSTOMERS, "1")
        assert raised.value.transient is True
        assert [call[2] for call in harness.calls] == [0, 0, 0]
        assert len(harness.sleeps) == 2
        assert harness.stats()["tooManyRequests"] == 0


def test_a_timed_out_request_keeps_its_slot_while_intacct_may_still_run_it(tmp_path: Path):
    with running(tmp_path, cap=2, timeouts=(5.0, 0.2), slot_timeout=0.05) as harness:
        conn = connection()
        harness.tokens.token(conn)
        harness.faults(timeout_rate=1.0, timeout_hold_seconds=10)
        # Two timeouts fill both slots here as they fill both at Intacct: the third attempt
        # waits for a slot instead of drawing a 429.
        with pytest.raises(CompanyBusy):
            harness.client.get(conn, CUSTOMERS, "1")
        assert [call[2] for call in harness.calls] == [0, 0]
        assert harness.slots.holders(COMPANY) == 2
        assert harness.stats()["tooManyRequests"] == 0


def _counting_claims(harness: Harness) -> list[str]:
    """The company slots' claims from now on (one entry per slot taken)."""
    taken: list[str] = []
    real = harness.slots._try_claim

    def counted(company_id: str) -> Any:
        lease = real(company_id)
        if lease is not None:
            taken.append(lease.holder)
        return lease

    harness.slots._try_claim = counted  # type: ignore[method-assign]
    return taken


def test_calls_in_a_holding_block_go_out_under_one_slot_given_back_at_its_end(harness: Harness):
    conn = connection()
    harness.tokens.token(conn)
    taken = _counting_claims(harness)
    with harness.client.holding(conn):
        assert harness.client.get(conn, CUSTOMERS, "1")["key"] == "1"
        assert harness.slots.holders(COMPANY) == 1  # kept between the calls
        assert harness.client.get(conn, CUSTOMERS, "2")["key"] == "2"
    assert len(taken) == 1 and harness.slots.holders(COMPANY) == 0
    # Outside a block, each call takes a slot of its own.
    harness.client.get(conn, CUSTOMERS, "1")
    harness.client.get(conn, CUSTOMERS, "2")
    assert len(taken) == 3 and harness.slots.holders(COMPANY) == 0


def test_a_held_slot_is_given_back_before_a_retry_sleeps(harness: Harness):
    conn = connection()
    harness.tokens.token(conn)
    taken = _counting_claims(harness)
    held_while_sleeping: list[int] = []
    harness.on_sleep = lambda: held_while_sleeping.append(harness.slots.holders(COMPANY))
    harness.faults(error_rate=0.5, error_status=502, seed=_seed_failing_first_then_passing(0.5))
    with harness.client.holding(conn):
        assert harness.client.get(conn, CUSTOMERS, "1")["key"] == "1"
        harness.faults()
        assert harness.client.get(conn, CUSTOMERS, "2")["key"] == "2"
    assert held_while_sleeping == [0]  # never slept through
    assert len(taken) == 2  # the retry took a slot again, kept for the next call


def test_a_held_slot_left_taken_by_a_timed_out_request_is_not_used_again(tmp_path: Path):
    with running(tmp_path, cap=2, timeouts=(5.0, 0.2)) as harness:
        conn = connection()
        harness.tokens.token(conn)
        harness.faults(timeout_rate=1.0, timeout_hold_seconds=10)
        with harness.client.holding(conn):
            with pytest.raises(IntacctUnavailable):  # one attempt, as a write is sent
                harness.client._transport.call(conn, "GET", f"objects/{CUSTOMERS}/1", CUSTOMERS, once=True)
            harness.faults()
            # The first slot stays taken (Intacct may still run that request): another one serves.
            assert harness.client.get(conn, CUSTOMERS, "1")["key"] == "1"
            assert harness.slots.holders(COMPANY) == 2
        assert harness.slots.holders(COMPANY) == 1  # only the timed-out request's, until its lease ends


def test_a_held_slot_whose_lease_could_end_mid_request_is_taken_anew(tmp_path: Path):
    with running(tmp_path, cap=2) as harness:
        conn = connection()
        harness.tokens.token(conn)
        taken = _counting_claims(harness)
        with harness.client.holding(conn):
            harness.client.get(conn, CUSTOMERS, "1")
            # 45 s lease, 35 s of timeouts, 1 s of margin: 9 s later another request could outlive
            # it. The lease's own age counts, by the slots' clock, not the client's.
            harness.slots_clock.advance(9.5)
            harness.client.get(conn, CUSTOMERS, "2")
            assert harness.slots.holders(COMPANY) == 1
        assert len(taken) == 2 and harness.slots.holders(COMPANY) == 0


def test_the_time_spent_waiting_for_a_slot_does_not_count_against_its_lease(harness: Harness):
    conn = connection()
    harness.tokens.token(conn)
    taken = _counting_claims(harness)
    real_acquire = harness.slots.acquire

    def slow_acquire(company_id: str, timeout: float = 30.0) -> Any:
        harness.client_clock.advance(9.5)  # a long wait for the slot, by the client's clock
        return real_acquire(company_id, timeout)

    harness.slots.acquire = slow_acquire  # type: ignore[method-assign]
    with harness.client.holding(conn):
        harness.client.get(conn, CUSTOMERS, "1")
        harness.client.get(conn, CUSTOMERS, "2")
    # The lease ran from its claim, after the wait: both calls fit in it, under the one slot.
    assert len(taken) == 1 and harness.slots.holders(COMPANY) == 0


class HeldRequest:
    """One request held inside the simulator, so the company's only slot there is taken."""

    def __init__(self, harness: Harness, token: str) -> None:
        self.harness = harness
        harness.admin("PATCH", "limits", concurrencyCap=1)
        harness.faults(latency_ms=60_000)
        self.thread = threading.Thread(
            target=requests.get,
            args=(f"{harness.server.api_url}/objects/{CUSTOMERS}/1",),
            kwargs={"headers": {"Authorization": f"Bearer {token}"}, "timeout": 30},
        )
        self.thread.start()
        assert harness.server.simulator.limiter.wait_for(COMPANY, 1, timeout=10)

    def release(self) -> None:
        self.harness.faults()
        self.thread.join(timeout=10)
        assert self.harness.server.simulator.limiter.wait_for(COMPANY, 0, timeout=10)


def test_429_honours_retry_after_and_then_succeeds(harness: Harness):
    conn = connection()
    harness.admin("PATCH", "limits", retryAfterSeconds=2)
    held = HeldRequest(harness, harness.tokens.token(conn))
    harness.on_sleep = lambda: held.release() if len(harness.sleeps) == 2 else None
    try:
        assert harness.client.get(conn, CUSTOMERS, "2")["key"] == "2"
    finally:
        held.release()
    assert len(harness.sleeps) == 2 and all(2.0 <= s <= 2.2 for s in harness.sleeps)
    assert [call[2] for call in harness.calls] == [429, 429, 200]


def test_429_without_a_usable_hint_backs_off_with_jitter_then_raises_rate_limited(harness: Harness):
    conn = connection()
    harness.admin("PATCH", "limits", retryAfterSeconds=0)
    held = HeldRequest(harness, harness.tokens.token(conn))
    try:
        with pytest.raises(RateLimited) as raised:
            harness.client.get(conn, CUSTOMERS, "2")
    finally:
        held.release()
    assert raised.value.transient is True and raised.value.code == "tooManyRequests"
    assert raised.value.retry_after is None
    assert "gave up after 5 attempt(s)" in str(raised.value)
    assert len(harness.sleeps) == 4
    assert [s <= cap for s, cap in zip(harness.sleeps, (0.5, 1, 2, 4), strict=True)] == [True] * 4
    assert len(set(harness.sleeps)) == 4
    assert harness.stats()["responses"][COMPANY]["429"] == 5


def test_a_retry_after_too_long_to_wait_is_handed_to_the_caller_at_once(harness: Harness):
    conn = connection()
    harness.admin("PATCH", "limits", retryAfterSeconds=120)
    held = HeldRequest(harness, harness.tokens.token(conn))
    try:
        with pytest.raises(RateLimited) as raised:
            harness.client.get(conn, CUSTOMERS, "2")
    finally:
        held.release()
    assert raised.value.retry_after == 120
    assert harness.sleeps == []


def test_no_free_slot_in_time_raises_company_busy_before_calling_intacct(tmp_path: Path):
    with running(tmp_path, slot_timeout=0.05) as harness:
        conn = connection()
        harness.tokens.token(conn)
        slots = harness.slots
        with (
            slots.acquire(COMPANY, timeout=1),
            slots.acquire(COMPANY, timeout=1),
            pytest.raises(CompanyBusy) as raised,
        ):
            harness.client.get(conn, CUSTOMERS, "1")
        assert isinstance(raised.value, RateLimited) and raised.value.transient is True
        assert harness.calls == []


def test_the_lease_must_outlast_the_longest_request(tmp_path: Path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = Settings(flexsync_env="test")
    session = requests.Session()
    with pytest.raises(ValueError, match="must outlast a request"):
        IntacctClient(
            settings,
            tokens=TokenProvider(settings, session),
            slots=CompanySlots(engine, cap=2, lease_seconds=30),
            timeouts=(5.0, 30.0),
        )
    session.close()
    engine.dispose()


def test_create_client_wires_session_tokens_and_the_cap_from_settings(tmp_path: Path):
    with SimulatorServer(make_config(tmp_path, port=0)) as server:
        seed_company(
            server.simulator.store, COMPANY, SeedOptions(customers=3, invoices=3, seed=1, as_of=AS_OF)
        )
        settings = Settings(
            flexsync_env="test",
            intacct_api_url=server.api_url,
            intacct_client_secret=SECRET,
            intacct_max_concurrency_per_company=1,
        )
        engine = create_engine_for(f"sqlite:///{tmp_path / 'db' / 'flexsync.db'}")
        upgrade(engine)
        calls: list[tuple[str, str, int, float]] = []
        client = create_client(
            settings, company_slots(settings, engine), on_call=lambda *call: calls.append(call)
        )
        try:
            assert client.get(connection(), CUSTOMERS, "2")["key"] == "2"
            with engine.connect() as conn:
                slots = conn.execute(select(IntacctSlot.slot, IntacctSlot.holder)).all()
        finally:
            client.close()
            engine.dispose()
        assert [(c[1], c[2]) for c in calls] == [("oauth2/token", 200), (CUSTOMERS, 200)]
        assert slots == [(0, None)]  # one slot: the cap from settings; released after the call


# --- secrets ----------------------------------------------------------------------------------------


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(
        Settings(flexsync_env="test", log_format="json", log_level="DEBUG", intacct_client_secret=SECRET),
        stream=stream,
    )
    yield stream
    logging.getLogger().handlers.clear()


def test_tokens_never_appear_in_logs_or_exception_messages(harness: Harness, log_stream: io.StringIO):
    conn = connection()
    issued = [harness.tokens.token(conn)]
    harness.sim_clock.advance(43_201)  # force a 401 and a renewal
    harness.client.get(conn, CUSTOMERS, "1")
    issued.append(harness.tokens.token(conn))
    harness.faults(error_rate=1.0, seed=3)
    failures: list[IntacctError] = []
    with pytest.raises(IntacctUnavailable) as raised:
        harness.client.get(conn, CUSTOMERS, "1")
    failures.append(raised.value)
    harness.faults()
    harness.admin("PATCH", f"companies/{COMPANY}", senderAuthorized=False)
    harness.tokens.forget(conn.connection_id)
    with pytest.raises(TokenRefused) as refused:
        harness.client.get(conn, CUSTOMERS, "1")
    failures.append(refused.value)
    logging.getLogger("test").warning("client failed: %r", refused.value)

    printed = log_stream.getvalue()
    assert "intacct_retry" in printed and "intacct_token_issued" in printed
    assert issued[0] != issued[1]
    for token in issued:
        assert token not in printed
        for failure in failures:
            assert token not in str(failure) and token not in repr(failure)
            assert token not in str(failure.__cause__ or "")
        # Registered with the redaction itself, not merely caught by its JWT pattern.
        assert token not in redactor().redact_text("x" + token)
    assert SECRET not in printed and all(SECRET not in str(f) for f in failures)


# --- pure helpers --------------------------------------------------------------------------------


def test_ia_error_is_read_under_ia_result_and_at_the_top_level():
    nested = {"ia::result": {"ia::error": {"code": "notFound"}}}
    top = {"ia::error": {"code": "invalidRequest"}, "ia::meta": {}}
    assert parse_ia_error(nested)["code"] == "notFound"
    assert parse_ia_error(top)["code"] == "invalidRequest"
    assert parse_ia_error({"ia::result": []}) == {} and parse_ia_error(None) == {}


def test_areas_come_from_the_rest_path():
    assert area_of("company-config/entity") == "company"
    assert area_of("cash-management/deposit") == "cash-management"
    assert [area_of(path) for path in AREA_PROBES.values()] == list(AREAS)


def test_retry_after_is_read_from_either_header_and_in_either_form():
    assert retry_after({"Retry-After": "3"}) == 3
    assert retry_after({"X-IA-API-Retry-After": "1.5"}) == 1.5
    assert retry_after({"Retry-After": "0", "x-ia-ratelimit-retry-after": "4"}) == 4
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=lambda: 1445412480) == 10
    assert retry_after({"Retry-After": "soon"}) is None and retry_after({}) is None


def test_full_jitter_stays_under_the_growing_ceiling():
    rng = random.Random(1)
    draws = [Backoff(0.5, 4.0).delay(n, rng) for n in (1, 2, 3, 4, 5, 6)]
    assert all(0 <= d <= c for d, c in zip(draws, (0.5, 1, 2, 4, 4, 4), strict=True))
    assert IntacctRetries().rate_limited_attempts == 5
