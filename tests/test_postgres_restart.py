"""QUALITY R8: PostgreSQL restarted mid-run.

Webhooks for every record of a seeded company arrive through the receiver while a real
``flexsync sync`` process works on PostgreSQL, and the database is stopped and started in the
middle. While it is away the receiver answers 503 with ``Retry-After`` (never 500, never 2xx
without a confirm); the refused webhooks are sent again, as Intacct retries a 503; the worker
holds its messages and carries on by itself when the database returns, without a restart; and
afterwards FlexPoint equals Intacct for every record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from schemas.catalog import BY_RESOURCE
from tests.conftest import COMPANY, running_receiver, wait_until
from tests.databases import _postgres_admin_url, _require_postgres
from tests.workers.chaos_support import (
    FLEXPOINT_TOKEN,
    INTACCT_SECRET,
    CompanyRecords,
    IntacctChanges,
    Sandbox,
    Workers,
    compare,
    queue_totals,
    worker_environment,
)
from tests.workers.test_chaos import _consumers, _drained

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.disruptive, pytest.mark.timeout(300)]

OUTAGE_SECONDS = 4.0


def _cluster() -> list[str]:
    """The local PostgreSQL cluster's version and name, for pg_ctlcluster."""
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        pytest.skip("restarting PostgreSQL needs a local cluster managed by pg_ctlcluster")
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    return [version, "main"]


def _pg(action: str, cluster: list[str]) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _pg_answers(admin_url: str) -> bool:
    try:
        psycopg.connect(admin_url, connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def postgres_schema():
    """A fresh schema on the local PostgreSQL, dropped afterwards (the cluster left running)."""
    cluster = _cluster()
    admin_url = _postgres_admin_url()
    _require_postgres(admin_url)
    schema = f"flexsync_r8_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False), cluster, admin_url
    finally:
        if not _pg_answers(admin_url):
            _pg("start", cluster)
            wait_until(lambda: _pg_answers(admin_url), timeout=60, message="PostgreSQL back")
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_postgres_restarted_mid_run_gives_503s_and_nothing_is_lost(
    settings, amqp_url, broker, postgres_schema, tmp_path
):
    database_url, cluster, admin_url = postgres_schema
    sandbox = Sandbox(tmp_path / "sandbox", tmp_path / "sandbox.log")
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "logs").mkdir()
    sandbox.start()
    settings = dataclasses.replace(
        settings,
        database_url=database_url,
        intacct_api_url=sandbox.intacct_api_url,
        intacct_client_secret=INTACCT_SECRET,
        flexpoint_api_url=sandbox.flexpoint_url,
        flexpoint_api_token=FLEXPOINT_TOKEN,
    )
    workers = Workers(
        worker_environment(
            sandbox,
            amqp_url=amqp_url,
            database_url=database_url,
            secret_key=",".join(settings.flexsync_secret_key),
        ),
        tmp_path / "logs",
    )
    statuses: Counter[int] = Counter()
    refused_without_retry_after: list[int] = []
    outage: dict[str, float] = {}
    try:
        sandbox.intacct("POST", f"companies/{COMPANY}/seed", {"customers": 20, "invoices": 120, "seed": 8})
        with running_receiver(settings) as receiver:
            company = CompanyRecords(
                COMPANY, receiver.connection.connection_id, receiver.connection.account_id
            )
            changes = IntacctChanges(sandbox, random.Random(8))
            changes.load(company)
            workers.keep(1)
            # The worker consumes before the outage: its start-up (migrations, topology) is not
            # what this test is about.
            wait_until(
                lambda: all(count >= 1 for count in _consumers(amqp_url).values()),
                timeout=60,
                interval=0.2,
                message="the sync worker consuming every work queue",
            )
            webhooks = [
                {
                    "object": BY_RESOURCE[resource].intacct_object,
                    "action": "set",
                    "key": key,
                    "id": record_id,
                    "companyId": COMPANY,
                    "occurredAt": "2026-12-02T10:00:00Z",
                }
                for _, (resource, key, _action, record_id) in changes.every_record()
            ]
            assert len(webhooks) > 150

            def restart_postgres() -> None:
                outage["stopping"] = time.monotonic()
                _pg("stop", cluster)
                outage["stopped"] = time.monotonic()
                time.sleep(OUTAGE_SECONDS)  # the outage itself: the database is away this long
                outage["starting"] = time.monotonic()
                _pg("start", cluster)
                outage["started"] = time.monotonic()

            restarter = threading.Thread(target=restart_postgres, daemon=True)
            pending = list(enumerate(webhooks))
            rounds = 0
            while pending:
                rounds += 1
                assert rounds < 400, (
                    f"{len(pending)} webhooks still refused after {rounds} rounds: {statuses}"
                )
                retry = []
                for n, body in pending:
                    response = receiver.post_hmac(body, key=f"r8-{n}")
                    statuses[response.status_code] += 1
                    if response.status_code == 503:
                        if not int(response.headers.get("Retry-After") or 0) > 0:
                            refused_without_retry_after.append(n)
                        retry.append((n, body))
                    elif response.status_code not in (200, 202):
                        pytest.fail(
                            f"webhook {n} answered {response.status_code}: {response.get_data(as_text=True)}"
                        )
                    if n == len(webhooks) // 3 and not restarter.is_alive() and not outage:
                        restarter.start()
                pending = retry
                if pending:
                    time.sleep(0.25)  # Intacct's retry comes later; the time scale is ours
            restarter.join(120)
            assert statuses[503] > 0, f"the database outage was never seen by the receiver: {statuses}"
            assert not refused_without_retry_after
            assert set(statuses) <= {200, 202, 503}, statuses

            wait_until(lambda: _drained(amqp_url), timeout=120, interval=0.5, message="the queues to drain")
            workers.keep(1)
            assert not workers.exits, f"the sync worker exited instead of waiting: {workers.exits}"

            problems, seen = compare(sandbox, company)
            assert not problems, f"{len(problems)} differences, e.g.:\n" + "\n".join(problems[:10])
            totals = queue_totals(amqp_url)
            assert totals["dead-letter"]["messages"] == 0, (
                "a database outage is transient: nothing dead-lettered"
            )
            print(
                f"\nR8: {len(webhooks)} webhooks, answers {dict(statuses)}, outage "
                f"{outage.get('started', 0) - outage.get('stopping', 0):.1f} s, compared {dict(seen)}"
            )
    finally:
        with contextlib.suppress(Exception):
            if not _pg_answers(admin_url):
                _pg("start", cluster)
        workers.stop_all()
        sandbox.stop()
        json.dumps(outage)
