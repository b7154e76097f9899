"""What the developer tour (:mod:`sandbox.tour`) reads and how it waits.

Its settings come from the same environment the service reads (``sandbox.env`` under ``./dev
run``), so the tour talks to whatever ports the service was pointed at. FlexPoint is read through
the Sync API's inspection GETs (flexpoint-sync-api.yaml); nothing here imports the service.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests

from sandbox.amqp import DEFAULT_AMQP_URL

T = TypeVar("T")


class TourError(Exception):
    """The tour cannot go on; the text says what to look at."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


@dataclass(frozen=True)
class TourSettings:
    """Where the service and the simulators listen, read from the environment."""

    receiver_url: str = "http://127.0.0.1:8000"
    public_base_url: str = "http://127.0.0.1:8000"
    intacct_url: str = "http://127.0.0.1:8091"  # the simulator's origin: /sandbox, /ia/api/v1
    flexpoint_url: str = "http://127.0.0.1:8090"
    flexpoint_token: str = field(default="sandbox-token", repr=False)
    amqp_url: str = field(default=DEFAULT_AMQP_URL, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TourSettings:
        env = os.environ if env is None else env
        receiver = f"http://127.0.0.1:{env.get('PORT') or 8000}"
        return cls(
            receiver_url=receiver,
            public_base_url=(env.get("PUBLIC_BASE_URL") or receiver).rstrip("/"),
            intacct_url=_origin(env.get("INTACCT_API_URL") or cls.intacct_url),
            flexpoint_url=(env.get("FLEXPOINT_API_URL") or cls.flexpoint_url).rstrip("/"),
            flexpoint_token=env.get("FLEXPOINT_API_TOKEN") or "sandbox-token",
            amqp_url=env.get("AMQP_URL") or DEFAULT_AMQP_URL,
        )

    @property
    def intacct_admin(self) -> str:
        return f"{self.intacct_url}/sandbox"

    @property
    def intacct_port(self) -> int:
        return urlsplit(self.intacct_url).port or 80

    @property
    def flexpoint_port(self) -> int:
        return urlsplit(self.flexpoint_url).port or 80


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    alive: Callable[[], bool] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Check ``condition`` until it gives a truthy value, and return it; TourError at the deadline.

    ``alive`` is asked between checks (the processes the tour waits on still run); ``stop`` ends the
    wait early when set. The pause between checks is the only waiting, and it is bounded.
    """
    deadline = time.monotonic() + timeout
    stop = stop or threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and not alive():
            raise TourError(f"the service's processes stopped while waiting for {what}; their log says why")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TourError(f"no {what} within {timeout:.0f} s; see the log above")
        if stop.wait(min(interval, remaining)):
            raise TourError(f"stopped while waiting for {what}")


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class FlexPointReader:
    """FlexPoint's inspection GETs: what the service reported and wrote for one account."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def _get(self, path: str) -> dict[str, Any] | None:
        response = self._session.get(f"{self.base_url}{path}", timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def status(self, account: str) -> dict[str, Any] | None:
        return self._get(f"/v1/accounts/{account}/integrations/sage-intacct")

    def record(self, account: str, resource: str, external_id: str) -> dict[str, Any] | None:
        return self._get(f"/v1/accounts/{account}/accounting/{resource}/{external_id}")

    def posting(self, account: str, payment_id: str) -> dict[str, Any] | None:
        return self._get(f"/v1/accounts/{account}/payment-postings/{payment_id}")

    def summary(self) -> dict[str, Any]:
        return self._get("/sandbox/summary") or {}

    def close(self) -> None:
        self._session.close()
