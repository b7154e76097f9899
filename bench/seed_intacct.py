"""Benchmark of the Intacct simulator: seeding at volume and 4,000-row query pages.

    .venv/bin/python bench/seed_intacct.py [--invoices 100000] [--customers 10000] [--lines 3]

Seeds a fresh data dir (a temporary one unless --data-dir), then serves it on a free port and
times 4,000-row pages of the query service over HTTP, as the backfill reads them. Prints one
summary line per figure; not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from sandbox.intacct.config import SimulatorConfig  # noqa: E402
from sandbox.intacct.seed import SeedOptions, seed_company  # noqa: E402
from sandbox.intacct.server import SimulatorServer  # noqa: E402
from sandbox.intacct.store import Store  # noqa: E402

COMPANY = "BENCH-CO"
PAGES = [
    (
        "invoice page (4000 rows, 13 fields)",
        "accounts-receivable/invoice",
        [
            "key",
            "id",
            "invoiceNumber",
            "customer.id",
            "invoiceDate",
            "dueDate",
            "state",
            "currency.txnCurrency",
            "totalTxnAmount",
            "totalTxnAmountDue",
            "paymentInformation.totalTxnAmountPaid",
            "description",
            "audit.modifiedDateTime",
        ],
        None,
    ),
    (
        "invoice-line page (4000 rows, by parent key $in)",
        "accounts-receivable/invoice-line",
        ["key", "invoice.key", "lineNumber", "txnAmount", "glAccount.id", "memo"],
        "parents",
    ),
    (
        "invoice-line page, no filter, last page (deepest offset)",
        "accounts-receivable/invoice-line",
        ["key", "invoice.key", "lineNumber", "txnAmount", "glAccount.id", "memo"],
        "last-lines",
    ),
    (
        "invoice page, modified-since filter, deep offset",
        "accounts-receivable/invoice",
        ["key", "id", "customer.id", "state", "totalTxnAmount", "audit.modifiedDateTime"],
        "modified",
    ),
]


def _token(session: requests.Session, server: SimulatorServer) -> str:
    response = session.post(
        f"{server.api_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": server.config.client_id,
            "client_secret": server.config.client_secret,
            "username": f"ws_flexpoint@{COMPANY}",
        },
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="intacct-bench-"))

    store = Store(SimulatorConfig(data_dir=data_dir).database_path)
    options = SeedOptions(
        customers=args.customers, invoices=args.invoices, lines_per_invoice=args.lines, seed=7
    )
    started = time.perf_counter()
    summary = seed_company(store, COMPANY, options)
    seconds = time.perf_counter() - started
    store.close()
    rows = sum(summary["created"].values())
    print(
        f"seed: {args.invoices} invoices x {args.lines} lines + {args.customers} customers "
        f"({rows} records in all) in {seconds:.2f} s"
    )

    with SimulatorServer(SimulatorConfig(port=0, data_dir=data_dir)) as server:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {_token(session, server)}"}
        url = f"{server.api_url}/services/core/query"
        for label, path, fields, kind in PAGES:
            body = {"object": path, "fields": fields, "size": 4000, "start": 1, "orderBy": [{"key": "asc"}]}
            if kind == "parents":
                body["filters"] = [{"$in": {"invoice.key": [str(k) for k in range(20_001, 21_334)]}}]
            elif kind == "last-lines":
                body["start"] = max(1, args.invoices * args.lines - 4000 + 1)
            elif kind == "modified":
                body["filters"] = [{"$gte": {"audit.modifiedDateTime": "2000-01-01T00:00:00Z"}}]
                body["start"] = max(1, args.invoices - 4000 + 1)
            timings, size = [], 0
            for _ in range(args.repeats):
                began = time.perf_counter()
                response = session.post(url, json=body, headers=headers, timeout=60)
                response.raise_for_status()
                timings.append((time.perf_counter() - began) * 1000)
                size = len(response.json()["ia::result"])
            print(
                f"query: {label}: {size} rows, median {statistics.median(timings):.1f} ms, "
                f"min {min(timings):.1f} ms over {args.repeats} requests"
            )


if __name__ == "__main__":
    main()
