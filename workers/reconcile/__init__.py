"""Reconciliation: find the changes whose webhooks never arrived and send them through the sync path."""

from workers.reconcile.compare import Difference, IntacctRow, compare, out_of_step
from workers.reconcile.events import AUTH_SCHEME, Change, EventSender, envelope
from workers.reconcile.reconciler import ReconcileError, Reconciler
from workers.reconcile.sweep import ResourceSweep, ResourceSweeper, SweepOptions

__all__ = [
    "AUTH_SCHEME",
    "Change",
    "Difference",
    "EventSender",
    "IntacctRow",
    "ReconcileError",
    "Reconciler",
    "ResourceSweep",
    "ResourceSweeper",
    "SweepOptions",
    "compare",
    "envelope",
    "out_of_step",
]
