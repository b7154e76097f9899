"""The sandbox and the service speak the same contract: an Intacct change reaches the queue."""

from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import COMPANY, wait_until

pytestmark = pytest.mark.broker


def test_a_change_in_intacct_arrives_as_a_sage_signed_event(intacct, live_receiver, broker):
    webhook_url = f"{live_receiver.base_url}/webhooks/intacct/{live_receiver.connection.connection_id}"
    admin = f"{intacct.base_url}/sandbox"
    requests.post(
        f"{admin}/companies", json={"companyId": COMPANY, "webhooks": {"url": webhook_url}}, timeout=10
    ).raise_for_status()

    created = requests.post(
        f"{admin}/companies/{COMPANY}/objects/accounts-receivable/customer",
        json={"id": "C-9", "name": "Nine Ltd", "status": "active"},
        timeout=10,
    )
    created.raise_for_status()
    requests.delete(
        f"{admin}/companies/{COMPANY}/objects/accounts-receivable/customer/{created.json()['key']}",
        timeout=10,
    ).raise_for_status()

    envelopes = []
    wait_until(
        lambda: (
            envelopes.extend(json.loads(m.body) for m in broker.take_all("sync.ar")) or len(envelopes) >= 2
        ),
        timeout=20,
        message="both events in sync.ar",
    )
    by_action = {e["action"]: e for e in envelopes}
    assert set(by_action) == {"create", "delete"}
    for envelope in envelopes:
        # Signed by the simulator as Sage does by default, verified by us.
        assert envelope["authScheme"] == "sage-signature"
        assert envelope["companyId"] == COMPANY
        assert (envelope["resource"], envelope["key"]) == ("customers", str(created.json()["key"]))
    log = requests.get(f"{admin}/webhooks/deliveries", params={"companyId": COMPANY}, timeout=10).json()
    assert sorted(d["status"] for d in log["deliveries"]) == [202, 202]
