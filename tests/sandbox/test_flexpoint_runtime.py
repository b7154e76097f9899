"""The FlexPoint simulator as a running peer: auth, seeded faults, persistence, the request log,
the admin API, real HTTP, a clean stop on SIGTERM, and the CLI."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from sandbox.flexpoint import FlexPointConfig, FlexPointServer, close_app, create_app
from sandbox.flexpoint.cli import flexpoint

TOKEN = "sandbox-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACCOUNT = "acct-1"
T0 = "2026-11-24T10:00:00Z"
T1 = "2026-11-24T10:00:01Z"
ENTITY = {"entityId": "US-EAST", "name": "US East", "currency": "USD", "status": "active"}
REPO = Path(__file__).resolve().parents[2]


def batch_body(external_id: str, version: str = T0) -> dict[str, Any]:
    return {
        "source": "sage-intacct",
        "connectionId": "conn-1",
        "items": [{"externalId": external_id, "sourceVersion": version, "data": ENTITY}],
    }


def post_batch(client, external_id: str, *, key: str | None = None, version: str = T0, headers=None):
    return client.post(
        f"/v1/accounts/{ACCOUNT}/accounting/entities/batch",
        json=batch_body(external_id, version),
        headers={**AUTH, "Idempotency-Key": key or f"key-for-{external_id}", **(headers or {})},
    )


def record_status(client, external_id: str) -> int:
    return client.get(f"/v1/accounts/{ACCOUNT}/accounting/entities/{external_id}", headers=AUTH).status_code


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def make(**overrides: Any):
        overrides.setdefault("data_dir", tmp_path)
        sleep = overrides.pop("sleep", None)
        app = create_app(FlexPointConfig(**overrides), **({"sleep": sleep} if sleep else {}))
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", "Basic c2FuZGJveC10b2tlbg==", "Bearer ", "sandbox-token"]
)
def test_missing_or_wrong_token_is_401_everywhere_but_health(make_app, header):
    client = make_app().test_client()
    headers = {"Authorization": header} if header else {}
    for method, path in (
        ("post", f"/v1/accounts/{ACCOUNT}/accounting/entities/batch"),
        ("get", f"/v1/accounts/{ACCOUNT}/accounting/entities"),
        ("put", f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct"),
        ("get", "/sandbox/summary"),
        ("post", "/sandbox/reset"),
        ("put", "/sandbox/faults"),
    ):
        response = getattr(client, method)(
            path, json={}, headers={**headers, "Idempotency-Key": "key-12345678"}
        )
        assert response.status_code == 401, (method, path)
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/sandbox/health").status_code == 200


def test_configured_token_is_the_one_accepted(make_app):
    client = make_app(token="another-secret-token").test_client()
    assert post_batch(client, "1").status_code == 401
    assert (
        post_batch(client, "1", headers={"Authorization": "Bearer another-secret-token"}).status_code == 200
    )


# -- faults ---------------------------------------------------------------------------------


def expected_faults(seed: int, n: int, server_error_rate: float, rate_limit_rate: float) -> list[int]:
    """The documented draw: two numbers per request from random.Random(seed)."""
    rng, statuses = random.Random(seed), []
    for _ in range(n):
        u, v = rng.random(), rng.random()
        if u < server_error_rate:
            statuses.append(500 if v < 0.5 else 503)
        elif u < server_error_rate + rate_limit_rate:
            statuses.append(429)
        else:
            statuses.append(200)
    return statuses


def test_seeded_faults_fail_exactly_the_expected_requests_and_change_nothing(make_app):
    client = make_app(
        seed=42, server_error_rate=0.3, rate_limit_rate=0.2, retry_after_seconds=7
    ).test_client()
    expected = expected_faults(42, 40, 0.3, 0.2)
    assert {500, 503, 429, 200} <= set(expected)  # the seed exercises every kind

    responses = [post_batch(client, str(n)) for n in range(40)]

    assert [r.status_code for r in responses] == expected
    for response in responses:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "7"
        if response.status_code != 200:
            assert response.get_json()["error"]["code"] in ("rate_limited", "internal_error", "unavailable")
    client.put("/sandbox/faults", json={"serverErrorRate": 0, "rateLimitRate": 0}, headers=AUTH)
    for n, status in enumerate(expected):
        assert record_status(client, str(n)) == (200 if status == 200 else 404)
        # A faulted write did not consume its idempotency key: the retry applies it, while the
        # retry of a served write is the first answer replayed.
        retry = post_batch(client, str(n))
        assert (retry.status_code, retry.get_json()["results"][0]["status"]) == (200, "created")
        assert ("Idempotent-Replayed" in retry.headers) == (status == 200)


def test_same_seed_same_sequence_and_reseeding_restarts_it(make_app, tmp_path):
    first = make_app(seed=7, server_error_rate=0.5, data_dir=tmp_path / "a").test_client()
    second = make_app(seed=7, server_error_rate=0.5, data_dir=tmp_path / "b").test_client()
    run_a = [record_status(first, "x") for _ in range(20)]
    run_b = [record_status(second, "x") for _ in range(20)]
    assert run_a == run_b
    assert {404, 500, 503} <= set(run_a)
    first.put("/sandbox/faults", json={"seed": 7}, headers=AUTH)
    assert [record_status(first, "x") for _ in range(20)] == run_a


def test_scripted_failures_then_service(make_app):
    client = make_app().test_client()
    settings = client.put("/sandbox/faults", json={"script": [503, 429]}, headers=AUTH).get_json()
    assert settings["settings"]["script"] == [503, 429]
    assert [post_batch(client, "1").status_code for _ in range(3)] == [503, 429, 200]
    view = client.get("/sandbox/faults", headers=AUTH).get_json()
    assert view["settings"]["script"] == []
    assert view["injected"] == {"503": 1, "429": 1}


def test_latency_is_applied_to_sync_api_requests_only(make_app):
    slept: list[float] = []
    client = make_app(latency_ms=25, sleep=slept.append).test_client()
    post_batch(client, "1")
    record_status(client, "1")
    client.get("/sandbox/summary", headers=AUTH)
    client.get(f"/v1/accounts/{ACCOUNT}/accounting/entities", headers={"Authorization": "Bearer nope"})
    assert slept == [0.025, 0.025]
    client.put("/sandbox/faults", json={"latencyMs": 0}, headers=AUTH)
    record_status(client, "1")
    assert slept == [0.025, 0.025]


def test_admin_api_is_never_faulted(make_app):
    client = make_app(server_error_rate=1.0).test_client()
    assert post_batch(client, "1").status_code in (500, 503)
    assert client.get("/sandbox/summary", headers=AUTH).status_code == 200
    assert client.get("/sandbox/requests", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"serverErrorRate": 1.5},
        {"latencyMs": -1},
        {"rateLimitRate": "0.1"},
        {"script": [200]},
        {"serverErrorRate": 0.6, "rateLimitRate": 0.6},
        {"bogus": 1},
    ],
)
def test_invalid_fault_settings_are_refused(make_app, body):
    client = make_app().test_client()
    response = client.put("/sandbox/faults", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith("invalid fault settings")


def test_config_refuses_impossible_values():
    with pytest.raises(ValueError, match="server_error_rate"):
        FlexPointConfig(server_error_rate=2)
    with pytest.raises(ValueError, match="exceeds 1"):
        FlexPointConfig(server_error_rate=0.7, rate_limit_rate=0.7)


# -- persistence, inspection, reset --------------------------------------------------------------


def test_data_keys_and_status_survive_a_restart(tmp_path):
    app = create_app(FlexPointConfig(data_dir=tmp_path))
    client = app.test_client()
    first = post_batch(client, "1", key="persisted-key")
    client.put(
        f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct",
        json={"connectionId": "conn-1", "state": "connected"},
        headers={**AUTH, "Idempotency-Key": "status-key-1"},
    )
    close_app(app)
    assert (tmp_path / "flexpoint.db").exists()

    app = create_app(FlexPointConfig(data_dir=tmp_path))
    try:
        client = app.test_client()
        assert (
            client.get(f"/v1/accounts/{ACCOUNT}/accounting/entities/1", headers=AUTH).get_json()["data"]
            == ENTITY
        )
        replay = post_batch(client, "1", key="persisted-key")
        assert (replay.get_data(), replay.headers["Idempotent-Replayed"]) == (first.get_data(), "true")
        status = client.get(f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct", headers=AUTH).get_json()
        assert status["state"] == "connected"
    finally:
        close_app(app)


def test_summary_counts_live_records_and_tombstones_per_account_and_resource(make_app):
    client = make_app().test_client()
    post_batch(client, "1")
    post_batch(client, "2")
    client.post(
        f"/v1/accounts/{ACCOUNT}/accounting/entities/batch",
        json={
            "source": "sage-intacct",
            "connectionId": "conn-1",
            "items": [{"externalId": "2", "sourceVersion": T1, "deleted": True}],
        },
        headers={**AUTH, "Idempotency-Key": "delete-key-2"},
    )
    summary = client.get("/sandbox/summary", headers=AUTH).get_json()
    account = summary["accounts"][ACCOUNT]
    assert account["resources"] == {"entities": {"live": 1, "deleted": 1}}
    assert account["connections"]["conn-1"]["batches"] == 3
    assert summary["requests"]["byStatus"] == {"200": 3}


def test_request_log_records_what_was_sent_and_why_it_was_refused(make_app):
    client = make_app().test_client()
    post_batch(client, "1", key="good-key-1")
    post_batch(client, "2", key="good-key-2", version="2026-11-24")
    entries = client.get("/sandbox/requests?limit=5", headers=AUTH).get_json()["requests"]
    refused, accepted = entries[0], entries[1]
    assert (accepted["method"], accepted["status"], accepted["idempotencyKey"]) == ("POST", 200, "good-key-1")
    assert accepted["path"] == f"/v1/accounts/{ACCOUNT}/accounting/entities/batch"
    assert (accepted["outcomes"], accepted["items"], accepted["error"]) == ({"created": 1}, 1, None)
    assert (refused["status"], refused["idempotencyKey"]) == (400, "good-key-2")
    violation = refused["error"]["details"]["violations"][0]
    assert (violation["pointer"], violation["rule"]) == (
        "/items/0/sourceVersion",
        "#/components/schemas/Timestamp/format",
    )


def test_request_log_never_holds_a_token(make_app):
    client = make_app(token="s3cret-sandbox-token-value").test_client()
    good = {"Authorization": "Bearer s3cret-sandbox-token-value"}
    post_batch(client, "1", headers=good)
    post_batch(client, "2", headers={"Authorization": "Bearer wrong-guess-token-value"})
    # A client that leaks the token into a field: the refusal's reason must not echo it.
    body = batch_body("3")
    body["items"][0]["data"] = {**ENTITY, "status": "s3cret-sandbox-token-value"}
    client.post(
        f"/v1/accounts/{ACCOUNT}/accounting/entities/batch?token=s3cret-sandbox-token-value",
        json=body,
        headers={**good, "Idempotency-Key": "leaky-key-1"},
    )
    dump = json.dumps(client.get("/sandbox/requests", headers=good).get_json())
    dump += json.dumps(client.get("/sandbox/summary", headers=good).get_json())
    assert "s3cret-sandbox-token-value" not in dump
    assert "wrong-guess-token-value" not in dump
    assert "[REDACTED]" in dump


def test_reset_wipes_data_and_log_but_keeps_fault_settings(make_app):
    client = make_app(latency_ms=0).test_client()
    client.put("/sandbox/faults", json={"rateLimitRate": 0.25}, headers=AUTH)
    client.put("/sandbox/faults", json={"rateLimitRate": 0.0}, headers=AUTH)
    post_batch(client, "1")
    client.put("/sandbox/faults", json={"rateLimitRate": 0.25}, headers=AUTH)
    assert client.post("/sandbox/reset", headers=AUTH).status_code == 200
    summary = client.get("/sandbox/summary", headers=AUTH).get_json()
    assert (summary["accounts"], summary["idempotencyKeys"], summary["requests"]["total"]) == ({}, 0, 0)
    assert client.get("/sandbox/faults", headers=AUTH).get_json()["settings"]["rateLimitRate"] == 0.25


def test_unknown_endpoint_and_method_use_the_error_body(make_app):
    client = make_app().test_client()
    response = client.get("/v2/nothing", headers=AUTH)
    assert (response.status_code, response.get_json()["error"]["code"]) == (404, "not_found")
    response = client.delete(f"/v1/accounts/{ACCOUNT}/integrations/sage-intacct", headers=AUTH)
    assert (response.status_code, response.get_json()["error"]["code"]) == (405, "method_not_allowed")


# -- real HTTP ------------------------------------------------------------------------------


def test_over_real_http_with_keep_alive(tmp_path):
    config = FlexPointConfig(data_dir=tmp_path, port=0, retry_after_seconds=3)
    with FlexPointServer(config) as server, requests.Session() as session:
        session.headers.update(AUTH)
        base = f"{server.url}/v1/accounts/{ACCOUNT}/accounting/entities"
        items = [{"externalId": str(n), "sourceVersion": T0, "data": ENTITY} for n in range(500)]
        body = {"source": "sage-intacct", "connectionId": "conn-1", "items": items}
        response = session.post(
            f"{base}/batch", json=body, headers={"Idempotency-Key": "http-key-1"}, timeout=10
        )
        assert response.status_code == 200
        assert {r["status"] for r in response.json()["results"]} == {"created"}
        page = session.get(base, params={"limit": 1000}, timeout=10).json()
        assert (len(page["items"]), page["nextCursor"]) == (500, None)
        session.put(f"{server.url}/sandbox/faults", json={"script": [429]}, timeout=10)
        limited = session.get(f"{base}/1", timeout=10)
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
        assert session.get(f"{base}/1", timeout=10).json()["data"] == ENTITY


def _read_line(stream, deadline: float) -> str:
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            pytest.fail(f"no line from the server in time (got {line!r})")
        chunk = os.read(stream.fileno(), 1)
        if not chunk:
            pytest.fail(f"server exited (got {line!r})")
        line += chunk
    return line.decode()


def test_serve_command_stops_cleanly_on_sigterm_and_keeps_its_data(tmp_path):
    command = [
        sys.executable,
        "-c",
        "from sandbox.flexpoint.cli import flexpoint; flexpoint()",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in (line := _read_line(process.stderr, deadline)):
            pass
        url = line.split("listening on ")[1].split()[0]
        response = requests.post(
            f"{url}/v1/accounts/{ACCOUNT}/accounting/entities/batch",
            json=batch_body("1"),
            headers={**AUTH, "Idempotency-Key": "sigterm-key-1"},
            timeout=10,
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    app = create_app(FlexPointConfig(data_dir=tmp_path))
    try:
        assert record_status(app.test_client(), "1") == 200
    finally:
        close_app(app)


def test_cli_inspects_and_steers_a_running_simulator(tmp_path):
    with FlexPointServer(FlexPointConfig(data_dir=tmp_path, port=0)) as server:
        runner = CliRunner()
        env = {"FLEXPOINT_API_URL": server.url, "FLEXPOINT_API_TOKEN": TOKEN}
        requests.post(
            f"{server.url}/v1/accounts/{ACCOUNT}/accounting/entities/batch",
            json=batch_body("1"),
            headers={**AUTH, "Idempotency-Key": "cli-key-01"},
            timeout=10,
        )

        result = runner.invoke(flexpoint, ["summary"], env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["accounts"][ACCOUNT]["resources"]["entities"]["live"] == 1

        result = runner.invoke(flexpoint, ["requests", "--limit", "5"], env=env)
        assert (
            "200 POST /v1/accounts/acct-1/accounting/entities/batch key=cli-key-01 created=1" in result.output
        )

        result = runner.invoke(flexpoint, ["records", ACCOUNT, "entities"], env=env)
        assert json.loads(result.output)["items"][0]["data"] == ENTITY

        result = runner.invoke(flexpoint, ["faults", "--latency-ms", "5", "--fail-next", "503"], env=env)
        settings = json.loads(result.output)["settings"]
        assert (settings["latencyMs"], settings["script"]) == (5, [503])
        result = runner.invoke(flexpoint, ["faults", "--latency-ms", "0", "--fail-next", ""], env=env)
        assert result.exit_code == 0, result.output

        # Without --yes it asks, and no means no.
        assert runner.invoke(flexpoint, ["reset"], env=env, input="n\n").exit_code == 1
        assert json.loads(runner.invoke(flexpoint, ["summary"], env=env).output)["accounts"] != {}
        result = runner.invoke(flexpoint, ["reset", "--yes"], env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(runner.invoke(flexpoint, ["summary"], env=env).output)["accounts"] == {}

        result = runner.invoke(flexpoint, ["summary"], env={**env, "FLEXPOINT_API_TOKEN": "wrong"})
        assert result.exit_code == 1
        assert "401" in result.output
