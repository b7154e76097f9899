"""Dead letters parked the way the workers park them, and the operations tools wired to a vhost."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from broker.admin import start_publisher
from broker.publisher import ConfirmingPublisher
from broker.topology import DEAD_LETTER_QUEUE_NAME, work_queue_name
from schemas.catalog import BY_RESOURCE
from store.db import create_engine_for, upgrade
from tests.conftest import wait_until
from workers.deadletters.operations import DeadLetters
from workers.deadletters.store import DeadLetterStore, LetterQuery
from workers.runtime.failures import Failure, destination

pytestmark = pytest.mark.broker


def envelope(connection_id: str, resource: str = "invoices", key: str = "1", **extra: Any) -> dict[str, Any]:
    """An event envelope as the receiver publishes it (ingest/messages.py EnvelopeSchema)."""
    synced = BY_RESOURCE[resource]
    event_id = str(uuid.uuid4())
    return {
        "envelopeVersion": 1,
        "eventId": event_id,
        "connectionId": connection_id,
        "companyId": "ACME-CO",
        "object": synced.intacct_object,
        "module": synced.module,
        "resource": resource,
        "action": "update",
        "key": key,
        "id": None,
        "occurredAt": None,
        "receivedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "idempotencyKey": event_id,
        "authScheme": "hmac",
        "payload": {"object": synced.intacct_object, "key": key},
        **extra,
    }


@dataclass(frozen=True)
class Parked:
    message_id: str
    envelope: dict[str, Any]
    reason: str


class Parking:
    """Parks dead letters with the workers' own header convention (workers.runtime.failures.destination)."""

    def __init__(self, broker, store: DeadLetterStore) -> None:
        self.broker = broker
        self.store = store

    def park(
        self,
        connection_id: str,
        resource: str = "invoices",
        *,
        key: str = "1",
        reason: str = "mapping_error",
        transient: bool = False,
        failed_at: datetime | None = None,
    ) -> Parked:
        body = envelope(connection_id, resource, key)
        synced = BY_RESOURCE[resource]
        routing_key = synced.routing_key("update")
        queue = work_queue_name(synced.module)
        # A transient failure is parked only once it kept failing for the whole retry window.
        first = (failed_at or datetime.now(UTC)) - timedelta(days=8)
        headers = (
            {
                "x-flexsync-attempts": 40,
                "x-flexsync-first-failed-at": first.isoformat().replace("+00:00", "Z"),
            }
            if transient
            else None
        )
        target = destination(
            Failure(reason, ValueError(f"cannot map {resource} {key}"), transient=transient),
            queue=queue,
            routing_key=routing_key,
            headers=headers,
            now=failed_at,
        )
        assert target.dead
        self.broker.publish(
            "",
            DEAD_LETTER_QUEUE_NAME,
            json.dumps(body).encode(),
            headers=target.headers,
            message_id=body["eventId"],
        )
        return Parked(body["eventId"], body, target.headers["x-flexsync-reason"])

    def dead_count(self) -> int:
        """Letters still dead: stored in the table, or waiting in the queue to be stored."""
        return self.store.count(LetterQuery()) + self.broker.depth(DEAD_LETTER_QUEUE_NAME)

    def wait_parked(self, count: int) -> None:
        wait_until(lambda: self.dead_count() == count, message=f"{count} dead letters")

    def still_dead(self) -> list[str]:
        """The message ids of the letters still dead, oldest first: stored ones, then the queue's."""
        stored = [row.message_id for row in self.store.find(LetterQuery())]
        return stored + self.ids_in(DEAD_LETTER_QUEUE_NAME)

    def ids_in(self, queue: str) -> list[str]:
        """The message ids in a queue, in order (taking them out)."""
        return [m.properties["message_id"] for m in self.broker.take_all(queue)]


@pytest.fixture
def dead_store(settings):
    """The ``dead_letters`` table of the settings' database (the one the commands use)."""
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    yield DeadLetterStore(engine)
    engine.dispose()


@pytest.fixture
def parking(broker, dead_store) -> Parking:
    return Parking(broker, dead_store)


@pytest.fixture
def publisher(amqp_url: str, declared_topology):
    publisher: ConfirmingPublisher = start_publisher(amqp_url)
    yield publisher
    publisher.close()


@pytest.fixture
def sweeper(amqp_url: str, publisher, dead_store) -> DeadLetters:
    return DeadLetters(dead_store, amqp_url, publisher)


@pytest.fixture
def hours_ago():
    now = datetime.now(UTC)
    return lambda hours: now - timedelta(hours=hours)


@pytest.fixture(autouse=True)
def captured_logs():
    """Log events kept apart from the commands' stdout (the CLI logs to stderr when configured)."""
    with structlog.testing.capture_logs() as logs:
        yield logs
