"""The import of one resource, page by page from its checkpoint, with reads and writes overlapped.

Pages come from the query service by key ascending (``IntacctClient.query_all``). While this
thread reads page N+1, a small pool reads the lines of and upserts pages N, N-1, ... so both
Intacct slots and FlexPoint stay busy. Pages finish in any order but the checkpoint advances in
key order only: it is saved once every page up to it is confirmed by FlexPoint, so a crash
anywhere leaves no gap behind the checkpoint. Memory holds at most ``pipeline + 1`` pages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from reliability.errors import LeaseLost
from schemas.catalog import BY_RESOURCE
from schemas.mappings import query_fields
from workers.backfill.pages import PageImporter, PageOutcome
from workers.backfill.store import Checkpoint
from workers.connections.store import ConnectionRecord

DEFAULT_PAGE_SIZE = 2000


__all__ = ["DEFAULT_PAGE_SIZE", "LeaseLost", "ResourceImporter", "SaveCheckpoint"]

SaveCheckpoint = Callable[[Checkpoint], bool]


class ResourceImporter:
    """Imports resources for one run; ``pipeline`` pages are in flight behind the reading thread."""

    def __init__(
        self,
        intacct: Any,
        flexpoint: Any,
        executor: ThreadPoolExecutor,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        pipeline: int = 3,
    ) -> None:
        if page_size < 1 or pipeline < 1:
            raise ValueError("page_size and pipeline must be at least 1")
        self._intacct = intacct
        self._pages = PageImporter(intacct, flexpoint)
        self._executor = executor
        self._page_size = page_size
        self._pipeline = pipeline

    def run(
        self,
        connection: ConnectionRecord,
        point: Checkpoint,
        *,
        save: SaveCheckpoint,
        should_stop: Callable[[], bool],
    ) -> Checkpoint:
        """Import ``point.resource`` from its checkpoint; the last checkpoint saved is returned.

        Stops early, at a page boundary with the pages in flight saved, when ``should_stop()``;
        the returned checkpoint then has ``done`` False. Raises :class:`LeaseLost` when ``save``
        says the run is no longer ours, and any failure of a page once the pages before it are saved.
        """
        resource = point.resource
        path = BY_RESOURCE[resource].rest_path
        filters = [{"$gt": {"key": point.after_key}}] if point.after_key is not None else None
        remaining = self._intacct.query(connection, path, fields=["key"], filters=filters, size=1).total_count
        point = self._saved(save, replace(point, total=point.imported + remaining))
        pending: deque[Future[PageOutcome]] = deque()
        try:
            for rows in self._pages_of(connection, path, resource, filters):
                pending.append(self._executor.submit(self._pages.import_page, connection, resource, rows))
                while pending and (len(pending) >= self._pipeline or pending[0].done()):
                    point = self._commit(save, point, pending.popleft().result())
                if should_stop():
                    break
            else:
                while pending:
                    point = self._commit(save, point, pending.popleft().result())
                # Records added meanwhile count too: done is what was read, total at least as much.
                return self._saved(
                    save, replace(point, done=True, total=max(point.imported, point.total or 0))
                )
            while pending:
                point = self._commit(save, point, pending.popleft().result())
            return point
        finally:
            # After a failure: pages not started are dropped, running ones are waited for (their
            # upserts are harmless to repeat) so no thread outlives the run's lease.
            for future in pending:
                future.cancel()
            for future in pending:
                if not future.cancelled():
                    future.exception()

    def _pages_of(
        self, connection: ConnectionRecord, path: str, resource: str, filters: list | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of records by key; the chunks line up with query_all's requests (same size)."""
        rows: list[dict[str, Any]] = []
        for row in self._intacct.query_all(
            connection, path, fields=list(query_fields(resource)), filters=filters, size=self._page_size
        ):
            rows.append(row)
            if len(rows) == self._page_size:
                yield rows
                rows = []
        if rows:
            yield rows

    def _commit(self, save: SaveCheckpoint, point: Checkpoint, outcome: PageOutcome) -> Checkpoint:
        return self._saved(
            save,
            replace(
                point,
                after_key=outcome.last_key,
                imported=point.imported + outcome.read,
                skipped=point.skipped + outcome.skipped,
                unmappable=point.unmappable + outcome.unmappable,
            ),
        )

    @staticmethod
    def _saved(save: SaveCheckpoint, point: Checkpoint) -> Checkpoint:
        if not save(point):
            raise LeaseLost(f"the backfill lost its lease while importing {point.resource}")
        return point
