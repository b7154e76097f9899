"""The tenant pin in the connection store, on SQLite and PostgreSQL: one tenant per connect,
pinned atomically however many first deliveries race, cleared by the next connect."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine

from store import SecretBox, generate_key
from workers.connections.store import ConnectionStore


@pytest.fixture
def store(engine: Engine) -> ConnectionStore:
    return ConnectionStore(engine, SecretBox([generate_key()]))


def _connect(store: ConnectionStore, connection_id: str = "conn-1"):
    return store.save(connection_id, "acct-1", "ACME-CO", None, "ws", "connected")


def test_the_first_tenant_is_pinned_and_kept(store):
    assert _connect(store).tenant_id is None
    assert store.pin_tenant("conn-1", "tenant-a") == "tenant-a"
    assert store.pin_tenant("conn-1", "tenant-b") == "tenant-a"  # not replaced
    assert store.get("conn-1").tenant_id == "tenant-a"
    assert [r.tenant_id for r in store.list()] == ["tenant-a"]


def test_a_pin_does_not_count_as_a_change_of_the_connection(store):
    before = _connect(store)
    store.pin_tenant("conn-1", "tenant-a")
    assert store.get("conn-1").updated_at == before.updated_at


def test_a_reconnect_clears_the_pin_so_the_next_delivery_pins_again(store):
    _connect(store)
    store.pin_tenant("conn-1", "tenant-a")
    assert _connect(store).tenant_id is None
    assert store.pin_tenant("conn-1", "tenant-b") == "tenant-b"


def test_nothing_is_pinned_on_a_disconnected_or_unknown_connection(store):
    _connect(store)
    store.disconnect("conn-1")
    assert store.pin_tenant("conn-1", "tenant-a") is None
    assert store.pin_tenant("nobody", "tenant-a") is None
    assert store.get("conn-1").tenant_id is None


def test_concurrent_first_deliveries_pin_one_tenant(store):
    _connect(store)
    start = threading.Barrier(8)

    def pin(number: int) -> str | None:
        start.wait(timeout=10)
        return store.pin_tenant("conn-1", f"tenant-{number % 2}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(pin, range(8)))
    stored = store.get("conn-1").tenant_id
    assert stored in ("tenant-0", "tenant-1")
    assert answers == [stored] * 8  # every caller is told the one tenant that won
