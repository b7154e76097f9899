"""The seeder: realistic companies at volume, deterministic for a given seed and ``as_of``.

Everything is generated as tuples and bulk-inserted with executemany in one transaction, so
100,000 invoices with their lines take seconds. The data hangs together: invoices in every
state with 1-5 lines, payments whose details pay exactly the paid and partially paid invoices,
deposits of those payments, balanced journal entries, checking accounts with full account
numbers (the simulator is Intacct; reducing them to the last 4 digits is the sync's job).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .. import companies
from ..store import Store
from . import cash, ledger, receivables
from .context import SeedContext
from .options import SeedOptions

__all__ = ["SeedOptions", "seed_company"]


def seed_company(
    store: Store, company_id: str, options: SeedOptions, *, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """Seed one company (created with default settings if new) in one transaction; returns what was made."""
    started = time.perf_counter()
    as_of = int(options.as_of if options.as_of is not None else clock())
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM companies WHERE company_id = ?", (company_id,)).fetchone() is None:
            Store.put_company(
                conn, company_id, companies.Company.from_json({"companyId": company_id}).to_json()
            )
        ctx = SeedContext(conn, company_id, options, as_of)
        entities = ledger.entities(ctx)
        currencies = {currency for _, currency in entities} | {"USD"}
        ledger.gl_accounts(ctx)
        accounts = ledger.checking_accounts(ctx, currencies)
        customers = receivables.customers(ctx, currencies)
        invoices = receivables.invoices(ctx, customers, [entity_id for entity_id, _ in entities])
        complete = receivables.payments(ctx, invoices, accounts)
        receivables.write_invoices(ctx, invoices)
        cash.deposits(ctx, complete)
        receivables.adjustments(ctx, customers)
        cash.other_receipts(ctx, accounts)
        ledger.journal_entries(ctx, [entity_id for entity_id, _ in entities])
        Store.analyze(conn)
    return {
        "companyId": company_id,
        "created": {path: n for path, n in ctx.counts.items() if n},
        "seconds": round(time.perf_counter() - started, 3),
        "options": options.to_json(),
        "asOf": datetime.fromtimestamp(as_of, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
