"""A connection's change reaches every receiver process at once (issue 14).

Two real ``flexsync web`` processes share one database and broker; each has answered for the
connection (so it is in both caches, whose TTL is 5 s). After a disconnect through the store and
the announcing publisher, each process answers 410 within half a second (in practice the next
webhook or the one after: the announcement reaches the processes through the broker while the
request does not), and keeps doing so; a reconnect and a webhook secret rotation show as fast.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.connection_changes import AnnouncingStore, ConnectionChanges
from ingest.auth import sign_hmac
from store.connections import CachedConnectionLookup, ConnectionStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import invoice_event, wait_until

ROOT = Path(__file__).resolve().parent.parent
CONNECTION = "conn-changes-1"
COMPANY = "CHANGES-CO"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def _ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


@pytest.fixture
def store(settings):
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    yield ConnectionStore(engine, SecretBox.for_settings(settings))
    engine.dispose()


@pytest.fixture
def receivers(settings, store, tmp_path, broker):
    """Two receiver processes, each ready and listening for changes; yields their ports."""
    processes, ports, logs = [], [], []
    for n in range(2):
        port = _free_port()
        log = tmp_path / f"web-{n}.log"
        env = {
            **os.environ,
            "FLEXSYNC_ENV": "test",
            "AMQP_URL": settings.amqp_url,
            "DATABASE_URL": settings.database_url,
            "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
            "PORT": str(port),
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "INFO",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(log, "wb") as out:
            processes.append(
                subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "flexsync"),
                        "web",
                        "--workers",
                        "1",
                        "--threads",
                        "4",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        ports.append(port)
        logs.append(log)
    try:
        for port, log in zip(ports, logs, strict=True):
            wait_until(lambda port=port: _ready(port), timeout=60, message=f"receiver on {port} ready")
            wait_until(
                lambda log=log: "connection_changes_listening" in log.read_text(errors="replace"),
                timeout=30,
                message="the receiver's change listener consuming",
            )
        yield ports
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _save(store, **kwargs):
    return store.save(CONNECTION, "acct-changes", COMPANY, None, "ws_user", "connected", **kwargs)


# Well inside the cache's 5 s TTL and its 1 s fallback TTL (each entry was loaded just before
# the change), so only the announcement can make a process answer differently this soon.
PROPAGATION_DEADLINE = 0.5


def _every_process_answers(ports: list[int], secret: str, expected: int) -> None:
    """Each process answers ``expected`` within the deadline, then keeps answering it."""
    for port in ports:
        started = time.monotonic()
        wait_until(
            lambda port=port: _post(port, secret) == expected,
            timeout=PROPAGATION_DEADLINE,
            interval=0.005,
            message=f"the receiver on {port} answering {expected}",
        )
        assert time.monotonic() - started < PROPAGATION_DEADLINE + 0.1
        assert [_post(port, secret) for _ in range(3)] == [expected] * 3


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
