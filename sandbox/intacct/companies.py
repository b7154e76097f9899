"""A simulated company's setup: its Web Services users and their role areas, whether it authorized
FlexPoint's sender, its webhook triggers, its own concurrency cap, and for the payment write-back
whether the role may add received payments, the date its books are closed through, and its own
commit-then-fail fault rates (``writeFaults``: ``commitErrorRate``, ``commitTimeoutRate``).

Each field stands for one step of the customer's setup in the brief, so each can be got wrong
on purpose. Stored as JSON in the ``companies`` table, in the admin API's camelCase shape.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from sandbox.catalog import TRIGGER_OBJECTS as _OBJECTS

from .errors import AdminError
from .objects import AREAS

DEFAULT_USER = "ws_flexpoint"
_COMPANY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TRIGGER_OBJECTS = tuple(o.name for o in _OBJECTS)


def _invalid(message: str) -> AdminError:
    return AdminError(400, "invalid_company", message)


@dataclass(frozen=True)
class User:
    """A Web Services user of the company and the areas its role grants."""

    user_id: str
    areas: tuple[str, ...] = AREAS
    web_services: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"userId": self.user_id, "areas": list(self.areas), "webServices": self.web_services}

    @classmethod
    def from_json(cls, data: Any) -> User:
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, dict) or not isinstance(data.get("userId"), str) or not data["userId"]:
            raise _invalid("each user needs a userId")
        areas = data.get("areas", list(AREAS))
        if not isinstance(areas, list) or not set(areas) <= set(AREAS):
            raise _invalid(f"a user's areas must be a list drawn from {', '.join(AREAS)}")
        return cls(data["userId"], tuple(dict.fromkeys(areas)), bool(data.get("webServices", True)))


@dataclass(frozen=True)
class Webhooks:
    """The company's Platform Triggers: where they post, for which objects, and an off switch."""

    enabled: bool = True
    url: str | None = None  # may contain {companyId} and {object}
    objects: tuple[str, ...] = TRIGGER_OBJECTS

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "url": self.url, "objects": list(self.objects)}

    def merged(self, data: Any) -> Webhooks:
        """A copy with the given (camelCase) settings changed; unknown settings are refused."""
        if not isinstance(data, dict):
            raise _invalid("webhooks must be an object with enabled, url, objects")
        result = self
        if "enabled" in data:
            result = replace(result, enabled=bool(data["enabled"]))
        if "url" in data:
            url = data["url"]
            if url is not None and (
                not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")
            ):
                raise _invalid("webhooks.url must be an http(s) URL")
            result = replace(result, url=url)
        if "objects" in data:
            objects = data["objects"]
            if objects is None:
                objects = list(TRIGGER_OBJECTS)
            if not isinstance(objects, list) or not set(objects) <= set(TRIGGER_OBJECTS):
                raise _invalid(f"webhooks.objects must be drawn from {', '.join(TRIGGER_OBJECTS)}")
            result = replace(result, objects=tuple(dict.fromkeys(objects)))
        return result

    def target(self, company_id: str, intacct_object: str) -> str | None:
        """The URL a trigger for ``intacct_object`` posts to, or None when it does not fire."""
        if not self.enabled or not self.url or intacct_object not in self.objects:
            return None
        return self.url.replace("{companyId}", company_id).replace("{object}", intacct_object)


@dataclass(frozen=True)
class Company:
    """One simulated company's setup."""

    company_id: str
    users: tuple[User, ...] = (User(DEFAULT_USER),)
    sender_authorized: bool = True
    webhooks: Webhooks = field(default_factory=Webhooks)
    concurrency_cap: int | None = None
    received_payments_add: bool = True
    books_closed_through: str | None = None  # YYYY-MM-DD: receipts on or before it are refused
    write_faults: tuple[tuple[str, float], ...] | None = None  # None: the global rates apply
    outage: bool = False  # every API call of this company answers 503 (its Intacct is down)

    def user(self, user_id: str) -> User | None:
        # Intacct user IDs are case-insensitive.
        """The user with this ID (case-insensitive), or None."""
        folded = user_id.casefold()
        return next((u for u in self.users if u.user_id.casefold() == folded), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "companyId": self.company_id,
            "users": [u.to_json() for u in self.users],
            "senderAuthorized": self.sender_authorized,
            "webhooks": self.webhooks.to_json(),
            "concurrencyCap": self.concurrency_cap,
            "receivedPaymentsAdd": self.received_payments_add,
            "booksClosedThrough": self.books_closed_through,
            "writeFaults": dict(self.write_faults) if self.write_faults is not None else None,
            "outage": self.outage,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Company:
        company_id = data.get("companyId") if isinstance(data, dict) else None
        if not isinstance(company_id, str) or not _COMPANY_ID.match(company_id):
            raise _invalid("companyId must be 1-64 letters, digits, '_', '.' or '-'")
        return cls(company_id).merged(data)

    def merged(self, data: dict[str, Any]) -> Company:
        """A copy with the given (camelCase) settings changed; unknown settings are refused."""
        known = {
            "companyId",
            "users",
            "senderAuthorized",
            "webhooks",
            "concurrencyCap",
            "entities",
            "receivedPaymentsAdd",
            "booksClosedThrough",
            "writeFaults",
            "outage",
        }
        unknown = set(data) - known
        if unknown:
            raise _invalid(f"unknown company setting(s): {', '.join(sorted(unknown))}")
        result = self
        if "users" in data:
            if not isinstance(data["users"], list):
                raise _invalid("users must be a list")
            result = replace(result, users=tuple(User.from_json(u) for u in data["users"]))
        if "senderAuthorized" in data:
            result = replace(result, sender_authorized=bool(data["senderAuthorized"]))
        if "webhooks" in data:
            result = replace(result, webhooks=result.webhooks.merged(data["webhooks"]))
        if "concurrencyCap" in data:
            cap = data["concurrencyCap"]
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise _invalid("concurrencyCap must be a whole number of at least 1, or null")
            result = replace(result, concurrency_cap=cap)
        if "receivedPaymentsAdd" in data:
            result = replace(result, received_payments_add=bool(data["receivedPaymentsAdd"]))
        if "booksClosedThrough" in data:
            result = replace(result, books_closed_through=_closed_through(data["booksClosedThrough"]))
        if "writeFaults" in data:
            result = replace(result, write_faults=_write_faults(data["writeFaults"]))
        if "outage" in data:
            result = replace(result, outage=bool(data["outage"]))
        return result


def _closed_through(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise _invalid("booksClosedThrough must be a date (YYYY-MM-DD) or null") from None


WRITE_FAULTS = ("commitErrorRate", "commitTimeoutRate")


def _write_faults(value: Any) -> tuple[tuple[str, float], ...] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= set(WRITE_FAULTS):
        raise _invalid(f"writeFaults must be an object with {', '.join(WRITE_FAULTS)}, or null")
    rates = {name: value.get(name, 0.0) for name in WRITE_FAULTS}
    for name, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise _invalid(f"writeFaults.{name} must lie between 0 and 1")
    if sum(rates.values()) > 1:
        raise _invalid("writeFaults rates cannot add up to more than 1")
    return tuple((name, float(rate)) for name, rate in rates.items())


def load(stored: dict[str, Any] | None) -> Company | None:
    """A company from its stored JSON (already validated when saved)."""
    return None if stored is None else Company.from_json(stored)


def load_text(text: str | None) -> Company | None:
    """A company from its stored JSON text (:meth:`Store.company_text`), parsed once per text.

    Every API call loads its company; the cache is keyed on the stored text itself, so a change
    made by any writer (the admin API, the CLI in another process) is a new text, never stale.
    """
    return None if text is None else _from_text(text)


@functools.lru_cache(maxsize=1024)
def _from_text(text: str) -> Company:
    # Shared between calls: a Company (and everything in it) is immutable.
    return Company.from_json(json.loads(text))
