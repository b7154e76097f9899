"""The watermark: persisted, restarted from, untouched by a failed sweep; leases; the events sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from ingest.messages import EnvelopeSchema
from schemas.catalog import BY_RESOURCE
from tests.conftest import wait_until
from tests.reconcile.conftest import differences

pytestmark = pytest.mark.broker

CUSTOMERS = BY_RESOURCE["customers"].rest_path


def customers_only(reconciler, **options):
    (result,) = reconciler.sweep(resources=["customers"], **options)
    return result


def test_the_watermark_persists_and_a_restarted_reconciler_starts_from_it(
    company, worker, parts, live_receiver
):
    connection = live_receiver.connection
    company.webhooks(enabled=False)
    first_key = company.create(CUSTOMERS, {"id": "C-1", "name": "One", "status": "active"})
    # The watermark is the time a pass began; let it begin after the record's second.
    written = datetime.now(UTC).replace(microsecond=0)
    wait_until(lambda: datetime.now(UTC) >= written + timedelta(seconds=1), message="the next second")

    first = customers_only(parts.reconciler(overlap=timedelta(0)))
    assert (first.kind, first.checked, first.updates) == ("modified-since", 1, 1)
    stored = parts.watermarks.get(connection.connection_id, "customers")
    assert stored is not None and stored.modified_since == first.watermark
    wait_until(lambda: not differences(parts, connection), timeout=30, message="the customer in FlexPoint")

    # Another process (a fresh reconciler, another lease holder) starts from the stored watermark:
    # the record older than it is not read again.
    restarted = parts.reconciler("restarted-process", overlap=timedelta(0))
    second = customers_only(restarted)
    assert (second.checked, second.published) == (0, 0)
    assert second.watermark >= first.watermark

    later = company.create(CUSTOMERS, {"id": "C-2", "name": "Two", "status": "active"})
    third = customers_only(restarted)
    assert (third.checked, third.updates) == (1, 1)
    wait_until(lambda: not differences(parts, connection), timeout=30, message="the later customer")
    assert {first_key, later} <= {
        i["externalId"] for i in parts.flexpoint.iter_records(connection.account_id, "customers")
    }


def test_a_sweep_that_fails_midway_leaves_its_watermark_and_the_next_one_catches_up(
    company, worker, parts, live_receiver, flexpoint
):
    connection = live_receiver.connection
    reconciler = parts.reconciler()
    baseline = customers_only(reconciler)
    assert baseline.kind == "modified-since"
    company.webhooks(enabled=False)
    company.create(CUSTOMERS, {"id": "C-9", "name": "Nine", "status": "active"})

    faults = f"{flexpoint.url}/sandbox/faults"
    token = {"Authorization": f"Bearer {flexpoint.config.token}"}
    requests.put(
        faults, json={"serverErrorRate": 1.0, "seed": 3}, headers=token, timeout=10
    ).raise_for_status()
    failed = customers_only(reconciler)  # Intacct was read, then FlexPoint failed the comparison
    assert failed.kind == "failed" and "FlexPoint" in failed.error
    after_failure = parts.watermarks.get(connection.connection_id, "customers")
    assert after_failure.modified_since == baseline.watermark
    requests.put(faults, json={"serverErrorRate": 0.0}, headers=token, timeout=10).raise_for_status()

    # The failed sweep released its lease: the next one runs at once and brings the customer.
    recovered = customers_only(reconciler)
    assert (recovered.kind, recovered.updates) == ("modified-since", 1)
    assert recovered.watermark > baseline.watermark
    wait_until(lambda: not differences(parts, connection), timeout=30, message="the customer after recovery")


def test_a_resource_leased_by_another_process_is_skipped_until_its_lease_runs_out(
    company, parts, live_receiver, broker
):
    connection = live_receiver.connection
    company.webhooks(enabled=False)
    company.create(CUSTOMERS, {"id": "C-5", "name": "Five", "status": "active"})
    assert parts.watermarks.claim(connection.connection_id, "customers", "other-process", ttl=1.0)

    skipped = customers_only(parts.reconciler())
    assert (skipped.kind, skipped.published) == ("leased-elsewhere", 0)
    assert parts.watermarks.get(connection.connection_id, "customers").modified_since is None
    assert broker.depth("sync.ar") == 0

    # The other process died without releasing: once its lease ran out, this one sweeps.
    swept = wait_until(
        lambda: (r := customers_only(parts.reconciler())).kind != "leased-elsewhere" and r,
        timeout=10,
        interval=0.2,
        message="the lease to run out",
    )
    assert (swept.kind, swept.updates) == ("modified-since", 1)


def test_events_are_persistent_envelopes_the_sync_workers_accept(company, parts, live_receiver, broker):
    connection = live_receiver.connection
    company.webhooks(enabled=False)
    key = company.create(CUSTOMERS, {"id": "C-6", "name": "Six", "status": "active"})

    result = customers_only(parts.reconciler())
    assert result.updates == 1
    wait_until(lambda: broker.depth("sync.ar") == 1, message="the event in sync.ar")
    message = broker.get("sync.ar")
    assert message.delivery_info["routing_key"] == "ar.customers.update"
    assert message.properties["delivery_mode"] == 2
    envelope = EnvelopeSchema().load(json.loads(message.body))
    assert envelope["authScheme"] == "reconcile"
    assert (envelope["connectionId"], envelope["companyId"]) == (
        connection.connection_id,
        connection.company_id,
    )
    assert (envelope["resource"], envelope["object"], envelope["action"], envelope["key"]) == (
        "customers",
        "CUSTOMER",
        "update",
        key,
    )
    assert message.properties["message_id"] == envelope["eventId"]


def test_a_stop_mid_pass_ends_it_without_advancing_and_releases_the_lease(
    company, parts, live_receiver, broker
):
    connection = live_receiver.connection
    company.webhooks(enabled=False)
    for n in range(3):
        company.create(CUSTOMERS, {"id": f"C-{n}", "name": f"Customer {n}", "status": "active"})
    rows_seen = []

    def stop_after_two_rows() -> bool:
        rows_seen.append(1)
        return len(rows_seen) > 2  # SIGTERM arrives while Intacct's rows stream in

    interrupted = customers_only(parts.reconciler(should_stop=stop_after_two_rows))
    assert interrupted.kind == "interrupted" and interrupted.published == 0
    assert parts.watermarks.get(connection.connection_id, "customers").modified_since is None
    assert broker.depth("sync.ar") == 0
    # The lease was released: another process sweeps at once.
    assert customers_only(parts.reconciler("next-process")).updates == 3


def test_the_key_set_pass_runs_when_due_and_records_when_it_ran(company, parts, live_receiver, broker):
    connection = live_receiver.connection
    due_at_once = parts.reconciler(keyset_interval=timedelta(0))
    first = customers_only(due_at_once)
    assert first.kind == "key-set"
    checked_at = parts.watermarks.get(connection.connection_id, "customers").keyset_checked_at
    assert checked_at is not None
    # With the default day between passes, the next sweep is a modified-since one.
    assert customers_only(parts.reconciler()).kind == "modified-since"
    assert parts.watermarks.get(connection.connection_id, "customers").keyset_checked_at == checked_at
