"""Circuit breakers per peer: stop calling a peer that keeps failing, probe it, close on recovery.

A peer is FlexPoint (``flexpoint``) or one connection's Sage Intacct company
(``intacct:<companyId>``). After ``threshold`` transient failures in a row the breaker opens;
from then on the workers do not call that peer: its work waits in the broker's delay queues.
Once the probe is due, one process at a time (across hosts: the claim is in the database) lets a
single unit of work through; its success closes the breaker for everyone, its failure schedules
the next probe further away (``probe_delays``, with jitter so hosts do not probe in step). The
spacing stops growing at 30 s: a peer that comes back after an outage of any length is found
within that, and ``on_closed`` listeners (the sync's release of its delay queues) hear of it.

Reads are cached for ``cache_seconds`` per process so a busy worker asks the database about a
peer at most about once a second; a closed breaker with no failures costs no write at all.

The state is kept wherever a :class:`BreakerStorage` keeps it: ``store.breakers.BreakerStore``
holds it in the database, and the wiring of each process passes it in.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from reliability.errors import FlexsyncError
from reliability.leases import new_holder

FLEXPOINT = "flexpoint"
T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"


def intacct_peer(company_id: str) -> str:
    """The breaker name of one Sage Intacct company."""
    return f"intacct:{company_id}"


@dataclass(frozen=True)
class BreakerState:
    """What is stored for one peer."""

    peer: str
    state: str
    failures: int
    openings: int
    opened_at: float | None
    probe_at: float | None
    probe_holder: str | None
    probe_until: float | None
    last_reason: str | None
    probes: int
    updated_at: float

    @property
    def open(self) -> bool:
        return self.state == OPEN


def closed_state(peer: str, now: float) -> BreakerState:
    """The state of a peer that never failed (no row yet)."""
    return BreakerState(peer, CLOSED, 0, 0, None, None, None, None, None, 0, now)


class BreakerStorage(Protocol):
    """What the breakers need of wherever their state is kept, shared by every process and host
    (``store.breakers.BreakerStore``); every change is one transaction."""

    def get(self, peer: str) -> BreakerState | None:
        """The peer's state, or None when it never failed."""
        ...

    def all(self) -> list[BreakerState]:
        """Every peer that ever failed, by name."""
        ...

    def claim_probe(self, peer: str, holder: str, now: float, seconds: float) -> bool:
        """Become for ``seconds`` the one process allowed to try an open peer now; False if it is
        not due or taken."""
        ...

    def record_failure(
        self,
        peer: str,
        reason: str,
        now: float,
        *,
        probe: bool,
        threshold: int,
        next_probe: Callable[[int], float],
    ) -> BreakerState:
        """Count a transient failure; open (or keep open, probing ``next_probe(openings)`` seconds
        later) as the policy says. The state after."""
        ...

    def record_success(self, peer: str, now: float) -> BreakerState | None:
        """Close the breaker and forget its failures; the state it had (None: never failed)."""
        ...


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how often an open peer is probed."""

    threshold: int = 5
    probe_delays: tuple[float, ...] = (5.0, 15.0, 30.0)
    probe_claim_seconds: float = 120.0
    cache_seconds: float = 1.0

    def probe_delay(self, openings: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds until the next probe after ``openings`` failed attempts in a row (50-100 % jitter)."""
        base = self.probe_delays[min(openings, len(self.probe_delays)) - 1]
        return base * (0.5 + 0.5 * rand())


@dataclass(frozen=True)
class Permit:
    """The answer for one unit of work: go ahead (maybe as the probe), or wait ``wait`` seconds."""

    peer: str
    allowed: bool
    probe: bool = False
    wait: float = 0.0


class PeerGuard(Protocol):
    """What an HTTP client asks before and tells after each call to a peer (``Breakers`` is one)."""

    def permit(self, peer: str) -> Permit: ...

    def succeeded(self, permit: Permit) -> None: ...

    def failed(self, permit: Permit, reason: str) -> None: ...


class Breakers:
    """The breakers of every peer, as one process sees them."""

    def __init__(
        self,
        store: BreakerStorage,
        policy: BreakerPolicy | None = None,
        *,
        holder: str,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        on_change: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._policy = policy or BreakerPolicy()
        self._holder = holder
        self._clock = clock
        self._rand = rand
        self._on_change = on_change or (lambda peer, old, new: None)
        self._cache: dict[str, tuple[BreakerState, float]] = {}
        self._reading: set[str] = set()  # peers a thread reads from the store now
        self._lock = threading.Lock()
        self._closed_listeners: list[Callable[[str], None]] = []

    def on_closed(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(peer)`` whenever this process closes an open breaker (its probe succeeded)."""
        self._closed_listeners.append(listener)

    @classmethod
    def for_settings(cls, settings: Any, store: BreakerStorage, **options: Any) -> Breakers:
        """The breakers kept in ``store`` with ``FLEXSYNC_BREAKER_*``'s policy, held as this process."""
        policy = BreakerPolicy(
            threshold=settings.flexsync_breaker_threshold,
            probe_delays=tuple(float(s) for s in settings.flexsync_breaker_probe_seconds),
        )
        return cls(store, policy, holder=new_holder(), **options)

    def permit(self, peer: str) -> Permit:
        """May this process call ``peer`` now?"""
        now = self._clock()
        state = self._state(peer, now)
        if not state.open:
            return Permit(peer, allowed=True)
        due = state.probe_at or now
        if now >= due and self._store.claim_probe(peer, self._holder, now, self._policy.probe_claim_seconds):
            self._forget(peer)
            return Permit(peer, allowed=True, probe=True)
        return Permit(peer, allowed=False, wait=max(due - now, 1.0))

    def succeeded(self, permit: Permit) -> None:
        """The peer answered: close its breaker if anything was counted against it."""
        now = self._clock()
        state = self._state(permit.peer, now)
        if not permit.probe and not state.open and state.failures == 0:
            return
        before = self._store.record_success(permit.peer, now)
        self._forget(permit.peer)
        if before is not None and before.open:
            self._on_change(permit.peer, "open", "closed")
            for listener in self._closed_listeners:
                listener(permit.peer)

    def failed(self, permit: Permit, reason: str) -> None:
        """The peer failed transiently: count it, open or push the next probe back."""
        now = self._clock()
        before = self._state(permit.peer, now)
        after = self._store.record_failure(
            permit.peer,
            reason,
            now,
            probe=permit.probe,
            threshold=self._policy.threshold,
            next_probe=lambda openings: self._policy.probe_delay(openings, self._rand),
        )
        self._forget(permit.peer)
        if after.open and not before.open:
            self._on_change(permit.peer, "closed", "open")

    def states(self) -> list[BreakerState]:
        """Every peer that ever failed, as stored (for status pages and metrics)."""
        return self._store.all()

    # -- the per-process cache -------------------------------------------------------------------

    def _state(self, peer: str, now: float) -> BreakerState:
        """The peer's breaker, read at most once every ``cache_seconds`` by this process: while one
        thread reads it again, the others go on with the state read before (not one read each)."""
        with self._lock:
            cached = self._cache.get(peer)
            if cached is not None and now - cached[1] < self._policy.cache_seconds:
                return cached[0]
            if cached is not None and peer in self._reading:
                return cached[0]
            self._reading.add(peer)
        try:
            state = self._store.get(peer) or closed_state(peer, now)
        finally:
            with self._lock:
                self._reading.discard(peer)
        with self._lock:
            self._cache[peer] = (state, now)
        return state

    def _forget(self, peer: str) -> None:
        with self._lock:
            self._cache.pop(peer, None)


class BreakerCollector:
    """``/metrics`` of the breakers, read from the shared table when scraped (every process agrees).

    ``flexsync_breaker_open{peer}`` is 1 while the peer is not called, ``flexsync_breaker_failures``
    the failures in a row, ``flexsync_breaker_probes_total`` the probes made since it last opened.
    A company's peer is labelled ``intacct:<company_label(company_id)>``: no customer's id in a label.
    """

    def __init__(self, store: BreakerStorage, *, company_label: Callable[[str], str] | None = None) -> None:
        self._store = store
        # A shared room cannot reach the install's key: without a labeller, a digest of the id.
        self._company_label = company_label or (
            lambda company: hashlib.sha256(company.encode()).hexdigest()[:16]
        )

    def _label(self, peer: str) -> str:
        prefix = intacct_peer("")
        if peer.startswith(prefix):
            return prefix + self._company_label(peer[len(prefix) :])
        return peer

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        opened = GaugeMetricFamily(
            "flexsync_breaker_open", "1 while the peer's breaker is open", labels=["peer"]
        )
        failures = GaugeMetricFamily(
            "flexsync_breaker_failures", "Transient failures in a row of the peer", labels=["peer"]
        )
        probes = CounterMetricFamily("flexsync_breaker_probes", "Probes of the peer", labels=["peer"])
        try:
            states = self._store.all()
        except Exception:  # the database away: no breaker figures this scrape, the rest still served
            states = []
        for state in states:
            peer = self._label(state.peer)
            opened.add_metric([peer], 1.0 if state.open else 0.0)
            failures.add_metric([peer], float(state.failures))
            probes.add_metric([peer], float(state.probes))
        return [opened, failures, probes]


def through_breaker(
    guard: PeerGuard | None,
    peer: str,
    call: Callable[[], T],
    *,
    outage: type[BaseException],
    answered: type[BaseException],
    held_back: Callable[[float], BaseException],
    not_counted: tuple[type[BaseException], ...] = (),
) -> T:
    """``call()`` as ``guard`` allows for ``peer``: ``held_back(wait)`` is raised without calling while
    the breaker is open; an ``outage`` error counts against the peer, any other ``answered`` error
    or a result for it (the peer answered), and ``not_counted`` errors (our own limits) neither."""
    if guard is None:
        return call()
    permit = guard.permit(peer)
    if not permit.allowed:
        raise held_back(permit.wait)
    try:
        result = call()
    except not_counted:
        raise
    except outage as exc:
        guard.failed(permit, exc.reason if isinstance(exc, FlexsyncError) else type(exc).__name__)
        raise
    except answered:
        guard.succeeded(permit)  # a refusal is an answer, not an outage
        raise
    guard.succeeded(permit)
    return result
