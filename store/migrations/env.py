"""Alembic environment for flexsync; run it through :func:`store.db.upgrade`, not the CLI.

The caller passes an open connection in ``config.attributes["connection"]`` and owns its
transaction and locking. Offline mode (SQL output for a DBA) needs ``sqlalchemy.url`` set.
"""

from __future__ import annotations

from alembic import context

from store.models import Base

config = context.config


def _run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need the sqlalchemy.url option")
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through store.db.upgrade(engine)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
