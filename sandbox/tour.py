"""``./dev run``'s tour: the service and the simulators under honcho, and a few events flowing through.

It starts the processes of ``Procfile.dev`` (the service and the sandbox), seeds a company in the
Sage Intacct simulator whose Platform Triggers post to the service's receiver, publishes the
connect message FlexPoint would send, follows the connection status and the historical import as
FlexPoint receives them, changes a few records and shows each signed webhook answered and each
record arriving in FlexPoint; then FlexPoint collects a payment, posted into Intacct by the
service's ``writeback`` and synced back (:mod:`sandbox.tour_payment`). Then it keeps the processes
running until Ctrl-C.

Run as ``python -m sandbox.tour`` (or ``flexsync-sandbox-tour``) from the repository root with the
service's environment (``./dev run`` loads ``sandbox.env``). The tour talks to the service only
through its documented doors: HTTP, the FlexPoint Sync API, and RabbitMQ's message contracts.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
import requests

from sandbox.amqp import PublishFailed, publish_json
from sandbox.catalog import BY_NAME
from sandbox.tour_payment import pay_one
from sandbox.tour_support import FlexPointReader, TourError, TourSettings, answers, wait_for

# A fixed connection id, so a second run finds (and first disconnects) the first run's connection.
CONNECTION_ID = "00000000-0000-4000-8000-00000000d3e0"
COMPANY = "DEMO-CO"
ACCOUNT = "demo-account"
USER = "ws_flexpoint"  # the Intacct simulator's default Web Services user
CONNECTIONS_EXCHANGE = "flexpoint.connections"
# The work queues BRIEF.md names ("Names operations rely on").
WORK_QUEUES = ("sync.gl", "sync.ar", "sync.cm", "sync.company", "provisioning", "writeback")


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def connect_message(*, account: str, company: str, user: str, connection_id: str) -> dict[str, Any]:
    """FlexPoint's connect message (BRIEF.md, "Connection messages")."""
    return {
        "messageId": str(uuid.uuid4()),
        "accountId": account,
        "connectionId": connection_id,
        "companyId": company,
        "entityId": None,
        "userId": user,
        "requestedAt": now_text(),
    }


def disconnect_message(*, account: str, connection_id: str, reason: str) -> dict[str, Any]:
    """FlexPoint's disconnect message."""
    return {
        "messageId": str(uuid.uuid4()),
        "accountId": account,
        "connectionId": connection_id,
        "reason": reason,
        "requestedAt": now_text(),
    }


def follow_status(
    flexpoint: FlexPointReader, since: str, until: set[str], *, timeout: float = 60.0
) -> dict[str, Any]:
    """Print each new connection status FlexPoint receives after ``since`` until one in ``until``."""
    seen: list[tuple[Any, Any]] = []

    def reached() -> dict[str, Any] | None:
        status = flexpoint.status(ACCOUNT) or {}
        if status.get("reportedAt", "") < since:
            return None
        shown = (status.get("state"), status.get("reason"))
        if not seen or seen[-1] != shown:
            seen.append(shown)
            print(
                f"    FlexPoint status: {status['state']}"
                + (f" ({status['reason']})" if status.get("reason") else "")
            )
        return status if status["state"] in until else None

    return wait_for(reached, timeout=timeout, what=f"{'/'.join(sorted(until))} status", interval=0.2)


def follow_backfill(flexpoint: FlexPointReader, *, timeout: float = 300.0) -> dict[str, dict[str, Any]]:
    """Show the historical import's progress as FlexPoint receives it, until every resource finished."""

    def finished() -> dict[str, dict[str, Any]] | None:
        progress = (flexpoint.status(ACCOUNT) or {}).get("backfill") or {}
        parts = [
            f"{name} {entry['done']:,}" + (f"/{entry['total']:,}" if entry.get("total") is not None else "")
            for name, entry in progress.items()
            if entry["done"] or entry.get("finished")
        ]
        print(f"\r    importing: {', '.join(parts) or 'starting'}\033[K", end="", flush=True)
        return progress if progress and all(e.get("finished") for e in progress.values()) else None

    try:
        return wait_for(finished, timeout=timeout, what="end of the historical import", interval=0.5)
    finally:
        print()


def connect(settings: TourSettings, flexpoint: FlexPointReader) -> None:
    """Publish FlexPoint's connect message (after a disconnect, if an earlier run left it connected)."""
    earlier = flexpoint.status(ACCOUNT) or {}
    if earlier.get("state") == "connected":
        say("an earlier run left the connection connected: disconnecting it first, as a customer would")
        since = now_text()
        message = disconnect_message(account=ACCOUNT, connection_id=CONNECTION_ID, reason="tour restarted")
        publish_json(settings.amqp_url, CONNECTIONS_EXCHANGE, "connection.disconnect", message)
        follow_status(flexpoint, since, {"disconnected"})
    say(f"publishing FlexPoint's connect message for {ACCOUNT} -> Sage Intacct company {COMPANY}")
    since = now_text()
    message = connect_message(account=ACCOUNT, company=COMPANY, user=USER, connection_id=CONNECTION_ID)
    publish_json(settings.amqp_url, CONNECTIONS_EXCHANGE, "connection.connect", message)
    status = follow_status(flexpoint, since, {"connected", "failed"})
    if status["state"] == "failed":
        raise TourError(f"the connect failed: {status.get('message')}")
    print(f"    webhook URL for the Platform Triggers: {status.get('webhookUrl')}")


def ensure_company(settings: TourSettings, webhook_url: str) -> None:
    """A company whose triggers post every synced object to the receiver, with some data."""
    admin = settings.intacct_admin
    company = {"companyId": COMPANY, "webhooks": {"enabled": True, "url": webhook_url}}
    response = requests.post(f"{admin}/companies", json=company, timeout=10)
    if response.status_code == 409:  # kept from an earlier run: point it here again
        requests.patch(f"{admin}/companies/{COMPANY}/webhooks", json=company["webhooks"], timeout=10)
        return
    response.raise_for_status()
    seeded = requests.post(
        f"{admin}/companies/{COMPANY}/seed", json={"customers": 500, "invoices": 5000}, timeout=120
    )
    seeded.raise_for_status()


def change_some_records(settings: TourSettings) -> list[tuple[str, str, str]]:
    """Changes a user would make in Intacct, each firing the company's trigger: (object, action, key)."""
    records = f"{settings.intacct_admin}/companies/{COMPANY}/objects"
    stamp = time.strftime("%H%M%S")
    customer = requests.post(
        f"{records}/accounts-receivable/customer",
        json={"id": f"C-TOUR-{stamp}", "name": f"Tour Customer {stamp}", "status": "active"},
        timeout=10,
    )
    customer.raise_for_status()
    done = [("CUSTOMER", "add", str(customer.json()["key"]))]
    invoices = requests.get(f"{records}/accounts-receivable/invoice", params={"size": 2}, timeout=10).json()
    for invoice in invoices["records"]:
        requests.patch(
            f"{records}/accounts-receivable/invoice/{invoice['key']}",
            json={"description": f"changed by the tour at {stamp}"},
            timeout=10,
        ).raise_for_status()
        done.append(("ARINVOICE", "set", str(invoice["key"])))
    accounts = requests.get(f"{records}/general-ledger/account", params={"size": 1}, timeout=10).json()
    for account in accounts["records"]:
        requests.delete(f"{records}/general-ledger/account/{account['key']}", timeout=10).raise_for_status()
        done.append(("GLACCOUNT", "delete", str(account["key"])))
    return done


def deliveries_answered(
    settings: TourSettings, expected: int, *, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The simulator's webhook deliveries once ``expected`` were answered and none waits for a retry."""
    params: dict[str, str | int] = {"companyId": COMPANY, "limit": expected}
    last: list[list[dict[str, Any]]] = [[]]

    def answered() -> list[dict[str, Any]] | None:
        log = requests.get(f"{settings.intacct_admin}/webhooks/deliveries", params=params, timeout=10).json()
        last[0] = [d for d in log["deliveries"] if d.get("status")]
        return last[0] if len(last[0]) >= expected and not log["pending"] else None

    try:
        return wait_for(answered, timeout=timeout, what="answered webhooks")
    except TourError:
        return last[0]  # show what was answered so far


def arrived(
    flexpoint: FlexPointReader, changes: list[tuple[str, str, str]], since: str, *, timeout: float = 30.0
) -> list[str]:
    """Each changed record as FlexPoint holds it, once a write after ``since`` arrived (or why not)."""
    lines = []
    deadline = time.monotonic() + timeout
    for name, action, key in changes:
        resource = BY_NAME[name].resource

        def landed(resource: str = resource, key: str = key, action: str = action) -> dict[str, Any] | None:
            record = flexpoint.record(ACCOUNT, resource, key)
            if record and (action != "delete" or record["deleted"]) and record["updatedAt"] >= since:
                return record
            return None

        record: dict[str, Any] | None
        try:
            record = wait_for(landed, timeout=max(deadline - time.monotonic(), 0.0), what=f"{resource}/{key}")
        except TourError:
            record = flexpoint.record(ACCOUNT, resource, key)
        if record is None:
            lines.append(f"{resource}/{key}: not in FlexPoint yet")
        elif record["deleted"]:
            lines.append(
                f"{resource}/{key}: tombstone (deleted in Intacct, or a draft, which FlexPoint does not import)"
            )
        else:
            lines.append(f"{resource}/{key}: sourceVersion {record['sourceVersion']}")
    return lines


def account_totals(flexpoint: FlexPointReader) -> str:
    """Live records and tombstones per resource in the account (the FlexPoint simulator's summary)."""
    resources = flexpoint.summary().get("accounts", {}).get(ACCOUNT, {}).get("resources", {})
    return ", ".join(
        f"{name} {counts['live']:,}" + (f" (+{counts['deleted']:,} tombstones)" if counts["deleted"] else "")
        for name, counts in sorted(resources.items())
    )


def queue_depths(amqp_url: str, names: Sequence[str] = WORK_QUEUES) -> dict[str, int | None]:
    """Messages ready in each queue (None: the queue does not exist)."""
    first = amqp_url.split(",")[0].strip()
    depths: dict[str, int | None] = {}
    connection = pika.BlockingConnection(pika.URLParameters(first))
    try:
        for name in names:
            channel = connection.channel()
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).method.message_count
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:  # 404: not declared
                depths[name] = None
    finally:
        connection.close()
    return depths


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def start_processes(settings: TourSettings, procfile: str) -> subprocess.Popen[bytes]:
    """honcho running ``procfile``; the simulators listen where the service's settings point."""
    env = {
        **os.environ,
        "SANDBOX_INTACCT_PORT": str(settings.intacct_port),
        "SANDBOX_FLEXPOINT_PORT": str(settings.flexpoint_port),
    }
    return subprocess.Popen(  # noqa: S603 - honcho from this interpreter, on our own Procfile
        [sys.executable, "-m", "honcho", "-f", procfile, "start"], env=env, start_new_session=True
    )


def tour(settings: TourSettings, processes: subprocess.Popen[bytes], *, startup_timeout: float) -> None:
    """Everything after the processes started."""
    alive: Callable[[], bool] = lambda: processes.poll() is None  # noqa: E731
    flexpoint = FlexPointReader(settings.flexpoint_url, settings.flexpoint_token)
    for what, url in (
        ("the Intacct simulator", f"{settings.intacct_admin}/health"),
        ("the FlexPoint simulator", f"{settings.flexpoint_url}/sandbox/health"),
        ("the receiver", f"{settings.receiver_url}/readyz"),
    ):
        wait_for(
            functools.partial(answers, url),
            timeout=startup_timeout,
            what=f"answer from {what} at {url}",
            alive=alive,
        )
    webhook_url = f"{settings.public_base_url}/webhooks/intacct/{CONNECTION_ID}"
    say(f"seeding {COMPANY} in the Sage Intacct simulator (kept in var/sandbox/ between runs)")
    ensure_company(settings, webhook_url)
    connect(settings, flexpoint)
    say("the provisioning worker imports the company's history (backfill), page by page:")
    imported = follow_backfill(flexpoint)
    print(
        "    " + ", ".join(f"{name} {entry['done']:,}" for name, entry in imported.items() if entry["done"])
    )
    say(f"changing records of {COMPANY} in the Sage Intacct simulator; its triggers post to {webhook_url}")
    changed_at = now_text()
    changes = change_some_records(settings)
    for name, action, key in changes:
        print(f"    {name} {action} key={key}")
    say("the simulator's signed webhooks (JWT + X-Trusted-Context), as the receiver answered them:")
    for delivery in deliveries_answered(settings, len(changes)):
        print(
            f"    {delivery.get('object', '?'):<10} {delivery.get('action', '?'):<6} "
            f"key={delivery.get('key', '?'):<6} -> HTTP {delivery.get('status')}"
        )
    say("the sync workers fetched the latest state from Intacct and upserted it into FlexPoint:")
    for line in arrived(flexpoint, changes, changed_at):
        print(f"    {line}")
    pay_one(
        say, flexpoint, intacct_admin=settings.intacct_admin, company=COMPANY, account=ACCOUNT,
        connection_id=CONNECTION_ID,
    )  # fmt: skip
    say("FlexPoint now holds for the tour's account:")
    print(f"    {account_totals(flexpoint)}")
    say("work queues now (each 202 was confirmed by RabbitMQ before it was answered):")
    for name, depth in queue_depths(settings.amqp_url).items():
        print(f"    {name:<14} {'-' if depth is None else depth:>6}")
    say(
        "running. Change records with `flexsync sandbox intacct records --help`, look at "
        f"{settings.receiver_url}/metrics (with FLEXSYNC_METRICS_TOKEN as a bearer token), stop with Ctrl-C."
    )
    flexpoint.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.tour", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--procfile", default="Procfile.dev", help="the processes to start (default %(default)s)"
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=60.0, help="seconds each process may take to answer"
    )
    args = parser.parse_args(argv)
    settings = TourSettings.from_env()
    # A SIGTERM (a supervisor, `timeout`) stops the children just as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    say(f"starting the sandbox and the service ({args.procfile}, under honcho)")
    processes = start_processes(settings, args.procfile)
    status = 0
    try:
        tour(settings, processes, startup_timeout=args.startup_timeout)
        processes.wait()
    except KeyboardInterrupt:
        pass
    except (TourError, PublishFailed) as exc:
        print(f"tour: {exc}", file=sys.stderr)
        status = 1
    finally:
        if processes.poll() is None:
            os.killpg(processes.pid, signal.SIGTERM)
            try:
                processes.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(processes.pid, signal.SIGKILL)
    return status


if __name__ == "__main__":
    sys.exit(main())
