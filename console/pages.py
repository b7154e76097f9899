"""The console's pages other than dead letters and the archive: overview, connections, payment
postings, audit and jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for

from console import actions
from console.breakers import breaker_views, by_connection
from console.parts import ConsoleParts
from console.security import actor
from processes.status import connection_status
from store.models import POSTING_STATES
from workers.connections.messages import DISCONNECT_ROUTING_KEY
from workers.connections.requests import disconnect_message, publish_message
from workers.writeback.store import PostingStore

bp = Blueprint("pages", __name__)


def parts() -> ConsoleParts:
    return current_app.extensions["flexsync.console"]


def _overview_data() -> dict[str, Any]:
    p = parts()
    counts = p.dead.counts()
    sampled = p.sampler.latest()
    # A work queue's delay queues are shown as one "retrying" figure on its row.
    queues = [dict(q, retrying=0) for q in sampled if ".delay." not in q["name"]]
    for q in queues:
        q["retrying"] = sum(r["depth"] for r in sampled if r["name"].startswith(q["name"] + ".delay."))
    pending = next((q["depth"] for q in queues if q["name"] == "dead-letter"), 0)
    now = datetime.now(UTC)
    return {
        "queues": queues,
        "sampler_error": p.sampler.error,
        "dead": counts,
        "pending": pending,
        "connections": len(connection_status(p.engine)),
        "jobs": [job for job in p.jobs.recent() if job.state == "running"],
        "breakers": breaker_views(p.engine, now.timestamp()),
        "now": now,
    }


@bp.get("/")
def overview():
    return render_template("overview.html", page="overview", **_overview_data())


@bp.get("/overview/live")
def overview_live():
    return render_template("_overview_live.html", **_overview_data())


@bp.get("/overview/series.json")
def overview_series():
    return jsonify(parts().sampler.series())


def _errors_by_connection() -> dict[str, list[tuple[str, int]]]:
    return parts().dead.counts_by_connection()


@bp.get("/connections")
def connections():
    engine = parts().engine
    rows = connection_status(engine)
    now = datetime.now(UTC)
    return render_template(
        "connections.html",
        page="connections",
        rows=rows,
        errors=_errors_by_connection(),
        breakers=by_connection(breaker_views(engine, now.timestamp()), rows),
        event_queue_on=parts().settings.event_queue_on,
        now=now,
    )


_CONNECTION_ACTIONS = {
    "rerun-import": "Re-run the historical import of",
    "reconcile": "Reconcile now",
    "disconnect": "Disconnect (stops syncing and deletes its secrets)",
}


@bp.post("/connections/<connection_id>/<action>")
def connection_action(connection_id: str, action: str):
    if action not in _CONNECTION_ACTIONS:
        abort(404)
    p = parts()
    row = next((r for r in connection_status(p.engine) if r.connection_id == connection_id), None)
    if row is None:
        abort(404, description=f"no connection {connection_id}")
    what = f"connection {connection_id} (account {row.account_id}, company {row.company_id})"
    if request.form.get("confirmed") != "yes":
        return render_template(
            "confirm.html",
            page="connections",
            question=f"{_CONNECTION_ACTIONS[action]} {what}?",
            action=url_for("pages.connection_action", connection_id=connection_id, action=action),
            fields={},
            back=url_for("pages.connections"),
            danger=action == "disconnect",
        )
    if action == "reconcile":
        job = p.jobs.start(
            "reconcile",
            f"Reconcile {connection_id}",
            what,
            actor(),
            actions.reconcile_now(p.settings, connection_id),
        )
        return redirect(url_for("pages.job", job_id=job.id))
    entry = p.audit.record(actor(), action, what, "started")
    try:
        if action == "rerun-import":
            from workers.backfill import request_backfill

            request_backfill(p.engine, connection_id)
            outcome = "import requested: the provisioning process runs it"
        else:
            message = disconnect_message(
                account_id=row.account_id,
                connection_id=connection_id,
                reason="requested in the operations console",
            )
            publish_message(p.settings.amqp_url, DISCONNECT_ROUTING_KEY, message)
            outcome = f"disconnect published (messageId {message['messageId']})"
    except Exception as exc:
        outcome = f"failed: {exc}"
    p.audit.finish(entry, outcome)
    return render_template(
        "done.html",
        page="connections",
        title=_CONNECTION_ACTIONS[action],
        outcome=outcome,
        back=url_for("pages.connections"),
    )


@bp.get("/postings")
def postings():
    """The write-back's postings, newest change first, filtered by state and connection."""
    state = request.args.get("state") or None
    connection = (request.args.get("connection") or "").strip() or None
    if state not in (None, *POSTING_STATES):
        state = None
    rows = PostingStore(parts().engine).list(connection_id=connection, state=state, limit=200)
    return render_template(
        "postings.html", page="postings", rows=rows, states=POSTING_STATES, state=state, connection=connection
    )


@bp.get("/audit")
def audit():
    return render_template("audit.html", page="audit", entries=parts().audit.recent())


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    found = parts().jobs.get(job_id)
    if found is None:
        abort(404, description="no such job in this console process (see the audit page)")
    return render_template("job.html", page="jobs", job=found)


@bp.get("/jobs/<int:job_id>/progress")
def job_progress(job_id: int):
    found = parts().jobs.get(job_id)
    if found is None:
        abort(404)
    # 286 tells htmx to stop polling: the job is over.
    return render_template("_job_progress.html", job=found), 200 if found.state == "running" else 286
