"""`./dev run`: the service and its sandbox under honcho, with a short tour of events flowing.

It starts the processes of ``Procfile.dev`` (the service and the sandbox), sets up a demo
company in the Sage Intacct simulator whose Platform Triggers post to this receiver, changes a
few records there, and shows each signed webhook accepted and the records arriving in the
FlexPoint simulator. Then it keeps running until Ctrl-C. (The historical import of the demo
company's other records comes with provisioning.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import requests
from kombu import Connection

from broker.topology import build_topology
from config import load_settings
from store.connections import ConnectionStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade

DEMO_CONNECTION_ID = "00000000-0000-4000-8000-00000000d3e0"
DEMO_COMPANY = "DEMO-CO"
INTACCT_ADMIN = "http://127.0.0.1:8091/sandbox"
FLEXPOINT_HEALTH = "http://127.0.0.1:8090/sandbox/health"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def ensure_demo_connection(settings: Any) -> None:
    """The connection FlexPoint's connect message would create (provisioning does it later)."""
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox.for_settings(settings))
    # Saved every time, so a demo connection left by an older run is brought up to date.
    store.save(
        connection_id=DEMO_CONNECTION_ID,
        account_id="demo-account",
        company_id=DEMO_COMPANY,
        entity_id=None,
        user_id="ws_flexpoint",
        state="connected",
    )
    engine.dispose()


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
        f"{INTACCT_ADMIN}/companies/{DEMO_COMPANY}/seed", json={"customers": 20, "invoices": 100}, timeout=60
    )
    seeded.raise_for_status()


def change_some_records() -> list[str]:
    """Changes a user would make in Intacct; each fires the company's trigger."""
    records = f"{INTACCT_ADMIN}/companies/{DEMO_COMPANY}/objects"
    stamp = time.strftime("%H%M%S")
    customer = requests.post(
        f"{records}/accounts-receivable/customer",
        json={"id": f"C-DEMO-{stamp}", "name": f"Demo Customer {stamp}", "status": "active"},
        timeout=10,
    )
    customer.raise_for_status()
    invoices = requests.get(f"{records}/accounts-receivable/invoice", params={"size": 2}, timeout=10).json()
    done = [f"CUSTOMER add key={customer.json()['key']}"]
    for invoice in invoices["records"]:
        requests.patch(
            f"{records}/accounts-receivable/invoice/{invoice['key']}",
            json={"description": f"changed by the demo at {stamp}"},
            timeout=10,
        ).raise_for_status()
        done.append(f"ARINVOICE set key={invoice['key']}")
    accounts = requests.get(f"{records}/general-ledger/account", params={"size": 1}, timeout=10).json()
    for account in accounts["records"]:
        requests.delete(f"{records}/general-ledger/account/{account['key']}", timeout=10).raise_for_status()
        done.append(f"GLACCOUNT delete key={account['key']}")
    return done


def deliveries_answered(expected: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    answered: list[dict] = []
    while time.monotonic() < deadline:
        log = requests.get(
            f"{INTACCT_ADMIN}/webhooks/deliveries",
            params={"companyId": DEMO_COMPANY, "limit": expected},
            timeout=10,
        ).json()
        answered = [d for d in log["deliveries"] if d.get("status")]
        if len(answered) >= expected and not log["pending"]:
            break
        time.sleep(0.25)
    return answered


def flexpoint_summary(settings: Any, expected: int, timeout: float = 30.0) -> list[str]:
    """What FlexPoint's side holds for the demo account, once the changes arrived."""
    headers = {"Authorization": f"Bearer {settings.flexpoint_api_token}"}
    base = f"{settings.flexpoint_api_url}/v1/accounts/demo-account/accounting"
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = []
        for resource in ("customers", "invoices", "gl-accounts"):
            page = requests.get(
                f"{base}/{resource}",
                params={"limit": 1000, "includeDeleted": "true"},
                headers=headers,
                timeout=10,
            )
            items = page.json().get("items", []) if page.status_code == 200 else []
            live = sum(not item["deleted"] for item in items)
            lines.append(f"{resource:<12} {live:>4} records, {len(items) - live} tombstones")
        if sum(int(line.split()[1]) + int(line.split()[3]) for line in lines) >= expected:
            break
        time.sleep(0.5)
    return lines


def queue_depths(settings: Any) -> dict[str, int]:
    depths = {}
    with Connection(settings.amqp_url) as connection:
        channel = connection.channel()
        for queue in build_topology(settings.archive_max_age).work_queues:
            depths[queue.name] = channel.queue_declare(queue=queue.name, passive=True).message_count
    return depths


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    settings = load_settings()
    # A SIGTERM (a supervisor, `timeout`) stops the children just as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    base_url = f"http://127.0.0.1:{settings.port}"
    ensure_demo_connection(settings)
    say("starting the sandbox and the service (Procfile.dev, under honcho)")
    processes = subprocess.Popen(
        [sys.executable, "-m", "honcho", "-f", "Procfile.dev", "start"], start_new_session=True
    )
    try:
        wait_for("the Intacct simulator", f"{INTACCT_ADMIN}/health", processes)
        wait_for("the FlexPoint simulator", FLEXPOINT_HEALTH, processes)
        wait_for("the receiver", f"{base_url}/readyz", processes)
        webhook_url = f"{settings.public_base_url or base_url}/webhooks/intacct/{DEMO_CONNECTION_ID}"
        ensure_demo_company(webhook_url)
        say(
            f"changing records of {DEMO_COMPANY} in the Sage Intacct simulator; its triggers post to {webhook_url}"
        )
        changes = change_some_records()
        for change in changes:
            print(f"    {change}")
        say("the simulator's signed webhooks (JWT + X-Trusted-Context), as the receiver answered them:")
        for delivery in deliveries_answered(len(changes)):
            print(
                f"    {delivery.get('object', '?'):<10} {delivery.get('action', '?'):<6} "
                f"key={delivery.get('key', '?'):<6} -> HTTP {delivery.get('status')}"
            )
        say("the sync workers fetched the latest state from Intacct and upserted it into FlexPoint:")
        for line in flexpoint_summary(settings, len(changes)):
            print(f"    {line}")
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
