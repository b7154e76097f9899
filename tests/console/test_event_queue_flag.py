"""The connections page says which companies' event queue service answered 404 (until reconnect)."""

from __future__ import annotations

import re
import uuid

from ingest.event_queue import QueueFlags
from processes.parts import ProcessParts
from store.db import create_engine_for


def _row(html: str, connection_id: str) -> str:
    found = re.search(rf'<tr data-connection="{re.escape(connection_id)}">(.*?)</tr>', html, re.S)
    assert found, f"no row for {connection_id}"
    return found.group(1)


def test_a_company_without_a_queue_service_is_flagged_until_it_connects_again(signed_in, console_settings):
    connections = ProcessParts(console_settings, process="test").connections
    ids = {company: str(uuid.uuid4()) for company in ("NOQUEUE-CO", "QUEUED-CO")}

    def connect(company: str):
        return connections.save(
            connection_id=ids[company],
            account_id=f"acct-{company.lower()}",
            company_id=company,
            entity_id=None,
            user_id="ws_flexpoint",
            state="connected",
        )

    flagged = connect("NOQUEUE-CO")
    connect("QUEUED-CO")
    engine = create_engine_for(console_settings.database_url)
    try:
        QueueFlags(engine).mark(ids["NOQUEUE-CO"], flagged.updated_at)
        page = signed_in.get("/connections").text
        assert "Event queue" in page
        assert "unavailable (404 since" in _row(page, ids["NOQUEUE-CO"])
        assert "unavailable (404" not in _row(page, ids["QUEUED-CO"]) and ">on<" in _row(
            page, ids["QUEUED-CO"]
        )
        # A connect (credential rotation, reconnect) asks the queue anew: the flag no longer holds.
        assert connect("NOQUEUE-CO").updated_at > flagged.updated_at
        page = signed_in.get("/connections").text
        assert "unavailable (404" not in _row(page, ids["NOQUEUE-CO"])
    finally:
        engine.dispose()
