"""Database fixtures shared by the store's tests: every test on SQLite and on PostgreSQL.

PostgreSQL comes from ``FLEXSYNC_TEST_POSTGRES_URL`` (default the local ``test`` database), one
fresh schema per test; when it is unreachable the PostgreSQL half is skipped locally and fails
under CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, make_url

from store.db import create_engine_for, upgrade

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_admin_url() -> str:
    url = make_url(os.environ.get("FLEXSYNC_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    # psycopg wants a plain libpq URL, whatever driver suffix the variable carries.
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _require_postgres(admin_url: str) -> None:
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
        return
    except psycopg.OperationalError as exc:
        error = str(exc).strip().splitlines()[0]
    # Outside the except block, so the report is one line rather than a chained traceback.
    shown = make_url(admin_url).render_as_string(hide_password=True)
    reason = f"PostgreSQL not reachable at {shown}: {error}"
    if os.environ.get("CI"):
        pytest.fail(f"CI must have PostgreSQL; {reason}")
    pytest.skip(f"{reason} (set FLEXSYNC_TEST_POSTGRES_URL)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL of its own: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'flexsync.db'}"
        return
    admin_url = _postgres_admin_url()
    _require_postgres(admin_url)
    schema = f"flexsync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
