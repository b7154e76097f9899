"""The console's pages on real data: filters, a letter in full (secrets redacted), jobs, postings."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from console.app import create_app
from observability.logging import register_secret
from processes.console import build as build_parts
from tests.conftest import wait_until
from tests.console.conftest import TOKEN, csrf_of, sign_in
from tests.ops.conftest import dead_store, parking  # noqa: F401  (fixtures)
from workers.deadletters.store import LetterQuery
from workers.writeback.store import PostingStore, reference_for

pytestmark = pytest.mark.broker


@pytest.fixture
def app(settings, declared_topology):
    parts = build_parts(settings.with_overrides(flexsync_console_token=TOKEN))
    yield create_app(parts.settings, parts=parts)
    parts.close()


@pytest.fixture
def client(app):
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


def test_filters_select_the_letters_and_a_letter_shows_in_full_without_secrets(client, parking):  # noqa: F811
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    register_secret("hunter2-very-secret-password")
    for n, connection in enumerate([first, first, second]):
        # Keys no random text on the page (a CSRF token, an id) could contain by chance.
        parking.park(connection, "invoices" if n else "customers", key=f"key-number-{n}")
    parking.wait_parked(3)
    # The console page drains nothing itself: the CLI (or its storing thread) does.
    from workers.deadletters.storer import StoringConsumer

    StoringConsumer.for_url(parking.broker.url, parking.store, until_idle=0.3).drain()
    page = client.get(f"/dead?connection={first}").text
    assert "2 stored matching" in page
    assert "key-number-0" in page and "key-number-1" in page and "key-number-2" not in page
    page = client.get(f"/dead?connection={first}&resource=invoices").text
    assert "1 stored matching" in page and "key-number-1" in page and "key-number-0" not in page
    assert "ISO-8601" in client.get("/dead?since=yesterday").text

    [row] = parking.store.find(LetterQuery(connection=second))
    with parking.store._engine.begin() as conn:  # an exception that quotes a password
        conn.execute(
            text("UPDATE dead_letters SET exception = :e WHERE letter_id = :id"),
            {"e": "ValueError: login hunter2-very-secret-password refused", "id": row.letter_id},
        )
    detail = client.get(f"/dead/{row.letter_id}").text
    assert "ValueError: login [REDACTED] refused" in detail and "hunter2" not in detail
    assert (
        "ar.invoices.update" in detail
        and "sync.ar" in detail
        and "&#34;key&#34;: &#34;key-number-2&#34;" in detail
    )


def test_purging_a_page_is_confirmed_then_runs_as_a_job_with_exact_accounting(client, app, parking):  # noqa: F811
    connection = str(uuid.uuid4())
    for n in range(5):
        parking.park(connection, key=str(n))
    parking.wait_parked(5)
    form = {"verb": "purge", "scope": "selection", "connection": connection}
    confirm = client.post("/dead/action", data={**form, "csrf_token": csrf_of(client.get("/dead").text)})
    assert "Purge 5 dead letters for good?" in confirm.text
    assert parking.store.count(LetterQuery(state="purged")) == 0  # asking changes nothing
    # Two more arrive before the operator says yes: no more than the five confirmed go.
    late = [parking.park(connection, key=f"late-{n}").message_id for n in range(2)]
    parking.wait_parked(7)
    done = client.post(
        "/dead/action",
        data={**form, "count": 5, "confirmed": "yes", "csrf_token": csrf_of(confirm.text)},
    )
    assert done.status_code == 302 and "/jobs/" in done.headers["Location"]
    job = app.extensions["flexsync.console"].jobs.recent()[0]
    wait_until(lambda: job.state != "running", message="the purge job")
    assert job.state == "done" and job.counts == {"purged": 5, "kept": 2}
    assert parking.store.count(LetterQuery(state="purged")) == 5
    assert sorted(parking.still_dead()) == sorted(late)
    assert "purged 5; 2 still stored" in client.get(done.headers["Location"]).text
    assert "purged 5; 2 still stored" in client.get("/audit").text


def test_payment_postings_show_state_reason_attempts_and_key_filtered_by_state(client, app):
    engine = app.extensions["flexsync.console"].engine
    store = PostingStore(engine)
    posted = store.claim("acct-1", "PAY-1", "conn-1", lease_seconds=60)
    store.record_posted(
        store.intend(posted, "creating", lease_seconds=60, settle_seconds=30, company_id="CO-77"), "K-9"
    )
    failed = store.claim("acct-1", "PAY-2", "conn-1", lease_seconds=60)
    store.move(failed, "failed", reason="invoice_not_open", message="Invoice 7 is paid already.", attempts=3)
    page = client.get("/postings").text
    for value in (
        "PAY-1",
        "posted",
        "K-9",
        reference_for("acct-1", "PAY-1"),
        "CO-77",
        "PAY-2",
        "invoice_not_open",
        "Invoice 7 is paid already.",
    ):
        assert value in page
    only_failed = client.get("/postings?state=failed").text
    assert "PAY-2" in only_failed and "PAY-1" not in only_failed
