"""Dead letters and the archive: filter, inspect, then replay or purge one, a page or a selection."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for

from broker.admin import start_publisher
from console import actions
from console.pages import parts
from console.security import actor
from observability.logging import redactor
from reliability.errors import OpsError
from schemas.catalog import BY_RESOURCE
from workers.deadletters.archive import ArchiveReplay
from workers.deadletters.operations import query_of
from workers.deadletters.selection import Selection, parse_moment
from workers.deadletters.store import LetterQuery
from workers.deadletters.storer import StoringConsumer, letter_of

bp = Blueprint("selections", __name__)
PAGE_SIZE = 50
_FILTERS = ("connection", "resource", "reason", "since", "until")
_STATES = ("stored", "replayed", "purged")


def _filters(source: Any) -> dict[str, str]:
    return {name: (source.get(name) or "").strip() for name in _FILTERS}


def _selection(filters: dict[str, str], ids: tuple[str, ...] = ()) -> Selection:
    """The CLI's selection from the form's filters (the same time forms: ISO-8601 or 2h, 7d)."""
    return Selection(
        connection=filters["connection"] or None,
        resource=filters["resource"] or None,
        reason=filters["reason"] or None,
        since=parse_moment(filters["since"] or None),
        until=parse_moment(filters["until"] or None),
        ids=ids,
    )


def _reasons() -> list[str]:
    return parts().dead.reasons()


@bp.get("/dead")
def dead_list():
    filters = _filters(request.args)
    state = request.args.get("state", "stored")
    state = state if state in _STATES else "stored"
    page = max(1, request.args.get("page", 1, type=int) or 1)
    error, letters, matched = None, [], 0
    try:
        query = dataclasses.replace(query_of(_selection(filters)), state=state)
        store = parts().dead
        matched = store.count(query)
        rows = store.find(query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        letters = [(letter_of(row), row) for row in rows]
    except OpsError as exc:
        error = str(exc)
    return render_template(
        "dead_list.html",
        page="dead",
        filters=filters,
        state=state,
        states=_STATES,
        resources=sorted(BY_RESOURCE),
        reasons=_reasons(),
        letters=letters,
        matched=matched,
        number=page,
        pages=max(1, -(-matched // PAGE_SIZE)),
        error=error,
    )


@bp.get("/dead/<letter_id>")
def dead_detail(letter_id: str):
    rows = parts().dead.find(LetterQuery(ids=(letter_id,), state=None), limit=2)
    if len(rows) != 1 or rows[0].letter_id != letter_id:
        abort(404, description=f"no dead letter {letter_id}")
    row = rows[0]
    letter = letter_of(row)
    clean = redactor()
    return render_template(
        "dead_detail.html",
        page="dead",
        letter=letter,
        row=row,
        envelope=json.dumps(
            clean.redact(letter.envelope) if letter.envelope is not None else None, indent=2, sort_keys=True
        )
        if letter.envelope is not None
        else clean.redact_text(letter.body_text()),
        headers=json.dumps(clean.redact(letter.headers), indent=2, sort_keys=True, default=str),
        exception=clean.redact_text(letter.exception or "-"),
    )


@bp.post("/dead/action")
def dead_action():
    """Replay or purge one letter, a page of them, or the whole filtered selection; confirmed first."""
    verb = request.form.get("verb")
    scope = request.form.get("scope")
    if verb not in ("replay", "purge") or scope not in ("one", "page", "selection"):
        abort(400)
    filters = _filters(request.form)
    ids = tuple(i for i in request.form.getlist("id") if i) if scope != "selection" else ()
    if scope != "selection" and not ids:
        abort(400, description="no letter given")
    try:
        selection = _selection(filters if scope == "selection" else dict.fromkeys(_FILTERS, ""), ids)
    except OpsError as exc:
        abort(400, description=str(exc))
    store = parts().dead
    # Count what waits in the queue too, as the CLI does (the storing consumer may lag behind);
    # with the broker away the table alone is counted, and the job will say if it fails.
    with contextlib.suppress(OpsError, ConnectionError):
        StoringConsumer.for_url(parts().settings.amqp_url, store, until_idle=0.3).drain()
    selected = store.count(query_of(selection))
    described = selection.describe()
    if request.form.get("confirmed") != "yes":
        hidden: dict[str, Any] = {"verb": verb, "scope": scope, "count": selected, **filters}
        question = (
            f"Replay {selected} dead letters to their work queues?"
            if verb == "replay"
            else f"Purge {selected} dead letters for good?"
        )
        return render_template(
            "confirm.html",
            page="dead",
            question=question,
            detail=f"Selection: {described}",
            action=url_for("selections.dead_action"),
            fields=hidden,
            ids=ids,
            back=url_for("selections.dead_list", **{k: v for k, v in filters.items() if v}),
            nothing=selected == 0,
            danger=verb == "purge",
        )
    # No more than the operator confirmed, even if matching letters arrived since.
    confirmed = request.form.get("count", type=int)
    limit = selected if confirmed is None else min(selected, confirmed)
    selection = dataclasses.replace(selection, limit=limit)
    settings = parts().settings
    work = (
        actions.replay_dead(settings, store, selection)
        if verb == "replay"
        else actions.purge_dead(settings, store, selection)
    )
    job = parts().jobs.start(
        f"{verb} dead letters", f"{verb.title()} {limit} dead letters", described, actor(), work
    )
    return redirect(url_for("pages.job", job_id=job.id))


@bp.route("/archive", methods=["GET", "POST"])
def archive():
    """Replay archived events by time range: a dry-run count first, then the replay, confirmed."""
    filters = _filters(request.form if request.method == "POST" else request.args)
    counted, error = None, None
    if request.method == "POST":
        try:
            selection = _selection({**filters, "reason": ""})
            if selection.since is None:
                raise OpsError("give the time the replay starts from (since)")
            if request.form.get("confirmed") == "yes":
                settings = parts().settings
                job = parts().jobs.start(
                    "replay archive",
                    "Replay archived events",
                    selection.describe(),
                    actor(),
                    actions.replay_archive(settings, selection, parts().dead.archive_claims),
                )
                return redirect(url_for("pages.job", job_id=job.id))
            publisher = start_publisher(parts().settings.amqp_url)
            try:
                counted = ArchiveReplay(parts().settings.amqp_url, publisher, dry_run=True).run(selection)
            finally:
                publisher.close()
        except OpsError as exc:
            error = str(exc)
    return render_template(
        "archive.html",
        page="archive",
        filters=filters,
        resources=sorted(BY_RESOURCE),
        counted=counted,
        error=error,
    )
