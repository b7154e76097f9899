"""QUALITY R6: a peer answers 5xx to everything for longer than the whole retry ladder.

Real ``flexsync sync`` processes on a compressed schedule (delays 1, 2, 30 s; breaker after 3
failures, probes 1-2 s apart), so the outage outlasts the ladder in seconds and events reach the
longest delay. FlexPoint must equal Intacct within ``HEAL_SECONDS`` of the peer's return (half of
the longest delay: what waits in the delay queues resumes when the breaker closes, it does not
sit out its delay). ``FLEXSYNC_R6_LONG=1`` runs the outage as QUALITY states it instead: 8
minutes at the production delays and breaker settings, healed within 60 s (about 20 minutes in
all; the default run stays short). While records change:

* FlexPoint down: nothing is dead-lettered, FlexPoint reaches Intacct's state by itself after
  recovery, and the calls made to FlexPoint while it was down are the breaker's probes, counted
  and bounded, not one per event or group.
* One Intacct company down: the other company keeps syncing meanwhile (its changes arrive while
  the outage lasts), the down one catches up by itself after recovery, nothing dead-lettered.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from broker.topology import DEAD_LETTER_QUEUE_NAME, build_topology, declare_topology, delay_queue_name
from config import Settings
from schemas.catalog import BY_RESOURCE
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import BrokerProbe, own_vhost, wait_until
from tests.workers.chaos_support import (
    CompanyRecords,
    EventPublisher,
    IntacctChanges,
    Sandbox,
    Workers,
    compare,
    envelope,
    queue_totals,
    worker_environment,
)
from workers.connections.store import ConnectionStore

LONG = os.environ.get("FLEXSYNC_R6_LONG", "") not in ("", "0")

pytestmark = [pytest.mark.broker, pytest.mark.timeout(1500 if LONG else 300)]

if LONG:  # the production settings (config.settings): the breaker's own, no override
    DELAYS: tuple[int, ...] = (2, 10, 60, 300)
    THRESHOLD: int | None = None
    PROBES: tuple[int, ...] | None = None
    HEAL_SECONDS = 60.0
else:
    DELAYS = (1, 2, 30)
    THRESHOLD = 3
    PROBES = (1, 2)
    HEAL_SECONDS = 15.0
OUTAGE_SECONDS = float(os.environ.get("FLEXSYNC_R6_OUTAGE_SECONDS", "480" if LONG else "20"))
ARCHIVE = "1h"  # also the retry window: an event failing for an hour would be dead-lettered
FLEXPOINT_ATTEMPTS = 4  # FlexPointClient's own quick retries of one call (its default)


@pytest.fixture
def amqp_url(broker_base_url: str) -> Iterator[str]:
    """A vhost of this test's own: its topology has the compressed delay queues."""
    with own_vhost(broker_base_url, "flexsync-r6") as url:
        yield url


@dataclass
class World:
    sandbox: Sandbox
    workers: Workers
    publisher: EventPublisher
    changes: dict[str, IntacctChanges]  # one per company, so a step changes that company only
    companies: list[CompanyRecords]
    connections: dict[str, Any]
    amqp_url: str
    settings: Settings
    tmp_path: Path

    def publish_all(self, company: CompanyRecords) -> int:
        count = 0
        for _, (resource, key, action, record_id) in self.changes[company.company_id].every_record():
            self._publish(company, resource, key, action, record_id)
            count += 1
        return count

    def change(self, company: CompanyRecords, steps: int) -> int:
        """``steps`` changes of ``company``'s records in Intacct, each with its events published."""
        for _ in range(steps):
            _, events = self.changes[company.company_id].step()
            for resource, key, action, record_id in events:
                self._publish(company, resource, key, action, record_id)
        return steps

    def _publish(self, company: CompanyRecords, resource: str, key: str, action: str, record_id: Any) -> None:
        routing_key, body, event_id = envelope(
            connection_id=company.connection_id,
            company_id=company.company_id,
            synced=BY_RESOURCE[resource],
            action=action,
            key=key,
            record_id=record_id,
        )
        self.publisher.publish(routing_key, body, message_id=event_id)

    def drained(self) -> bool:
        """Nothing ready in any work or delay queue (read at once), then nothing unacknowledged
        either (rabbitmqctl's counts of quorum queues lag by a few seconds)."""
        names = [q.name for q in build_topology(ARCHIVE, DELAYS).work_queues]
        names += [delay_queue_name(q, d) for q in names for d in DELAYS]
        probe = BrokerProbe(self.amqp_url)
        try:
            if any(probe.depth(name) for name in names):
                return False
        finally:
            probe.close()
        totals = queue_totals(self.amqp_url)
        return all(totals.get(name, {"messages": 0})["messages"] == 0 for name in names)

    def wait_equal(self, *companies: CompanyRecords, after: str, timeout: float = 120) -> None:
        """Until every queue is empty and FlexPoint equals Intacct for ``companies``, by themselves."""
        problems: list[str] = []

        def equal() -> bool:
            try:
                problems[:] = [p for company in companies for p in self.differences(company)]
            except AssertionError as exc:  # FlexPoint has no record of the account yet
                problems[:] = [str(exc)]
            return not problems and self.drained()

        try:
            wait_until(
                equal, timeout=timeout, interval=1.0, message=f"FlexPoint to equal Intacct after {after}"
            )
        except pytest.fail.Exception:
            pytest.fail(
                f"{len(problems)} differences {timeout:g} s after {after}, e.g. {problems[:5]}\n"
                f"queues {self.depths()}\n{self.workers.log_tails(20)}"
            )

    def depths(self) -> dict[str, int]:
        probe = BrokerProbe(self.amqp_url)
        try:
            names = [
                q.name for q in build_topology(ARCHIVE, DELAYS).queues if q.name != "intacct.events.archive"
            ]
            return {name: depth for name in names if (depth := probe.depth(name))}
        finally:
            probe.close()

    def dead_lettered(self) -> int:
        probe = BrokerProbe(self.amqp_url)
        try:
            return probe.depth(DEAD_LETTER_QUEUE_NAME)
        finally:
            probe.close()

    def differences(self, company: CompanyRecords) -> list[str]:
        problems, _ = compare(self.sandbox, company)
        return problems


@pytest.fixture
def world(settings, amqp_url, tmp_path) -> Iterator[World]:
    settings = settings.with_overrides(amqp_url=amqp_url)
    with Connection(amqp_url) as connection:
        declare_topology(connection, build_topology(ARCHIVE, DELAYS))
    sandbox = Sandbox(tmp_path / "sandbox", tmp_path / "sandbox.log")
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "logs").mkdir()
    workers = Workers(
        worker_environment(
            sandbox,
            amqp_url=amqp_url,
            database_url=settings.database_url,
            secret_key=",".join(settings.flexsync_secret_key),
            FLEXSYNC_RETRY_DELAYS=",".join(map(str, DELAYS)),
            ARCHIVE_MAX_AGE=ARCHIVE,
            **(
                {}
                if THRESHOLD is None or PROBES is None
                else {
                    "FLEXSYNC_BREAKER_THRESHOLD": str(THRESHOLD),
                    "FLEXSYNC_BREAKER_PROBE_SECONDS": ",".join(map(str, PROBES)),
                }
            ),
        ),
        tmp_path / "logs",
    )
    publisher = EventPublisher(amqp_url)
    engine = create_engine_for(settings.database_url)
    try:
        sandbox.start()
        upgrade(engine)
        store = ConnectionStore(engine, SecretBox.for_settings(settings))
        changes: dict[str, IntacctChanges] = {}
        companies = []
        connections = {}
        for n, company_id in enumerate(("R6-A", "R6-B"), start=1):
            sandbox.intacct(
                "POST",
                f"companies/{company_id}/seed",
                {"customers": 8, "invoices": 30, "checkingAccounts": 1, "seed": n},
            )
            record = store.save(
                connection_id=str(uuid.uuid4()),
                account_id=f"acct-{uuid.uuid4().hex[:12]}",
                company_id=company_id,
                entity_id=None,
                user_id="ws_flexpoint",
                state="connected",
            )
            connections[company_id] = record
            company = CompanyRecords(company_id, record.connection_id, record.account_id)
            changes[company_id] = IntacctChanges(sandbox, random.Random(n))
            changes[company_id].load(company)
            companies.append(company)
        workers.keep(1)
        yield World(
            sandbox, workers, publisher, changes, companies, connections, amqp_url, settings, tmp_path
        )
    finally:
        publisher.close()
        workers.stop_all()
        sandbox.stop()
        engine.dispose()


def _flexpoint_requests(world: World) -> int:
    return world.sandbox.flexpoint("GET", "sandbox/faults")["requests"]


def test_flexpoint_down_longer_than_the_ladder_then_back_loses_nothing_and_is_only_probed(world):
    a, b = world.companies
    published = sum(world.publish_all(company) for company in (a, b))
    assert published > 100
    world.wait_equal(a, b, after="the first events")

    world.sandbox.flexpoint("PUT", "sandbox/faults", {"serverErrorRate": 1.0})
    began = time.monotonic()
    before = _flexpoint_requests(world)
    events = 0
    # Changes keep coming for the whole outage, a few a second, on both companies.
    while time.monotonic() - began < OUTAGE_SECONDS:
        events += world.change(a, 2) + world.change(b, 2)
        time.sleep(0.5)  # pacing of the changes, not a wait for anything
    during = _flexpoint_requests(world) - before
    world.sandbox.flexpoint("PUT", "sandbox/faults", {"serverErrorRate": 0.0})
    down_for = time.monotonic() - began

    world.wait_equal(a, b, after="FlexPoint's recovery", timeout=HEAL_SECONDS)
    assert world.dead_lettered() == 0, "a FlexPoint outage is transient: nothing may be dead-lettered"
    # The breaker opens after THRESHOLD failed calls (each with its quick retries); then only
    # probes, at most one per shortest probe spacing, each with its quick retries.
    threshold = THRESHOLD if THRESHOLD is not None else world.settings.flexsync_breaker_threshold
    probes = PROBES if PROBES is not None else world.settings.flexsync_breaker_probe_seconds
    # Jitter spaces probes at least half the shortest spacing apart.
    bound = (threshold + 1 + down_for / (probes[0] * (0.5 if LONG else 1))) * FLEXPOINT_ATTEMPTS
    assert during <= bound, (
        f"{during} FlexPoint calls in {down_for:.0f} s of outage; probes allow {bound:.0f}"
    )
    assert during < events, f"{during} calls for {events} changes: one per change, not probes"
    assert not world.workers.exits
    print(
        f"\nR6 FlexPoint: down {down_for:.0f} s, {events} changes, {during} calls while down (bound {bound:.0f})"
    )


def test_one_intacct_company_down_while_the_other_keeps_syncing(world):
    a, b = world.companies
    for company in (a, b):
        world.publish_all(company)
    world.wait_equal(a, b, after="the first events")

    world.sandbox.intacct("PATCH", f"companies/{a.company_id}", {"outage": True})
    began = time.monotonic()
    try:
        world.change(a, 10)
        # B's changes arrive while A is down, within seconds each, every few seconds.
        rounds = 0
        while time.monotonic() - began < OUTAGE_SECONDS:
            world.change(b, 3)
            wait_until(
                lambda: not world.differences(b),
                timeout=15,
                interval=0.5,
                message="B to sync while A is down",
            )
            rounds += 1
        assert rounds >= 2
    finally:
        world.sandbox.intacct("PATCH", f"companies/{a.company_id}", {"outage": False})
    world.wait_equal(a, after="company A's recovery", timeout=HEAL_SECONDS)
    assert world.dead_lettered() == 0
    stats = world.sandbox.intacct("GET", "stats")
    print(
        f"\nR6 Intacct company: A down {time.monotonic() - began:.0f} s; B synced {rounds} rounds meanwhile; stats {stats.get('totalCalls')}"
    )
