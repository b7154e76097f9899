"""Keeping a sweep's lease while it runs, and stopping it early when the process is told to."""

from __future__ import annotations

from collections.abc import Callable

from reliability.errors import FlexsyncError
from reliability.leases import Renewal
from workers.reconcile.store import WatermarkStore


class SweepInterrupted(FlexsyncError):
    """The process is stopping (SIGTERM): the pass ends early and its watermark stays."""

    reason = "interrupted"


def sweep_lease(
    watermarks: WatermarkStore,
    connection_id: str,
    resource: str,
    holder: str,
    lease: float,
    monotonic: Callable[[], float],
) -> Renewal:
    """The claim on one (connection, resource), renewed at a third of its length between the items
    of the long streams a pass reads (``stream``); ``renew`` raises
    :class:`workers.reconcile.store.LeaseLost` when it is not ours any more."""

    def renew() -> bool:
        watermarks.renew(connection_id, resource, holder, lease)
        return True

    return Renewal(renew, lease, name=f"reconcile {connection_id}/{resource}", monotonic=monotonic)


def interrupter(should_stop: Callable[[], bool]) -> Callable[[], None]:
    """A check to run before each item of a pass: :class:`SweepInterrupted` once ``should_stop``."""

    def check() -> None:
        if should_stop():
            raise SweepInterrupted("stopping: the sweep ends without advancing its watermark")

    return check
