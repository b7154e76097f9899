"""Write-back benchmark, QUALITY P6: 1,000 payments over 20 companies at cap 2 with 100 ms latency.

    .venv/bin/python bench/writeback.py [--payments 1000] [--companies 20] [--processes 2] [--threads 20]

Both simulators run in processes of their own (Intacct with its cap of 2 concurrent requests per
company and 100 ms of latency per call, about real Intacct's); each company gets one customer, a bank account and one
open invoice per payment. The run makes its own vhost, records each payment in FlexPoint, starts
``flexsync writeback`` processes, posts a few payments a company untimed (``--warm-up``: tokens
fetched, pools filled, as in a service that has run a while), then publishes every other
``payment.post`` and times them from the first publish to the last ``posted`` report. Beside that
figure, the rate between the 10 % and the 90 % posted: the same run without its start and its
tail, where the companies whose payments came last still run at their cap while others are done.

``--order`` is the order the payments are published in. ``mixed`` (the default, P6's figure): as
FlexPoint collects them, the companies' payments mixed in a random order (seeded, so every run
publishes the same one). ``interleaved``: strictly in turn, the first of every company, then the
second of every company...; with an even number of processes the queue's round robin then hands
each process the payments of half the companies only, so each company runs in one process, at
that process's share of its cap. ``grouped``: every payment of one company, then every payment of
the next, a burst per company; the queue then hands each process one company's payments at a
time, and a company's cap bounds what runs until the burst is through, so this order measures
how the service copes with one account's burst, not the cap's limit. Intacct's own call counters
give the calls per posting (the token fetches, one per company and process, are shown beside that
figure, not in it).
One summary line per figure on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.backfill import CLIENT_SECRET, TOKEN, Simulators, _clean_env, _stop, met  # noqa: E402
from bench.common import (  # noqa: E402
    RunFailed,
    figure,
    free_port,
    machine_busy_seconds,
    process_cpu_seconds,
    progress,
    rabbitmqctl,
    run_guarded,
)

CALLS_TARGET = 2.0  # one batch read of the invoices, one create
RATE_TARGET = 0.8  # of the cap's limit
CPU_TARGET_MS = 5.0  # write-back CPU per posting


def _vhost(stack: contextlib.ExitStack, base_url: str) -> str:
    vhost = f"flexsync-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    stack.callback(rabbitmqctl, "delete_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return f"{base_url.rstrip('/').rsplit('/', 1)[0]}/{vhost}"


@dataclass
class Books:
    """What a run set up: the simulators, the vhost, the database and one message per payment."""

    sims: Simulators
    amqp_url: str
    database_url: str
    key: str
    messages: list[dict[str, Any]]


def set_up(
    stack: contextlib.ExitStack, *, companies: int, payments: int, latency_ms: int, amqp_url: str,
    database_url: str | None = None,
) -> Books:  # fmt: skip
    """Both simulators, a vhost with the topology, a connected company per ``companies`` (a customer,
    a bank account, an open invoice per payment) and each payment recorded in FlexPoint."""
    from cryptography.fernet import Fernet
    from kombu import Connection

    from broker.topology import build_topology, declare_topology
    from store.crypto import SecretBox
    from store.db import create_engine_for, upgrade
    from workers.connections.store import ConnectionStore

    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-writeback-")))
    sims = Simulators(workdir, stack)
    amqp_url = _vhost(stack, amqp_url)
    with Connection(amqp_url) as connection:
        declare_topology(connection, build_topology())
    key = Fernet.generate_key().decode()
    database_url = database_url or f"sqlite:///{workdir}/flexsync.db"
    engine = create_engine_for(database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox([key]))
    requests.patch(
        f"{sims.intacct}/sandbox/faults", json={"latencyMs": latency_ms}, timeout=10
    ).raise_for_status()
    fp_headers = {"Authorization": f"Bearer {TOKEN}"}
    messages = []
    progress(f"setting up {companies} companies, {payments} payments")
    for number in range(companies):
        company = f"BENCH-{number}"
        admin = f"{sims.intacct}/sandbox/companies"
        requests.post(
            admin, json={"companyId": company, "webhooks": {"enabled": False}}, timeout=10
        ).raise_for_status()
        objects = f"{admin}/{company}/objects"
        requests.post(
            f"{objects}/accounts-receivable/customer", json={"id": "C-1", "name": "Acme"}, timeout=10
        )
        requests.post(
            f"{objects}/cash-management/checking-account",
            json={
                "id": "BANK-01",
                "location": {"id": "1"},
                "bankAccountDetails": {"bankName": "Op", "currency": "USD"},
                "accounting": {"glAccount": {"id": "1000"}},
            },
            timeout=10,
        )
        record = store.save(
            connection_id=f"conn-{number}", account_id=f"acct-{number}", company_id=company,
            entity_id=None, user_id="ws_flexpoint", state="connected",
        )  # fmt: skip
        for index in range(number, payments, companies):
            invoice = requests.post(
                f"{objects}/accounts-receivable/invoice",
                json={
                    "customer": {"id": "C-1"},
                    "lines": [{"txnAmount": "100.00", "glAccount": {"id": "4000"}}],
                },
                timeout=10,
            ).json()
            payment = {
                "paymentId": f"bench-{index}", "connectionId": record.connection_id, "customerId": "C-1",
                "receivedOn": "2026-12-01", "amount": "100.00", "currency": "USD", "method": "ach",
                "depositBankAccountId": "BANK-01",
                "allocations": [{"invoiceExternalId": str(invoice["key"]), "amount": "100.00"}], "memo": None,
            }  # fmt: skip
            requests.post(
                f"{sims.flexpoint}/sandbox/accounts/{record.account_id}/payments",
                json=payment,
                headers=fp_headers,
                timeout=10,
            ).raise_for_status()
            messages.append({**payment, "accountId": record.account_id, "messageId": str(uuid.uuid4())})
    engine.dispose()
    return Books(sims, amqp_url, database_url, key, messages)


# The share of the postings the steady rate is timed over: the run's start and its tail left out.
STEADY = (0.1, 0.9)


def _number(message: dict[str, Any]) -> int:
    """The payment's number n (``bench-n``): the set-up gives payment n to company n mod companies."""
    return int(message["paymentId"].removeprefix("bench-"))


def publish(amqp_url: str, messages: list[dict[str, Any]]) -> None:
    """Publish each as a ``payment.post`` (persistent), stamped with the time now, all in one AMQP
    transaction: the batch reaches the queue at once, when the broker has it safe (the commit).

    One confirm per message made the batch trickle in over 1.5 s while the bench and the broker
    took CPU from the service being measured: the rate then measured the publisher as well."""
    from kombu import Connection, Producer

    with Connection(amqp_url) as connection:
        channel = connection.channel()
        channel.tx_select()
        producer = Producer(channel)
        for message in messages:
            body = {**message, "requestedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            producer.publish(json.dumps(body).encode(), exchange="flexpoint.payments", routing_key="payment.post",
                             delivery_mode=2, content_type="application/json")  # fmt: skip
        channel.tx_commit()


def steady_rate(engine: Any, payment_ids: set[str]) -> float:
    """Postings a second between the ``STEADY`` shares of ``payment_ids`` posted, by ``posted_at``."""
    from sqlalchemy import select

    from store.models import PaymentPosting

    with engine.connect() as conn:
        rows = conn.execute(select(PaymentPosting.payment_id, PaymentPosting.posted_at)).all()
    times = sorted(at.timestamp() for payment, at in rows if payment in payment_ids and at is not None)
    first, last = int(len(times) * STEADY[0]), int(len(times) * STEADY[1]) - 1
    span = times[last] - times[first]
    return (last - first) / span if span > 0 else float("nan")


def write_timeline(engine: Any, payment_ids: set[str], started: float, path: Path) -> None:
    """One CSV row per timed payment: its id, its Intacct company, and when it was recorded posted
    (seconds after the first publish), in that order: where a batch's time went, company by company."""
    from sqlalchemy import select

    from store.models import PaymentPosting

    columns = (PaymentPosting.payment_id, PaymentPosting.company_id, PaymentPosting.posted_at)
    with engine.connect() as conn:
        rows = [row for row in conn.execute(select(*columns)).all() if row[0] in payment_ids and row[2]]
    rows.sort(key=lambda row: row[2])
    lines = [f"{payment},{company},{at.timestamp() - started:.3f}" for payment, company, at in rows]
    path.write_text("payment,company,posted_s\n" + "\n".join(lines) + "\n")
    progress(f"the timeline of {len(rows)} postings is in {path}")


def run(stack: contextlib.ExitStack, args: argparse.Namespace) -> int:
    from clients.intacct.tokens import TOKEN_PATH
    from store.db import create_engine_for

    if args.warm_up < 0:
        raise SystemExit("--warm-up must be 0 or more")
    warm_up = args.warm_up * args.companies
    books = set_up(
        stack, companies=args.companies, payments=warm_up + args.payments, latency_ms=args.latency_ms,
        amqp_url=args.amqp_url, database_url=args.database_url,
    )  # fmt: skip
    sims, amqp_url, database_url, key = books.sims, books.amqp_url, books.database_url, books.key
    # Payment n is company n mod companies': the first ``warm_up`` are each company's first few.
    warming = [m for m in books.messages if _number(m) < warm_up]
    messages = [m for m in books.messages if _number(m) >= warm_up]
    workdir = sims.workdir
    fp_headers = {"Authorization": f"Bearer {TOKEN}"}
    requests.delete(f"{sims.intacct}/sandbox/stats", timeout=10)
    env = {
        **_clean_env(),
        "AMQP_URL": amqp_url, "DATABASE_URL": database_url, "FLEXSYNC_ENV": "test", "FLEXSYNC_SECRET_KEY": key,
        "INTACCT_API_URL": f"{sims.intacct}/ia/api/v1", "INTACCT_CLIENT_SECRET": CLIENT_SECRET,
        "FLEXPOINT_API_URL": sims.flexpoint, "FLEXPOINT_API_TOKEN": TOKEN, "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "writeback",
        "--metrics-port",
        "0",
        "--threads",
        str(args.threads),
    ]
    workers = []
    for number in range(args.processes):
        log = open(workdir / f"writeback-{number}.log", "wb")  # noqa: SIM115 - closed by the stack
        stack.callback(log.close)
        process = subprocess.Popen(
            command, cwd=ROOT, env={**env, "PORT": str(free_port())}, stdout=log, stderr=subprocess.STDOUT
        )
        stack.callback(_stop, process)
        workers.append(process)
    time.sleep(3)  # the processes connect and start consuming
    from sqlalchemy import func, select

    from store.models import PaymentPosting

    engine = create_engine_for(database_url)
    stack.callback(engine.dispose)
    count_posted = select(func.count()).where(PaymentPosting.state == "posted")

    def posted_count() -> int:
        if any(w.poll() is not None for w in workers):
            raise RunFailed(f"a writeback process exited; see {workdir}")
        with engine.connect() as conn:
            return conn.execute(count_posted).scalar_one()

    if warming:
        # As a service that has run a while: tokens fetched, pools filled, each company's slot rows
        # made. Not timed, not counted.
        progress(f"warming up: {len(warming)} payments, {args.warm_up} a company")
        publish(amqp_url, warming)
        deadline = time.monotonic() + args.timeout
        while posted_count() < len(warming):
            if time.monotonic() > deadline:
                raise RunFailed(
                    f"the warm-up's {len(warming)} payments were not posted in {args.timeout:.0f} s"
                )
            time.sleep(0.1)
        requests.delete(f"{sims.intacct}/sandbox/stats", timeout=10)
    progress(f"publishing {len(messages)} payment.post messages")

    def cpu() -> dict[str, float]:
        spent = {"writeback": sum(process_cpu_seconds(w.pid) for w in workers)}
        spent.update((name, process_cpu_seconds(p.pid)) for name, p in sims.processes.items())
        spent["machine"] = machine_busy_seconds()
        return spent

    if args.order == "interleaved":
        # The n-th payment of every company, then the (n+1)-th: each company's in its own order.
        messages.sort(key=_number)
    elif args.order == "mixed":
        random.Random(7).shuffle(messages)
    cpu_before = cpu()
    started, started_wall = time.monotonic(), time.time()
    publish(amqp_url, messages)
    progress(f"published in {time.monotonic() - started:.2f} s")
    # Progress from our own table, one count (cheap), so polling FlexPoint's listings does not eat
    # the CPU being measured; FlexPoint's reports are checked once at the end.
    total = len(warming) + len(messages)
    posted, deadline, last_note = 0, started + args.timeout, 0.0
    while time.monotonic() < deadline:
        posted = posted_count()
        if posted == total:
            break
        if time.monotonic() - last_note > 2:
            progress(f"{posted - len(warming)} of {len(messages)} posted")
            last_note = time.monotonic()
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    cpu_spent = {name: seconds - cpu_before[name] for name, seconds in cpu().items()}
    if posted < total:
        raise RunFailed(
            f"only {posted - len(warming)} of {len(messages)} payments posted within {args.timeout:.0f} s"
        )
    steady = steady_rate(engine, {m["paymentId"] for m in messages})
    if args.timeline:
        write_timeline(engine, {m["paymentId"] for m in messages}, started_wall, Path(args.timeline))
    reported: dict[str, str] = {}
    for _ in range(60):
        for number in range(args.companies):
            listing = requests.get(
                f"{sims.flexpoint}/sandbox/accounts/acct-{number}/payments", headers=fp_headers, timeout=30
            ).json()
            reported.update((item["payment"]["paymentId"], item["state"]) for item in listing["payments"])
        if sum(state == "posted" for state in reported.values()) == total:
            break
        time.sleep(0.5)
    else:
        raise RunFailed("FlexPoint was not told `posted` for every payment")
    stats = requests.get(f"{sims.intacct}/sandbox/stats", timeout=10).json()
    # A token is fetched once per company and process and serves an hour of postings: it is not
    # a call of any one posting, so it is shown beside the figure rather than in it.
    tokens = sum(objects.get(TOKEN_PATH, 0) for objects in stats["calls"].values())
    calls = stats["totalCalls"] - tokens
    per_posting = calls / len(messages)
    rate = len(messages) / elapsed
    # The cap's limit (QUALITY P6): every company with 2 calls in flight, each as long as the injected
    # latency, and 2 calls a posting.
    limit = args.companies * 2 / (CALLS_TARGET * args.latency_ms / 1000.0)
    figure(
        f"P6 setup: {len(messages)} payments, {args.companies} companies, cap 2, {args.latency_ms} ms latency, "
        f"{args.processes} writeback processes x {args.threads} threads, {database_url.split(':')[0]}, "
        f"published {args.order}, after a warm-up of {len(warming)} payments"
    )
    figure(
        f"P6 Intacct calls per posting: {per_posting:.2f} ({calls} calls; target <= {CALLS_TARGET:g}: "
        f"{met(per_posting <= CALLS_TARGET)}); besides, {tokens} token fetches (one per company and "
        f"process, each token good for an hour), {stats['totalCalls'] / len(messages):.2f} a posting with them"
    )
    figure(
        f"P6 postings/s: {rate:.1f} in {elapsed:.1f} s, the cap's limit {limit:.0f}/s, ratio {rate / limit:.2f} "
        f"(target >= {RATE_TARGET}: {met(rate >= RATE_TARGET * limit)}); 429s {stats['tooManyRequests']}"
    )
    figure(
        f"P6 postings/s between the {STEADY[0]:.0%} and the {STEADY[1]:.0%} posted (no start, no tail): "
        f"{steady:.1f}, ratio {steady / limit:.2f}"
    )
    # What bounds the rate on this machine: the CPU each posting costs, and how busy the CPUs were.
    per = {name: seconds / len(messages) * 1000 for name, seconds in cpu_spent.items()}
    figure(
        f"P6 write-back CPU per posting: {per['writeback']:.1f} ms "
        f"(target <= {CPU_TARGET_MS:g}: {met(per['writeback'] <= CPU_TARGET_MS)})"
    )
    figure(
        f"P6 CPU per posting (from the first publish to the last posting): writeback processes "
        f"{per['writeback']:.1f} ms, Intacct simulator {per['intacct']:.1f} ms, FlexPoint simulator "
        f"{per['flexpoint']:.1f} ms, the whole machine {per['machine']:.1f} ms; the machine's "
        f"{os.cpu_count()} CPUs were {cpu_spent['machine'] / elapsed / (os.cpu_count() or 1):.0%} busy"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--companies", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=40)
    parser.add_argument(
        "--warm-up",
        type=int,
        default=2,
        help="payments a company posted before the clock starts (not counted)",
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--order",
        choices=("mixed", "interleaved", "grouped"),
        default="mixed",
        help="mixed: the companies' payments in a random order (P6); interleaved: strictly in turn; "
        "grouped: a burst per company",
    )
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in the run's temp dir")
    parser.add_argument(
        "--timeline", default=None, help="write each payment's company and posting time here (CSV)"
    )
    return run_with_books(parser, "bench/writeback.py", run)


def run_with_books(
    parser: argparse.ArgumentParser,
    name: str,
    body: Callable[[contextlib.ExitStack, argparse.Namespace], int],
) -> int:
    """Parse ``parser``'s arguments (``--payments`` and ``--companies`` among them; ``--amqp-url`` is
    added here) and run ``body`` with them, cleaning up what :func:`set_up` made whatever happens."""
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    args = parser.parse_args()
    if args.payments < 1 or args.companies < 1:
        raise SystemExit("--payments and --companies must be at least 1")
    return run_guarded(name, lambda stack: body(stack, args), cleaned="simulators, vhost, temp dir")


if __name__ == "__main__":
    sys.exit(main())
