"""Structured logging for every process: structlog, JSON or console, with redaction.

Redaction is a processor in the one chain every line passes through, our own lines and those
of libraries (pika, kombu, gunicorn, werkzeug) alike, so no secret can reach a log line:
- values under sensitive key names (password, secret, token, authorization, ...) are replaced;
- inside any text, bearer tokens, JWTs, URL passwords, signatures and every secret the process
  registered (its configured secrets, secrets it decrypted) are replaced.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
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
# One cheap scan decides whether any pattern above can match at all.
_MARKERS = re.compile(r"(?i)bearer|basic|eyJ|://|v1=|client_secret=|password=|access_token=|refresh_token=")
# Shorter values are too likely to match innocent text, and are not secrets we issue.
_MIN_REGISTERED_LENGTH = 8
# Up to this many secrets a plain scan is fastest; beyond, candidates are found by prefix.
_PLAIN_SCAN_LIMIT = 32
_FOREVER = float("inf")


class Redactor:
    """A structlog processor that removes secrets from an event dict, recursively.

    A secret is kept for good (configured secrets, decrypted credentials) or, registered with
    a ``lifetime``, until that many seconds have passed (issued tokens): the set holds only the
    tokens still alive, whatever the number issued since the process started. Registering
    costs the same however many secrets are held: nothing is re-sorted but the few secrets
    that share the new one's first 8 characters.
    """

    def __init__(self, secrets: Iterable[str] = (), *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        # Each secret and when it may be forgotten (inf: never).
        self._until: dict[str, float] = {}
        # (when, secret) of the secrets registered with a lifetime, soonest first; an entry
        # a later registration outlived is skipped when it comes up.
        self._deadlines: list[tuple[float, str]] = []
        # Every secret under its first 8 characters, each group longest first so a secret
        # containing another is replaced whole. A group is replaced, never changed, so a
        # reader on another thread sees either the old group or the new one.
        self._by_prefix: dict[str, tuple[str, ...]] = {}
        # All secrets, longest first, while they are few enough for a plain scan; else None.
        self._ordered: tuple[str, ...] | None = ()
        self.register(*secrets)

    def __len__(self) -> int:
        """How many secrets are held now."""
        return len(self._until)

    def register(self, *secrets: str | None, lifetime: float | None = None) -> None:
        """Remember values that must never be printed, wherever they appear in a line: for good,
        or for ``lifetime`` seconds (a token that stops working then)."""
        fresh = {s for s in secrets if s and len(s) >= _MIN_REGISTERED_LENGTH}
        if lifetime is None and all(self._until.get(s) == _FOREVER for s in fresh):
            return  # already held for good: no lock taken (decrypting a secret registers it)
        now = self._clock()
        until = _FOREVER if lifetime is None else now + lifetime
        with self._lock:
            self._forget_expired(now)
            for secret in fresh:
                held = self._until.get(secret)
                if held is None:
                    self._add(secret)
                elif held >= until:
                    continue
                self._until[secret] = until
                if until != _FOREVER:
                    heapq.heappush(self._deadlines, (until, secret))
            self._reorder()

    def _forget_expired(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            until, secret = heapq.heappop(deadlines)
            if self._until.get(secret) == until:
                del self._until[secret]
                prefix = secret[:_MIN_REGISTERED_LENGTH]
                group = tuple(s for s in self._by_prefix[prefix] if s != secret)
                if group:
                    self._by_prefix[prefix] = group
                else:
                    del self._by_prefix[prefix]

    def _add(self, secret: str) -> None:
        prefix = secret[:_MIN_REGISTERED_LENGTH]
        group = self._by_prefix.get(prefix, ())
        # Tokens of one issuer may all share their first characters: placed, not re-sorted.
        at = bisect.bisect_right(group, -len(secret), key=lambda held: -len(held))
        self._by_prefix[prefix] = (*group[:at], secret, *group[at:])

    def _reorder(self) -> None:
        held = self._until
        self._ordered = tuple(sorted(held, key=len, reverse=True)) if len(held) <= _PLAIN_SCAN_LIMIT else None

    def _candidates(self, text: str) -> Iterable[str]:
        ordered = self._ordered
        if ordered is not None:
            return ordered
        # Every secret starts with one of the text's 8-character windows: look those up, so
        # the cost follows the length of the text, not the number of secrets.
        width = _MIN_REGISTERED_LENGTH
        by_prefix = self._by_prefix
        windows = {text[i : i + width] for i in range(len(text) - width + 1)}
        found = [s for window in windows for s in by_prefix.get(window, ())]
        return sorted(found, key=len, reverse=True)

    def redact_text(self, text: str) -> str:
        if len(text) < _MIN_REGISTERED_LENGTH:
            return text
        for secret in self._candidates(text):
            if secret in text:
                text = text.replace(secret, REDACTED)
        if _MARKERS.search(text):
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


def register_secret(*secrets: str | None, lifetime: float | None = None) -> None:
    """Add runtime secrets to the process's redaction: for good (decrypted credentials), or for
    ``lifetime`` seconds (an issued token, kept a while past its expiry)."""
    _redactor.register(*secrets, lifetime=lifetime)


def redactor() -> Redactor:
    return _redactor


# What the lines logged during one webhook carry (its connection and event ids): one context
# variable holding a dict, set on the request's first bind and filled in place after. Binding
# with structlog.contextvars costs a variable per key, and clearing walks the whole context;
# on every webhook that cost as much as the idempotency ledger's database lookup.
_REQUEST_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("flexsync_request_log_context", default=None)


def bind_request_context(**values: Any) -> None:
    """Label every line this request logs from now on, on any logger, with ``values``."""
    context = _REQUEST_CONTEXT.get()
    if context is None:
        _REQUEST_CONTEXT.set(values)
    else:
        context.update(values)


def clear_request_context() -> None:
    """End the request's labels (its thread serves other requests next)."""
    _REQUEST_CONTEXT.set(None)


def request_context() -> dict[str, Any]:
    """A copy of the labels bound so far in this request."""
    return dict(_REQUEST_CONTEXT.get() or {})


def _merge_request_context(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    context = _REQUEST_CONTEXT.get()
    if context:
        # As structlog's merge_contextvars: what the call itself names wins.
        for key, value in context.items():
            event_dict.setdefault(key, value)
    return event_dict


def configure_logging(settings: Any, *, stream: Any = None) -> None:
    """Route structlog and the standard library's logging through one redacting chain.

    ``settings`` is a :class:`config.Settings`; its own secrets are registered at once.
    """
    register_secret(
        settings.intacct_client_secret,
        # Each of a rotation's secrets on its own, wherever one turns up alone.
        *settings.intacct_client_secrets,
        settings.intacct_sender_password,
        settings.flexpoint_api_token,
        settings.flexsync_metrics_token,
        *settings.flexsync_secret_key,
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _merge_request_context,
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
