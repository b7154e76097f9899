"""The console in a real browser: a real failure found, filtered, fixed, replayed and audited."""

from __future__ import annotations

import pytest
import requests

from tests.browser.conftest import TOKEN, serve, shot
from tests.conftest import COMPANY, wait_until
from tests.workers.test_sync_flow import company, stored, worker  # noqa: F401  (fixtures)
from workers.deadletters.store import LetterQuery

pytestmark = pytest.mark.broker
CUSTOMERS = "accounts-receivable/customer"


def sign_in(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "dana")
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{url}/")


def evil_site(target: str):
    """Another origin (same site: 127.0.0.1) whose page posts a purge to the console by itself."""
    html = (
        f'<form method="post" action="{target}/dead/action">'
        '<input name="verb" value="purge"><input name="scope" value="selection"></form>'
        "<script>document.forms[0].submit()</script>"
    ).encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [html]

    return serve(app)


def test_a_real_failure_is_found_fixed_replayed_and_audited(
    page,
    live_console,
    live_receiver,
    company,  # noqa: F811
    worker,  # noqa: F811
    flexpoint,
    intacct,
):
    url, parts = live_console
    connection_id = live_receiver.connection.connection_id

    # Without a session: every page sends to the sign-in, and data is refused.
    page.goto(f"{url}/dead")
    assert page.url.startswith(f"{url}/login")
    assert page.request.get(f"{url}/overview/series.json").status == 401
    shot(page, "login")
    sign_in(page, url)

    # A real failure, synced by the worker: a customer without a status. Sage's enum allows null,
    # the mapping table maps only active, activeNonPosting and inactive, so the mapping refuses it.
    # (The simulator refuses values Sage does not publish, such as an unknown status.)
    created = requests.post(
        f"{company}/{CUSTOMERS}",
        json={"id": "C-13", "name": "Unlucky Ltd", "status": None},
        timeout=10,
    )
    created.raise_for_status()
    key = str(created.json()["key"])
    wait_until(
        lambda: parts.dead.count(LetterQuery(connection=connection_id)) == 1,
        timeout=30,
        message="the dead letter",
    )
    assert stored(flexpoint, live_receiver, "customers", key) is None
    page.goto(f"{url}/")
    page.wait_for_selector(".chart", timeout=15_000)
    shot(page, "overview")

    # Filter to it.
    page.goto(f"{url}/dead")
    page.fill("input[name=connection]", connection_id)
    page.select_option("select[name=reason]", "mapping_error")
    page.click("#apply")
    page.wait_for_url("**/dead?*")
    assert page.inner_text("#matched").startswith("1 stored")
    row = page.locator("table.letters tbody tr")
    assert row.count() == 1 and "mapping_error" in row.inner_text() and key in row.inner_text()
    shot(page, "dead-letters")
    row.locator("a").first.click()
    page.wait_for_selector("pre.code")
    assert "customers" in page.content() and "sync.ar" in page.content()
    shot(page, "dead-letter-detail")

    # Fix the record in Intacct without its webhook, so only the replay can bring it over.
    admin = f"{intacct.base_url}/sandbox/companies/{COMPANY}"
    requests.patch(f"{admin}/webhooks", json={"enabled": False}, timeout=10).raise_for_status()
    requests.patch(
        f"{admin}/objects/{CUSTOMERS}/{key}", json={"status": "active"}, timeout=10
    ).raise_for_status()

    page.go_back()
    page.click("#replay-selection")
    assert "Replay 1 dead letters to their work queues?" in page.inner_text("main")
    shot(page, "confirm-replay")
    page.click("#confirm")
    page.wait_for_selector("#job-state:has-text('done')", timeout=30_000)
    assert "moved 1, failed 0 of 1 selected" in page.inner_text("#job-outcome")
    shot(page, "replay-job")
    record = wait_until(
        lambda: stored(flexpoint, live_receiver, "customers", key),
        timeout=30,
        message="the replayed customer",
    )
    assert record["data"]["customerId"] == "C-13" and record["data"]["name"] == "Unlucky Ltd"
    assert parts.dead.count(LetterQuery(connection=connection_id, state="replayed")) == 1

    # A cross-site POST, sent by the browser with the session cookie, is refused; nothing changes.
    evil_url, evil = evil_site(url)
    try:
        page.goto(evil_url)
        page.wait_for_url(f"{url}/dead/action")
        assert "cross-site request refused" in page.inner_text("main")
    finally:
        evil.shutdown()
    assert parts.dead.count(LetterQuery(state="purged")) == 0

    # The audit page shows the replay, by whom, and its outcome.
    page.goto(f"{url}/audit")
    audit = page.inner_text("#audit")
    assert "replay dead letters" in audit and "dana" in audit and "moved 1, failed 0" in audit
    assert TOKEN not in page.content()
    shot(page, "audit")
    for name in ("connections", "archive", "postings"):
        page.goto(f"{url}/{name}")
        shot(page, name)
    # The last page shot: the write-back's postings, none yet in this test's database.
    assert "No posting yet." in page.inner_text("main") and "intacct key" in page.inner_text("main")
