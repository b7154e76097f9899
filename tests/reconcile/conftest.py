"""Reconciliation through the real simulators, RabbitMQ and sync workers.

A company in the Intacct simulator whose triggers post to a live receiver (so the starting state
arrives the ordinary way), sync workers consuming the work queues, and reconcilers built from
the real clients, publisher and store.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from broker.publisher import ConfirmingPublisher
from broker.topology import EVENTS_EXCHANGE, queue_kind
from clients.flexpoint import FlexPointClient
from clients.intacct.client import create_client
from clients.intacct.slots import company_slots
from ingest.gaps import GapStore
from observability.metrics import SyncMetrics
from processes.sync import build
from schemas.catalog import OBJECTS
from store.crypto import SecretBox
from store.db import create_engine_for
from tests.conftest import COMPANY
from tests.workers import expected_flexpoint
from workers.connections.store import ConnectionStore
from workers.reconcile import EventSender, Reconciler, ResourceSweeper, SweepOptions
from workers.reconcile.meter import CallMeter
from workers.reconcile.schedule import Schedule, ScheduleOptions
from workers.reconcile.store import WatermarkStore

INTACCT_API_PATH = "/ia/api/v1"  # the simulator serves its REST API under this, its admin API at /sandbox


@pytest.fixture
def sandbox_settings(live_receiver, intacct, flexpoint):
    """The receiver's settings (same database and vhost), pointed at both simulators."""
    return live_receiver.parts.settings.with_overrides(
        intacct_api_url=intacct.api_url,
        intacct_client_secret=intacct.config.client_secret,
        flexpoint_api_url=flexpoint.url,
        flexpoint_api_token=flexpoint.config.token,
    )


class Company:
    """The simulated company's admin API: records and the webhook switch."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.objects = f"{admin}/companies/{COMPANY}/objects"

    def create(self, rest_path: str, body: dict[str, Any]) -> str:
        response = requests.post(f"{self.objects}/{rest_path}", json=body, timeout=10)
        response.raise_for_status()
        return str(response.json()["key"])

    def update(self, rest_path: str, key: str, body: dict[str, Any]) -> None:
        requests.patch(f"{self.objects}/{rest_path}/{key}", json=body, timeout=10).raise_for_status()

    def delete(self, rest_path: str, key: str) -> None:
        requests.delete(f"{self.objects}/{rest_path}/{key}", timeout=10).raise_for_status()

    def webhooks(self, *, enabled: bool) -> None:
        requests.patch(
            f"{self.admin}/companies/{COMPANY}/webhooks", json={"enabled": enabled}, timeout=10
        ).raise_for_status()

    def deliveries(self) -> int:
        answer = requests.get(f"{self.admin}/webhooks/deliveries", params={"limit": 10_000}, timeout=10)
        return len(answer.json()["deliveries"])


@pytest.fixture
def company(intacct, live_receiver) -> Company:
    url = f"{live_receiver.base_url}/webhooks/intacct/{live_receiver.connection.connection_id}"
    admin = f"{intacct.base_url}/sandbox"
    requests.post(
        f"{admin}/companies", json={"companyId": COMPANY, "webhooks": {"url": url}}, timeout=10
    ).raise_for_status()
    return Company(admin)


@pytest.fixture
def worker(sandbox_settings, broker):
    """Sync workers on the work queues, as in production (stopped cleanly afterwards)."""
    sync = build(sandbox_settings, SyncMetrics(), window=0.05)
    consumer = sync.consumer
    thread = threading.Thread(target=consumer.run, kwargs={"safety_interval": 0.05}, daemon=True)
    thread.start()
    yield consumer
    consumer.stop()
    thread.join(30)
    sync.close()
    assert not thread.is_alive()


class Parts:
    """Real clients, store and publisher; :meth:`reconciler` builds a reconcile process of them."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.engine = create_engine_for(settings.database_url)
        self.store = ConnectionStore(self.engine, SecretBox.for_settings(settings))
        self.intacct = create_client(settings, company_slots(settings, self.engine))
        # One attempt: a test that injects FlexPoint faults need not wait through the backoff.
        self.flexpoint = FlexPointClient(
            settings.flexpoint_api_url, settings.flexpoint_api_token, max_attempts=1
        )
        self.publisher = ConfirmingPublisher(settings.amqp_url, EVENTS_EXCHANGE.name)
        self.publisher.start(wait=10)
        self.watermarks = WatermarkStore(self.engine)
        self.gaps = GapStore(self.engine)

    def reconciler(
        self,
        holder: str = "test-reconciler",
        *,
        should_stop: Any = lambda: False,
        schedule: ScheduleOptions | None = None,
        clock: Any = None,
        **options: Any,
    ) -> Reconciler:
        """A reconciler of the real parts; with ``schedule``, one that decides what is due
        (``clock`` then times the sweeps too, as the process's clock would)."""
        sweeper = ResourceSweeper(
            intacct=self.intacct,
            flexpoint=self.flexpoint,
            watermarks=self.watermarks,
            sender=EventSender(self.publisher),
            holder=holder,
            options=SweepOptions(**options),
            should_stop=should_stop,
            meter=CallMeter(),
            **({"clock": clock} if clock is not None else {}),
        )
        planned = None if schedule is None else Schedule(schedule, self.watermarks, self.gaps)
        return Reconciler(self.store, sweeper, schedule=planned)

    def close(self) -> None:
        self.publisher.close()
        self.flexpoint.close()
        self.intacct.close()
        self.engine.dispose()


@pytest.fixture
def parts(sandbox_settings, broker) -> Iterator[Parts]:
    built = Parts(sandbox_settings)
    try:
        yield built
    finally:
        with contextlib.suppress(Exception):
            built.close()


def differences(parts: Parts, connection) -> list[str]:
    """Every way FlexPoint differs from Intacct for the connection, over all resources.

    Both simulators are read straight through their own HTTP APIs (Intacct's admin records,
    FlexPoint's list with tombstones), never through the service's clients, and what FlexPoint
    should hold comes from the contract's table (:mod:`tests.workers.expected_flexpoint`), never
    from the mappings. A draft is "not imported" and must not be live in FlexPoint; a record
    FlexPoint holds live must still exist in Intacct. One line per record that differs.
    """
    unknown = {synced.resource for synced in OBJECTS} - set(expected_flexpoint.OBJECTS)
    assert not unknown, f"the oracle has no expectation for {sorted(unknown)}"
    settings = parts.settings
    admin = settings.intacct_api_url.removesuffix(INTACCT_API_PATH) + "/sandbox"
    problems: list[str] = []
    for resource, path in expected_flexpoint.OBJECTS.items():
        source = expected_flexpoint.LINES.get(resource)
        lines = expected_flexpoint.lines_by_parent(
            resource, _intacct_records(admin, source.object) if source is not None else ()
        )
        stored = _flexpoint_records(
            settings.flexpoint_api_url, settings.flexpoint_api_token, connection.account_id, resource
        )
        for record in _intacct_records(admin, path):
            key = str(record["key"])
            try:
                item = expected_flexpoint.expect(resource, record, lines.get(key, ()))
            except expected_flexpoint.NoExpectation as exc:
                problems.append(f"{resource} {key}: the contract gives FlexPoint nothing for it: {exc}")
                continue
            held = stored.pop(key, None)
            if item.deleted:
                if held is not None and not held["deleted"]:
                    problems.append(f"{resource} {key}: a draft in Intacct, live in FlexPoint")
            elif held is None or held["deleted"]:
                problems.append(f"{resource} {key}: in Intacct, not live in FlexPoint")
            else:
                got = expected_flexpoint.held(resource, held["data"] or {})
                fields = sorted(name for name in item.data if item.data[name] != got.get(name))
                if fields or expected_flexpoint.version(held["sourceVersion"]) != item.version:
                    problems.append(
                        f"{resource} {key}: FlexPoint holds {held['sourceVersion']}, Intacct "
                        f"{item.version:%Y-%m-%dT%H:%M:%SZ}; fields differing {fields}"
                    )
        problems += [
            f"{resource} {key}: gone from Intacct, live in FlexPoint"
            for key, held in stored.items()
            if not held["deleted"]
        ]
    return sorted(problems)


def _intacct_records(admin: str, path: str) -> Iterator[dict[str, Any]]:
    """Every record of one object of the company, as the Intacct simulator's admin API lists it."""
    start = 1
    while True:
        response = requests.get(
            f"{admin}/companies/{COMPANY}/objects/{path}", params={"start": start, "size": 1000}, timeout=10
        )
        response.raise_for_status()
        page = response.json()
        yield from page["records"]
        start += len(page["records"])
        if not page["records"] or start > page["totalCount"]:
            return


def _flexpoint_records(url: str, token: str, account_id: str, resource: str) -> dict[str, dict[str, Any]]:
    """Every record FlexPoint holds for the account and resource, tombstones included."""
    records: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"includeDeleted": "true", "limit": 1000}
    while True:
        response = requests.get(
            f"{url}/v1/accounts/{account_id}/accounting/{resource}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if response.status_code == 404:  # an account FlexPoint does not know yet holds nothing
            return records
        response.raise_for_status()
        page = response.json()
        records.update((item["externalId"], item) for item in page["items"])
        if not page.get("nextCursor"):
            return records
        params["cursor"] = page["nextCursor"]


def queues_empty(broker, topology, worker=None) -> bool:
    """No message waits in any queue (the sync workers' rechecks wait in a delay queue) and, with
    ``worker``, none is in its hands either: a queue's depth counts only messages not delivered,
    so a recheck being processed right now would otherwise pass unseen."""
    if worker is not None and (worker.in_hand() or worker.draining_state().get("events_not_started")):
        return False
    return all(broker.depth(queue.name) == 0 for queue in topology.queues if queue_kind(queue) != "stream")
