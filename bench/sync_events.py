"""The events bench/sync.py (and bench/outage.py) publish: which records they name, planned over
the seeded companies by resource mix and repeat share, and the envelope each one travels in."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import BenchError

# The events' resources: mostly invoices and customers, some payments (all AR, queue sync.ar).
MIX: tuple[tuple[str, float], ...] = (("invoices", 0.6), ("customers", 0.3), ("payments", 0.1))
# Where each resource (and its lines) lives in the simulator.
OBJECTS = {
    "customers": "accounts-receivable/customer",
    "invoices": "accounts-receivable/invoice",
    "payments": "accounts-receivable/payment",
}
LINE_OBJECTS = {
    "invoices": "accounts-receivable/invoice-line",
    "payments": "accounts-receivable/payment-detail",
}
# The hot records the repeats fall on: this share of the records that get a first event.
HOT_SHARE = 0.05


@dataclass(frozen=True)
class Target:
    """The record an event names."""

    company: int  # index into the run's companies
    resource: str
    key: str
    record_id: str


def split(total: int, shares: Sequence[tuple[str, float]]) -> dict[str, int]:
    """``total`` divided by ``shares`` in whole numbers (largest remainders get the rest)."""
    raw = {name: total * share for name, share in shares}
    counts = {name: int(value) for name, value in raw.items()}
    for name in sorted(raw, key=lambda n: raw[n] - counts[n], reverse=True)[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def plan_events(
    pools: list[dict[str, list[tuple[str, str]]]], total: int, repeat_share: float, rng: random.Random
) -> tuple[list[Target], int]:
    """``total`` events spread evenly over the companies and by MIX over resources.

    In each company a share ``1 - repeat_share`` of its events each names a different record;
    the rest are repeats drawn at random from a few hot records (HOT_SHARE of those records),
    as webhooks arrive for records people keep editing. Returns the shuffled events and how
    many hot records there are.
    """
    companies = len(pools)
    events: list[Target] = []
    hot_records = 0
    for index in range(companies):
        count = total // companies + (1 if index < total % companies else 0)
        repeats = round(count * repeat_share)
        fresh_by = split(count - repeats, MIX)
        repeats_by = split(repeats, MIX)
        for resource, _ in MIX:
            pool = pools[index][resource]
            if fresh_by[resource] > len(pool):
                raise BenchError(
                    f"company {index + 1} has {len(pool)} {resource}, {fresh_by[resource]} needed (seed more)"
                )
            chosen = rng.sample(pool, fresh_by[resource])
            events.extend(Target(index, resource, key, rid) for key, rid in chosen)
            if repeats_by[resource]:
                hot = chosen[: max(1, round(len(chosen) * HOT_SHARE))] or rng.sample(pool, 1)
                hot_records += len(hot)
                events.extend(Target(index, resource, *rng.choice(hot)) for _ in range(repeats_by[resource]))
    rng.shuffle(events)
    return events, hot_records


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def envelope(connection: Any, target: Target, moment: float) -> tuple[str, bytes, str]:
    """Routing key, body and message id, as the receiver publishes them (ingest.intake): no
    AMQP headers, the envelope says what the message is."""
    from ingest.messages import envelope_body
    from schemas.catalog import BY_RESOURCE

    synced = BY_RESOURCE[target.resource]
    event_id = str(uuid.uuid4())
    when = rfc3339(moment)
    payload = {
        "object": synced.intacct_object,
        "action": "set",
        "key": target.key,
        "id": target.record_id,
        "companyId": connection.company_id,
        "occurredAt": when,
    }
    body = envelope_body(
        synced,
        connection_id=connection.connection_id,
        company_id=connection.company_id,
        event_id=event_id,
        action="update",
        key=target.key,
        record_id=target.record_id,
        occurred_at=when,
        received_at=when,
        idempotency_key=event_id,
        auth_scheme="jwt",
        payload=payload,
    )
    return synced.routing_key("update"), body, event_id
