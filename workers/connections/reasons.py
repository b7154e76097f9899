"""What a failed connect tells the customer: the ConnectionStatus ``reason`` and a ``message``
naming the step of docs/setup-guide.md to fix.

The reasons follow intacct-rest.md's "Failure signals" table; the step numbers are those of the
setup guide, so the admin reads the message, opens the guide at that step and fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from clients.intacct import AREAS, TokenRefused

GUIDE = "docs/setup-guide.md"
STEP_ROLE = "step 1 (Create the FlexPoint role)"
STEP_USER = "step 2 (Create the Web Services user)"
STEP_SENDER = "step 3 (Authorize FlexPoint's Sender ID and Client ID)"
STEP_CONNECT = "step 4 (Connect in FlexPoint)"

# How the areas are called in Sage Intacct's role screens.
AREA_TITLES = {
    "company": "Company",
    "general-ledger": "General Ledger",
    "accounts-receivable": "Accounts Receivable",
    "cash-management": "Cash Management",
}


@dataclass(frozen=True)
class ConnectFailure:
    """Why a connect failed, as FlexPoint shows it: reason, the admin's next step, missing areas."""

    reason: str
    message: str
    missing_permissions: tuple[str, ...] = ()


def for_refusal(
    error: TokenRefused, *, company_id: str, user_id: str, entity_id: str | None
) -> ConnectFailure:
    """The verdict for a refused token request (TokenRefused already carries the reason)."""
    reason = error.reason
    if reason == "company_not_found":
        where = f"company ID '{company_id}'" + (f" with entity '{entity_id}'" if entity_id else "")
        return ConnectFailure(
            reason,
            f"Sage Intacct does not know the {where}. Check {STEP_CONNECT} of the setup guide: enter "
            "the company ID exactly as on the Sage Intacct sign-in page"
            + (", and an entity ID that exists in that company (or none)" if entity_id else "")
            + ", then click Connect again.",
        )
    if reason == "invalid_credentials":
        return ConnectFailure(
            reason,
            f"Sage Intacct does not accept the user '{user_id}' for company '{company_id}'. Check "
            f"{STEP_USER} of the setup guide: the user ID must be exactly the one FlexPoint shows, "
            "and it must be a Web Services user; then click Connect again.",
        )
    if reason == "sender_not_authorized":
        return ConnectFailure(
            reason,
            f"Company '{company_id}' has not authorized FlexPoint. Follow {STEP_SENDER} of the "
            "setup guide: add Sender ID LendARR under Company > Setup > Company > Security > Web "
            "Services authorizations, and authorize the Client ID "
            "4d02d25de337869dfecd.app.sage.com; then click Connect again.",
        )
    return internal_error()


def for_missing(areas: Iterable[str]) -> ConnectFailure:
    """The verdict when the role lacks one or more permission areas (listed in AREAS order)."""
    missing = tuple(area for area in AREAS if area in set(areas))
    titles = ", ".join(AREA_TITLES[area] for area in missing)
    return ConnectFailure(
        "missing_permission",
        f"The Web Services user's role lacks these permissions: {titles}. Follow {STEP_ROLE} of "
        f'the setup guide to grant them to the role "FlexPoint", and {STEP_USER} to make sure the '
        "user holds that role; then click Connect again.",
        missing,
    )


# The longest a connect waits for Sage Intacct to answer before its verdict (a last check under
# way when it runs out still finishes: with the provisioning client's timeouts the admin has the
# verdict within two minutes of clicking Connect).
UNAVAILABLE_VERDICT_SECONDS = 90.0


def still_trying() -> str:
    """The ``connecting`` status's message while Intacct does not answer the checks."""
    return (
        "Sage Intacct is not answering right now. FlexPoint keeps trying for up to two minutes "
        "and shows the result here; nothing needs to change in your setup."
    )


def unavailable() -> ConnectFailure:
    """Intacct kept failing (5xx, timeouts, rate limits) through every retry."""
    return ConnectFailure(
        "intacct_unavailable",
        "Sage Intacct did not answer FlexPoint's checks, even after several tries over two "
        "minutes. Nothing needs to change in your setup: click Connect again later.",
    )


def internal_error() -> ConnectFailure:
    """A problem on our side (our client credentials, an unexpected answer), not the customer's."""
    return ConnectFailure(
        "internal_error",
        "FlexPoint could not check the connection because of a problem on FlexPoint's side, not in "
        "your Sage Intacct setup. Our team has been alerted; please try again later or contact "
        "FlexPoint support.",
    )


def account_in_use(other_connection_id: str) -> ConnectFailure:
    """The account already has another live connection (one per account)."""
    return ConnectFailure(
        "internal_error",
        f"This FlexPoint account is already connected to Sage Intacct (connection "
        f"{other_connection_id}). Disconnect it under Settings > Integrations > Sage Intacct, then "
        "click Connect again.",
    )
