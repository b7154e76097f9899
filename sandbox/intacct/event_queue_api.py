"""The event queue service under ``/ia/api/v1/services/delivery/event``: count, list, ack; and its
admin view and 404 switch under ``/sandbox/companies/<id>/event-queue``.

Calls are authenticated and admitted like any API call (counted in the stats as
``delivery/event:count`` etc., under the company's cap, with injected faults).
"""

from __future__ import annotations

from typing import Any

from flask import g, request

from .admin import _body, _company, admin
from .api import _admitted, _principal, api, simulator
from .errors import AdminError, IntacctError, bad_request
from .tokens import Principal

_PATH = "/services/delivery/event"


def _queue_call(kind: str) -> Principal:
    principal = _principal()
    sim = simulator()
    g.object_path = f"delivery/event:{kind}"
    _admitted(principal, sim.admit(principal, g.object_path, None))
    if not sim.event_queues.available(principal.company_id):
        raise IntacctError(404, "notFound", "The event queue service is not available for this company")
    return principal


@api.get(f"{_PATH}/count")
def queue_count() -> Any:
    principal = _queue_call("count")
    return {"ia::result": {"count": simulator().event_queues.count(principal.company_id)}}


@api.get(f"{_PATH}/list")
def queue_list() -> Any:
    principal = _queue_call("list")
    events, ack_id = simulator().event_queues.list(principal.company_id)
    if not events:
        return {"ia::result": []}
    return {"ia::result": {"events": events, "ackId": ack_id}}


@api.post(f"{_PATH}/ack")
def queue_ack() -> Any:
    principal = _queue_call("ack")
    body = request.get_json(silent=True)
    ack_id = body.get("ackId") if isinstance(body, dict) else None
    if not isinstance(ack_id, str) or not ack_id:
        raise bad_request("'ackId' is required")
    if not simulator().event_queues.ack(principal.company_id, ack_id):
        raise IntacctError(404, "notFound", f"Unknown ackId '{ack_id[:64]}'")
    return {"ia::result": {"ackId": ack_id, "acknowledged": True}}


@admin.get("/companies/<company_id>/event-queue")
def show_event_queue(company_id: str) -> Any:
    """The company's queued events (decodable as a client would) and whether the service answers."""
    _company(company_id)
    return simulator().event_queues.view(company_id)


@admin.patch("/companies/<company_id>/event-queue")
def update_event_queue(company_id: str) -> Any:
    """``{"available": false}`` makes the queue service answer 404 for this company."""
    _company(company_id)
    available = _body().get("available")
    if not isinstance(available, bool):
        raise AdminError(400, "invalid_event_queue", "'available' must be true or false")
    simulator().event_queues.set_available(company_id, available)
    return simulator().event_queues.view(company_id)
