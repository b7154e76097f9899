"""The one validated settings object, built from the environment at start-up.

Every process calls :func:`load_settings` once in its entry point and passes the result
down; nothing reads ``os.environ`` anywhere else and nothing is read at import time.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from reliability.errors import FlexsyncError

DEFAULT_CLIENT_ID = "4d02d25de337869dfecd.app.sage.com"
DEFAULT_SENDER_ID = "LendARR"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENVIRONMENTS = ("production", "development", "test")
WEBHOOK_SCHEMES = ("sage-signature", "bearer-jwks", "any")
# What verifying webhooks needs, per INTACCT_WEBHOOK_SCHEME (`any` judges each scheme in full).
_SCHEME_NEEDS = {
    "sage-signature": ("INTACCT_CLIENT_SECRET",),
    "bearer-jwks": ("INTACCT_WEBHOOK_JWKS_URL", "INTACCT_WEBHOOK_ISSUER"),
    "any": ("INTACCT_CLIENT_SECRET", "INTACCT_WEBHOOK_JWKS_URL", "INTACCT_WEBHOOK_ISSUER"),
}
# RabbitMQ's x-max-age syntax: a whole number followed by Y, M, D, h, m or s.
_MAX_AGE = re.compile(r"^[1-9][0-9]*(Y|M|D|h|m|s)$")


class SettingsError(FlexsyncError, ValueError):
    """A setting is missing or malformed; the message is one line naming the variable."""


def _text(value: str) -> str:
    return value


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            # Not echoed: an AMQP URL holds a password.
            raise ValueError(f"expected a {'/'.join(schemes)}:// URL with a host")
        return value.rstrip("/")

    return parse


def _amqp_urls(value: str) -> str:
    """One amqp(s) URL, or several comma-separated ones naming a cluster's nodes (kept a string)."""
    urls = [part.strip() for part in value.split(",")]
    if not all(urls):
        raise ValueError("expected comma-separated amqp:// URLs, found an empty one")
    check = _url(("amqp", "amqps"))
    cleaned = []
    for position, url in enumerate(urls, start=1):
        try:
            cleaned.append(check(url))
        except ValueError as exc:
            if len(urls) == 1:
                raise
            # Named by position and host only: the URL itself holds a password.
            raise ValueError(f"URL {position} ({urlsplit(url).hostname or 'no host'}): {exc}") from None
    return ",".join(cleaned)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def _flag(value: str) -> bool:
    folded = value.strip().lower()
    if folded in ("1", "true", "yes", "on"):
        return True
    if folded in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _positive_int(value: str) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return number


def _port(value: str) -> int:
    number = _int(value)
    if not 1 <= number <= 65535:
        raise ValueError(f"expected a TCP port (1-65535), got {value!r}")
    return number


def _choice(options: tuple[str, ...], fold: Callable[[str], str] = str.lower):
    def parse(value: str) -> str:
        folded = fold(value.strip())
        if folded not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return folded

    return parse


def _seconds_list(value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ValueError(
            f"expected whole seconds separated by commas, like 2,10,60,300, got {value!r}"
        ) from None
    if not numbers or any(n <= 0 for n in numbers) or list(numbers) != sorted(set(numbers)):
        raise ValueError(f"expected growing positive seconds, like 2,10,60,300, got {value!r}")
    return numbers


_UNIT_SECONDS = {"Y": 365 * 86_400, "M": 30 * 86_400, "D": 86_400, "h": 3_600, "m": 60, "s": 1}


def max_age_seconds(value: str) -> int:
    """``ARCHIVE_MAX_AGE`` (``7D``, ``12h``...) in seconds."""
    return int(value[:-1]) * _UNIT_SECONDS[value[-1]]


def _console_token(value: str) -> str:
    if len(value) < 16:
        # Never echoed: it is a password.
        raise ValueError("expected at least 16 characters (make one with `flexsync keygen`)")
    return value


def _metrics_bind(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"expected an IP address to listen on, such as 127.0.0.1, got {value!r}") from None
    return value


def _max_age(value: str) -> str:
    if not _MAX_AGE.match(value):
        raise ValueError(f"expected a duration like 7D, 12h or 30m (units Y M D h m s), got {value!r}")
    return value


def _database_url(value: str) -> str:
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
        # The value may hold a password, so it is not echoed.
        raise ValueError("expected a sqlite:/// or postgresql:// URL")
    return value


def _api_path(value: str) -> str:
    """A path under INTACCT_API_URL, like services/delivery/event (no scheme, host or query)."""
    path = value.strip().strip("/")
    if not path or not re.fullmatch(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*", path):
        raise ValueError(f"expected a path under INTACCT_API_URL like services/delivery/event, got {value!r}")
    return path


def _fernet_keys(value: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in value.split(",") if part.strip())
    if not keys:
        raise ValueError("expected one or more Fernet keys separated by commas")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the key itself: this line is printed.
            raise ValueError(
                f"key {position} is not a Fernet key (32 url-safe base64 bytes); "
                "make one with `flexsync keygen`"
            ) from None
    return keys


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Field names mirror the environment variables of the brief."""

    flexsync_env: str = "production"
    # URLs may carry passwords: kept out of repr so a printed Settings leaks nothing.
    amqp_url: str = field(default="amqp://guest:guest@localhost:5672/%2F", repr=False)
    database_url: str = field(default="sqlite:///var/flexsync.db", repr=False)
    # First key encrypts; all keys decrypt (rotation). Empty only in development/test.
    flexsync_secret_key: tuple[str, ...] = field(default=(), repr=False)
    intacct_api_url: str = "https://api.intacct.com/ia/api/v1"
    intacct_client_id: str = DEFAULT_CLIENT_ID
    intacct_client_secret: str | None = field(default=None, repr=False)
    intacct_sender_id: str = DEFAULT_SENDER_ID
    intacct_sender_password: str | None = field(default=None, repr=False)
    intacct_webhook_jwks_url: str | None = None
    intacct_webhook_issuer: str | None = None
    flexpoint_api_url: str | None = None
    flexpoint_api_token: str | None = field(default=None, repr=False)
    public_base_url: str | None = None
    intacct_max_concurrency_per_company: int = 2
    reconcile_interval_seconds: int = 900
    # How Intacct's webhooks prove themselves (the brief's "Inbound webhook contract").
    intacct_webhook_scheme: str = "sage-signature"
    # The sweep's Intacct budget (docs/operations.md): "budget" sweeps a resource every
    # quiet interval unless a gap is known; "fixed" is the old every-interval schedule.
    reconcile_schedule: str = "budget"
    reconcile_quiet_interval_seconds: int = 10_800
    # Intacct's event queue, the second door (the brief's "Intacct's event queue"): "on" drains
    # each connected company's queue; "off" leaves it alone. Its path (count, list and ack
    # below it) is Sage's as documented; configurable because only `count` is on Sage's pages.
    intacct_event_queue: str = "on"
    intacct_event_queue_path: str = "services/delivery/event"
    archive_max_age: str = "7D"
    log_level: str = "INFO"
    log_format: str = "json"
    port: int = 8000
    # The operations console's sign-in token (required by `flexsync console`).
    flexsync_console_token: str | None = field(default=None, repr=False)
    # The console's session cookie is Secure outside development, so a browser keeps it only
    # over https (or on localhost); true drops that, for a console on a trusted network that
    # cannot have TLS. Anyone on that network can then read the session cookie.
    flexsync_console_allow_http: bool = False
    # QUALITY S4: an HTTP ops endpoint needs a token. With it set, the receiver's /metrics and
    # /openapi.json and the workers' metrics answer only `Authorization: Bearer <token>`; unset,
    # the receiver does not serve them. The workers' metrics listen on $PORT at this address:
    # loopback unless told, and another address only with the token.
    flexsync_metrics_token: str | None = field(default=None, repr=False)
    flexsync_metrics_bind: str = "127.0.0.1"
    # Conventions of the platform rather than of the brief: gunicorn's worker processes for
    # `flexsync web`, and prometheus_client's directory for metrics shared across them (unset:
    # `web` makes a temporary one; prometheus_client itself reads the variable in each worker).
    web_concurrency: int = 2
    prometheus_multiproc_dir: str | None = None
    # How a transient failure waits (docs/operations.md, "Outages"): the delay queues' schedule,
    # its last step repeated for as long as the archive keeps the event (ARCHIVE_MAX_AGE); and the
    # circuit breaker per peer: open after this many failures in a row, then probed at these spacings.
    flexsync_retry_delays: tuple[int, ...] = (2, 10, 60, 300)
    flexsync_breaker_threshold: int = 5
    flexsync_breaker_probe_seconds: tuple[int, ...] = (5, 15, 30)

    # Tunables with safe defaults; not environment contracts, overridable in code and tests.
    webhook_max_body_bytes: int = 256 * 1024
    publish_confirm_timeout: float = 1.5
    retry_after_seconds: int = 5
    connection_cache_ttl: float = 5.0
    jwt_leeway_seconds: int = 60
    jwks_min_refetch_seconds: float = 30.0
    hmac_tolerance_seconds: int = 300

    @property
    def retry_window_seconds(self) -> int:
        """How long a transiently failing event keeps being retried: as long as the archive keeps it."""
        return max_age_seconds(self.archive_max_age)

    @property
    def intacct_client_secrets(self) -> tuple[str, ...]:
        """INTACCT_CLIENT_SECRET's comma-separated secrets, current first (several during a rotation)."""
        return tuple(part.strip() for part in (self.intacct_client_secret or "").split(",") if part.strip())

    def require_webhook_scheme(self, *, process: str) -> None:
        """Stop start-up when the variables INTACCT_WEBHOOK_SCHEME needs are unset."""
        for name in _SCHEME_NEEDS[self.intacct_webhook_scheme]:
            if getattr(self, name.lower()) in (None, "", ()):
                raise SettingsError(
                    f"{name} is required by INTACCT_WEBHOOK_SCHEME={self.intacct_webhook_scheme} "
                    f"(the {process} process); set it in the environment"
                )

    @property
    def event_queue_on(self) -> bool:
        """Whether the reconcile process drains Intacct's event queue (INTACCT_EVENT_QUEUE)."""
        return self.intacct_event_queue == "on"

    @property
    def is_production(self) -> bool:
        return self.flexsync_env == "production"

    def require(self, *names: str, process: str) -> None:
        """Stop start-up when a variable the given process needs is unset."""
        for name in names:
            if getattr(self, name.lower()) in (None, "", ()):
                raise SettingsError(f"{name} is required by the {process} process; set it in the environment")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


# Environment variable → parser. Order is the brief's, so the first problem reported is stable.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "FLEXSYNC_ENV": _choice(ENVIRONMENTS),
    "AMQP_URL": _amqp_urls,
    "DATABASE_URL": _database_url,
    "FLEXSYNC_SECRET_KEY": _fernet_keys,
    "INTACCT_API_URL": _url(("http", "https")),
    "INTACCT_CLIENT_ID": _text,
    "INTACCT_CLIENT_SECRET": _text,
    "INTACCT_SENDER_ID": _text,
    "INTACCT_SENDER_PASSWORD": _text,
    "INTACCT_WEBHOOK_JWKS_URL": _url(("http", "https")),
    "INTACCT_WEBHOOK_ISSUER": _text,
    "FLEXPOINT_API_URL": _url(("http", "https")),
    "FLEXPOINT_API_TOKEN": _text,
    "PUBLIC_BASE_URL": _url(("http", "https")),
    "INTACCT_MAX_CONCURRENCY_PER_COMPANY": _positive_int,
    "RECONCILE_INTERVAL_SECONDS": _positive_int,
    "INTACCT_WEBHOOK_SCHEME": _choice(WEBHOOK_SCHEMES),
    "RECONCILE_SCHEDULE": _choice(("budget", "fixed")),
    "RECONCILE_QUIET_INTERVAL_SECONDS": _positive_int,
    "INTACCT_EVENT_QUEUE": _choice(("on", "off")),
    "INTACCT_EVENT_QUEUE_PATH": _api_path,
    "ARCHIVE_MAX_AGE": _max_age,
    "LOG_LEVEL": _choice(LOG_LEVELS, fold=str.upper),
    "LOG_FORMAT": _choice(("json", "console")),
    "PORT": _port,
    "FLEXSYNC_CONSOLE_TOKEN": _console_token,
    "FLEXSYNC_CONSOLE_ALLOW_HTTP": _flag,
    "FLEXSYNC_METRICS_TOKEN": _console_token,
    "FLEXSYNC_METRICS_BIND": _metrics_bind,
    "WEB_CONCURRENCY": _positive_int,
    "PROMETHEUS_MULTIPROC_DIR": _text,
    "FLEXSYNC_RETRY_DELAYS": _seconds_list,
    "FLEXSYNC_BREAKER_THRESHOLD": _positive_int,
    "FLEXSYNC_BREAKER_PROBE_SECONDS": _seconds_list,
}

ENVIRONMENT_VARIABLES = tuple(_PARSERS)
assert {name.lower() for name in _PARSERS} <= {f.name for f in fields(Settings)}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``).

    Raises :class:`SettingsError` naming the first missing or malformed variable.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[name.lower()] = parse(raw.strip())
        except ValueError as exc:
            raise SettingsError(f"{name} is malformed: {exc}") from None
    settings = Settings(**values)
    if (
        not ipaddress.ip_address(settings.flexsync_metrics_bind).is_loopback
        and not settings.flexsync_metrics_token
    ):
        raise SettingsError(
            "FLEXSYNC_METRICS_BIND is malformed: an address other than loopback needs FLEXSYNC_METRICS_TOKEN"
        )
    if settings.is_production and not settings.flexsync_secret_key:
        raise SettingsError(
            "FLEXSYNC_SECRET_KEY is required outside development; make one with `flexsync keygen`"
        )
    return settings


def export_metrics_directory(settings: Settings, environ: MutableMapping[str, str] | None = None) -> Settings:
    """Settings with a PROMETHEUS_MULTIPROC_DIR (a new temporary folder if unset), exported.

    prometheus_client reads the variable itself in every gunicorn worker, so `flexsync web`
    puts it in the environment the workers inherit before they fork.
    """
    environ = os.environ if environ is None else environ
    directory = settings.prometheus_multiproc_dir or tempfile.mkdtemp(prefix="flexsync-metrics-")
    environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return settings.with_overrides(prometheus_multiproc_dir=directory)


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a SQLite URL (None for PostgreSQL or in-memory SQLite)."""
    match = re.match(r"^sqlite(\+\w+)?:///(.+)$", database_url)
    if not match or match.group(2) == ":memory:":
        return None
    return Path(match.group(2))
