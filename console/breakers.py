"""The circuit breakers as the console shows them: open or closed, since when, and the next probe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from processes.status import ConnectionStatus
from reliability.breaker import intacct_peer
from store.breakers import BreakerState, BreakerStore


@dataclass(frozen=True)
class BreakerView:
    """One peer's breaker with its times made relative to the moment the page is drawn."""

    peer: str
    open: bool
    failures: int
    probes: int
    opened_at: float | None
    open_for: timedelta | None  # while open
    probe_in: float | None  # seconds until the next probe may be tried, while open
    last_reason: str | None

    @property
    def state(self) -> str:
        return "open" if self.open else "closed"


def view_of(state: BreakerState, now: float) -> BreakerView:
    opened = state.opened_at if state.open else None
    return BreakerView(
        peer=state.peer,
        open=state.open,
        failures=state.failures,
        probes=state.probes,
        opened_at=opened,
        open_for=None if opened is None else timedelta(seconds=max(0.0, now - opened)),
        # A probe already due shows as 0 s rather than a negative wait.
        probe_in=max(0.0, (state.probe_at or now) - now) if state.open else None,
        last_reason=state.last_reason,
    )


def breaker_views(engine: Engine, now: float) -> list[BreakerView]:
    """Every peer that ever failed, open ones first, each group by name."""
    views = [view_of(state, now) for state in BreakerStore(engine).all()]
    return sorted(views, key=lambda view: (not view.open, view.peer))


def by_connection(views: list[BreakerView], rows: list[ConnectionStatus]) -> dict[str, BreakerView]:
    """Each connection's own Intacct breaker; a connection whose company never failed has none."""
    by_peer = {view.peer: view for view in views}
    found = {row.connection_id: by_peer.get(intacct_peer(row.company_id)) for row in rows}
    return {connection_id: view for connection_id, view in found.items() if view is not None}
