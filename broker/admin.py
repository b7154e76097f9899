"""Broker connections for operations tools, failing with a message that says what to do."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker

from broker.publisher import ConfirmingPublisher
from broker.urls import node_urls, pika_parameters
from reliability.errors import OpsError


def redacted(url: str) -> str:
    """The URL (each node's, when AMQP_URL names several) without its password, for messages."""
    nodes = node_urls(url)
    if len(nodes) > 1:
        return ", ".join(redacted(node) for node in nodes)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def unreachable(url: str, detail: object) -> OpsError:
    return OpsError(
        f"RabbitMQ at {redacted(url)} is unreachable ({detail or 'no answer'}); start it or point "
        "AMQP_URL at the right broker"
    )


def connect(url: str) -> pika.BlockingConnection:
    """A blocking connection for consuming and passive declares, to the first node that answers."""
    nodes = pika_parameters(url)
    for params in nodes:
        params.connection_attempts = 1
        params.socket_timeout = 5.0
        params.heartbeat = 30
    try:
        # pika tries a sequence of parameters in order and returns the first that connects.
        return pika.BlockingConnection(nodes)
    except (AMQPError, OSError) as exc:
        raise unreachable(url, exc) from None


def queue_counts(channel: BlockingChannel, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, by a passive declare."""
    try:
        frame = channel.queue_declare(queue=queue, passive=True)
    except ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise OpsError(
                f"queue {queue} does not exist; declare the topology with `flexsync topology`"
            ) from None
        raise
    return frame.method.message_count, frame.method.consumer_count


def start_publisher(url: str, *, wait: float = 10.0) -> ConfirmingPublisher:
    """A confirming publisher on the default exchange, connected, or an :class:`OpsError`."""
    connect(url).close()  # fails at once, with the URL, when nothing listens there
    publisher = ConfirmingPublisher(url, "", max_in_flight=50_000)
    publisher.start(wait=wait)
    if not publisher.ready:
        publisher.close(timeout=0.5)
        raise unreachable(url, f"no confirming channel within {wait:.0f} s")
    return publisher
