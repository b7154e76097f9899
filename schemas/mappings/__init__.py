"""Intacct records -> FlexPoint Sync API items, one marshmallow schema per resource.

A worker fetches a record (and its lines, see :func:`line_source`), calls :func:`map_record`
and sends the item; deletions and 404s become :func:`tombstone` items. Anything that cannot
be mapped raises :class:`MappingError`, which is permanent.
"""

from .base import LineSource, ResourceMapping
from .errors import MappingError
from .records import flatten, unflatten
from .registry import (
    MAPPINGS,
    applied_invoice_keys,
    line_source,
    map_record,
    mapping_for,
    query_fields,
    tombstone,
)

__all__ = [
    "MAPPINGS",
    "LineSource",
    "MappingError",
    "ResourceMapping",
    "applied_invoice_keys",
    "flatten",
    "line_source",
    "map_record",
    "mapping_for",
    "query_fields",
    "tombstone",
    "unflatten",
]
