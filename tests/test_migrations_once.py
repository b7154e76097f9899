"""Migrations run once per process and database, however many parts of a boot ask for them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

import store.db
from cli.context import prepare_database
from config import load_settings
from processes.parts import ProcessParts
from store.db import create_engine_for, upgrade


@pytest.fixture
def migrations(monkeypatch) -> list[str]:
    """The databases Alembic really migrated, in order (the real upgrade runs each time)."""
    runs: list[str] = []
    real = store.db.command.upgrade

    def counting(config, revision, *args, **kwargs):
        runs.append(str(config.attributes["connection"].engine.url))
        return real(config, revision, *args, **kwargs)

    monkeypatch.setattr(store.db.command, "upgrade", counting)
    return runs


def _settings(tmp_path: Path, name: str):
    return load_settings({"FLEXSYNC_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path / name}"})


def test_a_boot_migrates_once(tmp_path, migrations):
    settings = _settings(tmp_path, "flexsync.db")
    # What `flexsync sync` does: the entry point migrates, then the worker's wiring asks again.
    prepare_database(settings)
    worker_engine = create_engine_for(settings.database_url)
    upgrade(worker_engine)
    tool = ProcessParts(settings, process="tool")
    store_of_a_tool = tool.connections
    assert migrations == [settings.database_url]
    assert "connections" in inspect(worker_engine).get_table_names()
    assert store_of_a_tool.list() == []
    tool.close()
    worker_engine.dispose()


def test_each_database_is_migrated(tmp_path, migrations):
    first, second = _settings(tmp_path, "one.db"), _settings(tmp_path, "two.db")
    prepare_database(first)
    prepare_database(second)
    prepare_database(first)
    assert migrations == [first.database_url, second.database_url]
    engine = create_engine_for(second.database_url)
    assert "connections" in inspect(engine).get_table_names()
    engine.dispose()


def test_an_in_memory_database_is_its_engines_own(migrations):
    # Two engines on sqlite:// are two empty databases: each must be migrated.
    engines = [create_engine_for("sqlite://"), create_engine_for("sqlite://")]
    for engine in engines:
        upgrade(engine)
        assert "connections" in inspect(engine).get_table_names()
        engine.dispose()
    assert len(migrations) == 2
