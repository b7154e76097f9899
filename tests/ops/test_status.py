"""flexsync status: queues, dead letters by reason and resource, connections with last event and lag."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from cli.ops import status
from ingest.ledger import DeliveryLedger
from processes.parts import ProcessParts
from processes.status import connection_status
from store.breakers import BreakerStore
from store.db import create_engine_for, upgrade
from store.models import ReconcileWatermark
from tests.conftest import _local_node, _rabbitmqctl
from workers.backfill.store import BackfillStore, Checkpoint
from workers.deadletters.store import DeadLetterStore, LetterQuery
from workers.deadletters.storer import StoringConsumer

pytestmark = pytest.mark.broker


def test_status_shows_queues_dead_letters_and_connections(settings, parking, broker):
    connection = str(uuid.uuid4())
    for resource, reason in [
        ("invoices", "mapping_error"),
        ("invoices", "mapping_error"),
        ("deposits", "bad_key"),
    ]:
        parking.park(connection, resource, reason=reason)
    parking.wait_parked(3)
    broker.publish("", "sync.gl", b"{}")
    store = ProcessParts(settings, process="test").connections
    record = store.save(
        connection_id=connection,
        account_id="acct-s",
        company_id="ACME-CO",
        entity_id=None,
        user_id="ws_flexpoint",
        state="connected",
    )
    engine = create_engine_for(settings.database_url)
    received = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    DeliveryLedger(engine, clock=lambda: received).record(connection, "key-1", "event-1")
    with engine.begin() as conn:
        conn.execute(
            insert(ReconcileWatermark),
            [
                {
                    "connection_id": connection,
                    "resource": "invoices",
                    "modified_since": datetime.now(UTC) - timedelta(hours=2),
                },
                {
                    "connection_id": connection,
                    "resource": "customers",
                    "modified_since": datetime.now(UTC) - timedelta(minutes=5),
                },
            ],
        )
    backfills = BackfillStore(engine)
    backfills.request(connection)
    holder = "test-holder"
    backfills.claim(connection, holder, 30.0)
    backfills.save(connection, holder, Checkpoint("customers", after_key="1200", imported=1200), 30.0)

    result = CliRunner().invoke(status, ["--interval", "0.2"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"sync\.gl\s+quorum\s+depth\s+1\s+consumers\s+0\s+\+0\.0/s", out), out
    assert re.search(r"dead-letter\s+quorum\s+depth\s+3\s", out), out
    assert "intacct.events.archive" in out
    # None stored yet: the broker's count, no reasons (nothing was read to learn them).
    assert "dead letters: 3 (3 not yet stored; nothing stores them now" in out
    assert "by reason" not in out
    assert broker.depth("dead-letter") == 3

    # Once the storing consumer took them, their reasons and resources show.
    StoringConsumer.for_url(settings.amqp_url, DeadLetterStore(engine), until_idle=0.3).drain()
    result = CliRunner().invoke(status, ["--interval", "0.2"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"dead-letter\s+quorum\s+depth\s+0\s", out), out
    assert "dead letters: 3\n" in out
    assert "by reason: mapping_error 2, bad_key 1" in out
    assert "by resource: invoices 2, deposits 1" in out
    line = next(line for line in out.splitlines() if record.connection_id in line)
    assert "connected" in line and "last event 2026-01-02T03:04:05Z" in line
    assert re.search(r"lag 2\.0h", line), line
    assert "backfill running (1,200 records)" in line
    assert broker.depth("dead-letter") == 0


def _connected(settings, company_id: str):
    """A connected connection saved in the settings' database, and that database's engine."""
    record = ProcessParts(settings, process="test").connections.save(
        connection_id=str(uuid.uuid4()),
        account_id=f"acct-{company_id.lower()}",
        company_id=company_id,
        entity_id=None,
        user_id="ws_flexpoint",
        state="connected",
    )
    return record, create_engine_for(settings.database_url)


def test_a_resource_never_swept_holds_the_lag_at_the_connections_creation(settings):
    record, engine = _connected(settings, "ACME-U")
    with engine.begin() as conn:
        conn.execute(
            insert(ReconcileWatermark),
            [
                {"connection_id": record.connection_id, "resource": "invoices", "modified_since": None},
                {
                    "connection_id": record.connection_id,
                    "resource": "customers",
                    "modified_since": datetime.now(UTC) + timedelta(minutes=5),
                },
            ],
        )
    [row] = [r for r in connection_status(engine) if r.connection_id == record.connection_id]
    assert row.reconciled_to == record.created_at


def test_a_failed_import_waiting_to_resume_says_when(settings):
    record, engine = _connected(settings, "ACME-R")
    runs = BackfillStore(engine, clock=lambda: 1000.0)
    runs.request(record.connection_id)
    runs.claim(record.connection_id, "h", 30)
    runs.save(record.connection_id, "h", Checkpoint("customers", "40", 40), 30)
    runs.release(record.connection_id, "h", "failed", error="Intacct down", failed=True, resume_in=300)
    [row] = [
        r for r in connection_status(engine, clock=lambda: 1000.0) if r.connection_id == record.connection_id
    ]
    assert row.backfill == "failed (40 records), resumes in 5 min"


def test_status_counts_stored_letters_and_those_still_in_the_queue_once_each(
    settings, parking, broker, dead_store
):
    connection = str(uuid.uuid4())
    for reason in ("mapping_error", "bad_key"):
        parking.park(connection, "invoices", reason=reason)
    parking.wait_parked(2)
    StoringConsumer.for_url(settings.amqp_url, dead_store, until_idle=0.3).drain()
    parking.park(connection, "deposits", reason="bad_key")
    parking.wait_parked(3)

    result = CliRunner().invoke(status, ["--interval", "0"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    assert "dead letters: 3 (1 not yet stored; nothing stores them now" in result.stdout
    # Reasons and resources are those of the stored letters: the waiting one is not read.
    assert "by reason: bad_key 1, mapping_error 1" in result.stdout
    assert "by resource: invoices 2\n" in result.stdout
    assert broker.depth("dead-letter") == 1 and dead_store.count(LetterQuery()) == 2


@pytest.fixture
def read_nothing_user(amqp_url):
    """A broker user of the test's vhost that may neither read (consume) nor write (publish) any
    queue or exchange: it can only ask the broker for counters (passive declares)."""
    if not _local_node(amqp_url):
        pytest.skip("needs rabbitmqctl on the broker's host")
    parts = urlsplit(amqp_url)
    user, password = f"status-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    vhost = unquote(parts.path.lstrip("/")) or "/"
    _rabbitmqctl("add_user", user, password)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, "^$", "^$", "^$")
        netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5672}"
        yield urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    finally:
        _rabbitmqctl("delete_user", user)


def test_status_neither_consumes_nor_republishes_dead_letters(
    settings, parking, broker, dead_store, read_nothing_user
):
    connection = str(uuid.uuid4())
    parked = [parking.park(connection, "invoices", key=str(n)).message_id for n in range(4)]
    parking.wait_parked(4)
    StoringConsumer.for_url(settings.amqp_url, dead_store, until_idle=0.3).drain()
    late = parking.park(connection, "deposits", reason="bad_key").message_id
    parking.wait_parked(5)

    # A user without read or write permission: any consume or publish would fail the command.
    watcher = settings.with_overrides(amqp_url=read_nothing_user)
    result = CliRunner().invoke(status, ["--interval", "0"], obj={"settings": watcher})
    assert result.exit_code == 0, result.output
    assert "dead letters: 5 (1 not yet stored" in result.stdout
    assert "by reason: mapping_error 4" in result.stdout
    # The waiting letter is the very message parked: never delivered, never copied.
    [message] = broker.take_all("dead-letter")
    assert message.properties["message_id"] == late
    assert not message.delivery_info.get("redelivered")
    assert message.properties.get("application_headers", {}).get("x-delivery-count", 0) == 0
    assert sorted(row.message_id for row in dead_store.find(LetterQuery())) == sorted(parked)


def test_status_shows_each_open_breaker_and_when_it_is_probed_next(settings, broker):
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    try:
        store = BreakerStore(engine)
        now = time.time()
        for _ in range(5):
            store.record_failure(
                "intacct:ACME-CO",
                "intacct_unavailable",
                now,
                probe=False,
                threshold=5,
                next_probe=lambda n: 40.0,
            )
        store.record_failure(
            "flexpoint", "flex_point_unavailable", now, probe=False, threshold=5, next_probe=lambda n: 5.0
        )
    finally:
        engine.dispose()
    result = CliRunner().invoke(status, ["--interval", "0"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    assert "breakers: 1 open of 2 known" in result.output
    [line] = [line for line in result.output.splitlines() if "intacct:ACME-CO" in line]
    assert "open for" in line and "next probe in 40 s" in line and "intacct_unavailable" in line
    assert "flexpoint" in result.output and "1 failures in a row" in result.output
