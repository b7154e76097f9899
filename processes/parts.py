"""The shared objects of one process, made once and on first use, closed together in reverse order.

Every Procfile process (``processes/*.py``), every ``flexsync`` tool (through the CLI context) and
the console take the database engine, the connection store, the breakers, the company slots, the
two HTTP clients and the broker connections from a :class:`ProcessParts`; nothing else builds
them. What is never asked for is never opened: ``flexsync connections list`` opens the database
and nothing more.

``close()`` undoes what was opened, last opened first: a consumer before the broker connection it
consumes on, the clients before the engine their slots and breakers are kept in, the engine last.
A failure to close one part is logged and does not keep the others open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from kombu import Connection
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from broker.publisher import ConfirmingPublisher
from broker.topology import Topology, build_topology
from broker.urls import kombu_connection, kombu_url
from clients.flexpoint import FlexPointClient
from clients.intacct.client import IntacctClient, create_client
from clients.intacct.slots import CompanySlots, company_slots
from config import Settings
from observability.logging import get_logger
from reliability.breaker import Breakers
from store.breakers import BreakerStore
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from workers.connections.store import ConnectionStore
from workers.runtime.process import wait_until_ready

log = get_logger(__name__)

T = TypeVar("T")
M = TypeVar("M")


# What a database that is down, restarting or unreachable raises (PostgreSQL and SQLite alike).
DATABASE_UNREACHABLE: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


def wait_for_database(settings: Settings, process: str) -> bool:
    """Wait until DATABASE_URL answers and its schema is migrated; False if stopped meanwhile.

    A worker process calls this first: started while the database is down it waits for it, as
    a running worker does, instead of exiting. The migration is remembered per process
    (:func:`store.db.upgrade`), so the engine its parts open next finds the schema current.
    """

    def migrated() -> None:
        engine = create_engine_for(settings.database_url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    return wait_until_ready(process, "database", migrated, retry_on=DATABASE_UNREACHABLE)


class ProcessParts:
    """The engine (migrated), secret box, connection store, breakers, company slots, clients,
    broker connections, publishers and metrics of one process; each made when first asked for.

    ``engine`` may be one the caller owns (a test's, a benchmark's): it is then used as given,
    neither migrated nor disposed here. ``pool_size``: the database connections the engine keeps
    open, for a process whose threads outnumber SQLAlchemy's default of 5.
    """

    def __init__(
        self, settings: Settings, *, process: str, engine: Engine | None = None, pool_size: int | None = None
    ) -> None:
        self.settings = settings
        self.process = process
        self._engine = engine
        self._pool_size = pool_size
        self._box: SecretBox | None = None
        self._connections: ConnectionStore | None = None
        self._breakers: Breakers | None = None
        self._slots: CompanySlots | None = None
        self._topology: Topology | None = None
        self._metrics: dict[type, Any] = {}
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self._closed = False

    # -- the database ----------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine of DATABASE_URL, its schema brought up to date first (once per process)."""
        if self._engine is None:
            engine = create_engine_for(self.settings.database_url, pool_size=self._pool_size)
            self.on_close("engine", engine.dispose)
            upgrade(engine)
            self._engine = engine
        return self._engine

    @property
    def box(self) -> SecretBox:
        """The secret box of FLEXSYNC_SECRET_KEY (its keys are never logged)."""
        if self._box is None:
            self._box = SecretBox.for_settings(self.settings)
        return self._box

    @property
    def connections(self) -> ConnectionStore:
        """The connection store, its secrets sealed with :attr:`box`."""
        if self._connections is None:
            self._connections = ConnectionStore(self.engine, self.box)
        return self._connections

    @property
    def breakers(self) -> Breakers:
        """The peers' breakers, kept in the database and shared by every process."""
        if self._breakers is None:
            self._breakers = Breakers.for_settings(self.settings, BreakerStore(self.engine))
        return self._breakers

    def slots(self, *, lease_seconds: float | None = None) -> CompanySlots:
        """The per-company Intacct cap; one per process (the first caller's lease length holds)."""
        if self._slots is None:
            self._slots = company_slots(self.settings, self.engine, lease_seconds=lease_seconds)
        return self._slots

    # -- the HTTP clients --------------------------------------------------------------------------

    def intacct(self, *, slots: CompanySlots | None = None, **options: Any) -> IntacctClient:
        """A new Intacct client under the company cap; ``options`` (``guard``, ``on_call``,
        ``timeouts``...) go to :func:`clients.intacct.client.create_client`. Closed by ``close()``."""
        client = create_client(self.settings, slots if slots is not None else self.slots(), **options)
        return self.adopt("intacct client", client)

    def flexpoint(self, **options: Any) -> FlexPointClient:
        """A new FlexPoint client named after the process; ``options`` go to the client."""
        client = FlexPointClient.from_settings(self.settings, process=self.process, **options)
        return self.adopt("flexpoint client", client)

    # -- the broker --------------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        """The exchanges, queues and bindings, with this deployment's retry delays and archive age."""
        if self._topology is None:
            self._topology = build_topology(
                self.settings.archive_max_age, self.settings.flexsync_retry_delays
            )
        return self._topology

    def amqp_connection(self, *, consuming: bool = True, **options: Any) -> Connection:
        """A (lazily connecting) kombu connection to AMQP_URL's nodes, released by ``close()``.

        ``consuming``: a worker's, with confirmed publishes (its retries and dead letters),
        heartbeats and failover from node to node; otherwise a short-lived one for a tool, with
        only ``options``.
        """
        if consuming:
            connection = kombu_connection(self.settings.amqp_url, confirm_publish=True, **options)
        else:
            connection = Connection(kombu_url(self.settings.amqp_url), **options)
        return self.adopt("amqp connection", connection, connection.release)

    def publisher(self, exchange: str, *, wait: float | None = None, **options: Any) -> ConfirmingPublisher:
        """A confirming publisher to ``exchange``, started (waiting up to ``wait`` s for its channel)."""
        publisher = ConfirmingPublisher(self.settings.amqp_url, exchange, **options)
        self.adopt("publisher", publisher)
        publisher.start(wait=wait)
        return publisher

    # -- metrics -----------------------------------------------------------------------------------

    def metrics(self, kind: type[M]) -> M:
        """The process's metrics of ``kind`` (e.g. ``SyncMetrics``), one registry per process."""
        if kind not in self._metrics:
            self._metrics[kind] = kind()
        return self._metrics[kind]

    # -- closing -----------------------------------------------------------------------------------

    def adopt(self, what: str, thing: T, close: Callable[[], None] | None = None) -> T:
        """Close ``thing`` (``thing.close()`` unless ``close`` says otherwise) with the rest, before
        anything opened earlier; returns ``thing``."""
        self.on_close(what, close if close is not None else thing.close)  # type: ignore[attr-defined]
        return thing

    def on_close(self, what: str, close: Callable[[], None]) -> None:
        if self._closed:
            raise RuntimeError(f"the parts of {self.process} are closed; {what} was opened too late")
        self._closers.append((what, close))

    def close(self) -> None:
        """Close what was opened, last opened first (idempotent)."""
        if self._closed:
            return
        self._closed = True
        while self._closers:
            what, close = self._closers.pop()
            try:
                close()
            except Exception as exc:
                log.warning(
                    "part_close_failed", process=self.process, part=what, error_type=type(exc).__name__
                )

    def __enter__(self) -> ProcessParts:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
