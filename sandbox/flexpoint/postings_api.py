"""``/v1/accounts/{accountId}/payment-postings/{paymentId}`` of flexpoint-sync-api.yaml.

PUT stores a posting report (Idempotency-Key required, body a ``PaymentPosting``; the last report
wins) and answers it back; GET answers the last one. A payment FlexPoint did not collect (see
:mod:`payments`) is a 404 ``payment_not_found``; a body naming another payment, or a connection other than the payment's, is a 400.
Authentication, injected faults and the request log come from the app's hooks, as for every
Sync API call.
"""

from __future__ import annotations

from flask import Blueprint, Response, g

from sandbox.flexpoint.api import canonical_json, check_request, contract_error
from sandbox.flexpoint.contract import POSTING_PATH, Violation
from sandbox.flexpoint.errors import AccountNotFound, NotFound
from sandbox.flexpoint.runtime import current_sandbox

blueprint = Blueprint("flexpoint_payment_postings", __name__)


class PaymentNotFound(NotFound):
    code = "payment_not_found"


def _json(text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(text, status=200, mimetype="application/json", headers=headers)


@blueprint.put("/v1/accounts/<account_id>/payment-postings/<payment_id>")
def put_posting(account_id: str, payment_id: str) -> Response:
    """Store one posting report as the payment's current state."""
    sandbox = current_sandbox()
    _, values, body, violations = check_request(
        sandbox, "put", POSTING_PATH, {"accountId": account_id, "paymentId": payment_id}, body=True
    )
    if not violations and body["paymentId"] != payment_id:
        violations.append(
            Violation("body", "/paymentId", f"must be the paymentId of the URL ({payment_id!r})", None)
        )
    if violations:
        raise contract_error(violations)
    if not sandbox.store.account_exists(account_id):
        raise AccountNotFound(f"account {account_id!r} does not exist")
    text = canonical_json(body)
    report = sandbox.payments.report(account_id, payment_id, text, values["Idempotency-Key"])
    if not report.found:
        raise PaymentNotFound(f"FlexPoint collected no payment {payment_id!r} in account {account_id!r}")
    if report.connection_id is not None:
        raise contract_error(
            [
                Violation(
                    "body",
                    "/connectionId",
                    f"must be the payment's connection ({report.connection_id!r})",
                    None,
                )
            ]
        )
    g.replayed = report.replayed
    return _json(text, {"Idempotent-Replayed": "true"} if report.replayed else None)


@blueprint.get("/v1/accounts/<account_id>/payment-postings/<payment_id>")
def get_posting(account_id: str, payment_id: str) -> Response:
    """The last posting report of one payment."""
    sandbox = current_sandbox()
    _, _, _, violations = check_request(
        sandbox, "get", POSTING_PATH, {"accountId": account_id, "paymentId": payment_id}
    )
    if violations:
        raise contract_error(violations)
    if not sandbox.store.account_exists(account_id):
        raise AccountNotFound(f"account {account_id!r} does not exist")
    text = sandbox.payments.current(account_id, payment_id)
    if text is None:
        raise PaymentNotFound(f"no posting was reported for payment {payment_id!r} in account {account_id!r}")
    return _json(text)
