"""Helpers shared by the Intacct simulator's tests (imported explicitly; no fixtures here)."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox.intacct.app import create_app, simulator_of
from sandbox.intacct.config import SimulatorConfig
from sandbox.intacct.keys import SigningKey
from sandbox.intacct.simulator import Simulator

COMPANY = "ACME"
USER = "ws_flexpoint"
SECRET = "sandbox-client-secret"
API = "/ia/api/v1"
AS_OF = 1_790_000_000  # 2026-09-21T14:13:20Z


class FakeClock:
    """Unix seconds that move only when a test says so."""

    def __init__(self, start: float = AS_OF + 86_400) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@functools.cache
def _signing_key_pem() -> bytes:
    return SigningKey.generate().private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_config(tmp_path: Path, **config: Any) -> SimulatorConfig:
    """A config on a fresh data dir, holding a key generated once per test run (RSA is slow)."""
    config.setdefault("data_dir", tmp_path / "sim")
    result = SimulatorConfig(**config)
    if not result.key_path.exists():
        result.data_dir.mkdir(parents=True, exist_ok=True)
        result.key_path.write_bytes(_signing_key_pem())
    return result


def build(tmp_path: Path, clock: Callable[[], float] | None = None, **config: Any) -> tuple[Flask, Simulator]:
    """A simulator app on a fresh data dir."""
    app = create_app(make_config(tmp_path, **config), clock=clock or FakeClock())
    return app, simulator_of(app)


def token_form(
    company: str = COMPANY, user: str = USER, entity: str | None = None, **changes: str
) -> dict[str, str]:
    username = f"{user}@{company}" + (f"|{entity}" if entity else "")
    form = {
        "grant_type": "client_credentials",
        "client_id": SimulatorConfig.client_id,
        "client_secret": SECRET,
        "username": username,
    }
    form.update(changes)
    return form


def bearer(client: FlaskClient, company: str = COMPANY, **kwargs: Any) -> dict[str, str]:
    response = client.post(f"{API}/oauth2/token", data=token_form(company, **kwargs))
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def query(client: FlaskClient, headers: dict[str, str], **body: Any):
    return client.post(f"{API}/services/core/query", json=body, headers=headers)


def wait(condition: threading.Condition, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait (on a condition variable, not a sleep) until ``predicate`` holds, or fail."""
    deadline = time.monotonic() + timeout
    with condition:
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            condition.wait(remaining)


class WebhookSink:
    """A real local HTTP endpoint that records webhook requests and answers scripted statuses."""

    def __init__(self, statuses: list[int] | None = None, gate: threading.Event | None = None) -> None:
        self.statuses = list(statuses or [])
        self.gate = gate  # when set, requests wait for it before answering
        self.requests: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _app(self, environ, start_response):
        request = Request(environ)
        if self.gate is not None:
            self.gate.wait(10)
        with self.changed:
            status = self.statuses.pop(0) if self.statuses else 202
            self.requests.append(
                {
                    "path": request.path,
                    "headers": dict(request.headers),
                    "raw": request.get_data(),
                    "body": json.loads(request.get_data() or b"null"),
                    "status": status,
                }
            )
            self.changed.notify_all()
        return Response(json.dumps({"status": "ok"}), status=status, content_type="application/json")(
            environ, start_response
        )

    def url(self, path: str = "/webhooks/intacct/conn-1") -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        wait(self.changed, lambda: len(self.requests) >= count, timeout, f"{count} webhook request(s)")
        with self.changed:
            return list(self.requests)

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
