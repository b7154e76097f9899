"""QUALITY S3: a whole connect → webhook → disconnect flow with known secrets, then no secret in
the database file nor in any log line."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest

from clients.intacct import IntacctClient, TokenProvider, build_session
from clients.intacct.slots import CompanySlots
from config.settings import sqlite_path
from ingest.auth import sign_hmac
from observability.logging import configure_logging
from sandbox.flexpoint.config import FlexPointConfig
from sandbox.flexpoint.server import FlexPointServer
from sandbox.intacct.config import SimulatorConfig
from sandbox.intacct.server import SimulatorServer
from store.db import create_engine_for, upgrade
from tests.conftest import running_receiver
from tests.provisioning.conftest import PUBLIC_BASE_URL, Sandbox

pytestmark = pytest.mark.broker

CLIENT_SECRET = "s3-intacct-client-secret-5c1d9e"
FLEXPOINT_TOKEN = "s3-flexpoint-api-token-7b2a40"
USER_PASSWORD = "s3-user-password-Zq8!r2"


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    yield stream
    logging.getLogger().handlers.clear()


def capturing_client(settings, engine, tokens_seen: list[str]) -> IntacctClient:
    """The real client, whose session also hands us every access token Intacct issued."""
    session = build_session()

    def capture(response, *args, **kwargs):
        if response.request.url.endswith("/oauth2/token") and response.status_code == 200:
            tokens_seen.append(response.json()["access_token"])

    session.hooks["response"].append(capture)
    return IntacctClient(
        settings,
        tokens=TokenProvider(settings, session),
        slots=CompanySlots(engine, cap=settings.intacct_max_concurrency_per_company),
        session=session,
    )


def test_no_secret_reaches_the_database_file_or_a_log_line(
    tmp_path, settings, broker, start_worker, messages, backfills, log_lines
):
    settings = settings.with_overrides(log_level="DEBUG", log_format="json")
    configure_logging(settings, stream=log_lines)
    intacct_config = SimulatorConfig(port=0, data_dir=tmp_path / "s3-intacct", client_secret=CLIENT_SECRET)
    flexpoint_config = FlexPointConfig(port=0, data_dir=tmp_path / "s3-flexpoint", token=FLEXPOINT_TOKEN)
    with SimulatorServer(intacct_config) as intacct, FlexPointServer(flexpoint_config) as flexpoint:
        sandbox = Sandbox(intacct, flexpoint)
        settings = settings.with_overrides(
            intacct_api_url=intacct.api_url,
            intacct_client_secret=CLIENT_SECRET,
            flexpoint_api_url=flexpoint.url,
            flexpoint_api_token=FLEXPOINT_TOKEN,
            public_base_url=PUBLIC_BASE_URL,
        )
        engine = create_engine_for(settings.database_url)
        upgrade(engine)
        tokens_seen: list[str] = []
        worker = start_worker(
            settings, backfills=backfills, intacct=capturing_client(settings, engine, tokens_seen)
        )

        connect = messages.connect(sandbox.company(), userPassword=USER_PASSWORD)
        sandbox.wait_for_state(connect["accountId"], "connected")
        webhook_secret = worker.store.webhook_secret(connect["connectionId"])
        with running_receiver(settings) as receiver:
            body = json.dumps({"object": "ARINVOICE", "action": "set", "key": "7"}).encode()
            accepted = receiver.client.post(
                f"/webhooks/intacct/{connect['connectionId']}",
                data=body,
                content_type="application/json",
                headers={"X-FlexPoint-Signature": sign_hmac(webhook_secret, body, int(time.time()))},
            )
            assert accepted.status_code == 202, accepted.get_json()
            other_webhook_secret = receiver.secret
        messages.disconnect(connect)
        sandbox.wait_for_state(connect["accountId"], "disconnected")
        worker.stop()
        engine.dispose()

    known = {
        "Intacct client secret": CLIENT_SECRET,
        "FlexPoint API token": FLEXPOINT_TOKEN,
        "user password": USER_PASSWORD,
        "webhook secret": webhook_secret,
        "another connection's webhook secret": other_webhook_secret,
        "encryption key": settings.flexsync_secret_key[0],
        **{f"Intacct access token {n}": token for n, token in enumerate(tokens_seen)},
    }
    assert tokens_seen, "the flow fetched at least one Intacct token"
    database = sqlite_path(settings.database_url)
    files = [p for p in Path(database).parent.glob(Path(database).name + "*") if p.is_file()]
    assert files and sum(p.stat().st_size for p in files) > 0
    logs = log_lines.getvalue()
    assert "connection_connected" in logs and "connection_disconnected" in logs
    for what, secret in known.items():
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"the {what} is in clear in {path.name}"
        assert secret not in logs, f"the {what} is in a log line"
