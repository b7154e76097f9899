"""The simulator's event queue: a delivery that failed all its attempts waits there for 7 days
(time-scaled), served by count, list (base64 payload and context, an ackId) and ack; a batch not
acknowledged comes back; a switch makes the service answer 404."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from tests.sandbox.conftest_intacct import API, COMPANY, FakeClock, bearer, build

TIME_SCALE = 0.002  # retries after 20 ms, 60 ms, 180 ms; 7 days are ~20 minutes of the clock
QUEUE = f"{API}/services/delivery/event"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sim(tmp_path):
    clock = FakeClock()
    app, simulator = build(tmp_path, clock=clock, time_scale=TIME_SCALE)
    client = app.test_client()
    url = f"http://127.0.0.1:{closed_port()}/hook"
    created = client.post("/sandbox/companies", json={"companyId": COMPANY, "webhooks": {"url": url}})
    assert created.status_code == 201, created.get_json()
    yield client, simulator, clock
    simulator.close()


def lose(client, simulator, name: str) -> str:
    created = client.post(
        f"/sandbox/companies/{COMPANY}/objects/accounts-receivable/customer", json={"name": name}
    )
    assert created.status_code == 201, created.get_json()
    assert simulator.webhooks.wait_idle(10), "deliveries did not finish"
    return str(created.get_json()["key"])


def test_a_dropped_delivery_is_listed_decoded_and_acknowledged(sim):
    client, simulator, _ = sim
    headers = bearer(client)
    assert client.get(f"{QUEUE}/count", headers=headers).get_json() == {"ia::result": {"count": 0}}
    assert client.get(f"{QUEUE}/list", headers=headers).get_json() == {"ia::result": []}
    key = lose(client, simulator, "Nobody Listens")
    log = simulator.webhooks.deliveries(COMPANY)
    assert log[-1]["outcome"] == "dropped"

    assert client.get(f"{QUEUE}/count", headers=headers).get_json()["ia::result"]["count"] == 1
    result = client.get(f"{QUEUE}/list", headers=headers).get_json()["ia::result"]
    [event] = result["events"]
    assert event["eventId"] == log[-1]["eventId"]  # the webhook's Idempotency-Key
    body = json.loads(base64.b64decode(event["payload"]))
    assert body["object"] == "CUSTOMER" and body["key"] == key and body["action"] == "add"
    context = json.loads(base64.b64decode(event["context"]))
    assert context["COMPANY"] == COMPANY and context["OBJECTNAME"] == "CUSTOMER"

    # Not acknowledged: the same batch comes back; acknowledged: gone.
    again = client.get(f"{QUEUE}/list", headers=headers).get_json()["ia::result"]
    assert [e["eventId"] for e in again["events"]] == [event["eventId"]]
    acked = client.post(f"{QUEUE}/ack", json={"ackId": again["ackId"]}, headers=headers)
    assert acked.status_code == 200, acked.get_json()
    assert client.get(f"{QUEUE}/count", headers=headers).get_json()["ia::result"]["count"] == 0
    assert client.post(f"{QUEUE}/ack", json={"ackId": "nope"}, headers=headers).status_code == 404
    calls = simulator.stats.requests(COMPANY, 100)
    assert {r["object"] for r in calls if "delivery" in r["path"]} == {
        "delivery/event:count",
        "delivery/event:list",
        "delivery/event:ack",
    }


def test_events_are_kept_seven_scaled_days(sim):
    client, simulator, clock = sim
    headers = bearer(client)
    lose(client, simulator, "Forgotten Ltd")
    clock.advance(7 * 86_400 * TIME_SCALE - 1)
    assert client.get(f"{QUEUE}/count", headers=headers).get_json()["ia::result"]["count"] == 1
    clock.advance(2)
    assert client.get(f"{QUEUE}/count", headers=headers).get_json()["ia::result"]["count"] == 0


def test_the_switch_makes_the_queue_service_answer_404(sim):
    client, simulator, _ = sim
    headers = bearer(client)
    lose(client, simulator, "Hidden Ltd")
    switched = client.patch(f"/sandbox/companies/{COMPANY}/event-queue", json={"available": False})
    assert switched.get_json()["available"] is False
    for method, path in (("get", "count"), ("get", "list"), ("post", "ack")):
        answer = getattr(client, method)(f"{QUEUE}/{path}", headers=headers, json={"ackId": "x"})
        assert answer.status_code == 404, path
    assert client.get(f"/sandbox/companies/{COMPANY}/event-queue").get_json()["count"] == 1
    client.patch(f"/sandbox/companies/{COMPANY}/event-queue", json={"available": True})
    assert client.get(f"{QUEUE}/count", headers=headers).get_json()["ia::result"]["count"] == 1
