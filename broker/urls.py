"""AMQP_URL as the brief defines it: one URL, or several comma-separated URLs naming a cluster's nodes.

Every process and ops command reads the setting through here, so each library gets the form it
takes: kombu a ``;``-separated failover list (it moves to the next node when one goes), pika one
``URLParameters`` per node (the confirming publisher tries them in turn).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pika
from kombu import Connection


def node_urls(amqp_url: str) -> list[str]:
    """The URLs of the nodes, in the order given, without blanks."""
    urls = [part.strip() for part in amqp_url.replace(";", ",").split(",")]
    return [url for url in urls if url]


def kombu_url(amqp_url: str) -> str:
    """The setting in kombu's failover form (``url1;url2``), for ``kombu.Connection``."""
    return ";".join(node_urls(amqp_url))


def kombu_connection(
    amqp_url: str, *, heartbeat: float = 30, confirm_publish: bool = False, **options: object
) -> Connection:
    """The one way a kombu connection to the broker is made: every node of AMQP_URL, in turn
    (round-robin failover), with heartbeats; ``confirm_publish`` for a connection that publishes
    and must know the broker took each message. ``options`` go to ``kombu.Connection``."""
    if confirm_publish:
        options["transport_options"] = {"confirm_publish": True}
    return Connection(kombu_url(amqp_url), heartbeat=heartbeat, failover_strategy="round-robin", **options)


def pika_parameters(amqp_url: str) -> list[pika.URLParameters]:
    """One ``pika.URLParameters`` per node, tried in this order."""
    return [pika.URLParameters(url) for url in node_urls(amqp_url)]


def describe(amqp_url: str) -> str:
    """The nodes as ``host:port`` for messages a person reads (never the credentials)."""
    return ", ".join(_host_port(url) for url in node_urls(amqp_url))


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"
