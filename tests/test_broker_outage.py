"""QUALITY R2: the broker stops while webhooks arrive.

The receiver answers 503 with Retry-After within 2 s and never 2xx while it is down, recovers by
itself when it returns, and every 2xx it gave is a message in the queue.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.conftest import BrokerProbe, invoice_event, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.disruptive]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@dataclass
class Answer:
    status: int
    seconds: float
    retry_after: str | None
    event_id: str | None
    sent_at: float


@pytest.fixture
def stoppable_broker(amqp_url):
    if urlsplit(amqp_url).hostname not in ("localhost", "127.0.0.1") or not shutil.which("rabbitmqctl"):
        pytest.skip("stopping the broker needs a RabbitMQ node on this machine (rabbitmqctl)")
    yield
    _rabbitmqctl("start_app")  # whatever happened, leave the node running for the next tests


def test_broker_stopped_mid_run_gives_503s_then_recovers(receiver, broker, stoppable_broker, amqp_url):
    answers: list[Answer] = []
    done = threading.Event()
    client = receiver.app.test_client()

    def send_continuously() -> None:
        n = 0
        while not done.is_set():
            n += 1
            body = invoice_event(key=str(n))
            started = time.monotonic()
            response = receiver.post_hmac(body, key=f"outage-{n}", client=client)
            answers.append(
                Answer(
                    response.status_code,
                    time.monotonic() - started,
                    response.headers.get("Retry-After"),
                    (response.get_json() or {}).get("eventId"),
                    started,
                )
            )

    sender = threading.Thread(target=send_continuously, daemon=True)
    sender.start()
    try:
        wait_until(lambda: sum(a.status == 202 for a in answers) >= 20, timeout=30, message="first 202s")
        _rabbitmqctl("stop_app")
        stopped_at = time.monotonic()
        wait_until(
            lambda: sum(a.status == 503 and a.sent_at > stopped_at for a in answers) >= 10,
            timeout=30,
            message="503s while the broker is down",
        )
        # The node is certainly down from stop_app's return until start_app is called; once
        # called, it may accept connections (and confirm) before the command returns.
        restarting_at = time.monotonic()
        _rabbitmqctl("start_app")
        restarted_at = time.monotonic()
        wait_until(
            lambda: sum(a.status == 202 and a.sent_at > restarted_at for a in answers) >= 20,
            timeout=60,
            message="the receiver to recover by itself",
        )
    finally:
        done.set()
        sender.join(10)

    assert {a.status for a in answers} <= {202, 503}, {a.status for a in answers}
    refused = [a for a in answers if a.status == 503]
    assert refused
    assert all(a.retry_after and int(a.retry_after) > 0 for a in refused)
    assert max(a.seconds for a in refused) < 2.0
    # A request sent and answered while the node was down never got a 2xx.
    during_outage = [a for a in answers if stopped_at < a.sent_at and a.sent_at + a.seconds < restarting_at]
    accepted_while_down = [a for a in during_outage if a.status != 503]
    assert during_outage and not accepted_while_down, accepted_while_down[:5]

    accepted = {a.event_id for a in answers if a.status == 202}
    probe = BrokerProbe(amqp_url)  # the old probe's connection died with the node
    try:
        queued = {json.loads(m.body)["eventId"] for m in probe.take_all("sync.ar")}
    finally:
        probe.close()
    assert accepted <= queued, f"{len(accepted - queued)} accepted events are not in the queue"


def _memory_watermark() -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip()


def test_a_blocked_broker_gives_503_in_time_and_the_retry_is_accepted(receiver, broker, stoppable_broker):
    """A memory alarm makes RabbitMQ stop reading publishes: confirms never come in time."""
    assert receiver.post_hmac(invoice_event(key="before"), key="before-alarm").status_code == 202
    watermark = _memory_watermark()
    _rabbitmqctl("set_vm_memory_high_watermark", "0")
    try:
        started = time.monotonic()
        blocked = receiver.post_hmac(invoice_event(key="during"), key="during-alarm")
        elapsed = time.monotonic() - started
    finally:
        _rabbitmqctl(
            "set_vm_memory_high_watermark", watermark if watermark.replace(".", "").isdigit() else "0.4"
        )

    assert blocked.status_code == 503
    assert elapsed < 2.0
    assert int(blocked.headers["Retry-After"]) > 0
    # Intacct retries: accepted now, or "duplicate" if the held message was confirmed late.
    retried = wait_until(
        lambda: (
            (r := receiver.post_hmac(invoice_event(key="during"), key="during-alarm")).status_code != 503
            and r
        ),
        timeout=30,
        message="the retry to be accepted after the alarm cleared",
    )
    assert retried.status_code in (200, 202)
    keys = [json.loads(m.body)["idempotencyKey"] for m in broker.take_all("sync.ar")]
    assert "during-alarm" in keys and keys.count("before-alarm") == 1
