"""The simulator's configuration: one dataclass, built by the CLI or by tests, passed down."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# FlexPoint's application as registered with Sage (BRIEF.md: Sender ID LendARR, this Client ID);
# the service's INTACCT_CLIENT_ID defaults to the same value, so both agree out of the box.
DEFAULT_CLIENT_ID = "4d02d25de337869dfecd.app.sage.com"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - a public sandbox default, not a secret
DEFAULT_ISSUER = "https://sandbox.intacct.local"


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulator reads at start-up; faults and limits can also change at runtime."""

    host: str = "127.0.0.1"
    port: int = 8091
    data_dir: Path = Path("var/sandbox")
    # FlexPoint's application credentials, as registered with (simulated) Sage.
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default=DEFAULT_CLIENT_SECRET, repr=False)
    token_ttl_seconds: int = 43_200
    # Issuer of the webhook JWTs (and of the API tokens).
    issuer: str = DEFAULT_ISSUER
    # Per-company concurrent API requests; the token endpoint is not counted.
    concurrency_cap: int = 2
    retry_after_seconds: int = 1
    # Multiplies the webhook retry schedule (10 s, 30 s, 90 s); 0.01 in tests.
    time_scale: float = 1.0
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    timeout_rate: float = 0.0
    # How long a "timed out" request is held before its 504: longer than any client waits.
    timeout_hold_seconds: float = 30.0
    # Shares of committed writes (payment create/reverse) whose answer is then lost.
    commit_error_rate: float = 0.0
    commit_timeout_rate: float = 0.0
    fault_seed: int | None = None
    webhook_workers: int = 4
    webhook_timeout_seconds: float = 10.0
    webhook_jwt_ttl_seconds: int = 300
    # How deliveries are signed: "sage-signature" (Sage's current guide) or "bearer-jwks"; and
    # which form of X-IA-Sage-Signature: "alternate" (bare JWT, then base64 JSON with jwtData),
    # "bare" or "envelope".
    webhook_scheme: str = "sage-signature"
    sage_signature_form: str = "alternate"
    # When set, every /sandbox/* admin call needs "Authorization: Bearer <admin_token>".
    admin_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.token_ttl_seconds < 1:
            raise ValueError("token_ttl_seconds must be at least 1")
        if self.concurrency_cap < 1:
            raise ValueError("concurrency_cap must be at least 1")
        if self.time_scale < 0:
            raise ValueError("time_scale cannot be negative")
        if self.webhook_workers < 1:
            raise ValueError("webhook_workers must be at least 1")
        if self.webhook_scheme not in ("sage-signature", "bearer-jwks"):
            raise ValueError("webhook_scheme must be sage-signature or bearer-jwks")
        if self.sage_signature_form not in ("alternate", "bare", "envelope"):
            raise ValueError("sage_signature_form must be alternate, bare or envelope")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "intacct.db"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "intacct-signing-key.pem"

    def with_overrides(self, **changes: Any) -> SimulatorConfig:
        """A copy with some fields changed (None values are ignored, so CLI options pass through)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
