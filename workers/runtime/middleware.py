"""Cross-cutting steps of every worker as middleware: hooks around receiving, processing, settling.

A :class:`Middleware` overrides the hooks it needs; a :class:`MiddlewareChain` calls them in
onion order, as dramatiq does: ``before_*`` hooks first to last, ``after_*`` hooks last to first,
so the outermost middleware sees the whole of what the inner ones did. The hooks run on two
threads: ``before_process``/``after_process`` on the worker thread that handles the unit (so
what they bind, such as log context, is what the handler sees); every other hook on the
consumer thread, the only one that touches the broker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from reliability.errors import FlexsyncError

if TYPE_CHECKING:
    from workers.runtime.failures import Destination, Failure


class Rejected(FlexsyncError):
    """Raised by ``before_receive`` (or a worker's ``accept``): route the message for ``failure`` now."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class Unit(Protocol):
    """A unit of work: one message, or a group of them, processed by one handler call."""

    def log_context(self) -> dict[str, Any]: ...


class Middleware:
    """Every hook does nothing by default; a middleware overrides what it needs."""

    def before_receive(self, message: Any, body: Any) -> Any:
        """A message just arrived (consumer thread); returns the body to work with, or raises Rejected."""
        return body

    def before_process(self, unit: Any) -> None:
        """On the worker thread, just before the handler."""

    def after_process(self, unit: Any, outcome: Any) -> None:
        """On the worker thread, after the handler (also when it crashed: ``outcome`` says so)."""

    def before_settle(self, unit: Any, outcome: Any, producer: Any) -> None:
        """On the consumer thread, before any of the unit's messages is acked or routed."""

    def after_settle(self, unit: Any, outcome: Any) -> None:
        """On the consumer thread, once every message of the unit is acked or safely routed."""

    def before_route(self, message: Any, target: Destination, body: Any) -> Any:
        """On the consumer thread, before a copy goes to ``target``; returns the body to publish."""
        return body


class MiddlewareChain:
    """Calls a list of middleware in onion order around the runtime's steps."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        self._items = list(middleware)

    def __iter__(self):
        return iter(self._items)

    def receive(self, message: Any, body: Any) -> Any:
        for item in self._items:
            body = item.before_receive(message, body)
        return body

    def process(
        self, unit: Any, handle: Callable[[Any], Any], crashed: Callable[[Any, Exception], Any]
    ) -> Any:
        """``handle(unit)`` wrapped in the hooks; an exception becomes ``crashed(unit, exc)``."""
        entered: list[Middleware] = []
        try:
            for item in self._items:
                item.before_process(unit)
                entered.append(item)
            outcome = handle(unit)
        except Exception as exc:  # a handler bug: settled as a failure, never lost
            outcome = crashed(unit, exc)
        # Only those whose before hook ran are unwound, so what one bound is what it clears.
        for item in reversed(entered):
            item.after_process(unit, outcome)
        return outcome

    def settle(self, unit: Any, outcome: Any, producer: Any, settle: Callable[[Any, Any], None]) -> None:
        for item in self._items:
            item.before_settle(unit, outcome, producer)
        settle(unit, outcome)
        for item in reversed(self._items):
            item.after_settle(unit, outcome)

    def route(self, message: Any, target: Destination, body: Any) -> Any:
        for item in self._items:
            body = item.before_route(message, target, body)
        return body


class LogContext(Middleware):
    """Binds the unit's log context on the worker thread for the handler's log lines, then unbinds it."""

    def __init__(self) -> None:
        self._tokens = threading.local()

    def before_process(self, unit: Any) -> None:
        context = unit.log_context() if hasattr(unit, "log_context") else {}
        self._tokens.value = structlog.contextvars.bind_contextvars(**context)

    def after_process(self, unit: Any, outcome: Any) -> None:
        tokens = getattr(self._tokens, "value", None)
        if tokens is not None:
            structlog.contextvars.reset_contextvars(**tokens)
            self._tokens.value = None
