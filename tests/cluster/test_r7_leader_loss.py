"""QUALITY R7: a 3-node RabbitMQ cluster loses the node leading the quorum queues under load.

Three nodes of our own (never the machine's node on 5672) carry the topology on a vhost of its
own. A real receiver and two real ``flexsync sync`` processes run against the simulators, each
given the nodes in its own order: the receiver and one worker start on the node leading
``sync.ar``, the other worker elsewhere. Webhooks for every record of a seeded company, then for
record changes, flow through the receiver while that node is stopped; refused ones are sent again
as Intacct would. Afterwards: answers were only 202/200/503, every queue is empty, nothing is
dead-lettered, and FlexPoint equals Intacct (a 202 whose message was lost leaves a record stale).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from kombu import Connection

from broker.topology import build_topology, declare_topology
from broker.urls import kombu_url
from config import Settings
from schemas.catalog import BY_RESOURCE
from tests.cluster import harness
from tests.cluster.harness import Node, RabbitCluster
from tests.conftest import COMPANY, ISSUER, running_receiver, wait_until
from tests.workers.chaos_support import (
    FLEXPOINT_TOKEN,
    INTACCT_SECRET,
    REPO,
    CompanyRecords,
    IntacctChanges,
    Sandbox,
    Workers,
    compare,
    utc_now,
    worker_environment,
)
from tests.workers.test_chaos import DRAINED_QUEUES

pytestmark = [pytest.mark.broker, pytest.mark.disruptive, pytest.mark.timeout(180)]

VHOST = "flexsync-r7"
SECRET_KEY = "x7rJ0mQyB0V9pC4Q2m0l3n8f1kq6YxT5k3sR4bF1dWg="
TRIGGER = {"create": "add", "update": "set", "delete": "delete"}
# Webhooks keep flowing this long after the new leader is known, so the recovery is exercised.
AFTER_FAILOVER_SECONDS = 4.0


@pytest.fixture
def cluster():
    """Three nodes with a vhost for this test, stopped at the end whatever happens."""
    problem = harness.available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to start a RabbitMQ cluster: {problem}")
        pytest.skip(f"no RabbitMQ cluster here: {problem}")
    rabbit = RabbitCluster(REPO / harness.DEFAULT_BASE)
    try:
        rabbit.start()
        first = rabbit.nodes[0]
        rabbit.ctl(first, "add_vhost", VHOST)
        rabbit.ctl(first, "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
        yield rabbit
    finally:
        rabbit.stop(quiet=True)


def _url(nodes: list[Node]) -> str:
    return ",".join(node.url(VHOST) for node in nodes)


def _queues_drained(rabbit: RabbitCluster, via: Node) -> bool:
    try:
        rows = {row["name"]: row for row in rabbit.list_queues(VHOST, via=via)}
    except harness.ClusterError:
        return False
    return all(int(rows.get(name, {}).get("messages") or 0) == 0 for name in DRAINED_QUEUES)


class LeaderLoss:
    """Stops the leading node on its own thread and times how long until another node leads."""

    def __init__(self, rabbit: RabbitCluster, leader: Node, survivor: Node, queue: str) -> None:
        self.rabbit, self.leader, self.survivor, self.queue = rabbit, leader, survivor, queue
        self.began = self.stopped = self.new_leader_at = 0.0
        self.new_leader: Node | None = None
        self.error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._stop, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]

    def start(self) -> None:
        self.began = time.monotonic()
        for thread in self._threads:
            thread.start()

    @property
    def started(self) -> bool:
        return self.began > 0

    @property
    def over(self) -> bool:
        return self.stopped > 0 and self.new_leader is not None

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
        if self.error is not None:
            raise self.error

    def _stop(self) -> None:
        try:
            self.rabbit.stop_node(self.leader)
            self.stopped = time.monotonic()
        except BaseException as exc:
            self.error = exc

    def _watch(self) -> None:
        deadline = self.began + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(harness.ClusterError):
                leader = self.rabbit.leader_of(self.queue, VHOST, via=self.survivor)
                if leader != self.leader:
                    self.new_leader, self.new_leader_at = leader, time.monotonic()
                    return
            threading.Event().wait(0.1)
        self.error = AssertionError(f"no new leader for {self.queue} within 60 s")


def test_losing_the_leading_node_loses_nothing_and_flexpoint_equals_intacct(cluster, tmp_path: Path):
    rabbit: RabbitCluster = cluster
    with Connection(kombu_url(_url(rabbit.nodes)), connect_timeout=5) as connection:
        declare_topology(connection, build_topology("7D"))
    leader = rabbit.leader_of("sync.ar", VHOST)
    others = [node for node in rabbit.nodes if node != leader]
    assert len(others) == 2, "three nodes, one leader"
    # The receiver and worker 1 are on the leader when it goes; worker 2 never had it first.
    receiver_url = _url([leader, *others])
    worker_urls = [_url([leader, *others]), _url([others[0], leader, others[1]])]

    (tmp_path / "sandbox").mkdir()
    sandbox = Sandbox(tmp_path / "sandbox", tmp_path / "sandbox.log").start()
    database_url = f"sqlite:///{tmp_path}/flexsync.db"
    settings = Settings(
        flexsync_env="test",
        amqp_url=receiver_url,
        database_url=database_url,
        flexsync_secret_key=(SECRET_KEY,),
        intacct_webhook_issuer=ISSUER,
        log_format="console",
        intacct_api_url=sandbox.intacct_api_url,
        intacct_client_secret=INTACCT_SECRET,
        flexpoint_api_url=sandbox.flexpoint_url,
        flexpoint_api_token=FLEXPOINT_TOKEN,
    )
    pools = []
    for number, url in enumerate(worker_urls, start=1):
        (tmp_path / f"logs-{number}").mkdir()
        environment = worker_environment(
            sandbox,
            amqp_url=url,
            database_url=database_url,
            secret_key=SECRET_KEY,
            log_level="INFO",  # a worker's failover (or its exit) is then in its log
        )
        pools.append(Workers(environment, tmp_path / f"logs-{number}"))
    statuses: Counter[int] = Counter()
    unexpected: list[str] = []
    loss = LeaderLoss(rabbit, leader, others[0], "sync.ar")
    try:
        sandbox.intacct("POST", f"companies/{COMPANY}/seed", {"customers": 20, "invoices": 100, "seed": 7})
        with running_receiver(settings) as receiver:
            publisher = receiver.parts.publisher
            assert publisher.ready and publisher.node == f"127.0.0.1:{leader.amqp_port}"
            company = CompanyRecords(
                COMPANY, receiver.connection.connection_id, receiver.connection.account_id
            )
            changes = IntacctChanges(sandbox, random.Random(7))
            changes.load(company)
            for pool in pools:
                pool.keep(1)
            outbox = [change for _, change in changes.every_record()]
            initial = len(outbox)
            assert initial > 150
            retries: list[tuple[float, int, dict]] = []
            sent = 0
            refusal = ""
            accepted_first_pass = 0
            deadline = time.monotonic() + 100
            while True:
                now = time.monotonic()
                assert now < deadline, (
                    f"webhooks still refused: {len(retries)} pending, answers {statuses}, the receiver's "
                    f"publisher {'ready' if publisher.ready else 'not ready'} on {publisher.node}, last 503: {refusal}"
                )
                if loss.error is not None:
                    raise loss.error
                if not loss.started and accepted_first_pass >= initial // 3:
                    loss.start()
                recovered = loss.over and now - max(loss.stopped, loss.new_leader_at) > AFTER_FAILOVER_SECONDS
                if recovered and not outbox and not retries:
                    break
                due = next((item for item in retries if item[0] <= now), None)
                if due is not None:
                    retries.remove(due)
                    _, number, body = due
                elif outbox:
                    resource, key, action, record_id = outbox.pop(0)
                    sent += 1
                    number = sent
                    body = {
                        "object": BY_RESOURCE[resource].intacct_object,
                        "action": TRIGGER[action],
                        "key": key,
                        "id": record_id,
                        "companyId": COMPANY,
                        "occurredAt": utc_now(),
                    }
                elif not recovered:
                    # The first pass is through: real record changes keep the flow going.
                    outbox.extend(changes.step()[1])
                    threading.Event().wait(0.02)  # pacing of Intacct's changes, not a wait on an event
                    continue
                else:
                    threading.Event().wait(0.05)  # only retries left, none due yet
                    continue
                response = receiver.post_hmac(body, key=f"r7-{number}")
                statuses[response.status_code] += 1
                if response.status_code == 503:
                    refusal = response.get_data(as_text=True)[:200]
                    retries.append((time.monotonic() + 0.25, number, body))  # Intacct sends it again
                elif response.status_code in (200, 202):
                    if number <= initial:
                        accepted_first_pass += 1
                else:
                    unexpected.append(
                        f"webhook {number}: {response.status_code} {response.get_data(as_text=True)[:200]}"
                    )
            loss.join(60)
            assert not unexpected, unexpected[:5]
            assert set(statuses) <= {200, 202, 503}, statuses
            assert loss.new_leader in others
            assert not rabbit.running(leader)
            assert publisher.ready and publisher.node != f"127.0.0.1:{leader.amqp_port}", (
                "the receiver's publisher should have moved to a surviving node"
            )

            # A bound, not a pause: ends as soon as the queues are empty (usually within 20 s).
            # On a loaded machine the surviving nodes and the workers catch up more slowly (one
            # CI run took longer than 60 s); a failure names what was still queued.
            try:
                wait_until(
                    lambda: _queues_drained(rabbit, others[0]),
                    timeout=180,
                    interval=0.5,
                    message="the queues to drain",
                )
            except BaseException:
                depths = {
                    row["name"]: row.get("messages")
                    for row in rabbit.list_queues(VHOST, via=others[0])
                    if row["name"] in DRAINED_QUEUES
                }
                exits = [exit for pool in pools for exit in pool.exits]
                print(f"\nR7: still queued {depths}; worker exits {exits}\n" + pools[0].log_tails(40))
                raise
            # A worker that exits is restarted, as a Procfile runner would (keep); what must hold is
            # that nothing is lost or stuck. Exits are reported: once seen here (code 1 after kombu's
            # reconnect, cause not yet found), noted in docs/operations.md.
            exits = [exit for pool in pools for exit in pool.exits]
            if exits:
                print(f"\nR7: sync worker exits during the node loss: {exits}\n" + pools[0].log_tails(30))
            rows = {row["name"]: row for row in rabbit.list_queues(VHOST, via=others[0])}
            assert int(rows["dead-letter"]["messages"]) == 0, (
                "a node's loss is transient: nothing dead-lettered"
            )

            # rabbitmqctl's counts of quorum queues lag by seconds: "drained" above may come a
            # little early, so FlexPoint is given until a deadline to equal Intacct, by itself.
            deadline = time.monotonic() + 60
            while True:
                problems, seen = compare(sandbox, company)
                if not problems or time.monotonic() > deadline:
                    break
                threading.Event().wait(1.0)
            assert not problems, f"{len(problems)} differences, e.g.:\n" + "\n".join(problems[:10])
            print(
                f"\nR7: {sent} webhooks ({initial} records, then {dict(changes.counts)}), answers "
                f"{dict(statuses)}; {leader.name} led sync.ar; stop took {loss.stopped - loss.began:.1f} s, "
                f"{loss.new_leader.name} led after {loss.new_leader_at - loss.began:.1f} s; "
                f"receiver now on {publisher.node}; compared {dict(seen)}"
            )
    finally:
        for pool in pools:
            pool.stop_all()
        sandbox.stop()
