"""Issue 30 #22: a connect while Sage Intacct is down tells the admin so at once, and decides in
under two minutes (it said ``connecting`` for ~376 s: four trips through the delay queues)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from broker.topology import RETRY_DELAYS_SECONDS
from clients.intacct.errors import IntacctUnavailable
from store.db import create_engine_for, upgrade
from workers.connections.handler import ProvisioningHandler
from workers.connections.marks import ProvisioningMarks
from workers.connections.messages import CONNECT_ROUTING_KEY


class _Store:
    def get(self, connection_id: str) -> None:
        return None

    def live_for_account(self, account_id: str) -> None:
        return None

    def save(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is saved while Intacct does not answer")

    def set_state(self, connection_id: str, state: str) -> None:
        raise AssertionError("no stored connection to mark")


class _DownIntacct:
    def forget(self, connection_id: str) -> None:
        pass

    def read_permissions_probe(self, connection: Any, area: str) -> None:
        raise IntacctUnavailable("Intacct answered 503; gave up after 1 attempt(s)", status=503)


class _FlexPoint:
    def __init__(self) -> None:
        self.reports: list[tuple[float, dict]] = []
        self.now = 0.0

    def report_status(self, account_id: str, body: dict) -> None:
        self.reports.append((self.now, body))


class _Backfills:
    def request(self, connection_id: str, *, restart: bool) -> None:
        raise AssertionError("no import for a connection that never connected")

    def cancel(self, connection_id: str) -> None:
        pass


def test_a_connect_while_intacct_is_down_says_so_at_once_and_fails_within_two_minutes(tmp_path):
    requested = datetime.now(UTC)
    engine = create_engine_for(f"sqlite:///{tmp_path / 'marks.db'}")
    upgrade(engine)
    flexpoint = _FlexPoint()
    # The production defaults: every delay queue may be used.
    handler = ProvisioningHandler(
        store=_Store(),
        marks=ProvisioningMarks(engine),
        intacct=_DownIntacct(),
        flexpoint=flexpoint,
        backfills=_Backfills(),
        public_base_url="https://flexsync.example",
        clock=lambda: requested + timedelta(seconds=flexpoint.now),
    )
    base = {
        "messageId": "m-1",
        "accountId": "acct-1",
        "connectionId": "conn-1",
        "companyId": "ACME",
        "userId": "ws_flexpoint",
        "entityId": None,
        "userPassword": "pw",
    }
    attempts = 0
    while True:
        # As the delay queues would: the message comes back ``flexpoint.now`` s after it was asked for.
        body = {**base, "requestedAt": requested.isoformat()}
        failure = handler.handle(CONNECT_ROUTING_KEY, body, attempts=attempts)
        if failure is None:
            break
        assert failure.transient and failure.reason == "intacct_unavailable"
        assert attempts < len(RETRY_DELAYS_SECONDS), "retried past the last delay queue"
        flexpoint.now += RETRY_DELAYS_SECONDS[attempts]
        attempts += 1

    states = [(at, body["state"], body.get("message") or "") for at, body in flexpoint.reports]
    told = [(at, message) for at, state, message in states if state == "connecting" and message]
    assert told, states
    first_at, message = told[0]
    assert first_at == 0.0  # on the first failure, not after a trip through a delay queue
    assert "Sage Intacct is not answering" in message and "keeps trying" in message
    final_at, final = flexpoint.reports[-1]
    assert final["state"] == "failed" and final["reason"] == "intacct_unavailable"
    assert final_at <= 120.0, f"the verdict came after {final_at} s"
    engine.dispose()
