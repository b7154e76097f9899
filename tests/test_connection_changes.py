"""A connection's change reaches every receiver process at once (issue 14).

Two real ``flexsync web`` processes share one database and broker; each has answered for the
connection, so it is in both caches (TTL 5 s). After a disconnect, the very next webhook to
each process is answered 410, and so are the ones after it; a reconnect and a webhook secret
rotation are taken on the very next webhook as well. Two mechanisms make it so: the ledger's
lookup, the one statement each delivery makes anyway, also reads the connection's version,
and a change is announced on ``flexsync.connections.changed`` so every cache drops the entry.
The in-process tests below take the announcement away to show the first alone is enough.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from broker.topology import CONNECTION_CHANGES_EXCHANGE
from ingest.app import create_app
from ingest.auth import sign_hmac
from ingest.connection_changes import ConnectionChangeListener
from processes.web import build as build_parts
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import invoice_event
from tests.tcp_cut import CuttableRelay
from tests.web_processes import running_receivers
from workers.connections.cache import CachedConnectionLookup
from workers.connections.changes import AnnouncingStore, ConnectionChanges
from workers.connections.store import ConnectionStore

CONNECTION = "conn-changes-1"
COMPANY = "CHANGES-CO"


_deliveries = iter(range(1, 1_000_000))


def _post(port: int, secret: str) -> int:
    """One new delivery (its own record key, so never a duplicate), signed with ``secret``."""
    body = json.dumps(invoice_event(key=str(next(_deliveries)), companyId=COMPANY)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-FlexPoint-Signature": sign_hmac(secret, body, int(time.time())),
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", f"/webhooks/intacct/{CONNECTION}", body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def store(settings):
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    yield ConnectionStore(engine, SecretBox.for_settings(settings))
    engine.dispose()


@pytest.fixture
def receivers(settings, store, tmp_path, broker):
    """Two receiver processes, each ready and listening for changes; yields their ports."""
    with running_receivers(settings, tmp_path, 2) as ports:
        yield ports


def _save(store, **kwargs):
    return store.save(CONNECTION, "acct-changes", COMPANY, None, "ws_user", "connected", **kwargs)


def _every_process_answers(ports: list[int], secret: str, expected: int) -> None:
    """The very next webhook to each process is answered ``expected``, and the ones after it."""
    assert [_post(port, secret) for port in ports] == [expected] * len(ports)
    assert [_post(port, secret) for port in ports for _ in range(3)] == [expected] * 3 * len(ports)


@pytest.mark.broker
def test_a_disconnect_is_answered_410_by_every_process_at_once(settings, store, receivers):
    _save(store)
    secret = store.webhook_secret(CONNECTION)
    # Both caches now hold the connection as connected, for their 5 s TTL.
    assert [_post(port, secret) for port in receivers] == [202, 202]

    announcing = AnnouncingStore(store, ConnectionChanges(settings.amqp_url))
    assert announcing.disconnect(CONNECTION)
    _every_process_answers(receivers, secret, 410)

    # A reconnect (with a fresh secret) is taken at once as well.
    announcing.save(CONNECTION, "acct-changes", COMPANY, None, "ws_user", "connected")
    new_secret = store.webhook_secret(CONNECTION)
    assert new_secret != secret
    _every_process_answers(receivers, new_secret, 202)

    # And so is a rotated webhook secret: the old one is refused, the new one accepted.
    announcing.save(
        CONNECTION, "acct-changes", COMPANY, None, "ws_user", "connected", rotate_webhook_secret=True
    )
    rotated = store.webhook_secret(CONNECTION)
    _every_process_answers(receivers, new_secret, 401)
    assert [_post(port, rotated) for port in receivers] == [202, 202]


def test_the_cache_keeps_entries_only_the_fallback_ttl_while_the_listener_is_down(settings, store):
    _save(store)
    now = [0.0]
    cache = CachedConnectionLookup(store, ttl=5.0, clock=lambda: now[0], fallback_ttl=1.0)
    assert cache.get(CONNECTION).is_active
    store.disconnect(CONNECTION)
    now[0] = 0.5
    assert cache.get(CONNECTION).is_active  # within the fallback TTL: still cached
    now[0] = 1.1
    assert not cache.get(CONNECTION).is_active  # listener not up: 1 s, not 5 s

    _save(store)
    cache.set_listening(True)  # starts over, then keeps entries the full TTL
    assert cache.get(CONNECTION).is_active
    store.disconnect(CONNECTION)
    now[0] = 5.0
    assert cache.get(CONNECTION).is_active
    cache.set_listening(False)  # the listener lost the broker: forget, and back to 1 s
    assert not cache.get(CONNECTION).is_active


# -- in one process: two receivers whose caches nobody tells --------------------------------


@pytest.fixture
def silent_receivers(settings, store, broker):
    """Two receivers on one database without change listeners: only the lookup can tell them."""
    parts = [build_parts(settings, listen_for_changes=False) for _ in range(2)]
    try:
        yield [create_app(settings, parts=p).test_client() for p in parts]
    finally:
        for p in parts:
            p.close()


def _post_to(client, secret: str | None) -> int:
    body = json.dumps(invoice_event(key=str(next(_deliveries)), companyId=COMPANY)).encode()
    headers = {"X-FlexPoint-Signature": sign_hmac(secret, body, int(time.time()))} if secret else {}
    response = client.post(
        f"/webhooks/intacct/{CONNECTION}", data=body, content_type="application/json", headers=headers
    )
    return response.status_code


@pytest.mark.broker
def test_without_any_announcement_the_very_next_webhook_sees_each_change(store, silent_receivers):
    # Unknown to both (each caches the miss), then created: the very next webhook is taken.
    assert [_post_to(client, "any-secret") for client in silent_receivers] == [404, 404]
    _save(store)
    secret = store.webhook_secret(CONNECTION)
    assert [_post_to(client, secret) for client in silent_receivers] == [202, 202]

    store.disconnect(CONNECTION)  # the plain store: no announcement reaches the caches
    assert [_post_to(client, secret) for client in silent_receivers] == [410, 410]
    assert [_post_to(client, None) for client in silent_receivers] == [410, 410]  # before auth

    _save(store)  # reconnected, with a fresh secret
    fresh = store.webhook_secret(CONNECTION)
    assert [_post_to(client, fresh) for client in silent_receivers] == [202, 202]

    _save(store, rotate_webhook_secret=True)
    rotated = store.webhook_secret(CONNECTION)
    assert [_post_to(client, fresh) for client in silent_receivers] == [401, 401]
    assert [_post_to(client, rotated) for client in silent_receivers] == [202, 202]


@pytest.mark.broker
def test_a_refusal_that_does_not_rest_on_the_connection_reads_nothing(settings, store, silent_receivers):
    _save(store)
    client = silent_receivers[0]
    assert _post_to(client, store.webhook_secret(CONNECTION)) == 202  # cached, thread warm
    parts = client.application.extensions["flexsync.parts"]
    lookups = []
    real = parts.ledger.lookup
    parts.ledger.lookup = lambda *args: lookups.append(args) or real(*args)
    assert _post_to(client, None) == 401  # no credentials at all: nothing to recheck
    assert lookups == []
    assert _post_to(client, "not-the-secret") == 401  # a bad signature is rechecked once
    assert lookups == [(CONNECTION, "")]


# -- the listener on the worker runtime: a lost connection is taken up again -------------------


class _RecordingCache:
    """What a listener tells its cache, with events a test can wait on."""

    def __init__(self) -> None:
        self.listening: list[bool] = []
        self.invalidated: list[str | None] = []
        self.up = threading.Event()
        self.down = threading.Event()
        self.evicted = threading.Event()

    def set_listening(self, listening: bool) -> None:
        self.listening.append(listening)
        (self.up if listening else self.down).set()

    def invalidate(self, connection_id: str | None = None) -> None:
        self.invalidated.append(connection_id)
        self.evicted.set()


@pytest.mark.broker
def test_the_listener_reconnects_after_its_connection_is_cut_and_hears_the_next_change(settings, broker):
    relay = CuttableRelay(settings.amqp_url)
    cache = _RecordingCache()
    listener = ConnectionChangeListener(relay.url, cache)
    changes = ConnectionChanges(settings.amqp_url)
    try:
        listener.start()
        assert cache.up.wait(10), "never listened"
        assert changes.announce("before-the-cut", "disconnected")
        assert cache.evicted.wait(10) and cache.invalidated == ["before-the-cut"]

        cache.up.clear()
        cache.evicted.clear()
        assert relay.cut() == 1
        # The cache hears at once that announcements may be missed, then that they are heard again.
        assert cache.down.wait(10), "the lost connection was not noticed"
        assert cache.up.wait(20), "the listener did not reconnect"
        assert listener.listening and cache.listening == [True, False, True]
        assert relay.accepted == 2

        assert changes.announce("after-the-cut", "disconnected")
        assert cache.evicted.wait(10), "the announcement after the reconnect was not heard"
        assert cache.invalidated == ["before-the-cut", "after-the-cut"]
    finally:
        changes.close()
        listener.close()
        relay.close()
    assert not listener.listening and cache.listening[-1] is False


@pytest.mark.broker
def test_an_unreadable_announcement_evicts_everything_and_goes_nowhere_else(settings, broker):
    cache = _RecordingCache()
    listener = ConnectionChangeListener(settings.amqp_url, cache)
    try:
        listener.start()
        assert cache.up.wait(10)
        broker.publish(CONNECTION_CHANGES_EXCHANGE.name, "", b"not json")  # said to be JSON
        assert cache.evicted.wait(10) and cache.invalidated == [None]
    finally:
        listener.close()
    assert broker.depth("dead-letter") == 0


def test_a_listener_that_cannot_reach_the_broker_still_stops_when_closed():
    cache = _RecordingCache()
    listener = ConnectionChangeListener("amqp://guest:guest@127.0.0.1:1/%2F", cache)  # nothing there
    listener.start()
    assert not cache.up.wait(0.5)  # trying to connect, in vain
    started = time.monotonic()
    listener.close(timeout=30)
    assert not listener.running, "the listener kept trying after close()"
    assert time.monotonic() - started < 30 and cache.listening == []
