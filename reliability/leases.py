"""The lease policy every leased row shares: one holder format, one dead-holder check, one renewal.

A holder id is ``<node>:<pid>:<thread>:<nonce>``, where the node is the host *and* its PID
namespace: two containers on one host may run the same pid, so a pid is only meaningful (and
``kill(pid, 0)`` only tells the truth) inside the namespace that issued it. A holder of this
node whose process is gone was killed mid-lease; its lease can be taken at once instead of
waiting for it to run out. The nonce makes every claim unique, so a late release or renewal
never touches a lease someone else took since.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import TypeVar

from observability.logging import get_logger
from reliability.errors import LeaseLost

log = get_logger(__name__)
T = TypeVar("T")

__all__ = ["LeaseLost", "Renewal", "holder_is_dead", "new_holder", "node"]


@cache
def node() -> str:
    """This host and PID namespace: where a holder's pid names the same process as ours."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()[:80]}/{namespace}"


def new_holder() -> str:
    """A holder id for one claim by this process and thread."""
    return f"{node()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}"


def holder_is_dead(holder: str | None, *, here: str | None = None) -> bool:
    """True only for a holder of this node whose process is gone; anyone else may be alive."""
    # Parsed from the right: the node holds colons of its own (pid:[4026531836]).
    parts = (holder or "").rsplit(":", 3)
    if len(parts) != 4 or parts[0] != (here or node()) or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


class Renewal:
    """Renews a lease every third of its length while work runs: inline, between the items of a
    stream (:meth:`stream`, :meth:`tick`), or on a thread of its own (:meth:`in_background`).

    The one heartbeat of every lease kept through long work (a backfill run, a reconcile sweep).
    ``renew`` extends the lease and returns False (or raises :class:`LeaseLost`) once it is not
    ours any more; ``lost`` is set then, with ``reason``.
    """

    def __init__(
        self,
        renew: Callable[[], bool],
        lease_seconds: float,
        *,
        name: str = "lease",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._renew = renew
        self.every = lease_seconds / 3
        self._name = name
        self._monotonic = monotonic
        self._due = monotonic() + self.every
        self.lost = threading.Event()
        self.reason: str | None = None

    def tick(self) -> None:
        """Renew if a third of the lease went by since the last renewal."""
        if self._monotonic() >= self._due:
            self.renew()

    def renew(self) -> None:
        """Renew now; :class:`LeaseLost` when the lease is not ours any more."""
        try:
            renewed = self._renew()
        except LeaseLost as exc:
            self.lose(str(exc))
            raise
        if not renewed:
            self.lose(f"the {self._name} lease is no longer ours")
            raise LeaseLost(self.reason)
        self._due = self._monotonic() + self.every

    def lose(self, reason: str) -> None:
        """Mark the lease lost (by the renewal itself, or a watcher that knows better)."""
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()
            log.info("lease_lost", lease=self._name, reason=reason)

    def stream(self, items: Iterable[T], *, before: Callable[[], None] | None = None) -> Iterator[T]:
        """Yield ``items``, renewing when due (:meth:`tick`) after each one; ``before`` runs ahead
        of each item, and stops the stream early by raising."""
        for item in items:
            if before is not None:
                before()
            yield item
            self.tick()

    @contextlib.contextmanager
    def in_background(
        self, *, trouble: type[BaseException] | tuple = (), thread_name: str | None = None
    ) -> Iterator[Renewal]:
        """Renew on a daemon thread (:meth:`beat`) for the ``with`` block; stopped and joined after it.

        Work inside watches ``lost`` (and ``reason``) to stop once the lease is not ours.
        """
        stopped = threading.Event()
        thread = threading.Thread(
            target=self.beat,
            args=(stopped,),
            kwargs={"trouble": trouble},
            name=thread_name or f"lease-{self._name}",
            daemon=True,
        )
        thread.start()
        try:
            yield self
        finally:
            stopped.set()
            thread.join()

    def beat(self, stopped: threading.Event, *, trouble: type[BaseException] | tuple = ()) -> None:
        """Renew on this thread every third of the lease until ``stopped`` or lost.

        An exception of ``trouble`` (a database hiccup) is logged and retried at the next beat:
        the lease has two more beats' worth of time left.
        """
        while not stopped.wait(self.every):
            try:
                self.renew()
            except LeaseLost:
                return
            except trouble as exc:
                log.warning("lease_renewal_failed", lease=self._name, error=type(exc).__name__)
