"""The budget schedule's decisions, from real watermarks and gaps in SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.gaps import RECEIVER_5XX, RECEIVER_DOWN, GapStore
from schemas.catalog import OBJECTS
from store.db import upgrade
from tests.databases import database_url, engine  # noqa: F401 - fixtures
from workers.connections.store import ConnectionRecord
from workers.reconcile.schedule import Schedule, ScheduleOptions
from workers.reconcile.store import WatermarkStore

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RESOURCES = sorted(o.resource for o in OBJECTS)


def connection(connection_id: str) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=connection_id,
        account_id=f"acct-{connection_id}",
        company_id=f"CO-{connection_id}",
        entity_id=None,
        user_id="ws",
        state="connected",
        webhook_secrets=(),
        created_at=T0 - timedelta(days=30),
        updated_at=T0,
    )


A, B = connection("a"), connection("b")


@pytest.fixture
def stores(engine):  # noqa: F811
    upgrade(engine)
    watermarks, gaps = WatermarkStore(engine), GapStore(engine)
    # Every resource of both swept at T0, key-set passes an hour earlier.
    for conn in (A, B):
        for resource in RESOURCES:
            assert watermarks.claim(conn.connection_id, resource, "h", 60) is not None
            watermarks.advance(
                conn.connection_id,
                resource,
                "h",
                modified_since=T0,
                swept_at=T0,
                keyset_checked_at=T0 - timedelta(hours=1),
            )
            watermarks.release(conn.connection_id, resource, "h")
    return watermarks, gaps


def due(schedule: Schedule, now: datetime) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for item in schedule.due([A, B], now):
        found.setdefault(item.reason, set()).add(f"{item.connection.connection_id}/{item.synced.resource}")
    return found


def every(*conns: ConnectionRecord) -> set[str]:
    return {f"{c.connection_id}/{r}" for c in conns for r in RESOURCES}


def test_without_a_gap_a_resource_waits_the_quiet_interval(stores):
    schedule = Schedule(ScheduleOptions(), *stores)
    assert due(schedule, T0 + timedelta(hours=3) - timedelta(seconds=1)) == {}
    assert due(schedule, T0 + timedelta(hours=3)) == {"quiet": every(A, B)}


def test_a_gap_after_the_last_sweep_makes_its_company_due_a_third_of_an_interval_after_it(stores):
    watermarks, gaps = stores
    schedule = Schedule(ScheduleOptions(), watermarks, gaps)
    gaps.record(RECEIVER_5XX, "a", T0 - timedelta(minutes=10), T0 - timedelta(seconds=1))  # covered
    assert due(schedule, T0 + timedelta(hours=1)) == {}
    gaps.record(RECEIVER_5XX, "a", T0 + timedelta(seconds=30), T0 + timedelta(seconds=40))
    assert due(schedule, T0 + timedelta(seconds=299)) == {}  # spacing: at most 3 gap sweeps an interval
    assert due(schedule, T0 + timedelta(seconds=300)) == {"gap": every(A)}
    gaps.record(RECEIVER_DOWN, None, T0 + timedelta(seconds=50), T0 + timedelta(seconds=200))
    assert due(schedule, T0 + timedelta(seconds=300)) == {"gap": every(A, B)}


def test_the_receivers_silence_is_a_gap_the_scheduler_records_itself(stores):
    watermarks, gaps = stores
    schedule = Schedule(ScheduleOptions(), watermarks, gaps)
    gaps.beat("web-1", T0 + timedelta(seconds=10))
    assert due(schedule, T0 + timedelta(seconds=80)) == {}  # 70 s: not a silence that loses webhooks
    assert gaps.since(T0) == []
    assert due(schedule, T0 + timedelta(seconds=300)) == {"gap": every(A, B)}
    (gap,) = gaps.since(T0)
    assert (gap.kind, gap.connection_id, gap.started_at) == (RECEIVER_DOWN, None, T0 + timedelta(seconds=10))


def test_key_set_passes_come_first_when_due_and_a_failed_sweep_waits_an_interval(stores):
    watermarks, gaps = stores
    schedule = Schedule(ScheduleOptions(), watermarks, gaps)
    now = T0 + timedelta(hours=23)
    found = schedule.due([A, B], now)
    assert {f.reason for f in found} == {"keyset"} and len(found) == 20
    schedule.settle("a", "customers", "failed", now)
    assert "a/customers" not in due(schedule, now + timedelta(seconds=899))["keyset"]
    assert "a/customers" in due(schedule, now + timedelta(seconds=900))["keyset"]


def test_the_fixed_schedule_sweeps_every_interval_whatever_the_gaps(stores):
    watermarks, gaps = stores
    schedule = Schedule(ScheduleOptions(mode="fixed"), watermarks, gaps)
    gaps.record(RECEIVER_5XX, "a", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert due(schedule, T0 + timedelta(seconds=899)) == {}
    assert due(schedule, T0 + timedelta(seconds=900)) == {"fixed": every(A, B)}


def test_settings_choose_the_schedule(settings):
    options = ScheduleOptions.from_settings(
        settings.with_overrides(reconcile_interval_seconds=600, reconcile_quiet_interval_seconds=7200)
    )
    assert (options.mode, options.interval, options.quiet_interval) == (
        "budget",
        timedelta(minutes=10),
        timedelta(hours=2),
    )
    assert options.gap_spacing == timedelta(seconds=200) and options.tick == 40.0
    with pytest.raises(ValueError, match="budget, fixed"):
        ScheduleOptions(mode="sometimes")
