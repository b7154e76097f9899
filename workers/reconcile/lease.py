"""Keeping a sweep's lease while it runs, and stopping it early when the process is told to."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from reliability.errors import FlexsyncError
from reliability.leases import Renewal
from workers.reconcile.store import WatermarkStore

T = TypeVar("T")


class SweepInterrupted(FlexsyncError):
    """The process is stopping (SIGTERM): the pass ends early and its watermark stays."""

    reason = "interrupted"


class LeaseKeeper:
    """Renews a claim at a third of its length while long streams flow through :meth:`stream`."""

    def __init__(
        self,
        watermarks: WatermarkStore,
        connection_id: str,
        resource: str,
        holder: str,
        lease: float,
        monotonic: Callable[[], float],
        should_stop: Callable[[], bool],
    ) -> None:
        def renew() -> bool:
            watermarks.renew(connection_id, resource, holder, lease)
            return True

        self._renewal = Renewal(
            renew, lease, name=f"reconcile {connection_id}/{resource}", monotonic=monotonic
        )
        self._should_stop = should_stop

    def stream(self, items: Iterable[T]) -> Iterator[T]:
        for item in items:
            if self._should_stop():
                raise SweepInterrupted("stopping: the sweep ends without advancing its watermark")
            yield item
            self._renewal.tick()

    def renew(self) -> None:
        """Extend the lease now; :class:`workers.reconcile.store.LeaseLost` when it is not ours any more."""
        self._renewal.renew()
