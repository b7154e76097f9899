"""The seeder's volumes and realism, determinism, persistence across restarts, and the CLI."""

# Table and column names in SQL text come from objects.py, never from a request; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from sandbox.intacct.cli import intacct
from sandbox.intacct.config import SimulatorConfig
from sandbox.intacct.objects import OBJECT_TYPES
from sandbox.intacct.seed import SeedOptions, seed_company
from sandbox.intacct.server import SimulatorServer
from sandbox.intacct.store import Store
from tests.sandbox.conftest_intacct import API, AS_OF, COMPANY, bearer, build, make_config, query, token_form

OPTIONS = SeedOptions(customers=30, invoices=150, seed=11, as_of=AS_OF)


def rows(store: Store, path: str, *fields: str) -> list[dict]:
    obj = OBJECT_TYPES[path]
    columns = ", ".join(obj.by_name[f].column for f in fields)
    with store.read() as conn:
        found = conn.execute(
            f"SELECT {columns} FROM {obj.table} WHERE company_id = ? ORDER BY key", (COMPANY,)
        )
        return [dict(zip(fields, row, strict=True)) for row in found]


@pytest.fixture
def seeded(tmp_path):
    store = Store(tmp_path / "seed.db")
    summary = seed_company(store, COMPANY, OPTIONS)
    yield store, summary
    store.close()


def test_volumes(seeded):
    store, summary = seeded
    counts = store.counts(COMPANY)
    assert counts == {path: summary["created"].get(path, 0) for path in OBJECT_TYPES}
    assert counts["accounts-receivable/customer"] == 30 and counts["accounts-receivable/invoice"] == 150
    assert 150 <= counts["accounts-receivable/invoice-line"] <= 750
    assert counts["general-ledger/account"] >= 30 and counts["company-config/entity"] == 2
    assert counts["cash-management/checking-account"] == 3
    for path in OBJECT_TYPES:
        assert counts[path] > 0, path


def test_invoices_in_every_state_with_lines_that_add_up(seeded):
    store, _ = seeded
    invoices = rows(
        store,
        "accounts-receivable/invoice",
        "key",
        "state",
        "totalTxnAmount",
        "totalTxnAmountDue",
        "totalTxnAmountPaid",
        "invoiceDate",
        "dueDate",
        "customer.id",
    )
    assert {i["state"] for i in invoices} == {"draft", "posted", "partiallyPaid", "paid", "reversed"}
    lines = defaultdict(list)
    for line in rows(store, "accounts-receivable/invoice-line", "invoice.key", "lineNumber", "txnAmount"):
        lines[line["invoice.key"]].append(line)
    for invoice in invoices:
        own = lines[invoice["key"]]
        assert 1 <= len(own) <= 5 and [line["lineNumber"] for line in own] == list(range(1, len(own) + 1))
        assert sum(Decimal(line["txnAmount"]) for line in own) == Decimal(invoice["totalTxnAmount"])
        assert invoice["dueDate"] >= invoice["invoiceDate"]


def test_payments_are_applied_to_the_invoices_they_pay(seeded):
    store, _ = seeded
    payments = {
        p["key"]: p
        for p in rows(
            store,
            "accounts-receivable/payment",
            "key",
            "state",
            "totalTxnAmount",
            "customer.id",
            "financialEntity.entityId",
        )
    }
    assert {p["state"] for p in payments.values()} == {"complete", "voided", "draft"}
    applied: dict[int, Decimal] = defaultdict(Decimal)
    per_payment: dict[int, Decimal] = defaultdict(Decimal)
    for detail in rows(
        store, "accounts-receivable/payment-detail", "payment.key", "invoice.key", "txnAmount"
    ):
        per_payment[detail["payment.key"]] += Decimal(detail["txnAmount"])
        if payments[detail["payment.key"]]["state"] == "complete":
            applied[detail["invoice.key"]] += Decimal(detail["txnAmount"])
    for key, payment in payments.items():
        assert per_payment[key] == Decimal(payment["totalTxnAmount"])
    for invoice in rows(
        store,
        "accounts-receivable/invoice",
        "key",
        "state",
        "totalTxnAmount",
        "totalTxnAmountPaid",
        "totalTxnAmountDue",
    ):
        paid = Decimal(invoice["totalTxnAmountPaid"])
        assert applied[invoice["key"]] == paid
        if invoice["state"] == "paid":
            assert paid == Decimal(invoice["totalTxnAmount"]) and Decimal(invoice["totalTxnAmountDue"]) == 0
        elif invoice["state"] == "partiallyPaid":
            assert 0 < paid < Decimal(invoice["totalTxnAmount"])
        else:
            assert paid == 0


def test_deposits_journal_entries_and_bank_accounts_are_realistic(seeded):
    store, _ = seeded
    complete = {
        p["key"]
        for p in rows(store, "accounts-receivable/payment", "key", "state")
        if p["state"] == "complete"
    }
    deposited: dict[int, Decimal] = defaultdict(Decimal)
    for detail in rows(store, "cash-management/deposit-detail", "deposit.key", "payment.key", "txnAmount"):
        assert detail["payment.key"] in complete
        deposited[detail["deposit.key"]] += Decimal(detail["txnAmount"])
    for deposit in rows(store, "cash-management/deposit", "key", "totalTxnAmount", "bankAccount.id"):
        assert deposited[deposit["key"]] == Decimal(deposit["totalTxnAmount"]) and deposit["bankAccount.id"]
    balance: dict[int, Decimal] = defaultdict(Decimal)
    for line in rows(store, "general-ledger/journal-entry-line", "journalEntry.key", "txnAmount", "txnType"):
        balance[line["journalEntry.key"]] += Decimal(line["txnAmount"]) * (
            1 if line["txnType"] == "debit" else -1
        )
    assert balance and all(total == 0 for total in balance.values())
    assert {e["state"] for e in rows(store, "general-ledger/journal-entry", "state")} == {
        "draft",
        "posted",
        "reversed",
    }
    for account in rows(
        store, "cash-management/checking-account", "bankAccountDetails.accountNumber", "name"
    ):
        assert account["bankAccountDetails.accountNumber"].isdigit()
        assert len(account["bankAccountDetails.accountNumber"]) >= 10  # the full number: Intacct holds it
        assert account["name"]
    statuses = {c["status"] for c in rows(store, "accounts-receivable/customer", "status")}
    assert "active" in statuses and statuses <= {"active", "activeNonPosting", "inactive"}
    assert rows(store, "accounts-receivable/adjustment", "key") and rows(
        store, "cash-management/other-receipt", "key"
    )


def test_fixed_lines_per_invoice(tmp_path):
    store = Store(tmp_path / "fixed.db")
    seed_company(store, COMPANY, SeedOptions(customers=5, invoices=40, lines_per_invoice=3, as_of=AS_OF))
    per_invoice = defaultdict(int)
    for line in rows(store, "accounts-receivable/invoice-line", "invoice.key"):
        per_invoice[line["invoice.key"]] += 1
    assert len(per_invoice) == 40 and set(per_invoice.values()) == {3}
    store.close()


def _dump(path) -> list:
    with sqlite3.connect(path) as conn:
        return [
            conn.execute(f"SELECT * FROM {obj.table} ORDER BY key").fetchall()
            for obj in OBJECT_TYPES.values()
        ]


def test_deterministic_for_a_seed(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        store = Store(tmp_path / f"{name}.db")
        seed_company(store, COMPANY, SeedOptions(customers=10, invoices=30, seed=seed, as_of=AS_OF))
        store.close()
    assert _dump(tmp_path / "a.db") == _dump(tmp_path / "b.db")
    assert _dump(tmp_path / "a.db") != _dump(tmp_path / "c.db")


def test_seeding_again_adds_without_duplicating_reference_data(seeded):
    store, _ = seeded
    before = store.counts(COMPANY)
    seed_company(store, COMPANY, SeedOptions(customers=5, invoices=10, seed=12, as_of=AS_OF))
    after = store.counts(COMPANY)
    assert after["accounts-receivable/invoice"] == before["accounts-receivable/invoice"] + 10
    assert after["general-ledger/account"] == before["general-ledger/account"]
    ids = [c["id"] for c in rows(store, "accounts-receivable/customer", "id")]
    assert len(ids) == len(set(ids)) == 35


def test_data_and_keys_survive_a_restart(tmp_path):
    app, sim = build(tmp_path)
    client = app.test_client()
    seed_company(sim.store, COMPANY, SeedOptions(customers=3, invoices=5, as_of=AS_OF))
    client.post(
        f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/customer", json={"name": "Kept Co"}
    )
    headers = bearer(client)
    kid = client.get("/.well-known/jwks.json").get_json()["keys"][0]["kid"]
    sim.close()

    app, sim = build(tmp_path)
    client = app.test_client()
    try:
        assert client.get("/.well-known/jwks.json").get_json()["keys"][0]["kid"] == kid
        found = query(
            client,
            headers,
            object="accounts-receivable/customer",
            fields=["name"],
            filters=[{"$eq": {"name": "Kept Co"}}],
        ).get_json()  # a token from before the restart
        assert found["ia::meta"]["totalCount"] == 1
        assert (
            client.get(f"/sandbox/companies/{COMPANY}").get_json()["counts"]["accounts-receivable/invoice"]
            == 5
        )
    finally:
        sim.close()


def test_cli_seed_writes_the_data_dir(tmp_path):
    result = CliRunner().invoke(
        intacct,
        [
            "seed",
            "CLI-CO",
            "--data-dir",
            str(tmp_path),
            "--customers",
            "4",
            "--invoices",
            "12",
            "--lines-per-invoice",
            "2",
            "--as-of",
            str(AS_OF),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["created"]["accounts-receivable/invoice-line"] == 24
    store = Store(SimulatorConfig(data_dir=tmp_path).database_path)
    assert store.counts("CLI-CO")["accounts-receivable/customer"] == 4
    store.close()
    bad = CliRunner().invoke(intacct, ["seed", "CLI-CO", "--data-dir", str(tmp_path), "--invoices", "-3"])
    assert bad.exit_code != 0


def test_cli_drives_a_running_simulator(tmp_path):
    runner = CliRunner()
    with SimulatorServer(make_config(tmp_path, port=0)) as server:

        def run(*args: str) -> dict | None:
            result = runner.invoke(intacct, ["--url", server.base_url, *args])
            assert result.exit_code == 0, result.output
            return json.loads(result.output) if result.output.startswith(("{", "[")) else None

        made = run(
            "companies",
            "create",
            COMPANY,
            "--user",
            "ws_flexpoint:accounts-receivable",
            "--entity",
            "US",
            "--webhook-url",
            "http://127.0.0.1:9/hook/{companyId}",
            "--no-webhooks",
        )
        assert made["users"][0]["areas"] == ["accounts-receivable"] and made["webhooks"]["enabled"] is False
        assert run("companies", "update", COMPANY, "--sender-not-authorized")["senderAuthorized"] is False
        assert run("companies", "update", COMPANY, "--sender-authorized")["senderAuthorized"] is True
        created = run("records", "create", COMPANY, "accounts-receivable/customer", '{"name": "Cli Co"}')
        assert (
            run(
                "records",
                "update",
                COMPANY,
                "accounts-receivable/customer",
                created["key"],
                '{"status": "inactive"}',
            )["status"]
            == "inactive"
        )
        assert (
            run("records", "get", COMPANY, "accounts-receivable/customer", created["key"])["name"] == "Cli Co"
        )
        assert run("records", "list", COMPANY, "accounts-receivable/customer")["totalCount"] == 1
        assert run("counts", COMPANY)["counts"]["company-config/entity"] == 1
        assert run("webhooks", "on", COMPANY)["webhooks"]["enabled"] is True
        assert run("webhooks", "off", COMPANY)["webhooks"]["enabled"] is False
        assert run("webhooks", "log")["deliveries"] == []
        assert run("faults", "--error-rate", "0.5", "--seed", "1")["errorRate"] == 0.5
        assert run("faults", "--reset")["errorRate"] == 0.0
        assert run("limits", "--concurrency-cap", "4")["concurrencyCap"] == 4
        token = requests.post(f"{server.api_url}/oauth2/token", data=token_form(), timeout=10).json()[
            "access_token"
        ]
        requests.get(
            f"{server.api_url}/objects/accounts-receivable/customer/1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert run("stats", "--company", COMPANY)["calls"][COMPANY]["accounts-receivable/customer"] == 1
        assert run("requests", "--company", COMPANY)["requests"][-1]["path"].startswith(API)
        run("records", "delete", COMPANY, "accounts-receivable/customer", created["key"])
        run("companies", "delete", COMPANY, "--yes")
        assert run("companies", "list")["companies"] == []
        failed = runner.invoke(intacct, ["--url", server.base_url, "companies", "show", COMPANY])
        assert failed.exit_code != 0 and "404" in failed.output
    down = runner.invoke(intacct, ["--url", server.base_url, "companies", "list"])
    assert down.exit_code != 0 and "no simulator answers" in down.output


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_a_signal(tmp_path, signal_name):
    config = make_config(tmp_path)  # puts the cached key in place, so start-up is quick
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.intacct.cli",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(config.data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        banner = process.stdout.readline()
        url = re.search(r"on (http://\S+) ", banner)
        assert url, banner
        assert requests.get(f"{url.group(1)}/sandbox/health", timeout=10).json() == {"status": "ok"}
        process.send_signal(getattr(signal, signal_name))
        assert process.wait(timeout=15) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
