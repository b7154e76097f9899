"""The RabbitMQ topology, as data, declared idempotently.

Names operations rely on (the brief): exchanges ``intacct.events``, ``flexpoint.connections`` and
``flexpoint.payments``; queues ``sync.gl``, ``sync.ar``, ``sync.cm``, ``sync.company``,
``provisioning``, ``writeback``, ``dead-letter`` and the stream ``intacct.events.archive``.
``flexsync.connections.changed`` is a fanout each receiver process binds its own exclusive,
auto-deleted queue to, so a connection's change reaches every process's cache at once (it has no
durable queue). Every other name derives from those by one
convention: the delay queue for a work queue ``Q`` and a delay of ``N`` seconds is
``Q.delay.Ns``. A delay queue has no TTL: each copy carries ``x-flexsync-due-at`` and the workers
of ``Q`` move it back once that time has come (``workers.runtime.consumer``, "delay pump").

Why not the broker's TTL and dead-lettering: RabbitMQ 3.10's quorum queues (Debian bookworm ships
3.10.8) can stop dead-lettering a queue's expired messages after its leader node is lost (with
at-least-once dead-lettering; without it, a message expiring while its target has no leader is
dropped). Reproduced here in about one failover in three: every message already in the queue, and
every one put in later, stays counted as held and cannot be taken, minutes after the new leader
took over. The queues of that design were named ``Q.retry.Ns``: after an upgrade they still empty
themselves by their TTL, and can then be deleted (docs/operations.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Exchange, Queue, binding
from kombu.exceptions import OperationalError

from reliability.errors import FlexsyncError
from schemas.catalog import MODULES

EVENTS_EXCHANGE = Exchange("intacct.events", type="topic", durable=True)
CONNECTIONS_EXCHANGE = Exchange("flexpoint.connections", type="topic", durable=True)
PAYMENTS_EXCHANGE = Exchange("flexpoint.payments", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("flexsync.dead-letter", type="fanout", durable=True)
CONNECTION_CHANGES_EXCHANGE = Exchange("flexsync.connections.changed", type="fanout", durable=True)

DEAD_LETTER_QUEUE_NAME = "dead-letter"
PROVISIONING_QUEUE_NAME = "provisioning"
WRITEBACK_QUEUE_NAME = "writeback"
PAYMENT_ROUTING_KEYS = "payment.*"
ARCHIVE_STREAM_NAME = "intacct.events.archive"
CONNECT_ROUTING_KEY = "connection.connect"
DISCONNECT_ROUTING_KEY = "connection.disconnect"

# Growing delays between attempts of a transiently failing message; after the last one the
# worker dead-letters it, so nothing is retried forever.
RETRY_DELAYS_SECONDS: tuple[int, ...] = (2, 10, 60, 300)
# Safety net for a message that kills its consumer (it is never acked nor rejected): after
# this many redeliveries the broker itself dead-letters it, so a poison message cannot
# loop forever or block the queue.
DELIVERY_LIMIT = 20

_QUORUM = {"x-queue-type": "quorum"}
# At-least-once dead-lettering (RabbitMQ >= 3.10) so a message the broker parks (its delivery
# limit reached) is never lost on its way to the dead-letter queue; it requires overflow
# reject-publish.
_SAFE_DEAD_LETTERING = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def queue_kind(queue: Queue) -> str:
    """The queue's ``x-queue-type`` (``quorum``, ``stream``) or ``classic`` when it has none."""
    # kombu sets queue_arguments at run time from its attrs table, so it has no static type.
    arguments: dict[str, Any] | None = getattr(queue, "queue_arguments", None)
    return (arguments or {}).get("x-queue-type", "classic")


def work_queue_name(module: str) -> str:
    return f"sync.{module}"


def delay_queue_name(queue_name: str, delay_seconds: int) -> str:
    return f"{queue_name}.delay.{delay_seconds}s"


def _work_queue(name: str, bindings: list[binding]) -> Queue:
    return Queue(
        name,
        bindings=bindings,
        durable=True,
        queue_arguments={
            **_QUORUM,
            **_SAFE_DEAD_LETTERING,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-delivery-limit": DELIVERY_LIMIT,
        },
    )


def _delay_queues(queue_name: str, delays: tuple[int, ...]) -> list[Queue]:
    # Replicated like the work queues, and nothing more: no TTL, no dead-lettering (see above).
    return [
        Queue(delay_queue_name(queue_name, delay), durable=True, queue_arguments=dict(_QUORUM))
        for delay in delays
    ]


@dataclass(frozen=True)
class Topology:
    """Every exchange and queue the service uses, in declaration order."""

    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]

    def queue(self, name: str) -> Queue:
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(name)

    @property
    def work_queues(self) -> tuple[Queue, ...]:
        return tuple(self.queue(work_queue_name(m)) for m in MODULES)

    def describe(self) -> Iterator[str]:
        for exchange in self.exchanges:
            yield f"exchange {exchange.name} ({exchange.type})"
        for queue in self.queues:
            kind = queue_kind(queue)
            keys = ", ".join(f"{b.exchange.name}:{b.routing_key}" for b in queue.bindings) or "-"
            yield f"queue {queue.name} ({kind}) <- {keys}"


def build_topology(
    archive_max_age: str = "7D", retry_delays: tuple[int, ...] = RETRY_DELAYS_SECONDS
) -> Topology:
    """The topology for the given archive retention (``ARCHIVE_MAX_AGE``) and delay queues
    (``FLEXSYNC_RETRY_DELAYS``: each delay is a queue of its own name, so schedules never clash)."""
    queues: list[Queue] = []
    for module in MODULES:
        name = work_queue_name(module)
        queues.append(_work_queue(name, [binding(EVENTS_EXCHANGE, routing_key=f"{module}.#")]))
        queues.extend(_delay_queues(name, retry_delays))
    queues.append(
        _work_queue(
            PROVISIONING_QUEUE_NAME,
            [
                binding(CONNECTIONS_EXCHANGE, routing_key=CONNECT_ROUTING_KEY),
                binding(CONNECTIONS_EXCHANGE, routing_key=DISCONNECT_ROUTING_KEY),
            ],
        )
    )
    queues.extend(_delay_queues(PROVISIONING_QUEUE_NAME, retry_delays))
    queues.append(
        _work_queue(WRITEBACK_QUEUE_NAME, [binding(PAYMENTS_EXCHANGE, routing_key=PAYMENT_ROUTING_KEYS)])
    )
    queues.extend(_delay_queues(WRITEBACK_QUEUE_NAME, retry_delays))
    queues.append(
        Queue(
            DEAD_LETTER_QUEUE_NAME,
            bindings=[binding(DEAD_LETTER_EXCHANGE, routing_key="")],
            durable=True,
            queue_arguments=dict(_QUORUM),
        )
    )
    queues.append(
        Queue(
            ARCHIVE_STREAM_NAME,
            bindings=[binding(EVENTS_EXCHANGE, routing_key="#")],
            durable=True,
            queue_arguments={"x-queue-type": "stream", "x-max-age": archive_max_age},
        )
    )
    return Topology(
        exchanges=(
            EVENTS_EXCHANGE,
            CONNECTIONS_EXCHANGE,
            PAYMENTS_EXCHANGE,
            DEAD_LETTER_EXCHANGE,
            CONNECTION_CHANGES_EXCHANGE,
        ),
        queues=tuple(queues),
    )


class TopologyMismatch(FlexsyncError, RuntimeError):
    """A queue already exists with other arguments than ours (RabbitMQ answers 406)."""


def declare_topology(connection: Connection, topology: Topology) -> None:
    """Declare every exchange, queue and binding; safe to run any number of times."""
    channel = connection.channel()
    try:
        for exchange in topology.exchanges:
            exchange.bind(channel).declare()
        for queue in topology.queues:
            try:
                queue.bind(channel).declare()
            except OperationalError:
                raise
            except Exception as exc:
                if getattr(exc, "code", None) != 406:
                    raise
                args = queue.queue_arguments or {}  # type: ignore[attr-defined]
                raise TopologyMismatch(
                    f"queue {queue.name} exists with other arguments than {args}: RabbitMQ "
                    "cannot change them on a declared queue; change them with a policy "
                    "(`rabbitmqctl set_policy`) or, once it is empty, delete the queue and run "
                    "`flexsync topology` again"
                ) from None
    finally:
        with contextlib.suppress(Exception):
            channel.close()
