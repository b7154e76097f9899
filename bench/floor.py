"""The confirm floor of the receiver benchmark (QUALITY P1): the least any receiver keeping the
brief's promise (2xx only after the broker's confirm) must do per webhook.

A Flask endpoint that parses the JSON body, publishes it persistently to ``intacct.events`` and
answers 202 once RabbitMQ confirmed it. Written plainly here, independent of ``broker/``: one
pika ``SelectConnection`` per gunicorn worker on an I/O thread, one confirming channel shared
by every request thread, confirms pipelined (many messages in flight, acks often ``multiple``).
No reconnects, metrics or headers: a reference, not a product.
"""

from __future__ import annotations

import collections
import json
import threading
from typing import Any

import pika
from flask import Flask, request

# Bound to sync.gl by the service's topology (gl.#), so it costs the broker what an event does
# (a quorum queue and the archive stream) while sync.ar keeps only the receiver's messages.
FLOOR_ROUTING_KEY = "gl.floor.set"
CONFIRM_TIMEOUT = 5.0


class _Waiter:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class FloorPublisher:
    """Request threads queue (body, waiter); the I/O thread publishes and resolves on confirms."""

    def __init__(self, amqp_url: str, exchange: str) -> None:
        self._url = amqp_url
        self._exchange = exchange
        self._outbox: collections.deque = collections.deque()
        self._pending: collections.OrderedDict[int, _Waiter] = collections.OrderedDict()
        self._tag = 0
        self._wake_lock = threading.Lock()
        self._wake_scheduled = False
        self._ready = threading.Event()
        self._properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json"
        )
        self._connection: pika.SelectConnection | None = None
        self._channel = None
        threading.Thread(target=self._run, name="floor-publisher", daemon=True).start()

    def publish(self, body: bytes) -> bool:
        """True once the broker confirmed ``body``; False on a nack or after CONFIRM_TIMEOUT."""
        if not self._ready.wait(CONFIRM_TIMEOUT):
            return False
        waiter = _Waiter()
        self._outbox.append((body, waiter))
        with self._wake_lock:
            wake, self._wake_scheduled = not self._wake_scheduled, True
        if wake:
            self._connection.ioloop.add_callback_threadsafe(self._drain)
        return waiter.done.wait(CONFIRM_TIMEOUT) and waiter.ok

    def _run(self) -> None:
        self._connection = pika.SelectConnection(
            pika.URLParameters(self._url), on_open_callback=self._on_open
        )
        self._connection.ioloop.start()

    def _on_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel) -> None:
        self._channel = channel
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _f: self._ready.set())

    def _drain(self) -> None:
        with self._wake_lock:
            self._wake_scheduled = False
        while self._outbox:
            body, waiter = self._outbox.popleft()
            self._tag += 1
            self._pending[self._tag] = waiter
            self._channel.basic_publish(self._exchange, FLOOR_ROUTING_KEY, body, self._properties)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            while self._pending and next(iter(self._pending)) <= method.delivery_tag:
                _tag, waiter = self._pending.popitem(last=False)
                waiter.ok = ok
                waiter.done.set()
        else:
            waiter = self._pending.pop(method.delivery_tag, None)
            if waiter is not None:
                waiter.ok = ok
                waiter.done.set()


def create_floor_app(amqp_url: str, exchange: str, publisher: Any = None) -> Flask:
    """Parse, publish with a confirm, answer 202 (503 when the broker did not confirm).

    ``publisher``: anything with FloorPublisher's ``publish(body) -> bool`` (bench/receiver_cost.py
    passes one whose confirm is already there); by default a FloorPublisher.
    """
    app = Flask("floor")
    publisher = publisher or FloorPublisher(amqp_url, exchange)

    @app.post("/webhooks/intacct/<connection_id>")
    def receive(connection_id: str):
        document = request.get_json()
        if not publisher.publish(json.dumps(document).encode()):
            return {"error": {"code": "broker_timeout", "message": "not confirmed"}}, 503
        return {"status": "accepted"}, 202

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app
