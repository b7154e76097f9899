"""What the console's buttons do, as background-job work: each one reuses the ``ops/`` function the
CLI uses and answers with the same exact accounting."""

from __future__ import annotations

from broker.admin import start_publisher
from config import Settings
from console.jobs import Job
from workers.deadletters import operations as dead_ops
from workers.deadletters.archive import ArchiveReplay
from workers.deadletters.selection import Selection
from workers.deadletters.store import ArchiveClaims, DeadLetterStore


def _dead_letters(
    settings: Settings, store: DeadLetterStore, job: Job, publisher=None
) -> dead_ops.DeadLetters:
    def started(total: int) -> None:
        job.total = total

    def stepped(*_: object) -> None:
        job.done += 1

    return dead_ops.DeadLetters(store, settings.amqp_url, publisher, on_start=started, on_step=stepped)


def replay_dead(settings: Settings, store: DeadLetterStore, selection: Selection):
    def work(job: Job) -> str:
        publisher = start_publisher(settings.amqp_url)
        try:
            outcome = dead_ops.replay(_dead_letters(settings, store, job, publisher), selection)
        finally:
            publisher.close()
        tally = outcome.tally
        selected = tally.moved + outcome.failed
        job.counts = {
            "selected": selected + outcome.busy,
            "moved": tally.moved,
            "failed": outcome.failed,
            "left to another replay": outcome.busy,
            "not selected": tally.scanned - selected - outcome.busy,
        }
        job.errors.update(tally.errors)
        busy = f", {outcome.busy} left to another replay running now" if outcome.busy else ""
        return (
            f"moved {tally.moved}, failed {outcome.failed} of {selected + outcome.busy} selected{busy}; "
            f"{tally.scanned} stored before"
        )

    return work


def purge_dead(settings: Settings, store: DeadLetterStore, selection: Selection):
    def work(job: Job) -> str:
        tally = dead_ops.purge(_dead_letters(settings, store, job), selection).tally
        job.counts = {"purged": tally.dropped, "kept": tally.kept}
        return f"purged {tally.dropped}; {tally.kept} still stored"

    return work


def replay_archive(settings: Settings, selection: Selection, claims: ArchiveClaims | None = None):
    """The job replaying ``selection`` from the archive under a claim on its range (``claims``:
    the console's database, else DATABASE_URL's, opened for the job)."""

    def work(job: Job) -> str:
        def stepped(selected: bool) -> None:
            job.done += 1

        opened = None
        held = claims
        if held is None:
            from processes.parts import ProcessParts

            opened = ProcessParts(settings, process="console")
            held = ArchiveClaims(opened.engine)
        publisher = start_publisher(settings.amqp_url)
        try:
            tally = ArchiveReplay(settings.amqp_url, publisher, on_step=stepped, claims=held).run(selection)
        finally:
            publisher.close()
            if opened is not None:
                opened.close()
        job.total = tally.read
        job.counts = {
            "read": tally.read,
            "moved": tally.moved,
            "skipped": tally.skipped,
            "failed": tally.failed,
        }
        job.errors.update(tally.errors)
        return f"moved {tally.moved}, skipped {tally.skipped}, failed {tally.failed}; read {tally.read}"

    return work


def reconcile_now(settings: Settings, connection_id: str):
    def work(job: Job) -> str:
        from processes.reconcile import open_reconciler

        with open_reconciler(settings) as reconciler:
            results = reconciler.sweep(connection_id=connection_id)
        job.total = job.done = len(results)
        failed = sum(1 for r in results if r.kind == "failed")
        published = sum(r.published for r in results)
        job.counts = {"resources swept": len(results), "published": published, "failed": failed}
        for r in results:
            if r.error:
                job.errors[f"{r.resource}: {r.error}"] += 1
        return f"swept {len(results)} resources: published {published}, failed {failed}"

    return work
