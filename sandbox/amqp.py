"""Publishing as FlexPoint does: one JSON message to a topic exchange, confirmed by RabbitMQ.

The sandbox plays FlexPoint's side of BRIEF.md's message contracts (``flexpoint.connections``,
``flexpoint.payments``). Each publish opens a connection, declares the exchange (topic, durable:
idempotent, so it works before the service declared its topology), publishes persistently with
``mandatory`` set, waits for the broker's confirm and closes. ``AMQP_URL`` may name several
comma-separated nodes; they are tried in turn. Nothing here logs the URL, which holds a password.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

import pika
import pika.exceptions

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"


class PublishFailed(Exception):
    """The broker was unreachable or did not confirm; the text is for a person."""


class NotRouted(PublishFailed):
    """The broker confirmed, but no queue is bound for the routing key: nobody would read it."""


def node_urls(amqp_url: str) -> list[str]:
    """The nodes named by ``AMQP_URL`` (comma-separated), in order."""
    urls = [part.strip() for part in amqp_url.split(",") if part.strip()]
    if not urls:
        raise PublishFailed("AMQP_URL is empty")
    return urls


def where(amqp_url: str) -> str:
    """host:port of each node, without credentials, for messages."""
    return ", ".join(f"{urlsplit(u).hostname}:{urlsplit(u).port or 5672}" for u in node_urls(amqp_url))


class _ConfirmTimeout(Exception):
    pass


def publish_json(
    amqp_url: str,
    exchange: str,
    routing_key: str,
    message: dict[str, Any],
    *,
    timeout: float = 10.0,
) -> None:
    """Publish ``message`` and return once RabbitMQ confirmed it; :class:`PublishFailed` otherwise."""
    parameters = []
    for url in node_urls(amqp_url):
        params = pika.URLParameters(url)
        params.socket_timeout = timeout
        params.blocked_connection_timeout = timeout
        params.connection_attempts = 1
        parameters.append(params)
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as exc:
        raise PublishFailed(
            f"RabbitMQ is unreachable at {where(amqp_url)} ({type(exc).__name__}); check AMQP_URL"
        ) from None

    def _give_up() -> None:
        raise _ConfirmTimeout

    try:
        channel = connection.channel()
        channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
        channel.confirm_delivery()
        # A confirm that never comes must not hang the caller: the timer fires inside pika's wait.
        timer = connection.call_later(timeout, _give_up)
        channel.basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=json.dumps(message).encode(),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=str(message.get("messageId") or "") or None,
            ),
            mandatory=True,
        )
        connection.remove_timeout(timer)
    except pika.exceptions.UnroutableError:
        raise NotRouted(f"no queue is bound to {exchange} for {routing_key}") from None
    except pika.exceptions.NackError:
        raise PublishFailed(f"RabbitMQ refused the {routing_key} message (nack)") from None
    except _ConfirmTimeout:
        raise PublishFailed(
            f"RabbitMQ did not confirm the {routing_key} message within {timeout:.0f} s"
        ) from None
    except pika.exceptions.AMQPError as exc:
        raise PublishFailed(f"RabbitMQ failed the {routing_key} message ({type(exc).__name__})") from None
    finally:
        if connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()
