"""Structured logging for every process: structlog, JSON or console, with redaction.

Redaction is a processor in the one chain every line passes through, our own lines and those
of libraries (pika, kombu, gunicorn, werkzeug) alike, so no secret can reach a log line:
- values under sensitive key names (password, secret, token, authorization, ...) are replaced;
- inside any text, bearer tokens, JWTs, URL passwords, signatures and every secret the process
  registered (its configured secrets, secrets it decrypted) are replaced.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|api[-_]?key|signature|credential|cookie"
    r"|private[-_]?key|jwt|fernet",
    re.IGNORECASE,
)
# Key names that match the pattern above but carry no secret.
_HARMLESS_KEYS = frozenset({"token_type", "idempotency_key_source"})

_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/=]+"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@"), rf"\1:{REDACTED}@"),
    (re.compile(r"\bv1=[0-9a-fA-F]{16,}"), f"v1={REDACTED}"),
    (re.compile(r"(?i)\b(client_secret|password|access_token|refresh_token)=[^&\s]+"), rf"\1={REDACTED}"),
)
# Shorter values are too likely to match innocent text, and are not secrets we issue.
_MIN_REGISTERED_LENGTH = 8


class Redactor:
    """A structlog processor that removes secrets from an event dict, recursively."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self.register(*secrets)

    def register(self, *secrets: str | None) -> None:
        """Remember values that must never be printed, wherever they appear in a line."""
        fresh = {s for s in secrets if s and len(s) >= _MIN_REGISTERED_LENGTH}
        if fresh - self._secrets:
            with self._lock:
                # Longest first so a secret containing another is replaced whole.
                self._secrets = frozenset(self._secrets | fresh)

    def redact_text(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _TEXT_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact(self, value: Any, key: str | None = None) -> Any:
        if key is not None and key.lower() not in _HARMLESS_KEYS and _SENSITIVE_KEY.search(key):
            return REDACTED if value not in (None, "") else value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, bytes):
            return self.redact_text(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {k: self.redact(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else is rendered as text by the renderer: redact that text now.
        return self.redact_text(repr(value) if isinstance(value, BaseException) else str(value))

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {key: self.redact(value, None if key == "event" else key) for key, value in event_dict.items()}


_redactor = Redactor()


def register_secret(*secrets: str | None) -> None:
    """Add runtime secrets (decrypted credentials, issued tokens) to the process's redaction."""
    _redactor.register(*secrets)


def redactor() -> Redactor:
    return _redactor


def configure_logging(settings: Any, *, stream: Any = None) -> None:
    """Route structlog and the standard library's logging through one redacting chain.

    ``settings`` is a :class:`config.Settings`; its own secrets are registered at once.
    """
    register_secret(
        settings.intacct_client_secret,
        settings.intacct_sender_password,
        settings.flexpoint_api_token,
        *settings.flexsync_secret_key,
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Library chatter at INFO says nothing an operator needs; warnings still come through.
    for noisy in ("pika", "amqp", "kombu", "urllib3", "werkzeug", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
