"""Fixtures for the provisioning worker: sandbox companies, a running worker, message publishing."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from processes.provisioning import Provisioning, ScheduledBackfills, build
from store.db import create_engine_for, upgrade
from tests.conftest import wait_until

PUBLIC_BASE_URL = "https://flexsync.example.com"
ALL_AREAS = ["company", "general-ledger", "accounts-receivable", "cash-management"]


class Sandbox:
    """The two simulators as a test drives and inspects them."""

    def __init__(self, intacct, flexpoint) -> None:
        self.intacct = intacct
        self.flexpoint = flexpoint
        self._fp_auth = {"Authorization": f"Bearer {flexpoint.config.token}"}

    def company(
        self,
        *,
        users: list[dict[str, Any]] | None = None,
        sender_authorized: bool = True,
        entities: list[str] | None = None,
    ) -> str:
        """A new simulated company (by default one Web Services user with every area); its id."""
        company_id = f"CO-{uuid.uuid4().hex[:8]}"
        body = {
            "companyId": company_id,
            "users": users if users is not None else [{"userId": "ws_flexpoint", "areas": ALL_AREAS}],
            "senderAuthorized": sender_authorized,
            "webhooks": {"enabled": False},
            "entities": entities or [],
        }
        requests.post(f"{self.intacct.base_url}/sandbox/companies", json=body, timeout=10).raise_for_status()
        return company_id

    def intacct_faults(self, **settings: Any) -> None:
        requests.put(f"{self.intacct.base_url}/sandbox/faults", json=settings, timeout=10).raise_for_status()

    def flexpoint_faults(self, **settings: Any) -> None:
        requests.put(
            f"{self.flexpoint.url}/sandbox/faults", json=settings, headers=self._fp_auth, timeout=10
        ).raise_for_status()

    def status(self, account_id: str) -> dict[str, Any] | None:
        """The last ConnectionStatus FlexPoint received for the account, or None."""
        response = requests.get(
            f"{self.flexpoint.url}/v1/accounts/{account_id}/integrations/sage-intacct",
            headers=self._fp_auth,
            timeout=10,
        )
        return response.json() if response.status_code == 200 else None

    def status_puts(self, account_id: str) -> list[dict[str, Any]]:
        """The status reports FlexPoint answered for the account, oldest first."""
        entries = requests.get(
            f"{self.flexpoint.url}/sandbox/requests",
            params={"accountId": account_id, "limit": 1000},
            headers=self._fp_auth,
            timeout=10,
        ).json()["requests"]
        puts = [
            e for e in entries if e["method"] == "PUT" and e["path"].endswith("/integrations/sage-intacct")
        ]
        return list(reversed(puts))

    def wait_for_state(self, account_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
        return wait_until(
            lambda: (s := self.status(account_id)) is not None and s["state"] == state and s,
            timeout=timeout,
            message=f"FlexPoint to receive state {state!r} for {account_id}",
        )


@pytest.fixture
def sandbox(intacct, flexpoint) -> Sandbox:
    return Sandbox(intacct, flexpoint)


@pytest.fixture
def worker_settings(settings, intacct, flexpoint):
    return settings.with_overrides(
        intacct_api_url=intacct.api_url,
        intacct_client_secret=intacct.config.client_secret,
        flexpoint_api_url=flexpoint.url,
        flexpoint_api_token=flexpoint.config.token,
        public_base_url=PUBLIC_BASE_URL,
    )


@pytest.fixture
def backfills(worker_settings):
    """The real backfill scheduler (``workers.backfill``), on the worker's database."""
    engine = create_engine_for(worker_settings.database_url)
    upgrade(engine)
    yield ScheduledBackfills(engine)
    engine.dispose()


class BackfillNeverRequested:
    """For failure paths: a failed connect must not schedule an import, so any call is a failure."""

    def request(self, connection_id: str, *, restart: bool) -> None:
        raise AssertionError(f"a backfill was requested for {connection_id} after a failed connect")

    def cancel(self, connection_id: str) -> None:
        raise AssertionError(f"a backfill was cancelled for {connection_id} on a connect")


class RunningWorker:
    """A provisioning consumer on a thread, as the ``provisioning`` process runs it."""

    def __init__(self, parts: Provisioning) -> None:
        self.parts = parts
        self.store = parts.store
        self._thread = threading.Thread(
            target=parts.consumer.run, kwargs={"safety_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.parts.consumer.stop()
        self._thread.join(30)
        self.parts.close()
        assert not self._thread.is_alive(), "the consumer did not stop"


@pytest.fixture
def start_worker(worker_settings, broker) -> Iterator[Callable[..., RunningWorker]]:
    """Starts workers (``build`` options pass through); each is stopped at the end of the test."""
    running: list[RunningWorker] = []

    def start(settings=None, **options: Any) -> RunningWorker:
        options.setdefault("unavailable_retries", 1)
        worker = RunningWorker(build(settings or worker_settings, **options))
        running.append(worker)
        return worker

    yield start
    for worker in running:
        worker.stop()


class Messages:
    """Publishes FlexPoint's connection messages to ``flexpoint.connections``, as FlexPoint does."""

    def __init__(self, broker) -> None:
        self._broker = broker
        self._clock = datetime.now(UTC)

    def _requested_at(self) -> str:
        # Strictly growing, as FlexPoint's clicks are.
        self._clock += timedelta(seconds=1)
        return self._clock.isoformat().replace("+00:00", "Z")

    def connect(self, company_id: str, *, publish: bool = True, **fields: Any) -> dict[str, Any]:
        body = {
            "messageId": str(uuid.uuid4()),
            "accountId": f"acct-{uuid.uuid4().hex[:12]}",
            "connectionId": str(uuid.uuid4()),
            "companyId": company_id,
            "entityId": None,
            "userId": "ws_flexpoint",
            "requestedAt": self._requested_at(),
            **fields,
        }
        if publish:
            self.publish("connection.connect", body)
        return body

    def disconnect(self, connect: dict[str, Any], *, publish: bool = True, **fields: Any) -> dict[str, Any]:
        body = {
            "messageId": str(uuid.uuid4()),
            "accountId": connect["accountId"],
            "connectionId": connect["connectionId"],
            "reason": "user clicked Disconnect",
            "requestedAt": self._requested_at(),
            **fields,
        }
        if publish:
            self.publish("connection.disconnect", body)
        return body

    def publish(
        self, routing_key: str, body: dict[str, Any] | bytes, exchange: str = "flexpoint.connections"
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._broker.publish(exchange, routing_key, raw)


@pytest.fixture
def messages(broker) -> Messages:
    return Messages(broker)
