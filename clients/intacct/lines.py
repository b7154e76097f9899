"""Reading the lines of many parent records (invoice lines, payment details, ...) in few queries.

The sync and the backfill both map a record together with its lines; both read them here, by
the query service filtered on the parent key, a chunk of parents per query.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from clients.intacct.client import IntacctConnection
from schemas.mappings import line_source

# The query service's largest page (intacct-rest.md: 4,000 rows, third-party figure).
LINE_PAGE_SIZE = 4000


def read_lines(
    intacct: Any,
    connection: IntacctConnection,
    resource: str,
    parent_keys: list[str],
    *,
    chunk: int,
    page_size: int = LINE_PAGE_SIZE,
) -> dict[str, list]:
    """The lines of ``resource`` records by parent key; {} for a resource without lines."""
    source = line_source(resource)
    if source is None or not parent_keys:
        return {}
    rows: list[dict[str, Any]] = []
    for part in chunks(parent_keys, chunk):
        rows.extend(
            intacct.query_all(
                connection,
                source.rest_path,
                fields=list(source.fields),
                filters=[{"$in": {source.parent_field: part}}],
                size=page_size,
            )
        )
    return source.group(rows)


def chunks(values: list[str], size: int) -> Iterator[list[str]]:
    """``values`` in consecutive slices of at most ``size``."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
