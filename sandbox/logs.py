"""The simulators' logging: event names with ``key=value`` context, on the standard ``logging`` module.

The sandbox is its own distribution and leaves the product's logging set-up alone: each line goes
to the ``logging`` logger of the calling module, so a host process (a test run, ``flexsync
sandbox``) decides where it ends up. Values registered with :func:`register_secret` (the bearer
token a simulator accepts) are masked in every line, whatever field carries them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

MASK = "[secret]"
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(*values: str | None) -> None:
    """Never print these values (blank and very short values are ignored: they would mask noise)."""
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= 6)


def masked(text: str) -> str:
    """``text`` with every registered secret replaced by :data:`MASK`, longest first."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        text = text.replace(value, MASK)
    return text


class EventLogger:
    """``log.info("event_name", key=value, ...)`` over a standard logger."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _emit(self, level: int, event: str, context: dict[str, Any], exc_info: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        line = " ".join([event, *(f"{key}={value!r}" for key, value in context.items())])
        self._logger.log(level, "%s", masked(line), exc_info=exc_info)

    def debug(self, event: str, **context: Any) -> None:
        self._emit(logging.DEBUG, event, context)

    def info(self, event: str, **context: Any) -> None:
        self._emit(logging.INFO, event, context)

    def warning(self, event: str, **context: Any) -> None:
        self._emit(logging.WARNING, event, context)

    def error(self, event: str, **context: Any) -> None:
        self._emit(logging.ERROR, event, context)

    def exception(self, event: str, **context: Any) -> None:
        self._emit(logging.ERROR, event, context, exc_info=True)


def get_logger(name: str) -> EventLogger:
    return EventLogger(logging.getLogger(name))


def show_info_on_stderr() -> None:
    """For the sandbox's own long-running commands: INFO lines on stderr, unless logging is set up."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
