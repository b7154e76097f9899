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
    invoice_states = [i["state"] for i in rows(store, "accounts-receivable/invoice", "state")]
    # The 150 invoices asked for, plus the ``reversal`` record each reversed one left.
    assert counts["accounts-receivable/customer"] == 30
    assert invoice_states.count("reversal") == invoice_states.count("reversed") > 0
    assert counts["accounts-receivable/invoice"] == 150 + invoice_states.count("reversal")
    assert 150 <= counts["accounts-receivable/invoice-line"] <= 750
    assert counts["general-ledger/account"] >= 30 and counts["company-config/entity"] == 2
    assert counts["cash-management/checking-account"] == 3
    for path in OBJECT_TYPES:
        assert counts[path] > 0, path


INVOICE_FIELDS = (
    "key",
    "state",
    "totalTxnAmount",
    "totalTxnAmountDue",
    "paymentInformation.totalTxnAmountPaid",
    "paymentInformation.totalTxnAmountSelectedForPayment",
    "invoiceDate",
    "dueDate",
    "customer.id",
    "referenceNumber",
)


def test_invoices_in_every_state_with_lines_that_add_up(seeded):
    store, _ = seeded
    invoices = rows(store, "accounts-receivable/invoice", *INVOICE_FIELDS)
    # Every published invoice state (accounts-receivable.md, invoice ``state``).
    assert {i["state"] for i in invoices} == {
        "draft",
        "posted",
        "partiallyPaid",
        "paid",
        "reversed",
        "reversal",
        "selected",
        "noValue",
    }
    lines = defaultdict(list)
    for line in rows(store, "accounts-receivable/invoice-line", "invoice.key", "lineNumber", "txnAmount"):
        lines[line["invoice.key"]].append(line)
    for invoice in invoices:
        own = lines[invoice["key"]]
        assert invoice["dueDate"] >= invoice["invoiceDate"]
        if invoice["state"] == "reversal":
            assert not own  # the mirror record has no lines of its own
            continue
        assert 1 <= len(own) <= 5 and [line["lineNumber"] for line in own] == list(range(1, len(own) + 1))
        assert sum(Decimal(line["txnAmount"]) for line in own) == Decimal(invoice["totalTxnAmount"])


def test_selected_novalue_and_reversed_invoices(seeded):
    store, _ = seeded
    invoices = rows(store, "accounts-receivable/invoice", *INVOICE_FIELDS)
    by_state = defaultdict(list)
    for invoice in invoices:
        by_state[invoice["state"]].append(invoice)
    for invoice in by_state["selected"]:
        # Selected for a payment not yet made: its whole due amount, nothing paid yet.
        due = Decimal(invoice["totalTxnAmountDue"])
        assert due == Decimal(invoice["totalTxnAmount"]) > 0
        assert Decimal(invoice["paymentInformation.totalTxnAmountSelectedForPayment"]) == due
        assert Decimal(invoice["paymentInformation.totalTxnAmountPaid"]) == 0
    for invoice in by_state["noValue"]:
        assert Decimal(invoice["totalTxnAmount"]) == Decimal(invoice["totalTxnAmountDue"]) == 0
    for invoice in invoices:
        if invoice["state"] != "selected":
            assert Decimal(invoice["paymentInformation.totalTxnAmountSelectedForPayment"]) == 0
    # Each reversed invoice has its reversal: the same customer and reference, the total negated.
    reversals = by_state["reversal"]
    assert len(reversals) == len(by_state["reversed"])
    for original in by_state["reversed"]:
        assert Decimal(original["totalTxnAmountDue"]) == 0
        mirror = [
            r
            for r in reversals
            if r["customer.id"] == original["customer.id"]
            and r["referenceNumber"] == original["referenceNumber"]
        ]
        assert mirror and Decimal(mirror[0]["totalTxnAmount"]) == -Decimal(original["totalTxnAmount"])
        assert mirror[0]["key"] > original["key"]


PAYMENT_FIELDS = (
    "key",
    "state",
    "txnCurrency.totalAmount",
    "customer.id",
    "financialEntity.entityId",
    "referenceNumber",
    "bankReconciliationStatus",
    "bankReconciliationDate",
    "paymentSummary.receiptDate",
)


def test_payments_are_applied_to_the_invoices_they_pay(seeded):
    store, _ = seeded
    payments = {p["key"]: p for p in rows(store, "accounts-receivable/payment", *PAYMENT_FIELDS)}
    assert {p["state"] for p in payments.values()} == {
        "complete",
        "reconciled",
        "draft",
        "reversed",
        "reversal",
    }
    counted = ("complete", "reconciled")
    applied: dict[int, Decimal] = defaultdict(Decimal)
    per_payment: dict[int, Decimal] = defaultdict(Decimal)
    for detail in rows(
        store,
        "accounts-receivable/payment-detail",
        "arPayment.key",
        "arInvoice.key",
        "txnCurrency.paymentAmount",
    ):
        amount = Decimal(detail["txnCurrency.paymentAmount"])
        per_payment[detail["arPayment.key"]] += amount
        if payments[detail["arPayment.key"]]["state"] in counted:
            applied[detail["arInvoice.key"]] += amount
    for key, payment in payments.items():
        if payment["state"] == "reversal":
            assert per_payment[key] == 0  # the reversal record applies nothing itself
        else:
            assert per_payment[key] == Decimal(payment["txnCurrency.totalAmount"]) > 0
    for invoice in rows(store, "accounts-receivable/invoice", *INVOICE_FIELDS):
        paid = Decimal(invoice["paymentInformation.totalTxnAmountPaid"])
        assert applied[invoice["key"]] == paid
        if invoice["state"] == "paid":
            assert paid == Decimal(invoice["totalTxnAmount"]) and Decimal(invoice["totalTxnAmountDue"]) == 0
        elif invoice["state"] == "partiallyPaid":
            assert 0 < paid < Decimal(invoice["totalTxnAmount"])
        else:
            assert paid == 0


def test_reconciled_payments_and_reversal_records(seeded):
    store, _ = seeded
    payments = rows(store, "accounts-receivable/payment", *PAYMENT_FIELDS)
    for payment in payments:
        if payment["state"] == "reconciled":
            # Cleared in a bank reconciliation, on or after the day it was received.
            assert payment["bankReconciliationStatus"] == "cleared"
            assert payment["bankReconciliationDate"] >= payment["paymentSummary.receiptDate"]
        else:
            assert payment["bankReconciliationStatus"] == "uncleared"
            assert payment["bankReconciliationDate"] is None
    reversed_ = [p for p in payments if p["state"] == "reversed"]
    reversals = [p for p in payments if p["state"] == "reversal"]
    assert reversed_ and len(reversals) == len(reversed_)
    for original in reversed_:
        # The reversal record: the next key, the same customer and reference (copied), the total
        # negated, received on or after the original.
        mirror = next(p for p in payments if p["key"] == original["key"] + 1)
        assert mirror["state"] == "reversal" and mirror["customer.id"] == original["customer.id"]
        assert mirror["referenceNumber"] == original["referenceNumber"]
        assert Decimal(mirror["txnCurrency.totalAmount"]) == -Decimal(original["txnCurrency.totalAmount"])
        assert mirror["paymentSummary.receiptDate"] >= original["paymentSummary.receiptDate"]


def test_deposits_journal_entries_and_bank_accounts_are_realistic(seeded):
    store, _ = seeded
    counted = {
        p["key"]
        for p in rows(store, "accounts-receivable/payment", "key", "state")
        if p["state"] in ("complete", "reconciled")
    }
    deposits = {
        d["key"]: d
        for d in rows(store, "cash-management/deposit", "key", "txnTotalEntered", "bankAccount.id", "state")
    }
    deposited: dict[int, Decimal] = defaultdict(Decimal)
    details = rows(store, "cash-management/deposit-detail", "key", "deposit.key", "txnTotalEntered", "state")
    for detail in details:
        assert detail["key"] in counted  # a detail's key is the deposited payment's key
        deposited[detail["deposit.key"]] += Decimal(detail["txnTotalEntered"])
        void = deposits[detail["deposit.key"]]["state"] == "void"
        assert detail["state"] == ("undeposited" if void else "deposited")
    assert len({d["key"] for d in details}) == len(details)  # no payment deposited twice
    for key, deposit in deposits.items():
        assert deposited[key] == Decimal(deposit["txnTotalEntered"]) and deposit["bankAccount.id"]
    # Every published deposit state: none (deposited), void and awaiting approval.
    assert {d["state"] for d in deposits.values()} == {None, "void", "approve"}
    balance: dict[int, Decimal] = defaultdict(Decimal)
    for line in rows(store, "general-ledger/journal-entry-line", "journalEntry.key", "txnAmount", "txnType"):
        balance[line["journalEntry.key"]] += Decimal(line["txnAmount"]) * (
            1 if line["txnType"] == "debit" else -1
        )
    assert balance and all(total == 0 for total in balance.values())
    # Every published journal-entry state, the approval ones included.
    assert {e["state"] for e in rows(store, "general-ledger/journal-entry", "state")} == {
        "draft",
        "submitted",
        "partiallyApproved",
        "approved",
        "declined",
        "reversalPending",
        "posted",
        "reversed",
    }
    for account in rows(
        store,
        "cash-management/checking-account",
        "bankAccountDetails.accountNumber",
        "bankAccountDetails.bankName",
        "bankAccountDetails.currency",
    ):
        assert account["bankAccountDetails.accountNumber"].isdigit()
        assert len(account["bankAccountDetails.accountNumber"]) >= 10  # the full number: Intacct holds it
        assert account["bankAccountDetails.bankName"] and account["bankAccountDetails.currency"]
    statuses = {c["status"] for c in rows(store, "accounts-receivable/customer", "status")}
    assert "active" in statuses and statuses <= {"active", "activeNonPosting", "inactive"}
    assert rows(store, "accounts-receivable/adjustment", "key") and rows(
        store, "cash-management/other-receipt", "key"
    )


def test_adjustment_and_other_receipt_reversals(seeded):
    store, _ = seeded
    for path, total in (
        ("accounts-receivable/adjustment", "txnCurrency.totalEntered"),
        ("cash-management/other-receipt", "txnTotalEntered"),
    ):
        records = rows(store, path, "key", "state", total)
        states = [r["state"] for r in records]
        assert states.count("reversal") == states.count("reversed") > 0, path
        by_key = {r["key"]: r for r in records}
        for record in records:
            if record["state"] == "reversed":
                # Its reversal record comes next, the amount negated.
                mirror = by_key[record["key"] + 1]
                assert mirror["state"] == "reversal", path
                assert Decimal(mirror[total]) == -Decimal(record[total]) != 0, path


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

    def reversal_records() -> int:
        return [i["state"] for i in rows(store, "accounts-receivable/invoice", "state")].count("reversal")

    before, reversals_before = store.counts(COMPANY), reversal_records()
    seed_company(store, COMPANY, SeedOptions(customers=5, invoices=10, seed=12, as_of=AS_OF))
    after = store.counts(COMPANY)
    # The 10 invoices asked for, plus a reversal record for each of them seeded reversed.
    added_reversals = reversal_records() - reversals_before
    assert (
        after["accounts-receivable/invoice"] == before["accounts-receivable/invoice"] + 10 + added_reversals
    )
    assert after["general-ledger/account"] == before["general-ledger/account"]
    ids = [c["id"] for c in rows(store, "accounts-receivable/customer", "id")]
    assert len(ids) == len(set(ids)) == 35


def test_data_and_keys_survive_a_restart(tmp_path):
    app, sim = build(tmp_path)
    client = app.test_client()
    seed_company(sim.store, COMPANY, SeedOptions(customers=3, invoices=5, as_of=AS_OF))
    # The 5 invoices, with the reversal record of any seeded reversed.
    invoices = sim.store.counts(COMPANY)["accounts-receivable/invoice"]
    assert invoices >= 5
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
            == invoices
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
