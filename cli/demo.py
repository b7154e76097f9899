"""`./dev run`: the service under its Procfile, with a short tour of events flowing through it.

It registers a demo connection, starts the Procfile's processes with honcho, sends a few signed
webhooks the way a relay would, shows where they landed, then keeps running until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import requests
from kombu import Connection

from broker.topology import build_topology
from cli.relay import send_signed_webhook
from config import load_settings
from store.connections import ConnectionStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade

DEMO_CONNECTION_ID = "00000000-0000-4000-8000-00000000d3e0"
DEMO_COMPANY = "DEMO-CO"
DEMO_EVENTS = (
    ("CUSTOMER", "add", "101"),
    ("ARINVOICE", "add", "5001"),
    ("ARINVOICE", "set", "5001"),
    ("ARPYMT", "add", "9001"),
    ("GLACCOUNT", "set", "40"),
    ("DEPOSIT", "add", "7001"),
    ("LOCATIONENTITY", "set", "3"),
)


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def ensure_demo_connection(settings: Any) -> str:
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox.for_settings(settings))
    if store.get(DEMO_CONNECTION_ID) is None or not store.get(DEMO_CONNECTION_ID).is_active:
        store.save(
            connection_id=DEMO_CONNECTION_ID,
            account_id="demo-account",
            company_id=DEMO_COMPANY,
            entity_id=None,
            user_id="ws_flexpoint_demo",
            state="connected",
        )
    secret = store.webhook_secret(DEMO_CONNECTION_ID)
    engine.dispose()
    assert secret is not None
    return secret


def wait_ready(base_url: str, processes: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processes.poll() is not None:
            raise SystemExit("the service's processes stopped; their log above says why")
        try:
            if requests.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise SystemExit(
        f"the receiver did not become ready at {base_url} within {timeout:.0f}s; see its log above"
    )


def send(base_url: str, secret: str, intacct_object: str, action: str, key: str, idempotency_key: str) -> str:
    event = {"object": intacct_object, "action": action, "key": key, "companyId": DEMO_COMPANY}
    response = send_signed_webhook(
        base_url, DEMO_CONNECTION_ID, secret, event, idempotency_key=idempotency_key
    )
    return f"{response.status_code} {response.json()}"


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
    secret = ensure_demo_connection(settings)
    say("starting the Procfile's processes (honcho)")
    processes = subprocess.Popen([sys.executable, "-m", "honcho", "start"], start_new_session=True)
    try:
        wait_ready(base_url, processes)
        before = queue_depths(settings)
        say(f"receiver ready at {base_url}; sending {len(DEMO_EVENTS)} signed webhooks for {DEMO_COMPANY}")
        first_key = None
        for intacct_object, action, key in DEMO_EVENTS:
            idempotency_key = str(uuid.uuid4())
            first_key = first_key or idempotency_key
            answer = send(base_url, secret, intacct_object, action, key, idempotency_key)
            print(f"    {intacct_object:<15} {action:<4} key={key:<5} -> {answer}")
        say("Intacct retries a delivery it did not see answered: the same idempotency key again")
        print(f"    retry -> {send(base_url, secret, *DEMO_EVENTS[0], first_key)}")
        after = queue_depths(settings)
        say("messages waiting in the work queues (each 2xx above was confirmed by RabbitMQ first):")
        for name, depth in after.items():
            print(f"    {name:<14} {depth:>6}  (+{depth - before.get(name, 0)})")
        say(
            f"running; try `flexsync send-webhook {DEMO_CONNECTION_ID} --object CUSTOMER --key 7` "
            f"or GET {base_url}/metrics. Ctrl-C stops everything."
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
