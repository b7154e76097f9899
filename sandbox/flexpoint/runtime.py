"""The parts one simulator app runs with, built once by ``create_app`` and handed to the views."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app

from sandbox.flexpoint.config import FlexPointConfig
from sandbox.flexpoint.contract import Contract
from sandbox.flexpoint.faults import FaultInjector
from sandbox.flexpoint.payments import PaymentLedger
from sandbox.flexpoint.requestlog import RequestLog
from sandbox.flexpoint.store import Store

EXTENSION = "flexpoint.sandbox"


@dataclass
class Sandbox:
    """Config, contract, store, fault injector, request log and payment ledger of one app."""

    config: FlexPointConfig
    contract: Contract
    store: Store
    faults: FaultInjector
    requests: RequestLog
    clock: Callable[[], datetime]
    payments: PaymentLedger
    _inflight: int = 0
    _idle: threading.Condition = field(default_factory=threading.Condition)

    def request_started(self) -> None:
        with self._idle:
            self._inflight += 1

    def request_finished(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def close(self, *, drain_seconds: float = 5.0) -> None:
        """Let in-flight requests finish (bounded), then close the database."""
        deadline = time.monotonic() + drain_seconds
        with self._idle:
            while self._inflight > 0 and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
        self.store.close()


def current_sandbox() -> Sandbox:
    """The sandbox of the app handling the current request."""
    return current_app.extensions[EXTENSION]
