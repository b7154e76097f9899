"""Fixtures for the write-back: a company's books in the Intacct simulator, FlexPoint's collected
payments, a stored connection, a running writeback consumer, and publishing payment messages."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from processes.writeback import Timing, Writeback, build
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import wait_until
from workers.connections.store import ConnectionStore

PAYMENTS_EXCHANGE = "flexpoint.payments"
INVOICE = "accounts-receivable/invoice"
# A checking account in the published shape (general-ledger-cash-management-company.md §5): no
# ``name``; the bank and currency under ``bankAccountDetails``.
BANK_ACCOUNT = {
    "id": "BANK-01",
    "location": {"id": "1"},
    "bankAccountDetails": {"bankName": "Operating", "currency": "USD"},
    "accounting": {"glAccount": {"id": "1000"}},
}


def reference_of(payment: dict[str, Any]) -> str:
    """The Intacct ``referenceNumber`` a FlexPoint payment must be posted under, from the brief
    (intacct-rest.md "The reference"), not from the service: ``FP-`` + the first 18 characters of
    the unpadded upper-case base32 of SHA-256(``<accountId>:<paymentId>``)."""
    digest = hashlib.sha256(f"{payment['accountId']}:{payment['paymentId']}".encode()).digest()
    return "FP-" + base64.b32encode(digest).decode("ascii").rstrip("=")[:18]


class Books:
    """One simulated Intacct company with customers, a bank, an undeposited-funds account and invoices."""

    def __init__(self, intacct, company_id: str) -> None:
        self.base = f"{intacct.base_url}/sandbox"
        self.company_id = company_id

    def admin(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = requests.request(method, f"{self.base}/{path}", json=body, params=params, timeout=30)
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response.json() if response.content else None

    def record(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.admin("POST", f"companies/{self.company_id}/objects/{path}", body)

    def invoice(self, amount: str = "1000.00", customer: str = "C-1", **fields: Any) -> str:
        created = self.record(
            INVOICE,
            {
                "customer": {"id": customer},
                "lines": [{"txnAmount": amount, "glAccount": {"id": "4000"}}],
                **fields,
            },
        )
        return str(created["key"])

    def get_invoice(self, key: str) -> dict[str, Any]:
        return self.admin("GET", f"companies/{self.company_id}/objects/{INVOICE}/{key}")

    def payments(self, reference: str | None = None, *, reversals: bool = False) -> list[dict[str, Any]]:
        """The payments the simulator stores (the oracle: its own store, not our client), without
        the ``reversal`` records a reverse adds (they carry the reference too) unless ``reversals``."""
        params = {"referenceNumber": reference} if reference else {}
        stored = self.admin("GET", f"companies/{self.company_id}/payments", **params)["payments"]
        return [p for p in stored if reversals or p["state"] != "reversal"]

    def configure(self, **settings: Any) -> None:
        self.admin("PATCH", f"companies/{self.company_id}", settings)


def new_books(intacct, company_id: str | None = None, **settings: Any) -> Books:
    company_id = company_id or f"CO-{uuid.uuid4().hex[:8]}"
    requests.post(
        f"{intacct.base_url}/sandbox/companies",
        json={"companyId": company_id, "webhooks": {"enabled": False}, **settings},
        timeout=10,
    ).raise_for_status()
    books = Books(intacct, company_id)
    books.record("accounts-receivable/customer", {"id": "C-1", "name": "Acme Retail"})
    books.record("accounts-receivable/customer", {"id": "C-2", "name": "Other Co"})
    books.record("cash-management/checking-account", BANK_ACCOUNT)
    books.record("general-ledger/account", {"id": "1499", "name": "Undeposited funds"})
    return books


class FlexPointSide:
    """FlexPoint's collected payments and the posting reports it received."""

    def __init__(self, flexpoint) -> None:
        self.url = flexpoint.url
        self.headers = {"Authorization": f"Bearer {flexpoint.config.token}"}

    def collect(self, account_id: str, payment: dict[str, Any]) -> None:
        body = {k: v for k, v in payment.items() if k not in ("messageId", "accountId", "requestedAt")}
        response = requests.post(
            f"{self.url}/sandbox/accounts/{account_id}/payments", json=body, headers=self.headers, timeout=10
        )
        assert response.status_code in (200, 201), response.text

    def payment(self, account_id: str, payment_id: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.url}/sandbox/accounts/{account_id}/payments/{payment_id}",
            headers=self.headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def posting(self, account_id: str, payment_id: str) -> dict[str, Any] | None:
        response = requests.get(
            f"{self.url}/v1/accounts/{account_id}/payment-postings/{payment_id}",
            headers=self.headers,
            timeout=10,
        )
        return response.json() if response.status_code == 200 else None

    def wait_for(self, account_id: str, payment_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
        return wait_until(
            lambda: (p := self.posting(account_id, payment_id)) is not None and p["state"] == state and p,
            timeout=timeout,
            message=f"FlexPoint to hear {state!r} for payment {payment_id}",
        )

    def faults(self, **settings: Any) -> None:
        requests.put(
            f"{self.url}/sandbox/faults", json=settings, headers=self.headers, timeout=10
        ).raise_for_status()


@pytest.fixture
def wb_settings(settings, intacct, flexpoint):
    return settings.with_overrides(
        intacct_api_url=intacct.api_url,
        intacct_client_secret=intacct.config.client_secret,
        flexpoint_api_url=flexpoint.url,
        flexpoint_api_token=flexpoint.config.token,
    )


@pytest.fixture
def connections(wb_settings) -> Iterator[ConnectionStore]:
    engine = create_engine_for(wb_settings.database_url)
    upgrade(engine)
    yield ConnectionStore(engine, SecretBox.for_settings(wb_settings))
    engine.dispose()


@pytest.fixture
def fp(flexpoint) -> FlexPointSide:
    return FlexPointSide(flexpoint)


class Account:
    """A FlexPoint account connected to one simulated company, and the payments it collects."""

    def __init__(self, books: Books, fp: FlexPointSide, broker, connection_id: str, account_id: str) -> None:
        self.books = books
        self.fp = fp
        self.broker = broker
        self.connection_id = connection_id
        self.account_id = account_id

    def payment(
        self, invoices: dict[str, str] | None = None, amount: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A ``payment.post`` message (collected in FlexPoint first), applied to ``invoices`` {key: amount}."""
        invoices = invoices or {}
        total = amount or f"{sum(float(v) for v in invoices.values()):.2f}"
        message = {
            "messageId": str(uuid.uuid4()),
            "accountId": self.account_id,
            "connectionId": self.connection_id,
            "paymentId": f"pay-{uuid.uuid4().hex[:12]}",
            "customerId": "C-1",
            "receivedOn": "2026-12-01",
            "amount": total,
            "currency": "USD",
            "method": "ach",
            "depositBankAccountId": "BANK-01",
            "allocations": [{"invoiceExternalId": k, "amount": v} for k, v in invoices.items()],
            "memo": "collected by FlexPoint",
            "requestedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        message.update(fields)
        self.fp.collect(self.account_id, message)
        return message

    def reverse_of(self, payment: dict[str, Any], reversed_on: str = "2026-12-03") -> dict[str, Any]:
        return {
            "messageId": str(uuid.uuid4()),
            "accountId": self.account_id,
            "connectionId": self.connection_id,
            "paymentId": payment["paymentId"],
            "reversedOn": reversed_on,
            "memo": "customer disputed",
            "requestedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    def publish(self, routing_key: str, message: dict[str, Any]) -> None:
        self.broker.publish(PAYMENTS_EXCHANGE, routing_key, json.dumps(message).encode())

    def wait_for(self, payment: dict[str, Any], state: str, timeout: float = 30) -> dict[str, Any]:
        return self.fp.wait_for(self.account_id, payment["paymentId"], state, timeout)


@pytest.fixture
def make_account(intacct, fp, connections, broker) -> Callable[..., Account]:
    def make(books: Books | None = None, **settings: Any) -> Account:
        books = books or new_books(intacct, **settings)
        connection_id = f"conn-{uuid.uuid4().hex[:8]}"
        account_id = f"acct-{uuid.uuid4().hex[:8]}"
        connections.save(connection_id, account_id, books.company_id, None, "ws_flexpoint", "connected", None)
        return Account(books, fp, broker, connection_id, account_id)

    return make


class RunningWriteback:
    """A writeback consumer on a thread, as the ``writeback`` process runs it."""

    def __init__(self, parts: Writeback) -> None:
        self.parts = parts
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
def start_writeback(wb_settings, broker) -> Iterator[Callable[..., RunningWriteback]]:
    running: list[RunningWriteback] = []

    def start(timing: Timing | None = None, **options: Any) -> RunningWriteback:
        worker = RunningWriteback(build(wb_settings, timing=timing or Timing(3.0, 3.0), **options))
        running.append(worker)
        return worker

    yield start
    for worker in running:
        worker.stop()
