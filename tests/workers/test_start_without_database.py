"""Issue 30 #12: a worker started while its database is unreachable waits for it, then starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from sqlalchemy import make_url

from config.settings import ENVIRONMENT_VARIABLES
from tests.conftest import free_port, wait_until
from tests.databases import _postgres_admin_url, _require_postgres
from tests.tcp_cut import CuttableRelay
from tests.workers.chaos_support import REPO

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.timeout(120)]


def _lines(path) -> list[dict]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def _events(path) -> list[str]:
    return [line.get("event", "") for line in _lines(path)]


@pytest.fixture
def schema_url():
    """A fresh schema of the test PostgreSQL, as a URL whose port a test replaces."""
    admin_url = _postgres_admin_url()
    _require_postgres(admin_url)
    schema = f"flexsync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_a_sync_worker_started_while_the_database_is_down_waits_and_starts_when_it_returns(
    amqp_url, declared_topology, schema_url, settings, tmp_path
):
    port = free_port()  # nothing listens here yet: the database is "down"
    relayed = schema_url.set(port=port).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env.update(
        AMQP_URL=amqp_url,
        DATABASE_URL=relayed,
        FLEXSYNC_ENV="test",
        FLEXSYNC_SECRET_KEY=",".join(settings.flexsync_secret_key),
        INTACCT_CLIENT_SECRET="secret",
        INTACCT_API_URL="http://127.0.0.1:9",
        FLEXPOINT_API_URL="http://127.0.0.1:9",
        FLEXPOINT_API_TOKEN="token",
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        PORT=str(free_port()),
    )
    log_path = tmp_path / "sync.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "sync"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    relay = None
    try:
        wait_until(
            lambda: "sync_waiting_for_database" in _events(log_path) or worker.poll() is not None,
            timeout=30,
            message="the worker to say it waits for the database",
        )
        time.sleep(2.0)  # several attempts fail meanwhile
        assert worker.poll() is None, f"exited {worker.returncode}: {log_path.read_text()[-2000:]}"
        assert "sync_started" not in _events(log_path)
        waiting = [line for line in _lines(log_path) if line.get("event") == "sync_waiting_for_database"]
        assert waiting and all(line.get("error") for line in waiting)

        relay = CuttableRelay(_postgres_admin_url(), port=port, default_port=5432)  # it comes back
        wait_until(
            lambda: "sync_started" in _events(log_path) or worker.poll() is not None,
            timeout=30,
            message="the worker to start once the database answers",
        )
        assert worker.poll() is None, log_path.read_text()[-2000:]
        with psycopg.connect(relayed.replace("+psycopg", ""), autocommit=True) as db:
            assert db.execute("SELECT version_num FROM alembic_version").fetchone() is not None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if relay is not None:
            relay.cut()
            relay.close()


def test_a_worker_told_to_stop_while_waiting_for_the_database_stops_cleanly(amqp_url, settings, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env.update(
        AMQP_URL=amqp_url,
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        FLEXSYNC_ENV="test",
        FLEXSYNC_SECRET_KEY=",".join(settings.flexsync_secret_key),
        INTACCT_CLIENT_SECRET="secret",
        FLEXPOINT_API_URL="http://127.0.0.1:9",
        FLEXPOINT_API_TOKEN="token",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        PORT=str(free_port()),
    )
    log_path = tmp_path / "sync.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "sync"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "sync_waiting_for_database" in _events(log_path) or worker.poll() is not None,
            timeout=30,
            message="the worker to wait for the database",
        )
        assert worker.poll() is None, log_path.read_text()[-2000:]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        assert "sync_stopped" in _events(log_path)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
