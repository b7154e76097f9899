"""The breakers on the console: the Overview's card (and its live refresh) and each connection's own."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from processes.parts import ProcessParts
from store.breakers import BreakerStore
from store.db import create_engine_for

OPEN_PEER = "intacct:ACME-CO"


def _fail(store: BreakerStore, peer: str, times: int, reason: str, probe_in: float) -> None:
    now = time.time()
    for _ in range(times):
        store.record_failure(peer, reason, now, probe=False, threshold=5, next_probe=lambda n: probe_in)


def _row(html: str, attribute: str, value: str) -> str:
    found = re.search(rf'<tr {attribute}="{re.escape(value)}">(.*?)</tr>', html, re.S)
    assert found, f"no row for {value}"
    return found.group(1)


def _probe_in(row: str) -> int:
    return int(re.search(r"next probe in (\d+) s", row).group(1))


@pytest.fixture
def store(console, console_settings):
    """The console's own database (the app has migrated it), written as the workers would."""
    engine = create_engine_for(console_settings.database_url)
    yield BreakerStore(engine)
    engine.dispose()


def _seed(store: BreakerStore) -> None:
    _fail(store, OPEN_PEER, 5, "intacct_unavailable", 40.0)  # the threshold: open
    _fail(store, "flexpoint", 1, "flex_point_unavailable", 5.0)  # one short of it: closed


def test_the_overview_card_shows_an_open_breaker_with_its_next_probe_and_a_closed_one_without(
    signed_in, store
):
    _seed(store)
    for path in ("/", "/overview/live"):  # the page and the fragment htmx refreshes it with
        page = signed_in.get(path).text
        assert "<h2>Breakers</h2>" in page and "1 open of 2 known" in page and "all closed" not in page
        opened = _row(page, "data-peer", OPEN_PEER)
        assert 'class="pill open"' in opened and "intacct_unavailable" in opened
        assert 38 <= _probe_in(opened) <= 40
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", opened)  # since when
        closed = _row(page, "data-peer", "flexpoint")
        assert 'class="pill closed"' in closed and "next probe" not in closed
        assert "flex_point_unavailable" in closed
    # The open peer answers again: the card says every breaker is closed.
    store.record_success(OPEN_PEER, time.time())
    page = signed_in.get("/overview/live").text
    assert "all closed" in page and "open of" not in page
    assert 'class="pill closed"' in _row(page, "data-peer", OPEN_PEER)
    assert "next probe" not in _row(page, "data-peer", OPEN_PEER)


def test_the_overview_says_all_closed_before_any_peer_failed(signed_in):
    page = signed_in.get("/").text
    assert "all closed" in page and "No peer has failed yet." in page


def test_each_connection_shows_its_own_intacct_breaker(signed_in, store, console_settings):
    _seed(store)
    connections = ProcessParts(console_settings, process="test").connections
    ids = {}
    for company in ("ACME-CO", "QUIET-CO", "FLEXPOINT"):
        ids[company] = str(uuid.uuid4())
        connections.save(
            connection_id=ids[company],
            account_id=f"acct-{company.lower()}",
            company_id=company,
            entity_id=None,
            user_id="ws_flexpoint",
            state="connected",
        )
    _fail(store, "intacct:QUIET-CO", 2, "timeout", 9.0)
    page = signed_in.get("/connections").text
    assert "Intacct breaker" in page
    opened = _row(page, "data-connection", ids["ACME-CO"])
    assert 'class="pill open"' in opened and "intacct_unavailable" in opened
    assert 38 <= _probe_in(opened) <= 40 and "0 probes" in opened
    quiet = _row(page, "data-connection", ids["QUIET-CO"])
    assert 'class="pill closed"' in quiet and "2 failures in a row" in quiet and "next probe" not in quiet
    # FlexPoint's breaker is not an Intacct company's: this connection's company never failed.
    never = _row(page, "data-connection", ids["FLEXPOINT"])
    assert 'class="pill closed"' in never and "no failure" in never and "flex_point_unavailable" not in never
