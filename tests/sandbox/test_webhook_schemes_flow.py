"""End to end in each INTACCT_WEBHOOK_SCHEME: a change in the Intacct simulator, signed the way
that scheme says, is accepted by the receiver on a real port and is in the queue (issue 29)."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
import requests
from werkzeug.serving import make_server

from sandbox.intacct.config import SimulatorConfig
from sandbox.intacct.server import SimulatorServer
from sandbox.intacct.webhooks import tenant_id
from tests.conftest import COMPANY, running_receiver, wait_until

pytestmark = pytest.mark.broker


@contextlib.contextmanager
def served(receiver):
    server = make_server("127.0.0.1", 0, receiver.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("receiver_scheme", "simulator_scheme", "auth_scheme"),
    [
        ("sage-signature", "sage-signature", "sage-signature"),
        ("bearer-jwks", "bearer-jwks", "jwt"),
        ("any", "sage-signature", "sage-signature"),
        ("any", "bearer-jwks", "jwt"),
    ],
)
def test_a_simulator_delivery_is_accepted_in_each_scheme(
    tmp_path, settings, broker, receiver_scheme, simulator_scheme, auth_scheme
):
    config = SimulatorConfig(
        port=0, data_dir=tmp_path / "intacct", time_scale=0.01, webhook_scheme=simulator_scheme
    )
    with SimulatorServer(config) as intacct:
        receiver_settings = settings.with_overrides(
            intacct_webhook_scheme=receiver_scheme,
            intacct_client_secret=config.client_secret,
            intacct_webhook_jwks_url=intacct.jwks_url,
            intacct_webhook_issuer=config.issuer,
        )
        with running_receiver(receiver_settings) as receiver, served(receiver) as base_url:
            connection_id = receiver.connection.connection_id
            admin = f"{intacct.base_url}/sandbox"
            hook = {"url": f"{base_url}/webhooks/intacct/{connection_id}"}
            requests.post(
                f"{admin}/companies", json={"companyId": COMPANY, "webhooks": hook}, timeout=10
            ).raise_for_status()
            for name in ("One Ltd", "Two Ltd"):  # two deliveries: both header forms of sage-signature
                requests.post(
                    f"{admin}/companies/{COMPANY}/objects/accounts-receivable/customer",
                    json={"name": name},
                    timeout=10,
                ).raise_for_status()

            envelopes: list[dict] = []
            wait_until(
                lambda: (
                    envelopes.extend(json.loads(m.body) for m in broker.take_all("sync.ar"))
                    or len(envelopes) >= 2
                ),
                timeout=20,
                message="both events in sync.ar",
            )
            assert intacct.simulator.webhooks.wait_idle(10)
            log = requests.get(f"{admin}/webhooks/deliveries", timeout=10).json()["deliveries"]
            assert [(d["status"], d["scheme"]) for d in log] == [(202, simulator_scheme)] * 2
            assert {e["authScheme"] for e in envelopes} == {auth_scheme}
            assert {e["connectionId"] for e in envelopes} == {connection_id}
            pinned = receiver.parts.store.get(connection_id).tenant_id
            assert pinned == (tenant_id(COMPANY) if auth_scheme == "sage-signature" else None)
