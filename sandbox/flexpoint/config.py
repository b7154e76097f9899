"""The FlexPoint simulator's settings: one frozen, validated object passed down from the entry point."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8090  # the YAML's server
DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - the documented sandbox default, not a secret
DB_FILE = "flexpoint.db"


@dataclass(frozen=True)
class FlexPointConfig:
    """Where the simulator listens and stores, the bearer token it wants, and its faults.

    Fault fields are the start-up values; ``/sandbox/faults`` changes them at runtime.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=lambda: Path("var/sandbox"))
    token: str = DEFAULT_TOKEN
    latency_ms: int = 0
    server_error_rate: float = 0.0  # share of Sync API requests answered 500 or 503
    rate_limit_rate: float = 0.0  # share answered 429 with Retry-After
    retry_after_seconds: int = 1
    seed: int | None = None  # seeds the fault RNG; None draws from the OS
    max_body_bytes: int = 16 * 1024 * 1024
    request_log_size: int = 1000
    auto_create_accounts: bool = True  # False: writes to an unknown account answer 404
    idempotency_ttl_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not 0..65535")
        if not self.token:
            problems.append("token must not be empty")
        for name in ("server_error_rate", "rate_limit_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} {getattr(self, name)} is not within 0..1")
        if self.server_error_rate + self.rate_limit_rate > 1.0:
            problems.append("server_error_rate + rate_limit_rate exceeds 1")
        for name in ("latency_ms", "retry_after_seconds", "idempotency_ttl_seconds"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        for name in ("max_body_bytes", "request_log_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if problems:
            raise ValueError("FlexPoint sandbox config: " + "; ".join(problems))

    @property
    def db_path(self) -> Path:
        """The SQLite file under the data directory."""
        return self.data_dir / DB_FILE

    def with_overrides(self, **changes: Any) -> FlexPointConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
