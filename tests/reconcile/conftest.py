"""Reconciliation through the real simulators, RabbitMQ and sync workers.

A company in the Intacct simulator whose triggers post to a live receiver (so the starting state
arrives the ordinary way), sync workers consuming the work queues, and reconcilers built from
the real clients, publisher and store.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from broker.publisher import ConfirmingPublisher
from broker.topology import EVENTS_EXCHANGE
from clients.flexpoint import FlexPointClient
from clients.intacct.client import create_client
from ingest.gaps import GapStore
from observability.metrics import SyncMetrics
from processes.sync import build
from schemas.catalog import OBJECTS
from schemas.mappings import MappingError, line_source, map_record
from store.crypto import SecretBox
from store.db import create_engine_for
from store.slots import company_slots
from tests.conftest import COMPANY
from workers.connections.store import ConnectionStore
from workers.reconcile import EventSender, Reconciler, ResourceSweeper, SweepOptions
from workers.reconcile.meter import CallMeter
from workers.reconcile.schedule import Schedule, ScheduleOptions
from workers.reconcile.store import WatermarkStore


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

    Intacct is read as a worker reads it (query for keys, batch GET, lines) and mapped; a draft
    maps to "not imported" and must not be live in FlexPoint; a record FlexPoint holds live must
    still exist in Intacct.
    """
    problems: list[str] = []
    for synced in OBJECTS:
        resource, path = synced.resource, synced.rest_path
        keys = [str(row["key"]) for row in parts.intacct.query_all(connection, path, fields=["key"])]
        records, _missing = parts.intacct.get_many(connection, path, keys)
        source = line_source(resource)
        lines = (
            source.group(parts.intacct.query_all(connection, source.rest_path, fields=list(source.fields)))
            if source
            else {}
        )
        stored = {
            item["externalId"]: item
            for item in parts.flexpoint.iter_records(connection.account_id, resource, include_deleted=True)
        }
        for record in records:
            key = str(record["key"])
            try:
                item = map_record(resource, record, lines.get(key, ()), entity_id=connection.entity_id)
            except MappingError as exc:
                problems.append(f"{resource} {key}: unmappable {exc}")
                continue
            held = stored.pop(key, None)
            if item.get("deleted"):
                if held is not None and not held["deleted"]:
                    problems.append(f"{resource} {key}: a draft in Intacct, live in FlexPoint")
            elif held is None or held["deleted"]:
                problems.append(f"{resource} {key}: in Intacct, not live in FlexPoint")
            elif held["data"] != json.loads(json.dumps(item["data"], default=str)) or (
                held["sourceVersion"] != item["sourceVersion"]
            ):
                problems.append(
                    f"{resource} {key}: FlexPoint holds {held['sourceVersion']}, Intacct {item['sourceVersion']}"
                )
        problems += [
            f"{resource} {key}: gone from Intacct, live in FlexPoint"
            for key, held in stored.items()
            if not held["deleted"]
        ]
    return sorted(problems)
