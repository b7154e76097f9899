"""A small company in the Intacct simulator, a connection to it, and the clients a backfill uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from clients.flexpoint import FlexPointClient
from clients.intacct import IntacctClient, create_client
from clients.intacct.slots import company_slots
from config import Settings
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.workers import expected_flexpoint
from workers.backfill.store import BackfillStore
from workers.connections.store import ConnectionRecord, ConnectionStore

COMPANY = "BACKFILL-CO"
# Small enough to run in a second, big enough for several pages at the tests' page size.
SEED = {"customers": 30, "invoices": 60, "linesPerInvoice": 3, "seed": 11}


@dataclass
class Parts:
    """Everything a backfill needs, wired to the simulators and a fresh database."""

    settings: Settings
    engine: Engine
    connections: ConnectionStore
    backfills: BackfillStore
    intacct: IntacctClient
    flexpoint: FlexPointClient
    connection: ConnectionRecord


@pytest.fixture
def seeded(intacct) -> dict[str, Any]:
    response = requests.post(f"{intacct.base_url}/sandbox/companies/{COMPANY}/seed", json=SEED, timeout=60)
    response.raise_for_status()
    return response.json()


def build_parts(settings: Settings, intacct, flexpoint, database_url: str | None = None) -> Parts:
    settings = settings.with_overrides(
        intacct_api_url=intacct.api_url,
        intacct_client_secret=intacct.config.client_secret,
        flexpoint_api_url=flexpoint.url,
        flexpoint_api_token=flexpoint.config.token,
        **({"database_url": database_url} if database_url else {}),
    )
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    connections = ConnectionStore(engine, SecretBox.for_settings(settings))
    connection = connections.save(
        connection_id=str(uuid.uuid4()),
        account_id=f"acct-{uuid.uuid4().hex[:12]}",
        company_id=COMPANY,
        entity_id=None,
        user_id="ws_flexpoint",
        state="connected",
    )
    return Parts(
        settings=settings,
        engine=engine,
        connections=connections,
        backfills=BackfillStore(engine),
        intacct=create_client(settings, company_slots(settings, engine)),
        flexpoint=FlexPointClient.from_settings(settings, process="backfill-test"),
        connection=connection,
    )


@pytest.fixture
def parts(settings, intacct, flexpoint, seeded) -> Iterator[Parts]:
    built = build_parts(settings, intacct, flexpoint)
    yield built
    built.intacct.close()
    built.flexpoint.close()
    built.engine.dispose()


def intacct_records(intacct, path: str) -> list[dict[str, Any]]:
    """Every record of an object in the simulator, nested, through its admin API."""
    response = requests.get(
        f"{intacct.base_url}/sandbox/companies/{COMPANY}/objects/{path}",
        params={"size": 1_000_000},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["records"]


def query_calls(intacct, path: str) -> int:
    """How many API calls the simulator counted on one object of the company."""
    stats = requests.get(
        f"{intacct.base_url}/sandbox/stats", params={"companyId": COMPANY}, timeout=10
    ).json()
    return stats["calls"].get(COMPANY, {}).get(path, 0)


def assert_flexpoint_equals_intacct(parts: Parts, intacct) -> dict[str, int]:
    """Every live record of every resource is in FlexPoint at its version with what the contract
    makes of it, lines included (:mod:`tests.workers.expected_flexpoint`, not the mappings), and
    nothing else is (drafts are not); returns the number of live records per resource."""
    counts = {}
    for resource, path in expected_flexpoint.OBJECTS.items():
        source = expected_flexpoint.LINES.get(resource)
        lines = expected_flexpoint.lines_by_parent(
            resource, intacct_records(intacct, source.object) if source is not None else ()
        )
        expected = [
            expected_flexpoint.expect(resource, r, lines.get(str(r["key"]), ()))
            for r in intacct_records(intacct, path)
        ]
        live = {item.key: item for item in expected if not item.deleted}
        stored = {
            item["externalId"]: item
            for item in parts.flexpoint.iter_records(parts.connection.account_id, resource)
        }
        assert set(stored) == set(live), resource
        for key, item in stored.items():
            assert expected_flexpoint.version(item["sourceVersion"]) == live[key].version, (resource, key)
            assert expected_flexpoint.held(resource, item["data"]) == live[key].data, (resource, key)
            if resource in ("invoices", "journal-entries"):
                assert live[key].data["lines"], (resource, key, "the seed gives every one lines")
        counts[resource] = len(live)
    return counts
