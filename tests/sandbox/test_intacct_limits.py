"""Limits and faults of the Intacct simulator: the per-company concurrency cap (real HTTP),
injected latency, 5xx and timeouts (seeded, so deterministic), and the call counters."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.intacct import api as intacct_api
from sandbox.intacct.faults import FaultSettings
from sandbox.intacct.seed import SeedOptions, seed_company
from sandbox.intacct.server import SimulatorServer
from tests.sandbox.conftest_intacct import API, AS_OF, COMPANY, bearer, build, make_config, query, token_form

SMALL = SeedOptions(customers=5, invoices=10, seed=2, as_of=AS_OF)
HELD = FaultSettings(latency_ms=60_000)  # holds requests until the faults change


@pytest.fixture
def live(tmp_path):
    with SimulatorServer(make_config(tmp_path, port=0)) as server:
        for company in (COMPANY, "OTHER-CO"):
            seed_company(server.simulator.store, company, SMALL)
        yield server


def _token(server: SimulatorServer, company: str = COMPANY) -> dict[str, str]:
    response = requests.post(f"{server.api_url}/oauth2/token", data=token_form(company), timeout=10)
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _hold(
    server: SimulatorServer, headers: dict[str, str], count: int
) -> tuple[list[threading.Thread], list[int]]:
    statuses: list[int] = []

    def call() -> None:
        response = requests.get(
            f"{server.api_url}/objects/accounts-receivable/invoice/1", headers=headers, timeout=30
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    assert server.simulator.limiter.wait_for(COMPANY, count, timeout=10), "requests were not held"
    return threads, statuses


def _release(server: SimulatorServer, threads: list[threading.Thread]) -> None:
    server.simulator.faults.configure(FaultSettings())
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_the_request_beyond_the_cap_gets_429_with_retry_after(live):
    headers = _token(live)
    live.simulator.faults.configure(HELD)
    threads, statuses = _hold(live, headers, 2)
    try:
        extra = requests.post(
            f"{live.api_url}/services/core/query",
            json={"object": "accounts-receivable/customer"},
            headers=headers,
            timeout=10,
        )
        assert extra.status_code == 429
        assert extra.headers["Retry-After"] == "1"
        assert extra.json()["ia::result"]["ia::error"]["code"] == "tooManyRequests"
        # The token endpoint is outside the cap, and the cap is per company.
        assert requests.post(f"{live.api_url}/oauth2/token", data=token_form(), timeout=10).status_code == 200
        assert live.simulator.limiter.try_acquire("OTHER-CO")
        live.simulator.limiter.release("OTHER-CO")
    finally:
        _release(live, threads)
    assert statuses == [200, 200]
    stats = requests.get(f"{live.base_url}/sandbox/stats", timeout=10).json()
    assert stats["responses"][COMPANY] == {"200": 4, "429": 1}  # 2 tokens, 2 held reads
    assert stats["tooManyRequests"] == 1 and stats["peakInFlight"][COMPANY] == 2


def test_the_cap_can_change_at_runtime_and_per_company(live):
    headers = _token(live)
    assert requests.patch(f"{live.base_url}/sandbox/limits", json={"concurrencyCap": 3}, timeout=10).ok
    live.simulator.faults.configure(HELD)
    threads, statuses = _hold(live, headers, 3)
    try:
        extra = requests.get(
            f"{live.api_url}/objects/accounts-receivable/invoice", headers=headers, timeout=10
        )
        assert extra.status_code == 429
    finally:
        _release(live, threads)
    assert statuses == [200, 200, 200]

    requests.patch(f"{live.base_url}/sandbox/companies/{COMPANY}", json={"concurrencyCap": 1}, timeout=10)
    live.simulator.faults.configure(HELD)
    threads, statuses = _hold(live, headers, 1)
    try:
        extra = requests.get(
            f"{live.api_url}/objects/accounts-receivable/invoice", headers=headers, timeout=10
        )
        assert extra.status_code == 429
    finally:
        _release(live, threads)
    assert statuses == [200]


def test_a_timeout_holds_the_request_past_the_clients_patience_then_answers_504(live):
    headers = _token(live)
    live.simulator.faults.configure(FaultSettings(timeout_rate=1.0, timeout_hold_seconds=60))
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{live.api_url}/objects/accounts-receivable/invoice/1", headers=headers, timeout=0.3)
    live.simulator.faults.configure(FaultSettings(timeout_rate=1.0, timeout_hold_seconds=0))
    response = requests.get(
        f"{live.api_url}/objects/accounts-receivable/invoice/1", headers=headers, timeout=10
    )
    assert response.status_code == 504
    assert response.json()["ia::result"]["ia::error"]["code"] == "gatewayTimeout"


@pytest.fixture
def env(tmp_path):
    app, sim = build(tmp_path)
    seed_company(sim.store, COMPANY, SMALL)
    client = app.test_client()
    yield client, sim, bearer(client)
    sim.close()


def _statuses(client, headers, count: int) -> list[int]:
    return [
        client.get(f"{API}/objects/accounts-receivable/customer/1", headers=headers).status_code
        for _ in range(count)
    ]


def test_error_rate_is_deterministic_with_a_seed(env):
    client, _, headers = env
    assert client.patch("/sandbox/faults", json={"errorRate": 0.3, "seed": 42}).status_code == 200
    first = _statuses(client, headers, 40)
    rng = random.Random(42)
    assert first == [503 if rng.random() < 0.3 else 200 for _ in range(40)]
    assert 0 < first.count(503) < 40
    client.patch("/sandbox/faults", json={"seed": 42})  # re-seeding replays the same faults
    assert _statuses(client, headers, 40) == first
    body = client.get(f"{API}/objects/accounts-receivable/customer/1", headers=headers)
    assert client.delete("/sandbox/faults").get_json()["errorRate"] == 0.0
    assert _statuses(client, headers, 10) == [200] * 10
    assert body.status_code in (200, 503)


def test_error_status_timeouts_and_the_token_endpoint(env):
    client, _, headers = env
    client.put("/sandbox/faults", json={"errorRate": 1.0, "errorStatus": 500})
    response = client.get(f"{API}/objects/accounts-receivable/customer/1", headers=headers)
    assert response.status_code == 500
    assert response.get_json()["ia::result"]["ia::error"]["code"] == "internalError"
    assert client.post(f"{API}/oauth2/token", data=token_form()).status_code == 500  # "Intacct down"
    client.put("/sandbox/faults", json={"timeoutRate": 1.0, "timeoutHoldSeconds": 0})
    assert query(client, headers, object="accounts-receivable/invoice").status_code == 504
    client.put("/sandbox/faults", json={"latencyMs": 0})
    assert query(client, headers, object="accounts-receivable/invoice").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"errorRate": 1.5},
        {"errorRate": 0.6, "timeoutRate": 0.6},
        {"errorStatus": 404},
        {"latencyMs": -1},
        {"jitter": 3},
        {"seed": "x"},
    ],
)
def test_invalid_fault_settings_are_refused(env, body):
    client = env[0]
    response = client.patch("/sandbox/faults", json=body)
    assert response.status_code == 400 and response.get_json()["error"]["message"]


def test_faults_from_the_config(tmp_path):
    app, sim = build(tmp_path, error_rate=1.0, error_status=502)
    try:
        seed_company(sim.store, COMPANY, SMALL)
        client = app.test_client()
        assert client.post(f"{API}/oauth2/token", data=token_form()).status_code == 502
        assert client.get("/sandbox/faults").get_json()["errorStatus"] == 502
    finally:
        sim.close()


def test_call_counters_per_company_and_object(env):
    client, sim, headers = env
    seed_company(sim.store, "OTHER-CO", SMALL)
    other = bearer(client, "OTHER-CO")
    for _ in range(3):
        client.get(f"{API}/objects/accounts-receivable/invoice/1", headers=headers)
    client.get(f"{API}/objects/accounts-receivable/invoice/1,2,3", headers=headers)
    query(client, headers, object="accounts-receivable/invoice-line", filters=[{"$eq": {"invoice.key": "1"}}])
    query(client, other, object="general-ledger/account")
    stats = client.get("/sandbox/stats").get_json()
    assert stats["calls"] == {
        COMPANY: {"accounts-receivable/invoice": 4, "accounts-receivable/invoice-line": 1, "oauth2/token": 1},
        "OTHER-CO": {"general-ledger/account": 1, "oauth2/token": 1},
    }
    assert stats["totalCalls"] == 8 and stats["responses"][COMPANY] == {"200": 6}
    only = client.get("/sandbox/stats", query_string={"companyId": "OTHER-CO"}).get_json()
    assert set(only["calls"]) == {"OTHER-CO"}
    assert client.delete("/sandbox/stats").status_code == 204
    assert client.get("/sandbox/stats").get_json()["totalCalls"] == 0


class _Ticking:
    """perf_counter for the simulator's API module: moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


def test_the_latency_counts_from_admission_so_the_simulators_own_work_is_inside_it(env, monkeypatch):
    client, sim, headers = env
    clock = _Ticking()
    monkeypatch.setattr(intacct_api, "time", clock)
    held: list[float] = []
    monkeypatch.setattr(sim.faults, "hold", held.append)
    real_read = sim.store.read

    @contextlib.contextmanager
    def slow_read() -> Iterator[Any]:
        clock.now += 0.3  # the simulator's own work on the call takes 0.3 s
        with real_read() as conn:
            yield conn

    monkeypatch.setattr(sim.store, "read", slow_read)
    client.put("/sandbox/faults", json={"latencyMs": 400})
    assert client.get(f"{API}/objects/accounts-receivable/customer/1", headers=headers).status_code == 200
    # Answered 0.4 s after admission in all: 0.3 s of work, then the 0.1 s left of the latency.
    assert held == [pytest.approx(0.1)]
    held.clear()
    # An injected error does no work: it is answered after the whole latency.
    client.put("/sandbox/faults", json={"latencyMs": 400, "errorRate": 1.0})
    assert client.get(f"{API}/objects/accounts-receivable/customer/1", headers=headers).status_code == 503
    assert held == [pytest.approx(0.4)]
