"""Dead-letter commands: ``dead list``/``dead show`` to browse the stored dead letters, ``dead
store`` to run the storing consumer, ``replay`` to put dead letters (or archived events) back in
their work queues, and ``purge`` to delete dead letters for good, with the progress bar and accounting helpers only they use; plain click objects,
exported through cli/ops.py's ``COMMANDS`` and mounted into ``flexsync`` by cli/main.py, the work
being done in ``ops/``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from broker.admin import start_publisher
from cli.context import parts_of, settings_of
from cli.opsoptions import ops_errors, selection_filters, selection_of
from reliability.errors import OpsError
from workers.deadletters import operations as dead_ops
from workers.deadletters.archive import ArchiveReplay
from workers.deadletters.letters import DeadLetter
from workers.deadletters.operations import Tally
from workers.deadletters.selection import Selection
from workers.deadletters.store import ArchiveClaims, DeadLetterStore


class _Progress:
    """A click progress bar on stderr, opened when the pass knows how many messages it has."""

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        self._label = label
        self._enabled = enabled
        self._bar: Any = None

    def start(self, total: int) -> None:
        if self._enabled and total:
            self._bar = click.progressbar(length=total, label=self._label, file=sys.stderr)
            self._bar.__enter__()

    def step(self, *_: Any) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def dead_letter_store(ctx: click.Context) -> DeadLetterStore:
    """The ``dead_letters`` table of DATABASE_URL (migrated first), one engine per invocation."""
    cache = ctx.ensure_object(dict)
    if "dead_letter_store" not in cache:
        cache["dead_letter_store"] = DeadLetterStore(parts_of(ctx).engine)
    return cache["dead_letter_store"]


def _letters(
    ctx: click.Context, publisher: Any, progress: _Progress, rate: float | None = None
) -> dead_ops.DeadLetters:
    return dead_ops.DeadLetters(
        dead_letter_store(ctx),
        settings_of(ctx).amqp_url,
        publisher,
        rate=rate,
        on_start=progress.start,
        on_step=progress.step,
    )


# -- dead letters --------------------------------------------------------------------------


@click.group()
def dead() -> None:
    """Browse the dead letters (stored in the database from the dead-letter queue first)."""


def _browse(ctx: click.Context, selection: Selection, label: str) -> dead_ops.Browsed:
    progress = _Progress(label, enabled=sys.stderr.isatty())
    try:
        return dead_ops.browse(_letters(ctx, None, progress), selection)
    finally:
        progress.close()


def _line(letter: DeadLetter) -> str:
    failed = letter.failed_at.strftime("%Y-%m-%dT%H:%M:%SZ") if letter.failed_at else "-"
    key = (letter.envelope or {}).get("key", "-")
    return (
        f"{letter.id}  {failed}  {letter.reason:<34}  {letter.resource or '-':<15}  "
        f"key={key}  attempts={letter.attempts if letter.attempts is not None else '-'}  "
        f"connection={letter.connection_id or '-'}"
    )


@dead.command("list")
@selection_filters
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, every field")
@click.pass_context
@ops_errors
def dead_list(ctx: click.Context, as_json: bool, **filters: Any) -> None:
    """List dead letters, oldest first: id, failed at, reason, resource, key, attempts."""
    selection = selection_of(filters)
    found = _browse(ctx, selection, "reading dead-letter")
    for letter in found.letters:
        click.echo(json.dumps(letter.summary(), default=str) if as_json else _line(letter))
    click.echo(
        f"{len(found.letters)} shown, {found.matched} matched ({selection.describe()}), "
        f"{found.tally.scanned} in dead-letter",
        err=True,
    )


@dead.command("store")
@click.option("--once", is_flag=True, help="store what waits in dead-letter now, then stop")
@click.option(
    "--batch", type=click.IntRange(min=1), default=500, show_default=True, help="letters per commit"
)
@click.pass_context
@ops_errors
def dead_store(ctx: click.Context, once: bool, batch: int) -> None:
    """Store each message of the dead-letter queue in the database (acknowledged after the commit).

    The ``provisioning`` process does this all the time; this command is for a deployment that
    wants it apart, or for storing what waits now (``--once``).
    """
    from workers.deadletters.storer import StoringConsumer
    from workers.runtime.process import run_worker

    store = dead_letter_store(ctx)
    url = settings_of(ctx).amqp_url
    if once:
        done = StoringConsumer.for_url(url, store, batch=batch, until_idle=0.5).drain()
        click.echo(f"stored {done.stored} dead letters ({done.duplicates} already stored)")
        return
    run_worker("dead_letter_storer", StoringConsumer.for_url(url, store, batch=batch))


@dead.command("show")
@click.argument("letter_id")
@click.pass_context
@ops_errors
def dead_show(ctx: click.Context, letter_id: str) -> None:
    """Show one dead letter in full: envelope, reason, exception, attempts, origin, failed at."""
    if len(letter_id) < 6:
        raise OpsError("give at least 6 characters of the id (see `flexsync dead list`)")
    found = _browse(ctx, Selection(ids=(letter_id,)), "reading dead-letter")
    if not found.letters:
        raise OpsError(f"no dead letter has the id {letter_id} (ids are listed by `flexsync dead list`)")
    if len({letter.id for letter in found.letters}) > 1:
        ids = ", ".join(sorted({letter.id for letter in found.letters}))
        raise OpsError(f"{letter_id} is ambiguous: {ids}; give more characters")
    letter = found.letters[0]
    summary = letter.summary()
    for name in (
        "id",
        "reason",
        "exception",
        "attempts",
        "originalRoutingKey",
        "originalQueue",
        "failedAt",
        "connectionId",
        "resource",
        "messageId",
    ):
        click.echo(f"{name + ':':<20}{summary[name] if summary[name] is not None else '-'}")
    click.echo("envelope:")
    click.echo(letter.body_text(limit=100_000))


# -- replay and purge ----------------------------------------------------------------------


def _accounting(verb: str, tally: Tally, outcome_failed: int, unroutable: int = 0, busy: int = 0) -> None:
    skipped = tally.kept - unroutable - busy
    click.echo(
        f"{verb}: moved {tally.moved}, skipped {skipped} (not selected), failed {outcome_failed}; "
        f"scanned {tally.scanned}, exact duplicates removed {tally.duplicates}"
    )
    if busy:
        click.echo(
            f"  left alone {busy}: another replay running at the same time took them "
            "(run `flexsync dead list` once it is done to see what is still stored)",
            err=True,
        )
    for error, times in tally.errors.most_common(10):
        click.echo(f"  failed x{times}: {error}", err=True)
    if outcome_failed:
        click.echo(
            "the failed messages are still in dead-letter; fix the cause and run the same command again",
            err=True,
        )


@click.command()
@click.option(
    "--from",
    "source",
    type=click.Choice(["dead", "archive"]),
    required=True,
    help="dead: the dead-letter queue; archive: the intacct.events.archive stream",
)
@selection_filters
@click.option("--dry-run", is_flag=True, help="count what would move; move nothing")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="at most this many messages/s")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@ops_errors
def replay(
    ctx: click.Context, source: str, dry_run: bool, rate: float | None, yes: bool, **filters: Any
) -> None:
    """Put messages back in their work queues: dead letters (attempts reset) or archived events.

    From dead, each copy is confirmed by RabbitMQ before its stored letter is marked replayed;
    the rest stay stored. From archive, --since is the stream offset to start at.
    Interrupted? Run the same command again: events are idempotent.
    """
    selection = selection_of(filters)
    settings = settings_of(ctx)
    if source == "archive":
        if selection.reason is not None:
            raise OpsError("--reason applies to dead letters only; archived events have no reason")
        claims = None if dry_run else dead_letter_store(ctx).archive_claims
        _replay_archive(settings, selection, dry_run=dry_run, rate=rate, yes=yes, claims=claims)
        return
    publisher = start_publisher(settings.amqp_url)
    progress = _Progress("replaying")
    try:
        if dry_run or not yes:
            counting = _Progress("counting", enabled=sys.stderr.isatty())
            try:
                selected = dead_ops.count(_letters(ctx, publisher, counting), selection)
            finally:
                counting.close()
            if dry_run:
                click.echo(f"dry run: {selected} dead letters would be replayed ({selection.describe()})")
                return
            if selected == 0:
                click.echo(f"nothing to replay: no dead letter matches ({selection.describe()})")
                return
            click.confirm(f"Replay {selected} dead letters to their work queues?", abort=True)
            selection = _at_most(selection, selected)
        outcome = dead_ops.replay(_letters(ctx, publisher, progress, rate), selection)
    finally:
        progress.close()
        publisher.close()
    _accounting("replayed from dead-letter", outcome.tally, outcome.failed, outcome.unroutable, outcome.busy)
    if outcome.failed:
        ctx.exit(1)


def _replay_archive(
    settings: Any,
    selection: Selection,
    *,
    dry_run: bool,
    rate: float | None,
    yes: bool,
    claims: ArchiveClaims | None = None,
) -> None:
    if not dry_run and not yes:
        click.confirm(
            f"Replay the archived events selected by ({selection.describe()}) to their work queues?",
            abort=True,
        )
    publisher = start_publisher(settings.amqp_url)
    counter = {"seen": 0}

    def step(selected: bool) -> None:
        counter["seen"] += 1
        if sys.stderr.isatty() and counter["seen"] % 1000 == 0:
            click.echo(f"\r  read {counter['seen']} archived events", err=True, nl=False)

    try:
        tally = ArchiveReplay(
            settings.amqp_url, publisher, dry_run=dry_run, rate=rate, on_step=step, claims=claims
        ).run(selection)
    finally:
        publisher.close()
    if dry_run:
        click.echo(
            f"dry run: {tally.selected} archived events would be replayed of {tally.read} read "
            f"({selection.describe()})"
        )
        return
    click.echo(
        f"replayed from archive: moved {tally.moved}, skipped {tally.skipped} (not selected), "
        f"failed {tally.failed}; read {tally.read}"
    )
    for error, times in tally.errors.most_common(10):
        click.echo(f"  failed x{times}: {error}", err=True)
    if tally.failed:
        sys.exit(1)


@click.command()
@selection_filters
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@ops_errors
def purge(ctx: click.Context, yes: bool, **filters: Any) -> None:
    """Delete the selected dead letters for good (marked purged); the others stay stored."""
    selection = selection_of(filters)
    settings = settings_of(ctx)
    publisher = start_publisher(settings.amqp_url)
    progress = _Progress("purging")
    try:
        if not yes:
            counting = _Progress("counting", enabled=sys.stderr.isatty())
            try:
                selected = dead_ops.count(_letters(ctx, publisher, counting), selection)
            finally:
                counting.close()
            if selected == 0:
                click.echo(f"nothing to purge: no dead letter matches ({selection.describe()})")
                return
            click.confirm(f"Delete {selected} dead letters for good?", abort=True)
            selection = _at_most(selection, selected)
        outcome = dead_ops.purge(_letters(ctx, publisher, progress), selection)
    finally:
        progress.close()
        publisher.close()
    tally = outcome.tally
    click.echo(
        f"purged: removed {tally.dropped}, skipped {tally.kept} (not selected), failed {tally.failed}; "
        f"scanned {tally.scanned}, exact duplicates removed {tally.duplicates}"
    )


def _at_most(selection: Selection, confirmed: int) -> Selection:
    """No more than the operator confirmed, even if matching letters arrived since the count."""
    return dataclasses.replace(selection, limit=selection.capped(confirmed))
