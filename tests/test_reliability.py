"""The shared reliability machinery: backoff, Retry-After, leases (SQLite and PostgreSQL), errors."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import OperationalError

from reliability.backoff import Backoff, Pacer
from reliability.errors import FlexsyncError, LeaseLost, Permanent, Transient
from reliability.leases import Renewal, holder_is_dead, new_holder, node
from reliability.retry_after import hint, parse_retry_after
from store.leases import LeaseColumns
from store.models import IntacctSlot
from workers.runtime.failures import failure_of

# --- backoff -----------------------------------------------------------------------------------


class FakeTime:
    """A clock that only the recorded sleeps move."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_full_jitter_draws_under_a_doubling_ceiling_up_to_the_cap():
    policy = Backoff(0.5, 4.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    rng = random.Random(7)
    draws = [policy.delay(n, rng) for n in range(1, 200)]
    assert all(0.0 <= d <= policy.ceiling(n) for n, d in enumerate(draws, start=1))
    # Full jitter reaches down to zero: some late draws are far below the cap.
    assert min(draws[10:]) < 1.0


def test_equal_jitter_never_draws_below_half_the_ceiling():
    policy = Backoff(0.01, 0.1, floor=0.5)
    rng = random.Random(3)
    assert all(policy.ceiling(n) / 2 <= policy.delay(n, rng) <= policy.ceiling(n) for n in range(1, 50))


def test_a_pacer_sleeps_the_draw_on_its_injected_clock_and_never_past_the_deadline():
    fake = FakeTime()
    pacer = Pacer(Backoff(1.0, 8.0), sleep=fake.sleep, clock=fake.clock, rng=random.Random(5))
    expected = Backoff(1.0, 8.0).delay(4, random.Random(5))
    assert pacer.pause(4) == expected and fake.slept == [expected]
    deadline = fake.now + 0.25
    assert pacer.pause(4, deadline=deadline) <= 0.25 and fake.now <= deadline
    fake.now = deadline + 1
    assert pacer.pause(4, deadline=deadline) == 0.0


def test_a_backoff_refuses_nonsense():
    for base, cap, floor in ((0, 1, 0), (2, 1, 0), (1, 2, 1.5)):
        with pytest.raises(ValueError):
            Backoff(base, cap, floor=floor)


# --- Retry-After -----------------------------------------------------------------------------


def test_retry_after_reads_delta_seconds_and_http_dates():
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 1.5 ") == 1.5
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp) == 7.0
    # An HTTP date without a zone is GMT all the same.
    assert parse_retry_after("Tue, 24 Nov 2026 10:00:09 -0000", now=now.timestamp) == 9.0


def test_retry_after_zero_and_a_past_date_mean_no_wait_and_count_as_no_hint():
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert parse_retry_after("0") == 0.0
    earlier = format_datetime(now - timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp) == 0.0
    # A retrying client backs off on its own rather than come back at once after a 429.
    assert hint({"Retry-After": "0"}) is None
    assert hint({"Retry-After": earlier}, now=now.timestamp) is None
    assert hint({"Retry-After": "0", "X-IA-RateLimit-Retry-After": "4"}) == 4.0


def test_retry_after_garbage_reads_as_none():
    for value in (None, "", "   ", "soon", "nan", "inf", "-inf", "-3", "Wed, 99 Foo 2015"):
        assert parse_retry_after(value) is None, value
    assert hint({}) is None and hint({"Retry-After": "later"}) is None


def test_the_flexpoint_client_backs_off_on_a_zero_retry_after():
    from clients.flexpoint import FlexPointRateLimited, FlexPointRetries

    policy = FlexPointRetries()
    zero = FlexPointRateLimited("429", retry_after=0.0)
    assert policy.delay(zero, 1, random.Random(1)) == policy.backoff(1, random.Random(1))
    assert policy.delay(FlexPointRateLimited("429", retry_after=2.0), 1, random.Random(1)) == 2.0


# --- holders ---------------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_holder_ids_name_this_node_and_process_and_are_unique():
    first, second = new_holder(), new_holder()
    assert first != second
    assert first.startswith(f"{node()}:{os.getpid()}:")
    assert not holder_is_dead(first)


def test_only_a_holder_of_this_node_whose_process_is_gone_is_dead():
    pid = _dead_pid()
    assert holder_is_dead(f"{node()}:{pid}:1:nonce")
    host = node().split("/", 1)[0]
    # Same host, another PID namespace (another container): its pids are not ours to check.
    assert not holder_is_dead(f"{host}/pid:[1]:{pid}:1:nonce")
    assert not holder_is_dead(f"elsewhere/pid:[4026531836]:{pid}:1:nonce")
    assert not holder_is_dead(None) and not holder_is_dead("garbage") and not holder_is_dead("a:b:c:d")


def test_a_renewal_renews_every_third_and_reports_the_loss():
    fake = FakeTime()
    answers = [True, False]
    renewal = Renewal(lambda: answers.pop(0), 30.0, monotonic=fake.clock)
    renewal.tick()
    assert answers == [True, False]  # not due yet
    fake.now += 10
    renewal.tick()
    assert answers == [False] and not renewal.lost.is_set()
    fake.now += 10
    with pytest.raises(LeaseLost):
        renewal.tick()
    assert renewal.lost.is_set() and renewal.reason


def test_a_renewal_renews_between_the_items_of_a_stream_and_stops_it_when_told():
    fake = FakeTime()
    renewed: list[int] = []
    renewal = Renewal(lambda: renewed.append(1) or True, 30.0, monotonic=fake.clock)
    seen = []

    def stop_at_three() -> None:
        if len(seen) == 3:
            raise SweepStopped

    class SweepStopped(Exception):
        pass

    with pytest.raises(SweepStopped):
        for item in renewal.stream(range(10), before=stop_at_three):
            seen.append(item)
            fake.now += 6  # a renewal is due every 10 s
    assert seen == [0, 1, 2] and len(renewed) == 1


def test_a_renewal_in_the_background_rides_out_trouble_and_reports_the_loss():
    answers: list = ["trouble", True, False]

    def renew() -> bool:
        answer = answers.pop(0)
        if answer == "trouble":
            raise OperationalError("SELECT 1", {}, Exception("database away"))
        return answer

    renewal = Renewal(renew, 0.03, name="test")
    with renewal.in_background(trouble=OperationalError, thread_name="test-lease") as beat:
        assert beat is renewal
        assert beat.lost.wait(5.0)
    assert answers == [] and beat.reason == "the test lease is no longer ours"


# --- lease SQL, on SQLite and PostgreSQL -----------------------------------------------------------


@pytest.fixture
def slots(engine: Engine) -> tuple[Engine, LeaseColumns, FakeTime]:
    fake = FakeTime()
    table = IntacctSlot.__table__
    with engine.begin() as conn:
        conn.execute(insert(table), [{"company_id": "C", "slot": 0}, {"company_id": "C", "slot": 1}])
    return engine, LeaseColumns(table, clock=fake.clock), fake


def _holder_of(engine: Engine, slot: int) -> str | None:
    table = IntacctSlot.__table__
    with engine.connect() as conn:
        return conn.execute(select(table.c.holder).where(table.c.slot == slot)).scalar_one()


def test_claim_renew_release_on_one_row(slots):
    engine, leases, _fake = slots
    key = {"company_id": "C", "slot": 0}
    with engine.begin() as conn:
        assert leases.claim(conn, key, "a", 30)
        assert not leases.claim(conn, key, "b", 30)  # held
        assert leases.renew(conn, key, "a", 30) and not leases.renew(conn, key, "b", 30)
        assert not leases.release(conn, key, "b")  # not b's: nothing happens
    assert _holder_of(engine, 0) == "a"
    with engine.begin() as conn:
        assert leases.release(conn, key, "a")
        assert leases.claim(conn, key, "b", 30)
    assert _holder_of(engine, 0) == "b" and _holder_of(engine, 1) is None


def test_a_lease_that_ran_out_is_free_and_no_longer_live_for_its_holder(slots):
    engine, leases, fake = slots
    key = {"company_id": "C", "slot": 0}
    with engine.begin() as conn:
        assert leases.claim(conn, key, "a", 30)
    fake.now += 30
    with engine.begin() as conn:
        assert not leases.write(conn, key, "a", {"holder": "a"}, live=True)
        assert leases.claim(conn, key, "b", 30)
        assert not leases.renew(conn, key, "a", 30)
    assert _holder_of(engine, 0) == "b"


def test_a_dead_holder_of_this_node_is_taken_over_at_once(slots):
    engine, leases, fake = slots
    dead = f"{node()}:{_dead_pid()}:1:nonce"
    remote = f"elsewhere/pid:[1]:{_dead_pid()}:1:nonce"
    with engine.begin() as conn:
        assert leases.claim(conn, {"company_id": "C", "slot": 0}, dead, 3600)
        assert leases.claim(conn, {"company_id": "C", "slot": 1}, remote, 3600)
    with engine.connect() as conn:
        found = leases.dead_holders(conn, {"company_id": "C"})
    assert found == [dead]
    with engine.begin() as conn:
        free = leases.free(fake.now, found)
        assert leases.claim(conn, {"company_id": "C", "slot": 0}, "me", 30, free=free)
        assert not leases.claim(conn, {"company_id": "C", "slot": 1}, "me", 30, free=free)
    assert (_holder_of(engine, 0), _holder_of(engine, 1)) == ("me", remote)


def test_a_claim_takes_over_from_a_dead_holder_only_when_it_finds_one(slots):
    # The postings' claim: the holder is looked up only when the row is not free.
    engine, leases, fake = slots
    dead = f"{node()}:{_dead_pid()}:1:nonce"
    remote = f"elsewhere/pid:[1]:{_dead_pid()}:1:nonce"
    zero, one = {"company_id": "C", "slot": 0}, {"company_id": "C", "slot": 1}
    with engine.begin() as conn:
        assert leases.claim_or_take_over(conn, zero, dead, 3600)  # free: a plain claim
        assert leases.claim(conn, one, remote, 3600)
        assert leases.claim_or_take_over(conn, zero, "me", 30)  # its holder's process is gone
        assert not leases.claim_or_take_over(conn, one, "me", 30)  # another node's: maybe alive
        assert not leases.claim_or_take_over(conn, zero, "you", 30)  # "me" is alive
    assert (_holder_of(engine, 0), _holder_of(engine, 1)) == ("me", remote)
    fake.now += 30
    with engine.begin() as conn:
        assert leases.claim_or_take_over(conn, zero, "you", 30)  # ran out
    assert _holder_of(engine, 0) == "you"


def test_many_rows_claimed_and_released_at_once_by_condition(slots):
    # The dead letters' claim: rows named by a condition, the ones taken told by a column.
    engine, leases, fake = slots
    table = IntacctSlot.__table__
    both = table.c.slot.in_([0, 1])
    dead = f"{node()}:{_dead_pid()}:1:nonce"
    with engine.begin() as conn:
        assert leases.claim(conn, {"company_id": "C", "slot": 1}, dead, 3600)
        assert leases.claim_many(conn, both, "a", 30, returning=table.c.slot) == [0]
        free = leases.free_now(conn, both)
        assert sorted(leases.claim_many(conn, both, "b", 30, returning=table.c.slot, free=free)) == [1]
        assert leases.claim_many(conn, both, "c", 30, returning=table.c.slot) == []
        assert leases.release_many(conn, both, "a") == 1
        assert leases.release_many(conn, both, "a") == 0
        assert leases.write_many(conn, both, "b", {"leased_until": fake.now + 60}) == 1
    assert (_holder_of(engine, 0), _holder_of(engine, 1)) == (None, "b")


def test_a_claimant_may_count_itself_as_gone_and_live_counts_only_unexpired_leases(slots):
    # The watermarks' claim: claiming again what one holds renews it.
    engine, leases, fake = slots
    table = IntacctSlot.__table__
    key = {"company_id": "C", "slot": 0}
    with engine.begin() as conn:
        assert leases.claim(conn, key, "a", 30)
        assert not leases.claim(conn, key, "a", 30)
        assert leases.claim(conn, key, "a", 60, free=leases.free_now(conn, key, also=["a"]))
        assert conn.execute(select(table.c.slot).where(leases.live(fake.now + 59))).scalars().all() == [0]
        assert conn.execute(select(table.c.slot).where(leases.live(fake.now + 60))).scalars().all() == []


def test_a_lease_held_through_its_end_is_free_only_after_that_instant(engine):
    # The breakers' probe: at the instant probe_until it is still taken.
    fake = FakeTime()
    table = IntacctSlot.__table__
    leases = LeaseColumns(table, clock=fake.clock, held_through_end=True)
    key = {"company_id": "C", "slot": 0}
    with engine.begin() as conn:
        conn.execute(insert(table), [key])
        assert leases.claim(conn, key, "a", 30, now=50.0)  # the caller's clock, not ours
        assert not leases.claim(conn, key, "b", 30, now=80.0)
        assert conn.execute(select(table.c.slot).where(leases.live(80.0))).scalars().all() == [0]
        assert conn.execute(select(table.c.slot).where(leases.live(80.5))).scalars().all() == []
        assert leases.claim(conn, key, "b", 30, now=80.5, where=[table.c.company_id == "C"])
        assert not leases.claim(conn, key, "c", 30, now=200.0, where=[table.c.company_id == "D"])
        assert leases.unheld() == {"holder": None, "leased_until": None}
    assert _holder_of(engine, 0) == "b"


# --- errors ----------------------------------------------------------------------------------

PRODUCT_PACKAGES = (
    "config",
    "ingest",
    "workers",
    "schemas",
    "store",
    "broker",
    "cli",
    "observability",
    "clients",
    "processes",
    "reliability",
    "console",
)


def _product_modules() -> list[str]:
    """Every module of the product packages (not tests, bench or the sandbox)."""
    names = []
    for package in PRODUCT_PACKAGES:
        names.append(package)
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=f"{package}."):
            if ".migrations" not in info.name:
                names.append(info.name)
    return names


def test_every_exception_of_the_product_modules_is_under_the_root_with_a_reason():
    seen = 0
    for name in _product_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                seen += 1
                assert issubclass(cls, FlexsyncError), cls
                assert isinstance(cls.reason, str) and cls.reason, cls
                assert not (issubclass(cls, Transient) and issubclass(cls, Permanent)), cls
    assert seen >= 55  # the modules were walked, not an empty list


def test_flexpoint_reasons_have_one_spelling_everywhere():
    # The sync used flex_point_*, provisioning and writeback flexpoint_* (as the runbook does):
    # a replay --reason of one spelling missed the other's letters.
    reasons = set()
    for name in _product_modules():
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                reasons.add(cls.reason)
    assert {"flexpoint_unavailable", "flexpoint_rejected", "flexpoint_unauthorized"} <= reasons
    assert sorted(reason for reason in reasons if reason.startswith("flex_point")) == []


def test_failures_are_classified_by_type():
    from clients.flexpoint import FlexPointRejected, FlexPointUnavailable
    from clients.intacct import IntacctUnavailable, TokenRefused
    from schemas.mappings import MappingError

    cases = [
        (IntacctUnavailable("down"), "intacct_unavailable", True),
        (FlexPointUnavailable("down"), "flexpoint_unavailable", True),
        (FlexPointRejected("400"), "flexpoint_rejected", False),
        (MappingError("invoices", "1", {"x": ["bad"]}), "mapping_error", False),
        (TokenRefused("no", reason="invalid_credentials"), "invalid_credentials", False),
        (OperationalError("select 1", {}, Exception("gone")), "database_unavailable", True),
        (KeyError("surprise"), "worker_error", True),
    ]
    for exc, reason, transient in cases:
        failure = failure_of(exc)
        assert (failure.reason, failure.transient, failure.exception) == (reason, transient, exc)
