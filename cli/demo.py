"""`./dev run`: the service and its sandbox under honcho, with a short tour of events flowing.

It starts the processes of ``Procfile.dev`` (the service and the sandbox), seeds a demo company
in the Sage Intacct simulator whose Platform Triggers post to this receiver, publishes the
connect message FlexPoint would send, follows the connection status and the historical import
(backfill) as FlexPoint sees them, then changes a few records and shows each signed webhook
accepted and the records arriving in the FlexPoint simulator; then FlexPoint collects a payment,
posted into Intacct by ``writeback`` and coming back through the sync (``cli/demo_payment.py``).
Then it keeps running until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import requests

from clients.flexpoint import FlexPointClient
from config import load_settings
from processes.parts import ProcessParts
from schemas.catalog import BY_INTACCT_OBJECT
from workers.connections.messages import CONNECT_ROUTING_KEY, DISCONNECT_ROUTING_KEY
from workers.connections.requests import connect_message, disconnect_message, publish_message

DEMO_CONNECTION_ID = "00000000-0000-4000-8000-00000000d3e0"
DEMO_COMPANY = "DEMO-CO"
DEMO_ACCOUNT = "demo-account"
DEMO_USER = "ws_flexpoint"  # the simulator's default Web Services user
INTACCT_ADMIN = "http://127.0.0.1:8091/sandbox"
FLEXPOINT_HEALTH = "http://127.0.0.1:8090/sandbox/health"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def live_demo_connection(settings: Any) -> bool:
    """Whether an earlier run left the demo connection connected."""
    with ProcessParts(settings, process="demo") as parts:
        record = parts.connections.get(DEMO_CONNECTION_ID)
    return record is not None and record.is_active


def follow_status(flexpoint: FlexPointClient, since: str, until: set[str], timeout: float = 60.0) -> dict:
    """Print each new connection status FlexPoint receives after ``since`` until one in ``until``."""
    deadline = time.monotonic() + timeout
    seen: tuple = ()
    while time.monotonic() < deadline:
        status = flexpoint.get_status(DEMO_ACCOUNT) or {}
        if status.get("reportedAt", "") >= since:
            if (status.get("state"), status.get("reason")) != seen:
                seen = (status.get("state"), status.get("reason"))
                print(
                    f"    FlexPoint status: {status['state']}"
                    + (f" ({status['reason']})" if status.get("reason") else "")
                )
            if status["state"] in until:
                return status
        time.sleep(0.2)
    raise SystemExit(f"no {'/'.join(sorted(until))} status within {timeout:.0f}s; see the log above")


def follow_backfill(flexpoint: FlexPointClient, timeout: float = 300.0) -> dict[str, dict]:
    """Show the historical import's progress, as FlexPoint receives it, until every resource is done."""
    deadline = time.monotonic() + timeout
    progress: dict[str, dict] = {}
    while time.monotonic() < deadline:
        progress = (flexpoint.get_status(DEMO_ACCOUNT) or {}).get("backfill") or {}
        parts = [
            f"{name} {entry['done']:,}" + (f"/{entry['total']:,}" if entry.get("total") is not None else "")
            for name, entry in progress.items()
            if entry["done"] or entry.get("finished")
        ]
        print(f"\r    importing: {', '.join(parts) or 'starting'}\033[K", end="", flush=True)
        if progress and all(entry.get("finished") for entry in progress.values()):
            print()
            return progress
        time.sleep(0.5)
    print()
    raise SystemExit(f"the historical import did not finish within {timeout:.0f}s; see the log above")


def connect_demo(settings: Any, flexpoint: FlexPointClient) -> None:
    """Publish FlexPoint's connect message (after a disconnect, if an earlier run left it connected)."""
    if live_demo_connection(settings):
        say("an earlier run left the demo connection connected: disconnecting it first, as a customer would")
        since = _now_text()
        message = disconnect_message(
            account_id=DEMO_ACCOUNT, connection_id=DEMO_CONNECTION_ID, reason="demo restarted"
        )
        publish_message(settings.amqp_url, DISCONNECT_ROUTING_KEY, message)
        follow_status(flexpoint, since, {"disconnected"})
    say(f"publishing FlexPoint's connect message for {DEMO_ACCOUNT} -> Sage Intacct company {DEMO_COMPANY}")
    since = _now_text()
    message = connect_message(
        account_id=DEMO_ACCOUNT, company_id=DEMO_COMPANY, user_id=DEMO_USER, connection_id=DEMO_CONNECTION_ID
    )
    publish_message(settings.amqp_url, CONNECT_ROUTING_KEY, message)
    status = follow_status(flexpoint, since, {"connected", "failed"})
    if status["state"] == "failed":
        raise SystemExit(f"the connect failed: {status.get('message')}")
    print(f"    webhook URL for the Platform Triggers: {status.get('webhookUrl')}")


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wait_for(what: str, url: str, processes: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processes.poll() is not None:
            raise SystemExit("the service's processes stopped; their log above says why")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f}s; see the log above")


def ensure_demo_company(webhook_url: str) -> None:
    """A company whose triggers post every synced object to this receiver, with some data."""
    company = {"companyId": DEMO_COMPANY, "webhooks": {"enabled": True, "url": webhook_url}}
    response = requests.post(f"{INTACCT_ADMIN}/companies", json=company, timeout=10)
    if response.status_code == 409:  # kept from an earlier run: just point it here again
        requests.patch(
            f"{INTACCT_ADMIN}/companies/{DEMO_COMPANY}/webhooks", json=company["webhooks"], timeout=10
        )
        return
    response.raise_for_status()
    seeded = requests.post(
        f"{INTACCT_ADMIN}/companies/{DEMO_COMPANY}/seed",
        json={"customers": 500, "invoices": 5000},
        timeout=120,
    )
    seeded.raise_for_status()


def change_some_records() -> list[tuple[str, str, str]]:
    """Changes a user would make in Intacct, each firing the company's trigger: (object, action, key)."""
    records = f"{INTACCT_ADMIN}/companies/{DEMO_COMPANY}/objects"
    stamp = time.strftime("%H%M%S")
    customer = requests.post(
        f"{records}/accounts-receivable/customer",
        json={"id": f"C-DEMO-{stamp}", "name": f"Demo Customer {stamp}", "status": "active"},
        timeout=10,
    )
    customer.raise_for_status()
    done = [("CUSTOMER", "add", str(customer.json()["key"]))]
    invoices = requests.get(f"{records}/accounts-receivable/invoice", params={"size": 2}, timeout=10).json()
    for invoice in invoices["records"]:
        requests.patch(
            f"{records}/accounts-receivable/invoice/{invoice['key']}",
            json={"description": f"changed by the demo at {stamp}"},
            timeout=10,
        ).raise_for_status()
        done.append(("ARINVOICE", "set", str(invoice["key"])))
    accounts = requests.get(f"{records}/general-ledger/account", params={"size": 1}, timeout=10).json()
    for account in accounts["records"]:
        requests.delete(f"{records}/general-ledger/account/{account['key']}", timeout=10).raise_for_status()
        done.append(("GLACCOUNT", "delete", str(account["key"])))
    return done


def deliveries_answered(expected: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    answered: list[dict] = []
    params: dict[str, str | int] = {"companyId": DEMO_COMPANY, "limit": expected}
    while time.monotonic() < deadline:
        log = requests.get(
            f"{INTACCT_ADMIN}/webhooks/deliveries",
            params=params,
            timeout=10,
        ).json()
        answered = [d for d in log["deliveries"] if d.get("status")]
        if len(answered) >= expected and not log["pending"]:
            break
        time.sleep(0.25)
    return answered


def arrived(
    flexpoint: FlexPointClient, changes: list[tuple[str, str, str]], since: str, timeout: float = 30.0
) -> list[str]:
    """Each changed record as FlexPoint holds it, once a write after ``since`` arrived (or why not)."""
    lines = []
    deadline = time.monotonic() + timeout
    for intacct_object, action, key in changes:
        resource = BY_INTACCT_OBJECT[intacct_object].resource
        record = None
        while time.monotonic() < deadline:
            record = flexpoint.get_record(DEMO_ACCOUNT, resource, key)
            if (
                record is not None
                and (action != "delete" or record["deleted"])
                and record["updatedAt"] >= since
            ):
                break
            time.sleep(0.25)
        if record is None:
            lines.append(f"{resource}/{key}: not in FlexPoint yet")
        elif record["deleted"]:
            lines.append(
                f"{resource}/{key}: tombstone (deleted in Intacct, or a draft, which FlexPoint does not import)"
            )
        else:
            lines.append(f"{resource}/{key}: sourceVersion {record['sourceVersion']}")
    return lines


def account_totals(settings: Any) -> str:
    """Live records and tombstones per resource in the demo account (the FlexPoint simulator's summary)."""
    headers = {"Authorization": f"Bearer {settings.flexpoint_api_token}"}
    summary = requests.get(
        f"{settings.flexpoint_api_url}/sandbox/summary", headers=headers, timeout=10
    ).json()
    resources = summary.get("accounts", {}).get(DEMO_ACCOUNT, {}).get("resources", {})
    return ", ".join(
        f"{name} {counts['live']:,}" + (f" (+{counts['deleted']:,} tombstones)" if counts["deleted"] else "")
        for name, counts in sorted(resources.items())
    )


def queue_depths(settings: Any) -> dict[str, int]:
    depths = {}
    with ProcessParts(settings, process="demo") as parts:
        channel = parts.amqp_connection(consuming=False).channel()
        for queue in parts.topology.work_queues:
            depths[queue.name] = channel.queue_declare(queue=queue.name, passive=True).message_count
    return depths


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    settings = load_settings()
    # A SIGTERM (a supervisor, `timeout`) stops the children just as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    base_url = f"http://127.0.0.1:{settings.port}"
    flexpoint = FlexPointClient.from_settings(settings, process="demo")
    say("starting the sandbox and the service (Procfile.dev, under honcho)")
    processes = subprocess.Popen(
        [sys.executable, "-m", "honcho", "-f", "Procfile.dev", "start"], start_new_session=True
    )
    try:
        wait_for("the Intacct simulator", f"{INTACCT_ADMIN}/health", processes)
        wait_for("the FlexPoint simulator", FLEXPOINT_HEALTH, processes)
        wait_for("the receiver", f"{base_url}/readyz", processes)
        webhook_url = f"{settings.public_base_url or base_url}/webhooks/intacct/{DEMO_CONNECTION_ID}"
        say(f"seeding {DEMO_COMPANY} in the Sage Intacct simulator (kept in var/sandbox/ between runs)")
        ensure_demo_company(webhook_url)
        connect_demo(settings, flexpoint)
        say("the provisioning worker imports the company's history (backfill), page by page:")
        imported = follow_backfill(flexpoint)
        print(
            "    "
            + ", ".join(f"{name} {entry['done']:,}" for name, entry in imported.items() if entry["done"])
        )
        say(
            f"changing records of {DEMO_COMPANY} in the Sage Intacct simulator; its triggers post to {webhook_url}"
        )
        changed_at = _now_text()
        changes = change_some_records()
        for intacct_object, action, key in changes:
            print(f"    {intacct_object} {action} key={key}")
        say("the simulator's signed webhooks (JWT + X-Trusted-Context), as the receiver answered them:")
        for delivery in deliveries_answered(len(changes)):
            print(
                f"    {delivery.get('object', '?'):<10} {delivery.get('action', '?'):<6} "
                f"key={delivery.get('key', '?'):<6} -> HTTP {delivery.get('status')}"
            )
        say("the sync workers fetched the latest state from Intacct and upserted it into FlexPoint:")
        for line in arrived(flexpoint, changes, changed_at):
            print(f"    {line}")
        from cli.demo_payment import pay_one

        pay_one(
            say, flexpoint, intacct_admin=INTACCT_ADMIN, company=DEMO_COMPANY, account=DEMO_ACCOUNT,
            connection_id=DEMO_CONNECTION_ID,
        )  # fmt: skip
        say("FlexPoint now holds for the demo account:")
        print(f"    {account_totals(settings)}")
        say("work queues now (each 202 was confirmed by RabbitMQ before it was answered):")
        for name, depth in queue_depths(settings).items():
            print(f"    {name:<14} {depth:>6}")
        say(
            "running. Change records with `flexsync sandbox intacct records --help`, look at "
            f"{base_url}/metrics, stop with Ctrl-C."
        )
        processes.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if processes.poll() is None:
            os.killpg(processes.pid, signal.SIGTERM)
            try:
                processes.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(processes.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
