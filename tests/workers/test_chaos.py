"""QUALITY R1, the chaos test: events over several companies while sync workers are SIGKILLed
every few seconds and restarted, RabbitMQ is restarted once, FlexPoint answers 5xx to 10 % and
429 to 5 % of calls and Intacct 503 to 5 %. Afterwards FlexPoint's state equals Intacct's for
every record, no queue holds anything, and nothing was dead-lettered (every fault was transient).

It runs on SQLite and on PostgreSQL. Short by default (3 companies, 1,500 events, 15 s of chaos); the full size of QUALITY R1 with
``FLEXSYNC_CHAOS_EVENTS=10000`` (10 companies; ``FLEXSYNC_CHAOS_SECONDS`` sets the chaos's length).
The simulators run in a process of their own and the workers are real ``flexsync sync``
processes, so they can be killed; the test publishes each event itself right after the change
in Intacct it reports, as the receiver would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import pytest

from broker.topology import DEAD_LETTER_QUEUE_NAME, RETRY_DELAYS_SECONDS, build_topology, delay_queue_name
from schemas.catalog import BY_RESOURCE
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import BrokerProbe, wait_until
from tests.workers.chaos_support import (
    ChaosPlan,
    CompanyRecords,
    EventPublisher,
    IntacctChanges,
    Sandbox,
    Workers,
    compare,
    envelope,
    queue_totals,
    rabbitmqctl,
    worker_environment,
)
from workers.connections.store import ConnectionStore

PLAN = ChaosPlan.from_environment()
WORKERS = 2
BROKER_OUTAGE_SECONDS = 2.0

pytestmark = [pytest.mark.broker, pytest.mark.disruptive, pytest.mark.timeout(PLAN.timeout)]

WORK_QUEUES = [q.name for q in build_topology().work_queues]
DRAINED_QUEUES = WORK_QUEUES + [delay_queue_name(q, d) for q in WORK_QUEUES for d in RETRY_DELAYS_SECONDS]


@pytest.fixture
def local_broker(amqp_url):
    if urlsplit(amqp_url).hostname not in ("localhost", "127.0.0.1") or not shutil.which("rabbitmqctl"):
        pytest.skip("restarting the broker needs a RabbitMQ node on this machine (rabbitmqctl)")
    yield
    rabbitmqctl("start_app")  # whatever happened, leave the node running for the next tests


class Chaos(threading.Thread):
    """Kills a worker every few seconds (and starts another), restarts RabbitMQ once."""

    def __init__(self, workers: Workers, rng: random.Random, restart_after: float) -> None:
        super().__init__(name="chaos", daemon=True)
        self.workers = workers
        self.rng = rng
        self.restart_after = restart_after
        self.stop = threading.Event()
        self.broker_restarted = threading.Event()
        self.error: BaseException | None = None
        self.timeline: list[str] = []

    def _note(self, started: float, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - started:.1f}s {what}")

    def run(self) -> None:
        try:
            started = time.monotonic()
            next_kill = started + PLAN.kill_every
            while not self.stop.is_set():
                now = time.monotonic()
                if not self.broker_restarted.is_set() and now - started >= self.restart_after:
                    down = time.monotonic()
                    rabbitmqctl("stop_app")
                    try:
                        self.stop.wait(BROKER_OUTAGE_SECONDS)
                    finally:
                        rabbitmqctl("start_app")
                    self._note(started, f"broker restarted ({time.monotonic() - down:.1f} s down)")
                    self.broker_restarted.set()
                elif now >= next_kill:
                    self.workers.kill_one(self.rng)
                    self._note(started, "worker killed")
                    next_kill = now + PLAN.kill_every * self.rng.uniform(0.7, 1.3)
                self.workers.keep(WORKERS)
                self.stop.wait(0.1)
        except BaseException as exc:  # re-raised by the test
            self.error = exc


def _consumers(probe_url: str) -> dict[str, int]:
    probe = BrokerProbe(probe_url)
    try:
        return {q: probe.channel.queue_declare(queue=q, passive=True)[2] for q in WORK_QUEUES}
    finally:
        probe.close()


def _drained(amqp_url: str) -> bool:
    """Nothing ready in any work or delay queue (cheap), then nothing at all, unacked included."""
    try:
        probe = BrokerProbe(amqp_url)
        try:
            if any(probe.depth(queue) for queue in DRAINED_QUEUES):
                return False
        finally:
            probe.close()
    except Exception:  # the broker is still coming back
        return False
    totals = queue_totals(amqp_url)
    return all(totals[queue]["messages"] == 0 for queue in DRAINED_QUEUES)


def test_workers_killed_broker_restarted_faults_on_and_flexpoint_ends_equal_to_intacct(
    settings, database_url, amqp_url, broker, local_broker, tmp_path
):
    # Twice: on SQLite (one machine) and on PostgreSQL (what several hosts share), QUALITY R1.
    settings = dataclasses.replace(settings, database_url=database_url)
    began = time.monotonic()
    rng = random.Random(PLAN.seed)
    sandbox = Sandbox(tmp_path / "sandbox", tmp_path / "sandbox.log")
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "logs").mkdir()
    workers = Workers(
        worker_environment(
            sandbox,
            amqp_url=amqp_url,
            database_url=settings.database_url,
            secret_key=",".join(settings.flexsync_secret_key),
        ),
        tmp_path / "logs",
    )
    publisher = EventPublisher(amqp_url)
    chaos = Chaos(workers, random.Random(PLAN.seed + 1), restart_after=PLAN.seconds * 0.35)
    engine = create_engine_for(settings.database_url)
    try:
        # -- setup: simulators with seeded companies, a connection for each, two workers ------
        sandbox.start()
        upgrade(engine)
        store = ConnectionStore(engine, SecretBox.for_settings(settings))
        changes = IntacctChanges(sandbox, rng)
        connections = {}
        for n in range(1, PLAN.companies + 1):
            company_id = f"CHAOS-{n}"
            sandbox.intacct(
                "POST",
                f"companies/{company_id}/seed",
                {"customers": PLAN.customers, "invoices": PLAN.invoices, "checkingAccounts": 2, "seed": n},
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
            changes.load(CompanyRecords(company_id, record.connection_id, record.account_id))
        workers.keep(WORKERS)
        wait_until(
            lambda: all(count == WORKERS for count in _consumers(amqp_url).values()),
            timeout=30,
            interval=0.2,
            message=f"{WORKERS} workers consuming every work queue",
        )
        sandbox.faults_on(PLAN.seed)
        setup_seconds = time.monotonic() - began

        def publish(company: CompanyRecords, resource: str, key: str, action: str, record_id) -> None:
            routing_key, body, event_id = envelope(
                connection_id=company.connection_id,
                company_id=company.company_id,
                synced=BY_RESOURCE[resource],
                action=action,
                key=key,
                record_id=record_id,
            )
            publisher.publish(routing_key, body, message_id=event_id)

        # -- chaos: every record's event, then changes and duplicates, paced over the period -----
        chaos_began = time.monotonic()
        chaos.start()
        initial = list(changes.every_record())
        for company, (resource, key, action, record_id) in initial:
            publish(company, resource, key, action, record_id)
        steps = max(0, PLAN.events - len(initial))
        pace = PLAN.seconds / steps if steps else 0.0
        limit = chaos_began + 3 * PLAN.seconds + 60
        n = 0
        while publisher.published < PLAN.events or time.monotonic() - chaos_began < PLAN.seconds:
            n += 1
            wait = chaos_began + n * pace - time.monotonic()
            if wait > 0:
                chaos.stop.wait(wait)  # pacing only; nobody sets it before the loop ends
            company, events = changes.step()
            for resource, key, action, record_id in events:
                publish(company, resource, key, action, record_id)
            assert time.monotonic() < limit, "publishing fell far behind the plan"
            assert chaos.error is None, f"the chaos thread failed: {chaos.error!r}"
        wait_until(chaos.broker_restarted.is_set, timeout=60, message="the broker restart")
        chaos.stop.set()
        chaos.join(120)
        assert not chaos.is_alive() and chaos.error is None, f"chaos thread: {chaos.error!r}"
        chaos_seconds = time.monotonic() - chaos_began
        faults = _fault_counts(sandbox)

        # -- drain: faults off, two workers, until every work and delay queue is empty ----------
        sandbox.faults_off()
        workers.keep(WORKERS)
        drain_began = time.monotonic()
        try:
            wait_until(lambda: _drained(amqp_url), timeout=PLAN.drain_seconds, interval=0.5)
        except pytest.fail.Exception:
            left = {q: t for q, t in queue_totals(amqp_url).items() if t["messages"]}
            pytest.fail(
                f"the queues did not drain within {PLAN.drain_seconds:g} s: {left}\n{workers.log_tails()}"
            )
        drain_seconds = time.monotonic() - drain_began
        totals = queue_totals(amqp_url)
        assert totals[DEAD_LETTER_QUEUE_NAME]["messages"] == 0, (
            f"{totals[DEAD_LETTER_QUEUE_NAME]['messages']} dead-lettered, but every fault was transient: "
            f"{_dead_letters(amqp_url)}"
        )
        wait_until(
            lambda: all(count == WORKERS for count in _consumers(amqp_url).values()),
            timeout=30,
            interval=0.2,
            message=f"{WORKERS} workers still consuming every work queue",
        )

        # -- FlexPoint's state equals what the contract makes of Intacct's, record by record --------------
        problems: list[str] = []
        compared: Counter[str] = Counter()
        for company in changes.companies:
            found, seen = compare(sandbox, company)
            problems += found
            compared += seen
        assert not problems, f"{len(problems)} differences, e.g.:\n" + "\n".join(problems[:15])

        retried = Counter(e.get("reason") for e in workers.log_events() if e.get("event") == "group_failed")
        exits = [(e.number, e.returncode) for e in workers.exits]
        print(
            f"\nchaos R1: {publisher.published} events over {PLAN.companies} companies "
            f"({len(initial)} initial, changes {dict(changes.counts)}); "
            f"{workers.killed} workers SIGKILLed, {len(workers.everyone)} started, exits by themselves {exits}; "
            f"timeline {chaos.timeline}; publisher reconnects {publisher.reconnects}; "
            f"faults injected {faults}; groups sent to a delay queue {sum(retried.values())} {dict(retried)}; "
            f"compared {dict(compared)}; dead-lettered 0; "
            f"setup {setup_seconds:.1f} s, chaos {chaos_seconds:.1f} s, drain {drain_seconds:.1f} s, "
            f"total {time.monotonic() - began:.1f} s"
        )
    finally:
        chaos.stop.set()
        if chaos.is_alive():
            chaos.join(120)
        with contextlib.suppress(Exception):
            rabbitmqctl("start_app")
        publisher.close()
        workers.stop_all()
        sandbox.stop()
        engine.dispose()


def _fault_counts(sandbox: Sandbox) -> dict[str, int]:
    faults = sandbox.flexpoint("GET", "sandbox/faults")
    stats = sandbox.intacct("GET", "stats")
    intacct: Counter[str] = Counter()
    for statuses in stats["responses"].values():
        intacct.update({status: count for status, count in statuses.items() if status != "200"})
    return {
        "flexpoint calls": faults["requests"],
        **{f"flexpoint {status}": count for status, count in sorted(faults["injected"].items())},
        "intacct calls": stats["totalCalls"],
        **{f"intacct {status}": count for status, count in sorted(intacct.items())},
    }


def _dead_letters(amqp_url: str) -> list[dict]:
    """A few dead letters' headers, left in the queue (unacknowledged, returned on close)."""
    probe = BrokerProbe(amqp_url)
    try:
        messages = [probe.channel.basic_get(queue=DEAD_LETTER_QUEUE_NAME, no_ack=False) for _ in range(5)]
        return [
            {
                k: v
                for k, v in (m.properties.get("application_headers") or {}).items()
                if k.startswith("x-flexsync")
            }
            for m in messages
            if m is not None
        ]
    finally:
        probe.close()
